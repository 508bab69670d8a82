//! The VMM's own control API: newline-delimited JSON over a Unix socket, one request per
//! line, one reply per line. `ferrited` uses it to drive and inspect the VM; the socket
//! outlives a daemon restart, which is how the daemon re-adopts running VMs.
//!
//! Requests: `{"op":"status"}`, `pause`, `resume`, `{"op":"snapshot","dir":"/path"}`,
//! `power_button`, `stop`, `{"op":"serial_input","data":"..."}`.
//! Replies: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::devices::VmEvent;
use super::machine::Machine;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Status,
    Pause,
    Resume,
    Snapshot { dir: PathBuf },
    PowerButton,
    Stop,
    SerialInput { data: String },
}

/// Handles one request against the machine.
fn handle(machine: &Machine, line: &str, stop: &std::sync::mpsc::Sender<VmEvent>) -> Value {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let result = match req {
        Request::Status => {
            return json!({
                "ok": true,
                "state": if machine.is_paused() { "paused" } else { "running" },
                "pid": std::process::id(),
                "vcpus": machine.config.vcpus,
                "memory_mib": machine.config.memory_mib,
            })
        }
        Request::Pause => machine.pause(),
        Request::Resume => machine.resume(),
        Request::Snapshot { dir } => super::snapshot::save(machine, &dir),
        Request::PowerButton => machine.power_button(),
        Request::Stop => {
            let _ = stop.send(VmEvent::PowerOff);
            Ok(())
        }
        Request::SerialInput { data } => machine.serial_input(data.as_bytes()).map(|_| ()),
    };
    match result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

fn serve_conn(machine: &Machine, stream: UnixStream, stop: &std::sync::mpsc::Sender<VmEvent>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let mut reply = handle(machine, &line, stop).to_string();
        reply.push('\n');
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Serves the control socket on a thread of its own, one connection at a time.
pub fn serve(
    machine: Arc<Machine>,
    listener: UnixListener,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stop = machine.event_sender();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => serve_conn(&machine, s, &stop),
                    Err(e) => tracing::warn!("control socket: {e}"),
                }
            }
        })
}
