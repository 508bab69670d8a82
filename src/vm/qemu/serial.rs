//! Input to a qemu VM's serial port. QEMU's serial socket takes one client, and drops what
//! a client sent but the guest had not read yet when the client hangs up; so the daemon keeps
//! one connection per running VM, and a thread reads (and discards: QEMU's log file has it)
//! what QEMU sends back so QEMU never blocks on a full socket. A daemon restart drops the
//! connection; the next input makes a new one.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
pub struct SerialLinks {
    open: Mutex<HashMap<String, UnixStream>>,
}

fn connect(sock: &Path) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(sock)?;
    let mut drain = s.try_clone()?;
    std::thread::Builder::new()
        .name("vm-serial-drain".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
        })?;
    Ok(s)
}

impl SerialLinks {
    /// Writes `data` to VM `id`'s serial socket `sock`, connecting first when needed (and
    /// once more if the kept connection broke: QEMU restarted, or the daemon did).
    pub fn write(&self, id: &str, sock: &Path, data: &[u8]) -> std::io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = open.get_mut(id) {
            if s.write_all(data).is_ok() {
                return Ok(());
            }
            open.remove(id);
        }
        let mut s = connect(sock)?;
        s.write_all(data)?;
        open.insert(id.to_string(), s);
        Ok(())
    }

    /// Forgets VM `id`'s connection (its QEMU is gone).
    pub fn close(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = open.remove(id) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}
