//! The QEMU command line for a VM, built from a resolved [`Machine`] (paths looked up,
//! accelerator chosen, boot order numbered). Pure, so its shape is unit-tested; the engine
//! only spawns what this returns.
//!
//! Stable device ids: a drive and its device are named by their slot (`disk0`, `cdrom0`,
//! `net0`), so QMP commands (a CD-ROM change) address them by the name the API uses. Device
//! placement depends on the slot, not on what else is attached: CD-ROM `cdromN` sits on SATA
//! port `5 - N`, SATA disks take ports from 0 up in slot order, each SCSI disk has its own
//! virtio-scsi controller (so each may have its own I/O thread).

use std::path::{Path, PathBuf};

use crate::guest::spec::{DiskBus, DiskCache, NicModel};

/// The ports of q35's built-in AHCI controller.
pub const SATA_PORTS: usize = 6;

/// The sandbox QEMU runs under: no obsolete syscalls, no privilege changes, no spawning
/// helpers, no changing its own scheduling or affinity.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub slot: String,
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: &'static str,
    pub bus: DiskBus,
    pub cache: DiskCache,
    pub read_only: bool,
    pub discard: bool,
    pub iothread: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cdrom {
    pub slot: String,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    pub slot: String,
    pub tap: String,
    pub mac: String,
    pub model: NicModel,
}

/// OVMF's code (read-only, shared) and this VM's own variable store.
#[derive(Debug, Clone, PartialEq)]
pub struct Uefi {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Sockets and files in the VM's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    pub qmp: PathBuf,
    pub serial: PathBuf,
    pub serial_log: PathBuf,
    pub vnc: PathBuf,
}

/// Everything the command line needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub kvm: bool,
    pub vcpus: u8,
    pub memory_mib: u64,
    pub uefi: Option<Uefi>,
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    pub disks: Vec<Disk>,
    pub cdroms: Vec<Cdrom>,
    pub nics: Vec<Nic>,
    /// Slots in boot order.
    pub boot: Vec<String>,
    pub rng: bool,
    /// The cloud-init seed image, attached read-only.
    pub seed: Option<PathBuf>,
    /// The guest agent's channel: a virtio-serial port backed by this socket.
    pub agent: Option<PathBuf>,
    pub files: Files,
}

/// A value inside a `-drive`/`-chardev` option list: commas are doubled.
fn esc(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

impl Machine {
    /// The SATA port of each SATA disk and CD-ROM, or the slot that does not fit.
    pub fn sata_ports(&self) -> Result<Vec<(String, usize)>, String> {
        let mut out = Vec::new();
        for c in &self.cdroms {
            let n: usize = crate::guest::spec::slot_number(&c.slot, "cdrom")
                .parse()
                .unwrap_or(0);
            out.push((c.slot.clone(), SATA_PORTS - 1 - n.min(SATA_PORTS - 1)));
        }
        let mut next = 0;
        for d in self.disks.iter().filter(|d| d.bus == DiskBus::Sata) {
            while out.iter().any(|(_, p)| *p == next) {
                next += 1;
            }
            if next >= SATA_PORTS {
                return Err(format!(
                    "{}: q35's SATA controller has {SATA_PORTS} ports, shared by SATA disks and CD-ROMs",
                    d.slot
                ));
            }
            out.push((d.slot.clone(), next));
            next += 1;
        }
        Ok(out)
    }

    fn bootindex(&self, slot: &str) -> String {
        match self.boot.iter().position(|s| s == slot) {
            Some(i) => format!(",bootindex={}", i + 1),
            None => String::new(),
        }
    }

    /// The full argument list (without the binary).
    pub fn argv(&self) -> Result<Vec<String>, String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        push(
            "-name",
            format!("guest={},debug-threads=on", self.name.replace(',', ",,")),
        );
        push(
            "-machine",
            format!("q35,accel={}", if self.kvm { "kvm" } else { "tcg" }),
        );
        push("-cpu", (if self.kvm { "host" } else { "max" }).to_string());
        push("-smp", self.vcpus.to_string());
        push("-m", self.memory_mib.to_string());
        a.extend(["-nodefaults", "-no-user-config"].map(String::from));
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        push("-sandbox", SANDBOX.to_string());
        push("-msg", "timestamp=on".to_string());
        push("-display", "none".to_string());
        push("-vga", "std".to_string());
        push("-vnc", format!("unix:{}", self.files.vnc.display()));
        push(
            "-chardev",
            format!(
                "socket,id=qmp,path={},server=on,wait=off",
                esc(&self.files.qmp)
            ),
        );
        push("-mon", "chardev=qmp,mode=control".to_string());
        push(
            "-chardev",
            format!(
                "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
                esc(&self.files.serial),
                esc(&self.files.serial_log)
            ),
        );
        push("-serial", "chardev:serial0".to_string());
        if let Some(u) = &self.uefi {
            push(
                "-drive",
                format!(
                    "if=pflash,unit=0,format=raw,readonly=on,file={}",
                    esc(&u.code)
                ),
            );
            push(
                "-drive",
                format!("if=pflash,unit=1,format=raw,file={}", esc(&u.vars)),
            );
        }
        if let Some((k, initrd, cmdline)) = &self.kernel {
            push("-kernel", k.display().to_string());
            if let Some(i) = initrd {
                push("-initrd", i.display().to_string());
            }
            push("-append", cmdline.clone());
        }
        // A pointer that matches the VNC client's position.
        push("-device", "qemu-xhci,id=usb".to_string());
        push("-device", "usb-tablet,bus=usb.0".to_string());
        if self.rng {
            push(
                "-object",
                "rng-random,id=rng0,filename=/dev/urandom".to_string(),
            );
            push("-device", "virtio-rng-pci,rng=rng0".to_string());
        }
        if let Some(qga) = &self.agent {
            push(
                "-chardev",
                format!("socket,id=qga,path={},server=on,wait=off", esc(qga)),
            );
            push("-device", "virtio-serial-pci,id=vser".to_string());
            push(
                "-device",
                "virtserialport,bus=vser.0,chardev=qga,name=org.qemu.guest_agent.0".to_string(),
            );
        }
        let ports = self.sata_ports()?;
        let port_of = |slot: &str| ports.iter().find(|(s, _)| s == slot).map(|(_, p)| *p);
        for d in &self.disks {
            let mut drive = format!(
                "file={},format={},if=none,id={},cache={},aio=threads,discard={}",
                esc(&d.path),
                d.format,
                d.slot,
                match d.cache {
                    DiskCache::Writeback => "writeback",
                    DiskCache::Writethrough => "writethrough",
                },
                if d.discard { "unmap" } else { "ignore" }
            );
            if d.read_only {
                drive.push_str(",readonly=on");
            }
            push("-drive", drive);
            let boot = self.bootindex(&d.slot);
            let io = format!("io-{}", d.slot);
            if d.iothread && d.bus != DiskBus::Sata {
                push("-object", format!("iothread,id={io}"));
            }
            let iot = if d.iothread {
                format!(",iothread={io}")
            } else {
                String::new()
            };
            match d.bus {
                DiskBus::Virtio => push(
                    "-device",
                    format!("virtio-blk-pci,drive={0},id=dev-{0}{iot}{boot}", d.slot),
                ),
                DiskBus::Scsi => {
                    push(
                        "-device",
                        format!("virtio-scsi-pci,id=scsi-{}{iot}", d.slot),
                    );
                    push(
                        "-device",
                        format!("scsi-hd,bus=scsi-{0}.0,drive={0},id=dev-{0}{boot}", d.slot),
                    );
                }
                DiskBus::Sata => push(
                    "-device",
                    format!(
                        "ide-hd,bus=ide.{},drive={1},id=dev-{1}{boot}",
                        port_of(&d.slot).unwrap_or(0),
                        d.slot
                    ),
                ),
            }
        }
        if let Some(seed) = &self.seed {
            // After the user's disks, so it never takes a name (vdX) they had.
            push(
                "-drive",
                format!(
                    "file={},format=raw,if=none,id=cloudinit,readonly=on",
                    esc(seed)
                ),
            );
            push(
                "-device",
                "virtio-blk-pci,drive=cloudinit,id=dev-cloudinit,serial=cloud-init".to_string(),
            );
        }
        for c in &self.cdroms {
            let mut drive = format!("if=none,id={},media=cdrom,readonly=on", c.slot);
            if let Some(p) = &c.path {
                drive = format!("file={},format=raw,{drive}", esc(p));
            }
            push("-drive", drive);
            push(
                "-device",
                format!(
                    "ide-cd,bus=ide.{},drive={1},id=dev-{1}{2}",
                    port_of(&c.slot).unwrap_or(0),
                    c.slot,
                    self.bootindex(&c.slot)
                ),
            );
        }
        for n in &self.nics {
            push(
                "-netdev",
                format!(
                    "tap,id=hn-{},ifname={},script=no,downscript=no{}",
                    n.slot,
                    n.tap,
                    if self.kvm { ",vhost=on" } else { "" }
                ),
            );
            let model = match n.model {
                NicModel::Virtio => "virtio-net-pci",
                NicModel::E1000 => "e1000",
            };
            let boot = self.bootindex(&n.slot);
            // No option ROM unless the NIC boots: PXE ROMs cost firmware time.
            let rom = if boot.is_empty() { ",romfile=" } else { "" };
            push(
                "-device",
                format!(
                    "{model},netdev=hn-{0},id={0},mac={1}{boot}{rom}",
                    n.slot, n.mac
                ),
            );
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            name: "web,1".into(),
            kvm: false,
            vcpus: 2,
            memory_mib: 512,
            uefi: None,
            kernel: None,
            disks: vec![Disk {
                slot: "disk0".into(),
                path: "/p/a,b.qcow2".into(),
                format: "qcow2",
                bus: DiskBus::Sata,
                cache: DiskCache::Writeback,
                read_only: false,
                discard: true,
                iothread: false,
            }],
            cdroms: vec![Cdrom {
                slot: "cdrom0".into(),
                path: None,
            }],
            nics: vec![Nic {
                slot: "net0".into(),
                tap: "v100i0".into(),
                mac: "bc:24:11:00:00:01".into(),
                model: NicModel::E1000,
            }],
            boot: vec!["cdrom0".into(), "disk0".into()],
            rng: true,
            seed: Some("/d/cloud-init.img".into()),
            agent: Some("/d/qga.sock".into()),
            files: Files {
                qmp: "/d/qmp.sock".into(),
                serial: "/d/serial.sock".into(),
                serial_log: "/d/serial.log".into(),
                vnc: "/d/vnc.sock".into(),
            },
        }
    }

    #[test]
    fn devices_follow_slots_and_boot_order() {
        let a = machine().argv().expect("argv").join(" ");
        assert!(a.contains("-name guest=web,,1,debug-threads=on"), "{a}");
        assert!(a.contains("-machine q35,accel=tcg -cpu max"), "{a}");
        assert!(a.contains(&format!("-sandbox {SANDBOX}")), "{a}");
        assert!(
            a.contains("file=/p/a,,b.qcow2,format=qcow2,if=none,id=disk0,cache=writeback,aio=threads,discard=unmap"),
            "{a}"
        );
        assert!(
            a.contains("ide-hd,bus=ide.0,drive=disk0,id=dev-disk0,bootindex=2"),
            "{a}"
        );
        assert!(
            a.contains("ide-cd,bus=ide.5,drive=cdrom0,id=dev-cdrom0,bootindex=1"),
            "{a}"
        );
        assert!(
            a.contains("e1000,netdev=hn-net0,id=net0,mac=bc:24:11:00:00:01,romfile="),
            "{a}"
        );
        assert!(!a.contains("vhost"), "no vhost under TCG: {a}");
        assert!(
            a.contains("file=/d/cloud-init.img,format=raw,if=none,id=cloudinit,readonly=on"),
            "{a}"
        );
        assert!(
            a.contains("virtserialport,bus=vser.0,chardev=qga,name=org.qemu.guest_agent.0"),
            "{a}"
        );
    }

    #[test]
    fn sata_ports_run_out() {
        let mut m = machine();
        for i in 1..6 {
            let mut d = m.disks[0].clone();
            d.slot = format!("disk{i}");
            m.disks.push(d);
        }
        let e = m.argv().expect_err("seven SATA devices");
        assert!(e.starts_with("disk5:"), "{e}");
    }
}
