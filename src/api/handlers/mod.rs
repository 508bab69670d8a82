//! Route handlers, one module per resource. Names match the `operation_id`s in
//! `schema/routes.json`; `App::new` refuses to start if a route has no handler or vice versa.

mod access_login;
mod acl;
mod audit;
mod containers;
mod downloads;
mod groups;
mod guests;
mod ingest;
mod meta;
mod network;
mod nodes;
mod paging;
mod roles;
mod storage;
mod tasks;
mod templates;
mod tokens;
mod users;
mod vms;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{ApiError, App, Req, Resp};

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Resp, ApiError>> + Send>>;
/// A handler: takes the app and a validated request.
pub type Handler = fn(Arc<App>, Req) -> HandlerFuture;

macro_rules! h {
    ($name:literal, $f:path) => {
        ($name, (|app, req| Box::pin($f(app, req))) as Handler)
    };
}

/// Every handler, by operation id.
pub fn table() -> Vec<(&'static str, Handler)> {
    vec![
        h!("version_view", meta::version_view),
        h!("openapi_view", meta::openapi_view),
        h!("access_login", access_login::login),
        h!("access_renew", access_login::renew),
        h!("access_whoami", access_login::whoami),
        h!("user_list", users::list),
        h!("user_create", users::create),
        h!("user_view", users::view),
        h!("user_update", users::update),
        h!("user_delete", users::delete),
        h!("user_password", users::password),
        h!("group_list", groups::list),
        h!("group_create", groups::create),
        h!("group_view", groups::view),
        h!("group_update", groups::update),
        h!("group_delete", groups::delete),
        h!("role_list", roles::list),
        h!("role_create", roles::create),
        h!("role_view", roles::view),
        h!("role_update", roles::update),
        h!("role_delete", roles::delete),
        h!("acl_list", acl::list),
        h!("acl_create", acl::create),
        h!("acl_view", acl::view),
        h!("acl_delete", acl::delete),
        h!("token_list", tokens::list),
        h!("token_create", tokens::create),
        h!("token_view", tokens::view),
        h!("token_delete", tokens::delete),
        h!("audit_list", audit::list),
        h!("task_list", tasks::list),
        h!("task_view", tasks::view),
        h!("task_cancel", tasks::cancel),
        h!("task_log", tasks::log),
        h!("node_list", nodes::list),
        h!("node_view", nodes::view),
        h!("node_store_backup", nodes::store_backup),
        h!("bridge_list", network::bridge_list),
        h!("bridge_create", network::bridge_create),
        h!("bridge_view", network::bridge_view),
        h!("bridge_update", network::bridge_update),
        h!("bridge_delete", network::bridge_delete),
        h!("vlan_list", network::vlan_list),
        h!("vlan_create", network::vlan_create),
        h!("vlan_view", network::vlan_view),
        h!("vlan_update", network::vlan_update),
        h!("vlan_delete", network::vlan_delete),
        h!("bond_list", network::bond_list),
        h!("bond_create", network::bond_create),
        h!("bond_view", network::bond_view),
        h!("bond_update", network::bond_update),
        h!("bond_delete", network::bond_delete),
        h!("interface_list", network::interface_list),
        h!("network_confirm", network::network_confirm),
        h!("network_batch", network::network_batch),
        h!("storage_pool_list", storage::storage_pool_list),
        h!("storage_pool_create", storage::storage_pool_create),
        h!("storage_pool_view", storage::storage_pool_view),
        h!("storage_pool_update", storage::storage_pool_update),
        h!("storage_pool_delete", storage::storage_pool_delete),
        h!("volume_list", storage::volume_list),
        h!("volume_create", storage::volume_create),
        h!("volume_view", storage::volume_view),
        h!("volume_delete", storage::volume_delete),
        h!("volume_resize", storage::volume_resize),
        h!("volume_template", storage::volume_template),
        h!("volume_clone", storage::volume_clone),
        h!("volume_snapshot_list", storage::volume_snapshot_list),
        h!("volume_snapshot_create", storage::volume_snapshot_create),
        h!(
            "volume_snapshot_rollback",
            storage::volume_snapshot_rollback
        ),
        h!("volume_snapshot_delete", storage::volume_snapshot_delete),
        h!("volume_upload", storage::volume_upload),
        h!("volume_import", storage::volume_import),
        h!("volume_download", downloads::volume_download),
        h!("template_catalog", templates::template_catalog),
        h!("template_build", templates::template_build),
        h!("template_download", templates::template_download),
        h!("template_index_list", templates::template_index_list),
        h!("template_index_create", templates::template_index_create),
        h!("template_index_delete", templates::template_index_delete),
        h!("container_list", containers::container_list),
        h!("container_create", containers::container_create),
        h!("container_view", containers::container_view),
        h!("container_update", containers::container_update),
        h!("container_delete", containers::container_delete),
        h!("container_start", containers::container_start),
        h!("container_stop", containers::container_stop),
        h!("container_shutdown", containers::container_shutdown),
        h!("container_freeze", containers::container_freeze),
        h!("container_unfreeze", containers::container_unfreeze),
        h!("container_exec", containers::container_exec),
        h!("container_reboot", containers::container_reboot),
        h!(
            "container_snapshot_list",
            containers::container_snapshot_list
        ),
        h!(
            "container_snapshot_create",
            containers::container_snapshot_create
        ),
        h!(
            "container_snapshot_rollback",
            containers::container_snapshot_rollback
        ),
        h!(
            "container_snapshot_delete",
            containers::container_snapshot_delete
        ),
        h!("container_clone", containers::container_clone),
        h!("container_template", containers::container_template),
        h!("vm_list", vms::vm_list),
        h!("vm_create", vms::vm_create),
        h!("vm_view", vms::vm_view),
        h!("vm_update", vms::vm_update),
        h!("vm_delete", vms::vm_delete),
        h!("vm_start", vms::vm_start),
        h!("vm_stop", vms::vm_stop),
        h!("vm_shutdown", vms::vm_shutdown),
        h!("vm_reboot", vms::vm_reboot),
        h!("vm_pause", vms::vm_pause),
        h!("vm_resume", vms::vm_resume),
        h!("vm_serial", vms::vm_serial),
        h!("vm_serial_input", vms::vm_serial_input),
        h!("vm_console", vms::vm_console),
        h!("vm_vnc", vms::vm_vnc),
        h!("vm_console_ticket", vms::vm_console_ticket),
        h!("vm_clone", vms::vm_clone),
        h!("vm_template", vms::vm_template),
        h!("container_console", containers::container_console),
        h!("vm_snapshot_list", vms::vm_snapshot_list),
        h!("vm_snapshot_create", vms::vm_snapshot_create),
        h!("vm_snapshot_restore", vms::vm_snapshot_restore),
        h!("vm_snapshot_delete", vms::vm_snapshot_delete),
    ]
}

/// The upgrade and `Sec-WebSocket-Accept` of a WebSocket route, or 426 when the request was
/// not a WebSocket handshake.
pub(crate) fn websocket(
    ws: Option<(hyper::upgrade::OnUpgrade, String)>,
) -> Result<(hyper::upgrade::OnUpgrade, String), crate::api::problem::ApiError> {
    let Some((upgrade, key)) = ws else {
        return Err(crate::api::problem::ApiError::new(
            426,
            "upgrade-required",
            "Upgrade Required",
            "this is a WebSocket endpoint: send Connection: Upgrade, Upgrade: websocket, \
             Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok((upgrade, accept))
}

/// Applies an update body to a stored object: fields present replace the stored ones, and
/// `null` removes an optional field (the API-wide convention for updates).
pub(crate) fn merge_update(body: &mut serde_json::Value, patch: &serde_json::Value) {
    crate::store::objects::merge_patch(body, patch)
}
