//! COM1: vm-superio's 16550A with its output going to stdout (standalone runs) and/or a
//! bounded log file the daemon serves. The log keeps at most twice its limit on disk: when it
//! fills, it becomes `<log>.1` and a new one starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::EventFdTrigger;

pub type SerialDevice = vm_superio::Serial<EventFdTrigger, vm_superio::serial::NoEvents, SerialOut>;

pub struct SerialOut {
    stdout: bool,
    log: Option<BoundedLog>,
}

struct BoundedLog {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

impl SerialOut {
    pub fn new(stdout: bool, log: Option<(PathBuf, u64)>) -> std::io::Result<Self> {
        let log = match log {
            Some((path, limit)) => {
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                let written = file.metadata()?.len();
                Some(BoundedLog {
                    path,
                    file,
                    written,
                    limit: limit.max(1024),
                })
            }
            None => None,
        };
        Ok(SerialOut { stdout, log })
    }
}

impl Write for SerialOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(buf)?;
            out.flush()?;
        }
        if let Some(log) = &mut self.log {
            if log.written + buf.len() as u64 > log.limit {
                let mut old = log.path.clone().into_os_string();
                old.push(".1");
                std::fs::rename(&log.path, &old)?;
                log.file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log.path)?;
                log.written = 0;
            }
            log.file.write_all(buf)?;
            log.written += buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
