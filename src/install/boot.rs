//! The boot loader on the installed disk: GRUB for BIOS (core image in the BIOS boot
//! partition) and for UEFI at the removable path `EFI/BOOT/BOOTX64.EFI`, so the disk boots
//! under either firmware without NVRAM entries. Both read one `grub.cfg` on the ESP, which
//! boots the slot named in GRUB's environment block (`ferrite_slot`, default `a`); kernels
//! and initrds of each slot live on the ESP under `ferrite/SLOT/`.

use std::path::Path;

/// The kernel arguments every entry shares: both consoles, the serial one last so it is
/// `/dev/console` (where tests and headless machines read).
pub const CONSOLES: &str = "console=tty0 console=ttyS0,115200";

/// The ESP's `grub.cfg`.
pub fn grub_cfg() -> String {
    format!(
        r#"# Written by the Ferrite installer.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=2
set ferrite_slot=a
load_env --skip-sig ferrite_slot
if [ "$ferrite_slot" = b ]; then set default=1; else set default=0; fi
menuentry "Ferrite (slot a)" {{
    linux /ferrite/a/vmlinuz ferrite.mode=boot ferrite.slot=a {CONSOLES} quiet
    initrd /ferrite/a/initrd.img
}}
menuentry "Ferrite (slot b)" {{
    linux /ferrite/b/vmlinuz ferrite.mode=boot ferrite.slot=b {CONSOLES} quiet
    initrd /ferrite/b/initrd.img
}}
"#
    )
}

/// The `grub-install` invocations for a disk whose ESP is mounted at `esp`.
pub fn grub_install_commands(disk: &Path, esp: &Path) -> Vec<Vec<String>> {
    let boot = esp.join("boot").display().to_string();
    let esp = esp.display().to_string();
    vec![
        vec![
            "grub-install".into(),
            "--target=i386-pc".into(),
            format!("--boot-directory={boot}"),
            "--modules=part_gpt fat".into(),
            disk.display().to_string(),
        ],
        vec![
            "grub-install".into(),
            "--target=x86_64-efi".into(),
            format!("--efi-directory={esp}"),
            format!("--boot-directory={boot}"),
            "--removable".into(),
            "--no-nvram".into(),
        ],
    ]
}
