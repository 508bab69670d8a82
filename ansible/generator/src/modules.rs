//! The modules that are not one catalogue resource each (tasks, exec, info), and the options
//! every resource module of a kind carries beyond its schema fields.

use serde_json::{json, Value};

use crate::fields::{Defs, Field};

/// An option with the spec default (if any) and its documented description.
pub struct Opt {
    pub field: Field,
    pub default: Option<Value>,
    pub desc: Vec<String>,
}

/// An option no schema type carries.
pub fn extra(name: &str, ty: &'static str, desc: &str) -> Opt {
    Opt {
        field: Field {
            name: name.into(),
            description: desc.into(),
            ty,
            elements: None,
            choices: Vec::new(),
            required: false,
            no_log: false,
            create: false,
            update: false,
            read: false,
            shape: "scalar",
            nullable: false,
            live: false,
            server_default: false,
            default: None,
        },
        default: None,
        desc: vec![desc.into()],
    }
}

pub fn with_default(mut o: Opt, v: Value) -> Opt {
    o.default = Some(v);
    o
}

pub fn with_choices(mut o: Opt, c: &[&str]) -> Opt {
    o.field.choices = c.iter().map(|s| json!(s)).collect();
    o
}

pub fn required(mut o: Opt) -> Opt {
    o.field.required = true;
    o
}

/// An option documented from a schema type's property, renamed where the connection options
/// already use the name.
pub fn from_schema(d: &Defs, ty: &str, prop: &str, name: &str) -> Opt {
    let mut f = d
        .property(ty, prop)
        .unwrap_or_else(|| panic!("{ty} has no property {prop}"));
    f.name = name.into();
    let desc = vec![if f.description.is_empty() {
        format!("The C({prop}) field of {ty}.")
    } else {
        f.description.replace('`', "")
    }];
    Opt {
        field: f,
        default: None,
        desc,
    }
}

/// `state` of a resource module.
pub fn state(choices: &[&str], desc: &str) -> Opt {
    with_default(
        with_choices(extra("state", "str", desc), choices),
        json!("present"),
    )
}

/// Extra options of guest modules (`container`, `vm`).
pub fn guest_extras(kind: &str) -> Vec<Opt> {
    let (hold, hold_desc) = if kind == "vm" {
        ("paused", "C(paused) pauses its vCPUs")
    } else {
        ("frozen", "C(frozen) freezes its processes")
    };
    vec![
        state(
            &["present", "absent", "started", "stopped", "restarted", hold],
            &format!(
                "C(present) creates or updates the guest and leaves its power state alone; C(started) and \
                 C(stopped) also set the power state; C(restarted) restarts it (always a change); {hold_desc}; \
                 C(absent) stops and deletes it."
            ),
        ),
        with_default(
            extra(
                "restart_on_change",
                "bool",
                "Restart a running guest when a changed field only takes effect at the next start \
                 (fields without the live mark). Without it such changes wait for the next start and a warning says so.",
            ),
            json!(false),
        ),
        extra(
            "clone_from",
            "str",
            "Create the guest as a clone of this guest (its name). Ignored when the guest exists.",
        ),
        extra(
            "clone_snapshot",
            "str",
            "With clone_from: clone the source as it was at this snapshot.",
        ),
        extra(
            "is_template",
            "bool",
            "C(true) turns the guest into a template (one way: a template cannot start). C(false) fails on a template.",
        ),
    ]
}

/// Extra options of the `volume` module.
pub fn volume_extras() -> Vec<Opt> {
    vec![
        state(&["present", "absent"], "Whether the volume exists."),
        required(extra("pool", "str", "The pool holding the volume.")),
        extra(
            "clone_from",
            "str",
            "Create the volume as a clone of this volume of the same pool (its name). Ignored when the volume exists.",
        ),
        with_default(
            extra(
                "linked",
                "bool",
                "With clone_from: a linked clone of a template volume.",
            ),
            json!(false),
        ),
        extra(
            "template",
            "bool",
            "C(true) turns the volume into a read-only template (one way).",
        ),
    ]
}

/// A module that is not a catalogue resource.
pub struct Custom {
    pub name: &'static str,
    pub short: &'static str,
    pub description: &'static str,
    pub check_mode: &'static str,
    pub diff_mode: &'static str,
    pub options: Vec<Opt>,
    /// (key, item type, is a list, description).
    pub returns: Vec<(&'static str, &'static str, bool, &'static str)>,
    pub example: &'static str,
}

fn list_filters(d: &Defs) -> Vec<Opt> {
    vec![
        from_schema(d, "ListQuery", "name", "name"),
        from_schema(d, "ListQuery", "tag", "tag"),
    ]
}

pub fn customs(d: &Defs) -> Vec<Custom> {
    let info = "Reads only; never changes anything, so check mode runs it too.";
    vec![
        Custom {
            name: "task",
            short: "Wait for or cancel a Ferrite task",
            description: "Follows a task with server-side waits (C(?wait=)) until it finishes or C(timeout) passes; \
                          a timeout fails with the task id and says the task goes on. C(state=cancelled) asks the daemon to cancel it.",
            check_mode: "full",
            diff_mode: "none",
            options: vec![
                required(from_schema(d, "Task", "id", "id")),
                with_default(
                    with_choices(
                        extra("state", "str", "C(finished) waits for the task; C(cancelled) cancels it and waits."),
                        &["finished", "cancelled"],
                    ),
                    json!("finished"),
                ),
                with_default(
                    extra("fail_on_error", "bool", "Fail when the task ends in a state other than succeeded."),
                    json!(true),
                ),
            ],
            returns: vec![("task", "Task", false, "The task as last read.")],
            example: "- name: Wait for a clone task\n  ferrite.virt.task:\n    id: \"{{ clone.task.id }}\"\n",
        },
        Custom {
            name: "container_exec",
            short: "Run a command in a Ferrite container",
            description: "Runs a command inside a running container and returns its exit code and output. \
                          Always reports a change and declares no check mode: the command could do anything.",
            check_mode: "none",
            diff_mode: "none",
            options: vec![
                required(extra("name", "str", "Name of the container.")),
                required(from_schema(d, "ExecRequest", "command", "command")),
                from_schema(d, "ExecRequest", "timeout", "command_timeout"),
                with_default(
                    extra("fail_on_nonzero", "bool", "Fail the task when the command exits non-zero."),
                    json!(true),
                ),
            ],
            returns: vec![("result", "ExecResult", false, "Exit code, output and duration.")],
            example: "- name: Read the hostname\n  ferrite.virt.container_exec:\n    name: web1\n    command: [hostname]\n",
        },
        Custom {
            name: "node_info",
            short: "Facts about the Ferrite host",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: vec![extra("node", "str", "Node name; default the one ferrited runs on.")],
            returns: vec![("node", "Node", false, "Host facts read from the kernel.")],
            example: "- name: Host facts\n  ferrite.virt.node_info:\n  register: node\n",
        },
        Custom {
            name: "guest_info",
            short: "List Ferrite containers and VMs",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: {
                let mut o = list_filters(d);
                o.push(with_default(
                    with_choices(extra("type", "str", "Which guests to list."), &["all", "container", "vm"]),
                    json!("all"),
                ));
                o
            },
            returns: vec![
                ("containers", "Container", true, "Containers matching the filters."),
                ("vms", "Vm", true, "Virtual machines matching the filters."),
            ],
            example: "- name: Guests tagged web\n  ferrite.virt.guest_info:\n    tag: web\n  register: guests\n",
        },
        Custom {
            name: "storage_info",
            short: "List Ferrite storage pools and volumes",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: vec![extra("pool", "str", "Also list the volumes of this pool.")],
            returns: vec![
                ("pools", "StoragePool", true, "Storage pools with their capacity."),
                ("volumes", "Volume", true, "Volumes of C(pool), when given."),
            ],
            example: "- name: Volumes of local\n  ferrite.virt.storage_info:\n    pool: local\n  register: storage\n",
        },
        Custom {
            name: "network_info",
            short: "List Ferrite bridges, VLANs, bonds and interfaces",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: vec![],
            returns: vec![
                ("bridges", "Bridge", true, "Managed bridges."),
                ("vlans", "Vlan", true, "Managed VLAN interfaces."),
                ("bonds", "Bond", true, "Managed bonds."),
                ("interfaces", "Interface", true, "Every link the kernel reports."),
            ],
            example: "- name: Network state\n  ferrite.virt.network_info:\n  register: net\n",
        },
        Custom {
            name: "access_info",
            short: "List Ferrite users, groups, roles, ACL entries and API tokens",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: vec![],
            returns: vec![
                ("users", "User", true, "Users."),
                ("groups", "Group", true, "Groups."),
                ("roles", "Role", true, "Roles."),
                ("acl", "AclEntry", true, "ACL entries."),
                ("tokens", "Token", true, "API tokens (never their secrets)."),
            ],
            example: "- name: Access configuration\n  ferrite.virt.access_info:\n  register: access\n",
        },
        Custom {
            name: "task_info",
            short: "List Ferrite tasks",
            description: info,
            check_mode: "full",
            diff_mode: "none",
            options: vec![
                extra("id", "str", "Read only this task."),
                from_schema(d, "TaskListQuery", "state", "state"),
                from_schema(d, "TaskListQuery", "type", "type"),
            ],
            returns: vec![("tasks", "Task", true, "Tasks, newest first.")],
            example: "- name: Running tasks\n  ferrite.virt.task_info:\n    state: running\n  register: tasks\n",
        },
    ]
}
