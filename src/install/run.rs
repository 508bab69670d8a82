//! `ferrite install run`: the unattended install, from finding the answer to the final action.
//! Every check that can refuse (answer, disk, NIC, existing partitions, size) runs before the
//! first write, so a refused install leaves the disks as they were.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::answer::{self, GuestStorage, InstallAnswer, OnError, OnSuccess};
use super::{boot, devices, dhcp, find, layout, target};
use crate::schema::Registry;

/// Where the initramfs reads the final action from.
pub const ACTION_FILE: &str = "/run/ferrite-install/action";

/// The final action the initramfs carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Reboot,
    Halt,
    Shell,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::PowerOff => "poweroff",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
            Action::Shell => "shell",
        }
    }
}

/// Options of `ferrite install run`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the ISO is mounted (the kernel, initrd and system image are read from it).
    pub iso: PathBuf,
    /// The running system's root: the image's own files (for /etc/shadow, zoneinfo).
    pub lower: PathBuf,
    /// How long to wait for a labelled answer device.
    pub wait: Duration,
}

/// Why the install stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Find(#[from] find::FindError),
    #[error(transparent)]
    Answer(#[from] answer::AnswerError),
    #[error(transparent)]
    Select(#[from] devices::SelectError),
    #[error("/disk: {0}")]
    Refused(String),
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Target(#[from] target::TargetError),
}

fn say(msg: &str) {
    println!("ferrite-install: {msg}");
    let _ = std::io::stdout().flush();
}

fn set_action(a: Action) {
    let _ = std::fs::create_dir_all("/run/ferrite-install");
    let _ = std::fs::write(ACTION_FILE, a.word());
}

/// Runs the install and records the final action; returns the process exit code.
pub fn main(opts: &Options) -> u8 {
    set_action(Action::Halt);
    let reg = match Registry::load() {
        Ok(r) => r,
        Err(e) => {
            say(&format!("FAILED: {e}"));
            return 1;
        }
    };
    let mut on_error = Action::Halt;
    let result = (|| -> Result<InstallAnswer, InstallError> {
        say("looking for an answer (fw_cfg, a filesystem labelled FERRITE-ANS, the ISO)");
        let found = find::find(
            &opts.iso,
            Path::new("/run/ferrite-install/answer-media"),
            opts.wait,
        )?;
        say(&format!("answer from {}", found.source));
        let format = answer::Format::guess(&found.name, &found.text);
        let a = answer::parse(&reg, &found.text, format)?;
        on_error = match a.system.on_error {
            OnError::Halt => Action::Halt,
            OnError::Reboot => Action::Reboot,
            OnError::Shell => Action::Shell,
            OnError::PowerOff => Action::PowerOff,
        };
        install(&a, opts)?;
        Ok(a)
    })();
    match result {
        Ok(a) => {
            set_action(match a.system.on_success {
                OnSuccess::Reboot => Action::Reboot,
                OnSuccess::PowerOff => Action::PowerOff,
            });
            say("SUCCESS: Ferrite is installed");
            0
        }
        Err(e) => {
            set_action(on_error);
            for line in e.to_string().lines() {
                say(&format!("FAILED: {line}"));
            }
            say("nothing was written to any disk before the failing step");
            1
        }
    }
}

fn sh(args: &[&str]) -> Result<String, InstallError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .map_err(|e| InstallError::Step(format!("running {}: {e}", args[0])))?;
    if !out.status.success() {
        return Err(InstallError::Step(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The device node of partition `n` of `disk` (vda3, nvme0n1p3), once the kernel shows it.
fn partition(disk: &devices::Disk, n: usize) -> Result<PathBuf, InstallError> {
    for _ in 0..100 {
        if let Ok(rd) = std::fs::read_dir(Path::new("/sys/block").join(&disk.name)) {
            for e in rd.flatten() {
                let num = std::fs::read_to_string(e.path().join("partition")).unwrap_or_default();
                if num.trim() == n.to_string() {
                    let dev = Path::new("/dev").join(e.file_name());
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(InstallError::Step(format!(
        "partition {n} of {} did not appear",
        disk.name
    )))
}

fn install(a: &InstallAnswer, opts: &Options) -> Result<(), InstallError> {
    let disks = devices::disks(Path::new("/sys"), &devices::label_of);
    let disk = devices::select_disk(&a.disk, &disks, &|p| std::fs::canonicalize(p).ok())?;
    let nics = devices::nics(Path::new("/sys"));
    let nic = devices::select_nic(&a.network.nic, &nics)?;
    if !disk.partitions.is_empty() && !a.disk.wipe {
        return Err(InstallError::Refused(format!(
            "{} holds partitions ({}); set wipe = true to erase it",
            disk.name,
            disk.partitions.join(", ")
        )));
    }
    if disk.read_only {
        return Err(InstallError::Refused(format!("{} is read-only", disk.name)));
    }
    let plan = layout::plan(&a.disk, disk.size_bytes).map_err(InstallError::Refused)?;
    let resolved;
    let a = if a.network.dhcp {
        say(&format!("asking for a DHCP lease on {}", nic.name));
        let lease = dhcp::lease(&nic.name, Path::new("/run/ferrite-install/dhcp"))
            .map_err(|e| InstallError::Step(format!("/network/dhcp: {e}")))?;
        let mut r = a.clone();
        r.network.dhcp = false;
        r.network.address = Some(lease.address.clone());
        if r.network.gateway.is_none() {
            r.network.gateway = lease.gateway.clone();
        }
        if r.network.dns.is_empty() {
            r.network.dns = lease.dns.clone();
        }
        let problems = answer::address_problems(&lease.address, r.network.gateway.as_deref());
        if !problems.is_empty() {
            return Err(answer::AnswerError::Invalid(problems).into());
        }
        say(&format!(
            "lease {} gateway {} DNS {} kept as the host's static settings",
            lease.address,
            r.network.gateway.as_deref().unwrap_or("-"),
            r.network.dns.join(" ")
        ));
        resolved = r;
        &resolved
    } else {
        a
    };
    let image = opts.iso.join("live/root.squashfs");
    let kernel = opts.iso.join("live/vmlinuz");
    let initrd = opts.iso.join("live/initrd.img");
    for f in [&image, &kernel, &initrd] {
        if !f.is_file() {
            return Err(InstallError::Step(format!(
                "{} is missing from the ISO",
                f.display()
            )));
        }
    }
    let image_len = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    if image_len > u64::from(a.disk.root_size_gib) << 30 {
        return Err(InstallError::Refused(format!(
            "the system image is {} MiB, larger than root_size_gib",
            image_len >> 20
        )));
    }
    say(&format!(
        "installing onto {} ({} GiB), management NIC {} ({}) as {} on bridge {}",
        disk.path.display(),
        disk.size_bytes >> 30,
        nic.name,
        nic.mac,
        target::MGMT_NIC,
        a.network.bridge
    ));
    let dev = disk.path.display().to_string();
    // From here on the disk changes.
    if !disk.partitions.is_empty() {
        say(&format!("wiping {}", disk.partitions.join(", ")));
        let _ = Command::new("vgchange")
            .args(["-an", "ferrite"])
            .env("DM_DISABLE_UDEV", "1")
            .status();
        sh(&["wipefs", "--all", "--force", &dev])?;
    }
    say("partitioning");
    let script = layout::sfdisk_script(&plan);
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
            &dev,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| InstallError::Step(format!("sfdisk: {e}")))?;
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(script.as_bytes()))
        .transpose()
        .map_err(|e| InstallError::Step(format!("sfdisk: {e}")))?;
    let st = child
        .wait()
        .map_err(|e| InstallError::Step(format!("sfdisk: {e}")))?;
    if !st.success() {
        return Err(InstallError::Step(format!("sfdisk failed ({st})")));
    }
    let esp = partition(&disk, 2)?;
    let root_a = partition(&disk, 3)?;
    let var = partition(&disk, 5)?;
    say("writing the system image to root slot A");
    {
        let mut src = std::fs::File::open(&image)
            .map_err(|e| InstallError::Step(format!("{}: {e}", image.display())))?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .open(&root_a)
            .map_err(|e| InstallError::Step(format!("{}: {e}", root_a.display())))?;
        std::io::copy(&mut src, &mut dst)
            .and_then(|_| dst.sync_all())
            .map_err(|e| InstallError::Step(format!("writing {}: {e}", root_a.display())))?;
    }
    say("making file systems");
    sh(&[
        "mkfs.vfat",
        "-F",
        "32",
        "-n",
        "FERRITE-ESP",
        &esp.display().to_string(),
    ])?;
    sh(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "ferrite-var",
        &var.display().to_string(),
    ])?;
    if a.disk.guest_storage == GuestStorage::Lvmthin {
        say("making the thin pool ferrite/data");
        let pv = partition(&disk, 6)?.display().to_string();
        let _ = Command::new("modprobe").arg("dm_thin_pool").status();
        sh(&["pvcreate", "-ff", "-y", &pv])?;
        sh(&["vgcreate", "ferrite", &pv])?;
        sh(&[
            "lvcreate",
            "-y",
            "--type",
            "thin-pool",
            "-l",
            "95%FREE",
            "-n",
            "data",
            "ferrite",
        ])?;
        let _ = Command::new("vgchange")
            .args(["-an", "ferrite"])
            .env("DM_DISABLE_UDEV", "1")
            .status();
    }
    let mnt = Path::new("/run/ferrite-install/target");
    let var_mnt = mnt.join("var");
    let esp_mnt = mnt.join("esp");
    for d in [&var_mnt, &esp_mnt] {
        std::fs::create_dir_all(d)
            .map_err(|e| InstallError::Step(format!("{}: {e}", d.display())))?;
    }
    sh(&[
        "mount",
        &var.display().to_string(),
        &var_mnt.display().to_string(),
    ])?;
    let configured = (|| {
        let upper = var_mnt.join("overlay/upper");
        std::fs::create_dir_all(var_mnt.join("overlay/work"))
            .and_then(|()| std::fs::create_dir_all(&upper))
            .map_err(|e| InstallError::Step(format!("overlay dirs: {e}")))?;
        say("writing the host's settings");
        Ok::<_, InstallError>(target::configure(a, &opts.lower, &upper, &nic.mac)?)
    })();
    let _ = sh(&["umount", &var_mnt.display().to_string()]);
    let configured = configured?;
    sh(&[
        "mount",
        &esp.display().to_string(),
        &esp_mnt.display().to_string(),
    ])?;
    let booted = (|| {
        say("installing GRUB for BIOS and UEFI");
        let slot = esp_mnt.join("ferrite/a");
        std::fs::create_dir_all(&slot)
            .map_err(|e| InstallError::Step(format!("{}: {e}", slot.display())))?;
        for (from, to) in [(&kernel, "vmlinuz"), (&initrd, "initrd.img")] {
            std::fs::copy(from, slot.join(to))
                .map_err(|e| InstallError::Step(format!("copying {}: {e}", from.display())))?;
        }
        for cmd in boot::grub_install_commands(&disk.path, &esp_mnt) {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            sh(&args)?;
        }
        let cfg = esp_mnt.join("boot/grub/grub.cfg");
        std::fs::write(&cfg, boot::grub_cfg())
            .map_err(|e| InstallError::Step(format!("{}: {e}", cfg.display())))?;
        Ok::<_, InstallError>(())
    })();
    let _ = sh(&["umount", &esp_mnt.display().to_string()]);
    booted?;
    let _ = sh(&["sync"]);
    say(&format!(
        "API: https://{}:{} (TLS SHA-256 fingerprint {})",
        a.network
            .address
            .as_deref()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default(),
        a.ferrite.listen.rsplit(':').next().unwrap_or("8006"),
        configured.fingerprint
    ));
    Ok(())
}
