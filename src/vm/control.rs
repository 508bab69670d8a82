//! Client side of `ferrite-vmm`'s control socket (see `crate::vmm::control`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("control socket {0}: {1}")]
    Io(String, std::io::Error),
    #[error("bad reply from ferrite-vmm: {0}")]
    BadReply(String),
    /// The VMM understood and said no (e.g. a snapshot of a running VM).
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and returns the reply; snapshots of large guests take a while, so the
/// read timeout is generous.
pub fn call(sock: &Path, req: &Value) -> Result<Value, CtlError> {
    let io = |e| CtlError::Io(sock.display().to_string(), e);
    let mut s = UnixStream::connect(sock).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(io)?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).map_err(io)?;
    let v: Value =
        serde_json::from_str(&reply).map_err(|e| CtlError::BadReply(format!("{e}: {reply:?}")))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(CtlError::Refused(
            v["error"].as_str().unwrap_or("unknown error").to_string(),
        ))
    }
}
