//! Guest consoles over WebSocket (VM serial port, container terminal).
//!
//! Both engines keep a guest's console output in a log file that outlives the daemon
//! (`ferrite-vmm` writes COM1 to `serial.log`; a container's console relay writes its
//! terminal to `console.log`). A console client follows that file rather than a pipe held by
//! the daemon, so attaching never disturbs the guest and a restarted daemon can attach again.
//! Input goes back through the engine (the VMM's control socket, the relay's FIFO).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Whether the guest still runs (checked on a blocking thread).
pub type Alive = Arc<dyn Fn() -> bool + Send + Sync>;
/// Delivers typed input to the guest (on a blocking thread).
pub type Input = Arc<dyn Fn(Vec<u8>) -> Result<(), String> + Send + Sync>;

/// How much of the log a new client sees first: enough for the last screen or two.
const HISTORY: u64 = 16 * 1024;
/// How often the log is checked for new output.
const POLL: Duration = Duration::from_millis(50);

/// Reads what the log gained since `pos`, following a rotation (the file shrank).
fn read_new(path: &PathBuf, pos: &mut u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len < *pos {
        *pos = 0;
    }
    if len == *pos {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(*pos))?;
    let mut buf = Vec::with_capacity((len - *pos) as usize);
    f.by_ref().take(len - *pos).read_to_end(&mut buf)?;
    *pos += buf.len() as u64;
    Ok(buf)
}

/// Serves one client until it closes or the guest stops.
pub async fn serve(
    what: String,
    log: PathBuf,
    upgrade: hyper::upgrade::OnUpgrade,
    alive: Alive,
    input: Input,
) {
    let io = match upgrade.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            tracing::debug!(guest = %what, error = %e, "console upgrade failed");
            return;
        }
    };
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut tx, mut rx) = ws.split();
    let mut pos = std::fs::metadata(&log)
        .map(|m| m.len().saturating_sub(HISTORY))
        .unwrap_or(0);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // One trip to a blocking thread per tick: liveness first, then the output
                // written up to that moment, so nothing the guest wrote before it stopped is
                // lost.
                let (a, l, p) = (Arc::clone(&alive), log.clone(), pos);
                let Ok((running, got)) = tokio::task::spawn_blocking(move || {
                    let running = a();
                    let mut p = p;
                    (running, read_new(&l, &mut p).map(|b| (b, p)))
                })
                .await
                else {
                    return;
                };
                if let Ok((bytes, p)) = got {
                    pos = p;
                    if !bytes.is_empty() && tx.send(Message::binary(bytes)).await.is_err() {
                        return;
                    }
                }
                if !running {
                    let _ = tx
                        .send(Message::Close(Some(CloseFrame {
                            code: 1000.into(),
                            reason: "the guest stopped".into(),
                        })))
                        .await;
                    return;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => type_in(&input, &what, t.as_bytes().to_vec()).await,
                Some(Ok(Message::Binary(b))) => type_in(&input, &what, b.to_vec()).await,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn type_in(input: &Input, what: &str, data: Vec<u8>) {
    let f = Arc::clone(input);
    let r = tokio::task::spawn_blocking(move || f(data)).await;
    if let Ok(Err(e)) = r {
        tracing::debug!(guest = %what, error = %e, "console input refused");
    }
}

/// Bridges a WebSocket client to a guest's Unix stream socket, byte for byte: binary frames
/// from the client are written to the socket, what the socket sends goes back as binary
/// frames. The QEMU engine's VNC display speaks RFB this way (`GET /vms/{id}/vnc`), which is
/// what noVNC and `websockify`-style clients expect. Ends when either side closes.
pub async fn proxy(what: String, sock: PathBuf, upgrade: hyper::upgrade::OnUpgrade) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = match upgrade.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            tracing::debug!(guest = %what, error = %e, "display upgrade failed");
            return;
        }
    };
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut tx, mut rx) = ws.split();
    let stream = match tokio::net::UnixStream::connect(&sock).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(guest = %what, error = %e, "display socket");
            let _ = tx
                .send(Message::Close(Some(CloseFrame {
                    code: 1011.into(),
                    reason: "the guest's display is not reachable".into(),
                })))
                .await;
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: 1000.into(),
                        reason: "the guest's display closed".into(),
                    }))).await;
                    return;
                }
                Ok(n) => {
                    if tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
