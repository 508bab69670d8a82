//! A small synchronous QMP client: one connection per call (QEMU's monitor socket serves one
//! client at a time, so nothing is held between calls), the capabilities handshake, then
//! commands. Asynchronous events arriving in between are skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {0}: {1}")]
    Io(String, std::io::Error),
    #[error("QMP: unexpected reply {0}")]
    BadReply(String),
    /// QEMU understood the command and refused it.
    #[error("{class}: {desc}")]
    Refused { class: String, desc: String },
}

/// An open, negotiated QMP session.
pub struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    sock: String,
}

impl Session {
    /// Connects and leaves capabilities-negotiation mode.
    pub fn open(sock: &Path, timeout: Duration) -> Result<Session, QmpError> {
        let name = sock.display().to_string();
        let io = |e| QmpError::Io(name.clone(), e);
        let s = UnixStream::connect(sock).map_err(io)?;
        s.set_read_timeout(Some(timeout)).map_err(io)?;
        s.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = s.try_clone().map_err(io)?;
        let mut me = Session {
            reader: BufReader::new(s),
            writer,
            sock: name.clone(),
        };
        let greeting = me.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::BadReply(greeting.to_string()));
        }
        me.execute("qmp_capabilities", None)?;
        Ok(me)
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| QmpError::Io(self.sock.clone(), e))?;
        if n == 0 {
            return Err(QmpError::Io(
                self.sock.clone(),
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::BadReply(format!("{e}: {line:?}")))
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let mut req = json!({ "execute": command });
        if let Some(a) = args {
            req["arguments"] = a;
        }
        let mut line = req.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| QmpError::Io(self.sock.clone(), e))?;
        loop {
            let msg = self.read_message()?;
            if let Some(r) = msg.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = msg.get("error") {
                return Err(QmpError::Refused {
                    class: e["class"].as_str().unwrap_or("GenericError").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
            // An event ({"event": ...}) delivered while we wait: not ours.
        }
    }
}

/// Opens a session, runs one command, closes.
pub fn call(sock: &Path, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
    Session::open(sock, Duration::from_secs(10))?.execute(command, args)
}
