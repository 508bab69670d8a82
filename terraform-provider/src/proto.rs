//! Generated gRPC bindings (see `build.rs` and `proto/`).

#[allow(clippy::all, clippy::unwrap_used, dead_code)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

#[allow(clippy::all, clippy::unwrap_used, dead_code)]
pub mod plugin {
    tonic::include_proto!("plugin");
}
