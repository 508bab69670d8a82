//! Host-side verbs: `ferrite net ...` (bridges, VLANs, bonds), `ferrite storage ...` (pools
//! and volumes) and `ferrite task list`. Like the guest verbs, each is one API route and
//! bodies come from `KEY=VALUE` pairs.

use serde_json::{json, Value};

use super::columns;
use super::commands::{print_response, Context, RESPONSE_GRACE};
use super::verbs::{fetch_all, list, print_items};
use super::{CliError, Request, EXIT_OK};

/// A managed link kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkKind {
    Bridge,
    Vlan,
    Bond,
}

impl LinkKind {
    fn collection(self) -> &'static str {
        match self {
            LinkKind::Bridge => "network/bridges",
            LinkKind::Vlan => "network/vlans",
            LinkKind::Bond => "network/bonds",
        }
    }

    fn name(self) -> &'static str {
        match self {
            LinkKind::Bridge => "bridge",
            LinkKind::Vlan => "vlan",
            LinkKind::Bond => "bond",
        }
    }
}

/// `ferrite net ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NetCommand {
    /// Every managed bridge, VLAN and bond: kind, state, lower links, addresses, drift.
    List,
    /// Every link the kernel has (managed or not).
    Interfaces,
    /// Show one managed link.
    Show { kind: LinkKind, name: String },
    /// Create a link from KEY=VALUE fields (`name=vmbr0 ports.eth1={} vlan_aware=true`).
    Create {
        kind: LinkKind,
        fields: Vec<String>,
        #[arg(long)]
        json: Option<String>,
    },
    /// Change fields of a link.
    Update {
        kind: LinkKind,
        name: String,
        fields: Vec<String>,
        #[arg(long)]
        json: Option<String>,
    },
    /// Delete a link.
    Delete { kind: LinkKind, name: String },
    /// Confirm a change to the management interface before it is rolled back.
    Confirm,
}

/// `ferrite storage ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StorageCommand {
    /// Pools: type, content, used and total space.
    List,
    /// Show one pool.
    Show { pool: String },
    /// Volumes of a pool (content, format, size, users).
    Volumes { pool: String },
    /// Create a volume in POOL from KEY=VALUE fields (`name=disk0 size=10G format=raw`).
    Create {
        pool: String,
        fields: Vec<String>,
        #[arg(long)]
        json: Option<String>,
    },
    /// Delete volume VOLUME of POOL.
    Delete { pool: String, volume: String },
    /// Add a pool from KEY=VALUE fields (`name=fast type=dir path=/srv/fast`).
    AddPool {
        fields: Vec<String>,
        #[arg(long)]
        json: Option<String>,
    },
}

fn send_print(
    ctx: &Context,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<u8, CliError> {
    let resp = ctx.client()?.send(&Request {
        body,
        timeout: Some(RESPONSE_GRACE * 2),
        ..Request::new(method, path)
    })?;
    print_response(ctx.format, &resp)?;
    Ok(EXIT_OK)
}

/// Runs `ferrite net ...`.
pub(super) fn net(ctx: &Context, cmd: &NetCommand) -> Result<u8, CliError> {
    match cmd {
        NetCommand::List => {
            let mut items = Vec::new();
            for kind in [LinkKind::Bridge, LinkKind::Bond, LinkKind::Vlan] {
                for mut i in fetch_all(ctx, kind.collection(), Vec::new())? {
                    i["kind"] = json!(kind.name());
                    items.push(i);
                }
            }
            print_items(ctx.format, columns::LINKS, &items)
        }
        NetCommand::Interfaces => send_print(ctx, "GET", "network/interfaces", None),
        NetCommand::Show { kind, name } => {
            send_print(ctx, "GET", &format!("{}/{name}", kind.collection()), None)
        }
        NetCommand::Create { kind, fields, json } => {
            let body = super::fields::body(fields, json.as_deref())?;
            send_print(ctx, "POST", kind.collection(), Some(&body))
        }
        NetCommand::Update {
            kind,
            name,
            fields,
            json,
        } => {
            let body = super::fields::body(fields, json.as_deref())?;
            send_print(
                ctx,
                "PUT",
                &format!("{}/{name}", kind.collection()),
                Some(&body),
            )
        }
        NetCommand::Delete { kind, name } => send_print(
            ctx,
            "DELETE",
            &format!("{}/{name}", kind.collection()),
            None,
        ),
        NetCommand::Confirm => send_print(ctx, "POST", "network/confirm", Some(&json!({}))),
    }
}

/// Runs `ferrite storage ...`.
pub(super) fn storage(ctx: &Context, cmd: &StorageCommand) -> Result<u8, CliError> {
    match cmd {
        StorageCommand::List => list(ctx, "storage/pools", Vec::new(), columns::POOLS),
        StorageCommand::Show { pool } => {
            send_print(ctx, "GET", &format!("storage/pools/{pool}"), None)
        }
        StorageCommand::Volumes { pool } => list(
            ctx,
            &format!("storage/pools/{pool}/volumes"),
            Vec::new(),
            columns::VOLUMES,
        ),
        StorageCommand::Create { pool, fields, json } => {
            let body = super::fields::body(fields, json.as_deref())?;
            send_print(
                ctx,
                "POST",
                &format!("storage/pools/{pool}/volumes"),
                Some(&body),
            )
        }
        StorageCommand::Delete { pool, volume } => send_print(
            ctx,
            "DELETE",
            &format!("storage/pools/{pool}/volumes/{volume}"),
            None,
        ),
        StorageCommand::AddPool { fields, json } => {
            let body = super::fields::body(fields, json.as_deref())?;
            send_print(ctx, "POST", "storage/pools", Some(&body))
        }
    }
}

/// `ferrite task list`.
pub(super) fn task_list(ctx: &Context) -> Result<u8, CliError> {
    list(ctx, "tasks", Vec::new(), columns::TASKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_and_storage_collections_are_routes() {
        let reg = crate::schema::Registry::load().expect("schema");
        let has = |method: &str, path: &str| {
            reg.routes()
                .iter()
                .any(|r| r.method == method && r.path == path)
        };
        for k in [LinkKind::Bridge, LinkKind::Vlan, LinkKind::Bond] {
            let c = format!("/{}", k.collection());
            assert!(has("GET", &c) && has("POST", &c), "{c}");
            assert!(has("PUT", &format!("{c}/{{name}}")), "{c}");
            assert!(has("DELETE", &format!("{c}/{{name}}")), "{c}");
        }
        assert!(has("GET", "/network/interfaces") && has("POST", "/network/confirm"));
        assert!(has("GET", "/storage/pools/{pool}/volumes"));
        assert!(has("DELETE", "/storage/pools/{pool}/volumes/{volume}"));
        assert!(has("GET", "/tasks"));
    }
}
