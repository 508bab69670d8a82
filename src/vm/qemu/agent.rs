//! The QEMU guest agent (`qemu-guest-agent` in the guest, over a virtio-serial port whose
//! host end is a socket in the VM's directory). The agent protocol has no greeting and the
//! channel keeps bytes from an earlier, abandoned exchange, so every session starts with
//! `guest-sync` and a fresh id, and reads until that id comes back.
//!
//! A guest without a running agent accepts the connection and never answers: every call is
//! bounded by a short timeout, and what `status` shows is cached per VM for a few seconds so
//! listing many VMs never waits on silent agents one after another.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a status waits for an agent.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long an agent's answer (or silence) is reused.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// One exchange with the agent: sync, then `command`; `None` when it does not answer in time.
pub fn call(sock: &Path, command: &str, args: Option<Value>, timeout: Duration) -> Option<Value> {
    let s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let mut w = s.try_clone().ok()?;
    let mut r = BufReader::new(s);
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
        % 1_000_000) as u64
        + 1;
    // 0xFF resets the agent's parser after a half-sent request from an earlier client.
    w.write_all(b"\xff").ok()?;
    let sync = json!({"execute": "guest-sync", "arguments": {"id": id}});
    w.write_all(format!("{sync}\n").as_bytes()).ok()?;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line);
        let v: Value =
            serde_json::from_str(text.trim_start_matches('\u{fffd}').trim()).unwrap_or(Value::Null);
        if v["return"] == json!(id) {
            break;
        }
    }
    let mut req = json!({"execute": command});
    if let Some(a) = args {
        req["arguments"] = a;
    }
    w.write_all(format!("{req}\n").as_bytes()).ok()?;
    if command == "guest-shutdown" {
        // No reply: the guest goes down.
        return Some(Value::Null);
    }
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let v: Value = serde_json::from_str(&line).ok()?;
    v.get("return").cloned()
}

/// `status.agent`: the guest's interfaces as its agent reports them.
pub fn summary(sock: &Path) -> Option<Value> {
    let ifs = call(sock, "guest-network-get-interfaces", None, STATUS_TIMEOUT)?;
    let interfaces: Vec<Value> = ifs
        .as_array()?
        .iter()
        .filter(|i| i["name"] != "lo")
        .map(|i| {
            let addrs: Vec<String> = i["ip-addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some(format!(
                        "{}/{}",
                        a["ip-address"].as_str()?,
                        a["prefix"].as_i64()?
                    ))
                })
                .collect();
            json!({"name": i["name"], "mac": i["hardware-address"], "addresses": addrs})
        })
        .collect();
    Some(json!({"interfaces": interfaces}))
}

/// Agent answers (and silences) kept briefly per VM.
#[derive(Default)]
pub struct AgentCache {
    seen: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

impl AgentCache {
    pub fn summary(&self, id: &str, sock: &Path) -> Option<Value> {
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = seen.get(id) {
                if at.elapsed() < CACHE_FOR {
                    return v.clone();
                }
            }
        }
        let v = summary(sock);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(id.to_string(), (Instant::now(), v.clone()));
        v
    }

    pub fn forget(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(id);
    }
}
