//! The typed guest model: one Rust type per `schema/` type a guest is made of, in the style of
//! Firecracker's `vmm_config`. A handler or engine parses a body or a store row once into
//! these and reads fields, never `value["field"]`; a field renamed in `schema/` then fails
//! `tests/typed_specs.rs`, which compares every type here with its schema type (fields,
//! types, defaults, enums, required-ness) rather than at run time.
//!
//! Parsing is lenient about fields it does not model (a stored row also carries snapshots,
//! revisions and the like); the API boundary has already refused unknown fields.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{Mac, VlanId};

fn yes() -> bool {
    true
}

/// `null` reads as the field's default: rows written before a field existed, or by code that
/// indexed a `Value` mutably (which inserts `null`), still parse.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `NicRate`: traffic limits seen from the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NicRate {
    pub rx_mbps: Option<f64>,
    pub tx_mbps: Option<f64>,
    pub burst_kib: Option<u32>,
}

/// `GuestNic`: a guest's attachment to a bridge, the part containers and VMs share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GuestNic {
    pub bridge: String,
    pub tag: Option<VlanId>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub trunks: Vec<VlanId>,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    pub rate: Option<NicRate>,
}

impl GuestNic {
    /// Whether the NIC needs a VLAN-aware bridge.
    pub fn uses_vlans(&self) -> bool {
        self.tag.is_some() || !self.trunks.is_empty()
    }
}

/// `ContainerNic`: a [`GuestNic`] plus the addresses set inside the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerNic {
    #[serde(flatten)]
    pub nic: GuestNic,
    pub ip: Option<String>,
    pub gw: Option<Ipv4Addr>,
    pub ip6: Option<String>,
    pub gw6: Option<Ipv6Addr>,
}

/// `VmNic`: a [`GuestNic`] seen by the guest as the chosen model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmNic {
    #[serde(flatten)]
    pub nic: GuestNic,
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: NicModel,
}

/// The NIC device a VM's guest sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    #[default]
    Virtio,
    E1000,
}

/// Which engine runs a VM: `ferrite-vmm` or QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmEngine {
    Microvm,
    Qemu,
}

impl VmEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            VmEngine::Microvm => "microvm",
            VmEngine::Qemu => "qemu",
        }
    }
}

/// The accelerator asked of QEMU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// The firmware a QEMU VM boots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

/// The bus a VM disk sits on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    #[default]
    Virtio,
    Scsi,
    Sata,
}

/// `VmCloudInitNic`: how cloud-init configures one NIC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmCloudInitNic {
    pub ip: Option<String>,
    pub gw: Option<Ipv4Addr>,
    pub ip6: Option<String>,
    pub gw6: Option<Ipv6Addr>,
}

/// `VmCloudInit`: the settings a NoCloud seed is built from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmCloudInit {
    pub user: Option<String>,
    pub password_hash: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ssh_keys: Vec<String>,
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub network: BTreeMap<String, VmCloudInitNic>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub nameservers: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub search: Vec<String>,
    pub user_data: Option<String>,
}

/// `VmCdrom`: a CD-ROM drive, empty without a volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmCdrom {
    pub volume: Option<String>,
}

/// How a VM disk's writes reach the volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    #[default]
    Writeback,
    Writethrough,
}

/// `VmDisk`: a disk backed by a volume (raw, or qcow2 under QEMU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmDisk {
    pub volume: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub read_only: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cache: DiskCache,
    #[serde(default, deserialize_with = "null_as_default")]
    pub bus: DiskBus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub discard: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub iothread: bool,
}

/// `ContainerMount`: a bind mount of a volume or a host directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerMount {
    pub volume: Option<String>,
    pub path: Option<String>,
    pub target: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub read_only: bool,
}

/// `ContainerDns`: what `/etc/resolv.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerDns {
    #[serde(default, deserialize_with = "null_as_default")]
    pub servers: Vec<String>,
    pub search: Option<String>,
}

/// `ContainerFeatures`: what the container may do beyond the default confinement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerFeatures {
    #[serde(default, deserialize_with = "null_as_default")]
    pub nesting: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fuse: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub keyctl: bool,
}

/// `ContainerSpec`: what a create or an update may set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerSpec {
    pub hostname: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub cores: Option<u32>,
    pub cpu_limit: Option<f64>,
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub pids_limit: Option<u64>,
    pub init: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub onboot: bool,
    pub startup_order: Option<u32>,
    pub features: Option<ContainerFeatures>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub net: BTreeMap<String, ContainerNic>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub mounts: BTreeMap<String, ContainerMount>,
    pub dns: Option<ContainerDns>,
}

/// `ContainerCreate`: a [`ContainerSpec`] plus what only a create sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerCreate {
    #[serde(flatten)]
    pub spec: ContainerSpec,
    pub id: Option<u32>,
    pub name: String,
    pub template: String,
    pub pool: Option<String>,
    pub rootfs_size: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub privileged: bool,
    /// Applied once, at create time (`container::guest_files`).
    pub root_password_hash: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ssh_keys: Vec<String>,
}

/// A container's store row as the engine reads it: the create body plus what the engine
/// recorded (its root filesystem volume, whether it is a template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredContainer {
    #[serde(flatten)]
    pub create: ContainerCreate,
    pub rootfs: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_template: bool,
}

fn one() -> u8 {
    1
}

fn default_memory() -> u64 {
    128
}

fn default_serial_log() -> u64 {
    1 << 20
}

/// `VmSpec`: what a VM create or update may set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmSpec {
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Absent in rows written before QEMU: read through [`VmSpec::engine`].
    pub engine: Option<VmEngine>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub accel: Accel,
    #[serde(default, deserialize_with = "null_as_default")]
    pub firmware: Firmware,
    #[serde(default = "one")]
    pub vcpus: u8,
    #[serde(default = "default_memory")]
    pub memory: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hugepages: bool,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub disks: BTreeMap<String, VmDisk>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub net: BTreeMap<String, VmNic>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cdrom: BTreeMap<String, VmCdrom>,
    pub boot: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub agent: bool,
    pub cloud_init: Option<VmCloudInit>,
    #[serde(default = "yes")]
    pub rng: bool,
    #[serde(default = "default_serial_log")]
    pub serial_log_size: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub onboot: bool,
    pub startup_order: Option<u32>,
}

impl VmSpec {
    /// The engine that runs the VM: as set, else microvm for a VM with a kernel and qemu
    /// for one without.
    pub fn engine(&self) -> VmEngine {
        self.engine.unwrap_or(if self.kernel.is_some() {
            VmEngine::Microvm
        } else {
            VmEngine::Qemu
        })
    }

    /// The disks the guest can write (what snapshots and clones copy), in slot order.
    pub fn writable_disks(&self) -> Vec<(String, &VmDisk)> {
        slots_in_order(&self.disks, "disk")
            .into_iter()
            .filter(|(_, d)| !d.read_only)
            .collect()
    }
}

/// `VmCreate`: a [`VmSpec`] plus its id and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmCreate {
    #[serde(flatten)]
    pub spec: VmSpec,
    pub id: Option<u32>,
    pub name: String,
}

/// A VM's store row as the engine reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVm {
    #[serde(flatten)]
    pub create: VmCreate,
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_template: bool,
}

/// Why a body or row does not fit its type (the API validated it, so for a store row this
/// means the row predates a schema change or was edited by hand).
#[derive(Debug, thiserror::Error)]
#[error("{what} does not match its schema type: {source}")]
pub struct SpecError {
    pub what: String,
    #[source]
    pub source: serde_json::Error,
}

/// Parses `v` as `T`; `what` names it in the error ("container 100").
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, v: &Value) -> Result<T, SpecError> {
    let mut v = v.clone();
    integral(&mut v);
    T::deserialize(&v).map_err(|source| SpecError {
        what: what.to_string(),
        source,
    })
}

/// JSON Schema's `integer` accepts `4.0`, serde's integers do not: whole floats become
/// integers (a float field still reads an integer).
fn integral(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if f >= 0.0 && f <= u64::MAX as f64 {
                    *v = Value::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral),
        Value::Object(m) => m.values_mut().for_each(integral),
        _ => {}
    }
}

/// Slots in numeric order (`net2` before `net10`): devices appear in the guest in this order.
pub fn slots_in_order<'a, T>(m: &'a BTreeMap<String, T>, prefix: &str) -> Vec<(String, &'a T)> {
    let mut v: Vec<(String, &T)> = m.iter().map(|(k, x)| (k.clone(), x)).collect();
    v.sort_by_key(|(k, _)| {
        k.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    v
}

/// The slot number of `net3` (`3`), as used in host-side link names.
pub fn slot_number<'a>(slot: &'a str, prefix: &str) -> &'a str {
    slot.strip_prefix(prefix).unwrap_or(slot)
}

/// The pairs `tests/typed_specs.rs` checks: schema type name and the Rust type's schema.
pub fn schema_pairs() -> Vec<(&'static str, schemars::Schema)> {
    use schemars::schema_for;
    vec![
        ("NicRate", schema_for!(NicRate)),
        ("GuestNic", schema_for!(GuestNic)),
        ("ContainerNic", schema_for!(ContainerNic)),
        ("VmNic", schema_for!(VmNic)),
        ("VmDisk", schema_for!(VmDisk)),
        ("VmCdrom", schema_for!(VmCdrom)),
        ("VmCloudInit", schema_for!(VmCloudInit)),
        ("VmCloudInitNic", schema_for!(VmCloudInitNic)),
        ("ContainerMount", schema_for!(ContainerMount)),
        ("ContainerDns", schema_for!(ContainerDns)),
        ("ContainerFeatures", schema_for!(ContainerFeatures)),
        ("ContainerSpec", schema_for!(ContainerSpec)),
        ("ContainerCreate", schema_for!(ContainerCreate)),
        ("VmSpec", schema_for!(VmSpec)),
        ("VmCreate", schema_for!(VmCreate)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_collections_read_as_empty_and_defaults_apply() {
        let row: StoredContainer = parse(
            "container 101",
            &json!({"id": 101, "name": "copy", "template": "local:t.tar.gz", "net": null,
                    "mounts": null, "rootfs": "local:ct-101-rootfs", "snapshots": []}),
        )
        .expect("parses");
        assert!(row.create.spec.net.is_empty() && row.create.spec.mounts.is_empty());
        assert!(!row.is_template && !row.create.privileged);
        let vm: VmCreate = parse("vm", &json!({"name": "v", "kernel": "local:k"})).expect("vm");
        assert_eq!((vm.spec.vcpus, vm.spec.memory, vm.spec.rng), (1, 128, true));
        assert_eq!(vm.spec.serial_log_size, 1 << 20);
    }

    #[test]
    fn bad_values_name_the_row() {
        let e = parse::<VmCreate>(
            "vm 100",
            &json!({"name": "v", "net": {"net0": {"bridge": "b", "mac": "nope"}}}),
        )
        .expect_err("bad mac");
        assert!(e.to_string().starts_with("vm 100 does not match"), "{e}");
        assert!(e.to_string().contains("not a MAC address"), "{e}");
    }

    /// Found by the API fuzzer: `4.0` is a JSON Schema integer.
    #[test]
    fn whole_floats_read_as_integers() {
        let vm: VmCreate = parse(
            "vm",
            &json!({"name": "v", "vcpus": 4.0, "net": {"net0": {"bridge": "b", "trunks": [10.0, 20]}}}),
        )
        .expect("parses");
        assert_eq!(vm.spec.vcpus, 4);
        assert_eq!(vm.spec.net["net0"].nic.trunks.len(), 2);
        assert!(parse::<VmCreate>("vm", &json!({"name": "v", "vcpus": 4.5})).is_err());
    }

    #[test]
    fn slots_come_in_numeric_order() {
        let m: BTreeMap<String, u8> = [("net10", 0), ("net2", 0), ("net0", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let order: Vec<String> = slots_in_order(&m, "net")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(order, ["net0", "net2", "net10"]);
    }
}
