//! The appliance installer, shared by `ferrite install ...` on the ISO and by tests: the
//! answer file ([`answer`], a `schema/install.json` type validated like every request), the
//! disks and NICs it can select ([`devices`]), where it looks for the answer ([`find`]), the
//! disk layout ([`layout`]), the installed host's settings and the daemon's first-start seed
//! ([`target`]), the boot loader ([`boot`]) and the run itself ([`run`]).
//!
//! The ISO's initramfs (`image/initramfs/init`) mounts the system image and runs
//! `ferrite install run` inside it; see `image/README.md` for that side of the contract.

pub mod answer;
pub mod boot;
pub mod devices;
pub mod dhcp;
pub mod find;
pub mod layout;
pub mod run;
pub mod target;

/// The label of a filesystem that carries an answer (11 characters: fits FAT).
pub const ANSWER_LABEL: &str = "FERRITE-ANS";
