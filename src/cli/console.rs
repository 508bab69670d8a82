//! `ferrite ct|vm console GUEST`: this terminal attached to a guest's console over the API's
//! WebSocket, raw (every key goes to the guest), detached with Ctrl-] or with `~.` at the start
//! of a line, as ssh and `virsh console` users expect.
//!
//! The socket gets a short read timeout after the handshake so one thread can alternate
//! between guest output and keys read by a second thread, without splitting the WebSocket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::Message;

use super::commands::Context;
use super::{api_path, CliError, EXIT_OK};
use crate::tls::pinned_client_config;

/// Ctrl-].
const DETACH: u8 = 0x1d;

/// A TLS or plain stream under the WebSocket.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Puts the terminal in raw mode and restores it when dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            // Not a terminal (a pipe in scripts and tests): nothing to change.
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Splits typed bytes into what goes to the guest and whether to detach.
#[derive(Default)]
struct Escape {
    line_start: bool,
    tilde: bool,
}

impl Escape {
    fn new() -> Escape {
        Escape {
            line_start: true,
            tilde: false,
        }
    }

    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == DETACH {
                return (out, true);
            }
            if self.tilde {
                self.tilde = false;
                if b == b'.' {
                    return (out, true);
                }
                out.push(b'~');
            } else if b == b'~' && self.line_start {
                self.tilde = true;
                self.line_start = false;
                continue;
            }
            out.push(b);
            self.line_start = b == b'\r' || b == b'\n';
        }
        (out, false)
    }
}

fn connect_error(endpoint: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Protocol {
        what: format!("console at {endpoint}"),
        detail: e.to_string(),
    }
}

/// Opens the WebSocket at `path` (under /api/v1) with the context's trust and token.
fn open(
    ctx: &Context,
    path: &str,
) -> Result<(tungstenite::WebSocket<Box<dyn Stream>>, TcpStream), CliError> {
    let client = ctx.client()?;
    let endpoint = client.endpoint().to_string();
    let (tls, hostport) = match endpoint.split_once("://") {
        Some(("https", h)) => (true, h.to_string()),
        Some((_, h)) => (false, h.to_string()),
        None => return Err(CliError::Endpoint(endpoint)),
    };
    let tcp = TcpStream::connect(&hostport).map_err(|e| CliError::Protocol {
        what: format!("connecting to {hostport}"),
        detail: e.to_string(),
    })?;
    let timer = tcp.try_clone().map_err(|e| connect_error(&endpoint, e))?;
    let stream: Box<dyn Stream> = if tls {
        let verifier = client.verifier();
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| connect_error(&endpoint, e))?;
        let conn = rustls::ClientConnection::new(pinned_client_config(verifier), name)
            .map_err(|e| connect_error(&endpoint, e))?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let scheme = if tls { "wss" } else { "ws" };
    let url = format!("{scheme}://{hostport}{}", api_path(path));
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
        .map_err(|e| connect_error(&endpoint, e))?;
    if let Some(t) = client.token() {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|e| connect_error(&endpoint, e))?;
        req.headers_mut().insert("authorization", v);
    }
    match tungstenite::client::client(req, stream) {
        Ok((ws, _)) => Ok((ws, timer)),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let text = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(CliError::Api(Box::new(super::Problem::from_response(
                status, None, &text,
            ))))
        }
        Err(e) => Err(client.tls_error(connect_error(&endpoint, e))),
    }
}

/// Attaches stdin/stdout to the console until the user detaches or the guest's console ends.
pub(super) fn attach(ctx: &Context, path: &str) -> Result<u8, CliError> {
    let (mut ws, timer) = open(ctx, path)?;
    timer
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| connect_error(path, e))?;
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let raw = RawMode::enable();
    if raw.saved.is_some() {
        eprint!("Connected to {path} (detach: Ctrl-] or Enter ~ .)\r\n");
    }
    let mut out = std::io::stdout().lock();
    let mut esc = Escape::new();
    let mut stdin_open = true;
    loop {
        while stdin_open {
            match rx.try_recv() {
                Ok(Some(bytes)) => {
                    let (send, detach) = esc.feed(&bytes);
                    if !send.is_empty() {
                        ws.send(Message::Binary(send.into()))
                            .map_err(|e| connect_error(path, e))?;
                    }
                    if detach {
                        let _ = ws.close(None);
                        drop(raw);
                        eprintln!("\r\nDetached from {path}");
                        return Ok(EXIT_OK);
                    }
                }
                // Input ended (a script's pipe): keep showing output until the console ends.
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => stdin_open = false,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        match ws.read() {
            Ok(Message::Binary(b)) => out.write_all(&b).and_then(|_| out.flush()),
            Ok(Message::Text(t)) => out.write_all(t.as_bytes()).and_then(|_| out.flush()),
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                drop(raw);
                eprintln!("\r\nThe console of {path} closed");
                return Ok(EXIT_OK);
            }
            Ok(_) => Ok(()),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(e) => return Err(connect_error(path, e)),
        }
        .map_err(CliError::Output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_bracket_and_tilde_dot_detach() {
        let mut e = Escape::new();
        assert_eq!(e.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.feed(b"~."), (Vec::new(), true));
        let mut e = Escape::new();
        assert_eq!(e.feed(b"a~.b"), (b"a~.b".to_vec(), false));
        assert_eq!(e.feed(b"x\x1dy"), (b"x".to_vec(), true));
        let mut e = Escape::new();
        // A tilde at line start not followed by a dot is sent as typed.
        assert_eq!(e.feed(b"~x"), (b"~x".to_vec(), false));
    }
}
