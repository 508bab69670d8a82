//! Generates the gRPC bindings for Terraform's plugin protocol 6 and go-plugin's controller
//! service. `protoc` comes from `protoc-bin-vendored` so a fresh machine needs no package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(&["proto/tfplugin6.proto", "proto/plugin.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
