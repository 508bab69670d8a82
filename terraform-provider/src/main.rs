//! `terraform-provider-ferrite`: Terraform plugin protocol 6 over gRPC.
//!
//! Terraform starts this binary several times per command, so start-up does no work beyond
//! the go-plugin handshake: the schema is generated from `schema/` on first request, and the
//! API is contacted only in `ConfigureProvider`. stdout carries exactly the handshake line;
//! everything else goes to stderr, which Terraform relays to its log.

mod api;
mod catalog_file;
mod docs;
mod proto;
mod provider;
mod resources;
mod tfschema;
mod tls;
mod value;

use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use proto::plugin;
use proto::tfplugin6::provider_server::ProviderServer;

const COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// Terraform's plugin SDKs allow messages this large; gRPC's 4 MiB default is too small for
/// big states.
const MAX_MESSAGE: usize = 256 << 20;

struct Controller {
    shutdown: Arc<Notify>,
}

#[tonic::async_trait]
impl plugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _: Request<plugin::Empty>) -> Result<Response<plugin::Empty>, Status> {
        self.shutdown.notify_one();
        Ok(Response::new(plugin::Empty {}))
    }
}

struct Stdio;

type StdioStream = Pin<Box<dyn Stream<Item = Result<plugin::StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl plugin::grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = StdioStream;

    /// Our output goes to stderr directly, so the relay stream stays open and empty.
    async fn stream_stdio(
        &self,
        _: Request<plugin::Empty>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("docs") {
        return match docs::write(args.get(2).map(String::as_str).unwrap_or("docs")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("terraform-provider-ferrite docs: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if std::env::var(COOKIE_KEY).ok().as_deref() != Some(COOKIE_VALUE) {
        eprintln!(
            "This binary is a plugin for Terraform and is not meant to be run directly.\n\
             Use it through `terraform` (e.g. with dev_overrides in the file named by \
             TF_CLI_CONFIG_FILE), or run `terraform-provider-ferrite docs DIR` to write its docs."
        );
        return ExitCode::FAILURE;
    }
    let versions = std::env::var("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_else(|_| "6".into());
    if !versions.split(',').any(|v| v.trim() == "6") {
        eprintln!(
            "terraform-provider-ferrite speaks plugin protocol 6; Terraform offered {versions}"
        );
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-ferrite: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-ferrite: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = Arc::new(Notify::new());
    let router = tonic::transport::Server::builder()
        .add_service(
            ProviderServer::new(provider::FerriteProvider::default())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(plugin::grpc_controller_server::GrpcControllerServer::new(
            Controller {
                shutdown: Arc::clone(&shutdown),
            },
        ))
        .add_service(plugin::grpc_stdio_server::GrpcStdioServer::new(Stdio));
    let stop = {
        let s = Arc::clone(&shutdown);
        async move {
            tokio::select! {
                _ = s.notified() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    let client_pem = std::env::var("PLUGIN_CLIENT_CERT")
        .ok()
        .filter(|c| !c.is_empty());
    match client_pem {
        Some(pem) => {
            let (cert, key) = tls::server_certificate()?;
            let cert_field = base64::engine::general_purpose::STANDARD_NO_PAD.encode(cert.as_ref());
            let cfg = tls::server_config(&pem, cert, key)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            handshake(&addr, &cert_field)?;
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                            }
                            Err(e) => api::tracing_line(&format!("TLS handshake refused: {e}")),
                        }
                    });
                }
            });
            router
                .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), stop)
                .await?;
        }
        None => {
            handshake(&addr, "")?;
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop,
                )
                .await?;
        }
    }
    Ok(())
}

/// The go-plugin handshake: `CORE|APP|NETWORK|ADDR|PROTOCOL|CERT`, the only stdout output.
fn handshake(addr: &std::net::SocketAddr, cert: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "1|6|tcp|{addr}|grpc|{cert}")?;
    out.flush()
}
