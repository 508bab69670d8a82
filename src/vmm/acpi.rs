//! ACPI tables, so a stock distribution kernel finds the machine's devices.
//!
//! Debian's kernel builds virtio-mmio without `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`, so the
//! command-line declarations are not enough: like Firecracker, we declare each virtio-mmio
//! slot in the DSDT as a `LNRO0005` device with its MMIO window and interrupt. The machine is
//! "hardware-reduced" ACPI: no PM timer or fixed-feature registers, power-off through the
//! FADT sleep control register (our sleep port), and the power button as a Generic Event
//! Device (`ACPI0013`) whose `_EVT` notifies a `PNP0C0C` button device.
//!
//! Layout (all in the BIOS area the kernel scans, reserved in the memory map): the RSDP at
//! [`layout::RSDP`], then XSDT, FADT, MADT and DSDT, each 16-byte aligned.

use acpi_tables::aml::{
    self, Device, EISAName, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If,
    Interrupt, Memory32Fixed, Method, Name, Notify, OpRegion, OpRegionSpace, Package,
    ResourceTemplate, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress};

use super::error::{Result, VmmError};
use super::layout;
use super::memory::GuestMem;

const OEM_ID: [u8; 6] = *b"FERRIT";
const OEM_TABLE: [u8; 8] = *b"FERRITVM";
const OEM_REVISION: u32 = 1;
/// End of the BIOS area the tables must fit in.
const TABLES_END: u64 = 0x10_0000;
const LAPIC_ADDR: u32 = 0xfee0_0000;
const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// IA-PC boot architecture flags: no VGA, no MSI (there is no PCI bus).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;

/// One virtio-mmio slot as the guest must see it.
#[derive(Debug, Clone, Copy)]
pub struct MmioDevice {
    pub base: u64,
    pub gsi: u32,
}

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// The DSDT body: COM1, the virtio-mmio devices, the GED power button and `_S5_`.
///
/// Each object is built and serialized in one statement: the AML builders borrow their
/// children, which must outlive the serialization.
pub fn dsdt(devices: &[MmioDevice]) -> Vec<u8> {
    let mut sdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, OEM_REVISION);
    sdt.append_slice(&bytes(&Device::new(
        "_SB_.COM1".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new(
                "_CRS".into(),
                &ResourceTemplate::new(vec![
                    &Interrupt::new(true, true, false, false, layout::COM1_GSI),
                    &IO::new(layout::COM1_PORT, layout::COM1_PORT, 0, 8),
                ]),
            ),
        ],
    )));
    for (i, d) in devices.iter().enumerate() {
        // Names must be four characters: VR00..VRFF.
        let path = format!("_SB_.VR{i:02X}");
        sdt.append_slice(&bytes(&Device::new(
            path.as_str().into(),
            vec![
                &Name::new("_HID".into(), &"LNRO0005"),
                &Name::new("_UID".into(), &i),
                &Name::new("_CCA".into(), &aml::ONE),
                &Name::new(
                    "_CRS".into(),
                    &ResourceTemplate::new(vec![
                        &Memory32Fixed::new(true, d.base as u32, layout::MMIO_SLOT as u32),
                        &Interrupt::new(true, true, false, false, d.gsi),
                    ]),
                ),
            ],
        )));
    }
    // The power button: the GED interrupt fires, `_EVT` reads the event byte and notifies
    // the button device, which the kernel turns into an orderly shutdown.
    let ged_base = layout::GED_MMIO as usize;
    let one_byte = 1usize;
    let gdat: aml::Path = "GDAT".into();
    let local0 = aml::Local(0);
    let power_bit = 1u8;
    let button: aml::Path = "\\_SB_.PWRB".into();
    let notify_code = 0x80u8;
    sdt.append_slice(&bytes(&Device::new(
        "_SB_.GED_".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new(
                "_CRS".into(),
                &ResourceTemplate::new(vec![&Interrupt::new(
                    true,
                    true,
                    false,
                    false,
                    layout::GED_GSI,
                )]),
            ),
            &OpRegion::new(
                "GDST".into(),
                OpRegionSpace::SystemMemory,
                &ged_base,
                &one_byte,
            ),
            &Field::new(
                "GDST".into(),
                FieldAccessType::Byte,
                FieldLockRule::NoLock,
                FieldUpdateRule::WriteAsZeroes,
                vec![FieldEntry::Named(*b"GDAT", 8)],
            ),
            &Method::new(
                "_EVT".into(),
                1,
                true,
                vec![
                    &aml::Store::new(&local0, &gdat),
                    &If::new(
                        &aml::And::new(&aml::ZERO, &local0, &power_bit),
                        vec![&Notify::new(&button, &notify_code)],
                    ),
                ],
            ),
        ],
    )));
    sdt.append_slice(&bytes(&Device::new(
        "_SB_.PWRB".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &aml::ZERO),
        ],
    )));
    // SLP_TYP 5 for S5: the sleep port powers off on (5 << 2) | SLP_EN.
    let five = 5u8;
    sdt.append_slice(&bytes(&Name::new(
        "_S5_".into(),
        &Package::new(vec![&five, &aml::ZERO]),
    )));
    sdt.as_slice().to_vec()
}

/// The FADT: hardware-reduced, DSDT address, sleep control/status registers.
fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton);
    b.iapc_boot_arch = (IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED).into();
    b.sleep_control_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(layout::SLEEP_CONTROL_PORT),
    );
    b.sleep_status_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(layout::SLEEP_STATUS_PORT),
    );
    bytes(&b.finalize())
}

/// The MADT: one enabled local APIC per vCPU (APIC id = index) and the IOAPIC.
fn madt(vcpus: u8) -> Vec<u8> {
    let mut m = MADT::new(
        OEM_ID,
        OEM_TABLE,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for i in 0..vcpus {
        m.add_structure(ProcessorLocalApic::new(i, i, EnabledStatus::Enabled));
    }
    m.add_structure(IoApic::new(0, IOAPIC_ADDR, 0));
    bytes(&m)
}

fn align16(a: u64) -> u64 {
    (a + 15) & !15
}

/// Writes every table into guest memory.
pub fn write_tables(mem: &GuestMem, vcpus: u8, devices: &[MmioDevice]) -> Result<()> {
    let rsdp_len = Rsdp::len() as u64;
    let mut at = align16(layout::RSDP + rsdp_len);
    let xsdt_addr = at;
    // XSDT with two entries (FADT, MADT): header + 16 bytes.
    at = align16(at + 36 + 16);
    let dsdt = dsdt(devices);
    let dsdt_addr = at;
    at = align16(at + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let fadt_addr = at;
    at = align16(at + fadt.len() as u64);
    let madt = madt(vcpus);
    let madt_addr = at;
    at += madt.len() as u64;
    if at > TABLES_END {
        return Err(VmmError::Config(format!(
            "ACPI tables do not fit below 1 MiB ({} devices)",
            devices.len()
        )));
    }
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);
    let write = |addr: u64, data: &[u8]| {
        mem.write_slice(data, GuestAddress(addr))
            .map_err(|e| VmmError::GuestMemory {
                addr,
                detail: e.to_string(),
            })
    };
    write(layout::RSDP, &bytes(&rsdp))?;
    write(xsdt_addr, &bytes(&xsdt))?;
    write(dsdt_addr, &dsdt)?;
    write(fadt_addr, &fadt)?;
    write(madt_addr, &madt)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(t: &[u8]) -> bool {
        t.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    #[test]
    fn tables_are_well_formed() {
        let devs = [
            MmioDevice {
                base: layout::mmio_slot(0),
                gsi: 5,
            },
            MmioDevice {
                base: layout::mmio_slot(1),
                gsi: 6,
            },
        ];
        let d = dsdt(&devs);
        assert_eq!(&d[0..4], b"DSDT");
        assert_eq!(
            u32::from_le_bytes([d[4], d[5], d[6], d[7]]) as usize,
            d.len()
        );
        assert!(sums_to_zero(&d));
        let text = String::from_utf8_lossy(&d);
        assert_eq!(text.matches("LNRO0005").count(), 2);
        assert!(text.contains("ACPI0013") && text.contains("_S5_"));
        let f = fadt(0x1234);
        assert_eq!(&f[0..4], b"FACP");
        assert!(sums_to_zero(&f));
        let m = madt(4);
        assert_eq!(&m[0..4], b"APIC");
        assert!(sums_to_zero(&m));
        // Header 44 bytes, four 8-byte local APICs, one 12-byte IOAPIC.
        assert_eq!(m.len(), 44 + 4 * 8 + 12);
    }

    /// ACPICA's disassembler (Debian's acpica-tools, installed by scripts/test) reads back
    /// every table and the DSDT's AML without complaint: the same parser family the kernel
    /// uses.
    #[test]
    fn acpica_disassembles_every_table() {
        if std::process::Command::new("iasl")
            .arg("-v")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED acpica_disassembles_every_table: iasl missing (apt acpica-tools)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ferrite-acpi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let devs = [MmioDevice {
            base: layout::mmio_slot(0),
            gsi: 5,
        }];
        for (name, table) in [
            ("dsdt", dsdt(&devs)),
            ("facp", fadt(0xe1000)),
            ("apic", madt(2)),
        ] {
            let bin = dir.join(format!("{name}.dat"));
            std::fs::write(&bin, &table).expect("write");
            let out = std::process::Command::new("iasl")
                .arg("-d")
                .arg(&bin)
                .output()
                .expect("iasl");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{name}: {text}");
            let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("dsl");
            if name == "dsdt" {
                for want in [
                    "LNRO0005",
                    "ACPI0013",
                    "PNP0C0C",
                    "PNP0501",
                    "_S5_",
                    "Method (_EVT",
                ] {
                    assert!(dsl.contains(want), "{want} missing from:\n{dsl}");
                }
            }
            if name == "facp" {
                assert!(dsl.contains("Hardware Reduced (V5) : 1"), "{dsl}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
