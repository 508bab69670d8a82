//! A QEMU machine (TCG) booting the appliance ISO or an installed disk, with its serial port
//! in a file the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Firmware to boot with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Firmware {
    Bios,
    Uefi,
}

/// OVMF's code and a variable store template from Debian's `ovmf` package.
pub fn ovmf() -> (PathBuf, PathBuf) {
    for (c, v) in [
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
    ] {
        if Path::new(c).exists() && Path::new(v).exists() {
            return (c.into(), v.into());
        }
    }
    panic!("OVMF is not installed (apt install ovmf)");
}

/// A machine description; `start` runs it.
pub struct Machine {
    pub dir: PathBuf,
    pub firmware: Firmware,
    /// (image file, format, serial) of each virtio disk, in order.
    pub disks: Vec<(PathBuf, &'static str, String)>,
    pub cdrom: Option<PathBuf>,
    pub mac: &'static str,
    /// Host loopback port forwarded to the guest's 8006.
    pub api_port: u16,
}

/// A running machine; killed on drop.
pub struct Running {
    child: Option<Child>,
    pub serial: PathBuf,
}

impl Machine {
    pub fn start(&self, tag: &str) -> Running {
        let serial = self.dir.join(format!("serial-{tag}.log"));
        let _ = std::fs::remove_file(&serial);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel", "tcg", "-machine", "q35", "-m", "2048", "-smp", "2",
        ])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()));
        if self.firmware == Firmware::Uefi {
            let (code, vars) = ovmf();
            let my_vars = self.dir.join("OVMF_VARS.fd");
            if !my_vars.exists() {
                std::fs::copy(&vars, &my_vars).expect("copy OVMF vars");
            }
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,readonly=on,file={}",
                    code.display()
                ))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", my_vars.display()));
        }
        for (i, (file, fmt, serial_no)) in self.disks.iter().enumerate() {
            // The first disk (the install target) is the firmware's second choice after a CD,
            // as a machine's boot menu would have it once something is installed.
            let boot = if i == 0 { ",bootindex=1" } else { "" };
            cmd.arg("-drive")
                .arg(format!(
                    "if=none,id=d{i},file={},format={fmt}",
                    file.display()
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-blk-pci,drive=d{i},serial={serial_no}{boot}"
                ));
        }
        if let Some(iso) = &self.cdrom {
            // On the SATA controller q35 has, as a real machine's drive; the CD boots first,
            // so an ISO left attached is what the firmware starts.
            cmd.arg("-drive")
                .arg(format!(
                    "if=none,id=cd,media=cdrom,readonly=on,file={}",
                    iso.display()
                ))
                .args(["-device", "ide-cd,drive=cd,bootindex=0"]);
        }
        cmd.arg("-netdev")
            .arg(format!(
                "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:8006",
                self.api_port
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={}", self.mac));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-x86_64 (apt install qemu-system-x86)");
        Running {
            child: Some(child),
            serial,
        }
    }
}

impl Running {
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).to_string()
    }

    /// Waits for QEMU to exit (the guest powered off); panics with the serial log on timeout.
    pub fn wait_exit(&mut self, limit: Duration) {
        let t0 = Instant::now();
        let c = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "the machine did not power off within {limit:?}; serial log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether QEMU is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}
