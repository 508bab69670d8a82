//! The resources (from `schema/catalog.json`, see [`crate::catalog_file`]) and data sources:
//! each names its API route and types; attributes come from `schema/` through
//! [`crate::tfschema`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ferrite::schema::Registry;

use crate::tfschema::{object_type, Attr, Conv, Defs, Kind, Nesting};
use crate::value::{Type, Value};

/// How an existing object is changed.
#[derive(Debug, Clone, Copy)]
pub enum Update {
    /// `PUT {item}` with this type: fields present replace, null clears.
    Put(&'static str),
    /// `POST {item}/resize {size}`: volumes only grow.
    Resize,
    /// Every field forces replacement.
    None,
}

/// A path parameter of a nested collection.
#[derive(Debug, Clone, Copy)]
pub struct Parent {
    pub name: &'static str,
    pub number: bool,
    /// Allowed values (empty: any).
    pub one_of: &'static [&'static str],
    pub description: &'static str,
}

/// A managed resource bound to one API collection.
pub struct ResourceDef {
    pub name: &'static str,
    pub description: &'static str,
    /// Collection path; `{name}` placeholders are filled from the parent attributes.
    pub collection: &'static str,
    pub create: &'static str,
    /// The create response when it differs from the read type (one-time secrets).
    pub create_response: Option<&'static str>,
    pub update: Update,
    pub read: &'static str,
    /// The attribute that names the object in its path.
    pub key: &'static str,
    /// Path parameter attributes, in path order (volumes live under a pool, snapshots under
    /// a guest).
    pub parents: &'static [Parent],
    /// No `GET` of a single object exists: read the collection and pick the key.
    pub read_in_list: bool,
    /// Read-only fields left out of the resource: runtime figures that change on their own
    /// (status, capacity, usage) and would show as drift on every refresh.
    pub hidden: &'static [&'static str],
    /// Containers and VMs: `running` and `reboot_on_change`, power actions, forced delete.
    pub guest: bool,
    /// A write-only secret changed through its own route: (attribute, path suffix).
    pub secret_route: Option<(&'static str, &'static str)>,
    /// Created by streaming the local file named by the provider-side `source` attribute to
    /// this route (`create` is then the route's query type), not by a JSON `POST`.
    pub upload_route: Option<&'static str>,
}

/// A data source: a list endpoint (or one object) read at plan time.
pub struct DataSourceDef {
    pub name: &'static str,
    pub description: &'static str,
    pub item: &'static str,
    /// `None` for `ferrite_node`, which reads one object.
    pub list: Option<&'static str>,
    /// Query fields the user may set (`name`, `tag`, ...), from the list query type.
    pub query: &'static str,
}

pub const DATA_SOURCES: &[DataSourceDef] = &[
    DataSourceDef {
        name: "ferrite_node",
        description: "Facts about the host ferrited runs on.",
        item: "Node",
        list: None,
        query: "",
    },
    DataSourceDef {
        name: "ferrite_containers",
        description: "Containers, optionally filtered by name glob or tag.",
        item: "Container",
        list: Some("/containers"),
        query: "ListQuery",
    },
    DataSourceDef {
        name: "ferrite_vms",
        description: "Virtual machines, optionally filtered by name glob or tag.",
        item: "Vm",
        list: Some("/vms"),
        query: "ListQuery",
    },
    DataSourceDef {
        name: "ferrite_storage_pools",
        description: "Storage pools with their capacity.",
        item: "StoragePool",
        list: Some("/storage/pools"),
        query: "ListQuery",
    },
    DataSourceDef {
        name: "ferrite_templates",
        description: "Template volumes (content `template`) in one pool (default `local`).",
        item: "Volume",
        list: Some("/storage/pools/{pool}/volumes"),
        query: "ListQuery",
    },
];

/// A resource with its generated attributes.
pub struct Resource {
    pub def: &'static ResourceDef,
    pub attrs: Vec<Attr>,
    pub ty: Type,
}

impl Resource {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

pub struct DataSource {
    pub def: &'static DataSourceDef,
    pub attrs: Vec<Attr>,
    pub ty: Type,
}

/// Everything generated from `schema/`, built once per process on first use (the provider is
/// started several times per Terraform command, so start-up does no work at all).
pub struct Catalog {
    pub registry: Registry,
    pub resources: BTreeMap<&'static str, Resource>,
    pub data_sources: BTreeMap<&'static str, DataSource>,
    pub provider_attrs: Vec<Attr>,
}

pub fn catalog() -> &'static Catalog {
    static CAT: OnceLock<Catalog> = OnceLock::new();
    CAT.get_or_init(build)
}

fn provider_only(name: &str, ty: Type, default: Value, description: &str) -> Attr {
    let mut a = Attr::computed_only(name, Kind::Prim(ty, Conv::Plain), description);
    a.optional = true;
    a.default = Some(default);
    a.provider_only = true;
    a
}

/// `timeouts = { create = "10m", update = "5m", delete = "2m" }`: how long one operation's
/// API calls may take (default: the provider's `timeout`).
fn timeouts_attr() -> Attr {
    let op = |name: &str| {
        let mut a = config_attr(
            name,
            Type::String,
            false,
            &format!("Deadline for {name} calls, e.g. \"30s\", \"10m\", \"1h30m\"."),
        );
        a.provider_only = true;
        a
    };
    let mut a = Attr::computed_only(
        "timeouts",
        Kind::Nested(
            Nesting::Single,
            vec![op("create"), op("update"), op("delete")],
        ),
        "Per-operation deadlines; unset operations use the provider's `timeout`.",
    );
    a.computed = false;
    a.optional = true;
    a.provider_only = true;
    a
}

fn config_attr(name: &str, ty: Type, sensitive: bool, description: &str) -> Attr {
    let mut a = Attr::computed_only(name, Kind::Prim(ty, Conv::Plain), description);
    a.computed = false;
    a.optional = true;
    a.sensitive = sensitive;
    a
}

fn build() -> Catalog {
    // The schema is embedded at build time and checked by ferrite's own tests, so a failure
    // here is a build defect; an empty catalog then makes every call report it.
    let registry = match Registry::load() {
        Ok(r) => r,
        Err(e) => panic!("embedded schema does not load: {e}"),
    };
    let defs = Defs {
        defs: registry.defs(),
    };
    let mut resources = BTreeMap::new();
    for def in crate::catalog_file::resources() {
        let update = match def.update {
            Update::Put(u) => Some(u),
            _ => None,
        };
        let mut reads = vec![def.read];
        reads.extend(def.create_response);
        let mut attrs = defs.resource_attrs(def.create, update, &reads, def.hidden);
        let read_only_props = defs.property_names(def.read);
        for a in &mut attrs {
            // Fields only the create response carries (a token's secret) are kept from state.
            if !a.in_create && !read_only_props.contains(&a.name) {
                a.keep_prior = true;
            }
            if let Update::Resize = def.update {
                if a.name == "size" {
                    a.force_new = false;
                    a.in_update = true;
                }
            }
            if def.secret_route.is_some_and(|(n, _)| n == a.name) {
                a.force_new = false;
            }
            // The key is chosen at create (or by the server) and never changes in place.
            if a.name == def.key {
                a.force_new = true;
                a.in_update = false;
            }
        }
        for p in def.parents {
            match attrs.iter_mut().find(|a| a.name == p.name) {
                Some(a) => {
                    a.required = true;
                    a.optional = false;
                    a.computed = false;
                    a.force_new = true;
                }
                None => attrs.push({
                    let ty = if p.number { Type::Number } else { Type::String };
                    let mut a = config_attr(p.name, ty, false, p.description);
                    a.required = true;
                    a.optional = false;
                    a.force_new = true;
                    a
                }),
            }
        }
        if def.guest {
            attrs.push(provider_only(
                "running",
                Type::Bool,
                Value::Bool(true),
                "Desired power state: true starts the guest, false shuts it down cleanly (SIGTERM to a container's init, the ACPI power button to a VM), killing it after 30 s. Default true.",
            ));
            attrs.push(provider_only(
                "reboot_on_change",
                Type::Bool,
                Value::Bool(false),
                "Restart a running guest when a change only takes effect at the next start. \
                 Default false: such changes wait for the next start and a warning says so.",
            ));
        }
        if def.upload_route.is_some() {
            // The one attribute no API type carries: where the file is on this machine.
            // Changing it alone re-uploads nothing (the content is pinned by `sha256`).
            let mut a = config_attr(
                "source",
                Type::String,
                false,
                "Path of the file to upload, on the machine running Terraform. After an \
                 import it is unknown, so the first plan sets it in place (no upload).",
            );
            a.required = true;
            a.optional = false;
            a.provider_only = true;
            attrs.push(a);
        }
        attrs.push(timeouts_attr());
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let ty = object_type(&attrs);
        resources.insert(def.name, Resource { def, attrs, ty });
    }
    let mut data_sources = BTreeMap::new();
    for def in DATA_SOURCES {
        let item_attrs = defs.computed_attrs(def.item, &[]);
        let mut attrs = Vec::new();
        match def.list {
            None => {
                attrs = item_attrs;
                for a in &mut attrs {
                    if a.name == "node" {
                        a.optional = true;
                        a.description = "Node name; default the one ferrited runs on.".into();
                    }
                }
            }
            Some(path) => {
                if !def.query.is_empty() {
                    for name in ["name", "tag"] {
                        attrs.push(config_attr(
                            name,
                            Type::String,
                            false,
                            if name == "name" {
                                "Only objects whose name matches this glob."
                            } else {
                                "Only objects carrying this tag."
                            },
                        ));
                    }
                }
                if path.contains("{pool}") {
                    attrs.push(config_attr(
                        "pool",
                        Type::String,
                        false,
                        "Pool to list; default `local`.",
                    ));
                }
                attrs.push(Attr::computed_only(
                    "items",
                    Kind::Nested(Nesting::List, item_attrs),
                    "The matching objects.",
                ));
            }
        }
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let ty = object_type(&attrs);
        data_sources.insert(def.name, DataSource { def, attrs, ty });
    }
    let provider_attrs = vec![
        config_attr(
            "endpoint",
            Type::String,
            false,
            "API endpoint, e.g. https://host:8006. Env FERRITE_ENDPOINT.",
        ),
        config_attr(
            "token",
            Type::String,
            true,
            "API token (or ticket). Env FERRITE_TOKEN.",
        ),
        config_attr(
            "username",
            Type::String,
            false,
            "User for password login (NAME@REALM). Env FERRITE_USERNAME.",
        ),
        config_attr(
            "password",
            Type::String,
            true,
            "Password for username. Env FERRITE_PASSWORD.",
        ),
        config_attr(
            "tls_fingerprint",
            Type::String,
            false,
            "SHA-256 fingerprint of the daemon's certificate (pinned). Env FERRITE_TLS_FINGERPRINT.",
        ),
        config_attr(
            "insecure",
            Type::Bool,
            false,
            "Skip certificate verification. Env FERRITE_INSECURE.",
        ),
        config_attr(
            "timeout",
            Type::Number,
            false,
            "Seconds to wait for one API call (default 300). Env FERRITE_TIMEOUT.",
        ),
    ];
    Catalog {
        registry,
        resources,
        data_sources,
        provider_attrs,
    }
}
