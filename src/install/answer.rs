//! The answer file: parsed from TOML or JSON into one JSON value, validated by the same schema
//! registry as every API request (so an error names the field the way `invalid_params` does),
//! then read into typed structs whose defaults mirror `schema/install.json` (checked by
//! `tests/typed_specs.rs`).

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{InvalidParam, Registry};

/// Why an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("the answer is invalid:\n{}", summarise(.0))]
    Invalid(Vec<InvalidParam>),
}

fn summarise(p: &[InvalidParam]) -> String {
    p.iter()
        .map(|p| format!("  {}", p.summary()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl AnswerError {
    /// The offending fields, for tests and for tools that print them their own way.
    pub fn params(&self) -> &[InvalidParam] {
        match self {
            AnswerError::Invalid(p) => p,
            AnswerError::Syntax { .. } => &[],
        }
    }
}

/// `InstallAnswer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallAnswer {
    pub version: u32,
    pub system: InstallSystem,
    pub disk: InstallDisk,
    pub network: InstallNetwork,
    pub ferrite: InstallFerrite,
}

fn utc() -> String {
    "UTC".into()
}
fn us() -> String {
    "us".into()
}
fn two() -> u32 {
    2
}
fn vmbr0() -> String {
    "vmbr0".into()
}
fn any_8006() -> String {
    "0.0.0.0:8006".into()
}

/// `InstallSystem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallSystem {
    pub hostname: String,
    #[serde(default = "utc")]
    #[schemars(default = "utc")]
    pub timezone: String,
    #[serde(default = "us")]
    #[schemars(default = "us")]
    pub keyboard: String,
    pub root_password_hash: Option<String>,
    #[serde(default)]
    pub root_ssh_keys: Vec<String>,
    #[serde(default)]
    pub on_success: OnSuccess,
    #[serde(default)]
    pub on_error: OnError,
}

/// What the installer does after a successful install.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnSuccess {
    #[default]
    Reboot,
    PowerOff,
}

/// What the installer does when it fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    #[default]
    Halt,
    Reboot,
    Shell,
    PowerOff,
}

/// `InstallDisk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallDisk {
    pub path: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<InstallDiskMatch>,
    #[serde(default)]
    pub wipe: bool,
    #[serde(default = "two")]
    #[schemars(default = "two")]
    pub root_size_gib: u32,
    pub var_size_gib: Option<u32>,
    #[serde(default)]
    pub guest_storage: GuestStorage,
}

/// Where guests live on the installed host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuestStorage {
    #[default]
    Dir,
    Lvmthin,
}

/// `InstallDiskMatch`: every given property must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallDiskMatch {
    pub name: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub min_size_gib: Option<u64>,
    pub max_size_gib: Option<u64>,
}

/// `InstallNetwork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallNetwork {
    pub nic: InstallNicMatch,
    #[serde(default = "vmbr0")]
    #[schemars(default = "vmbr0")]
    pub bridge: String,
    pub address: Option<String>,
    #[serde(default)]
    pub dhcp: bool,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
}

/// `InstallNicMatch`: by MAC or by name glob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallNicMatch {
    pub mac: Option<String>,
    pub name: Option<String>,
}

/// `InstallFerrite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallFerrite {
    #[serde(default = "any_8006")]
    #[schemars(default = "any_8006")]
    pub listen: String,
    pub admin_password_hash: String,
    pub tls_cert_pem: Option<String>,
    pub tls_key_pem: Option<String>,
}

/// The Rust types paired with their `schema/install.json` names, for the agreement test.
pub fn schema_pairs() -> Vec<(&'static str, schemars::Schema)> {
    use schemars::schema_for;
    vec![
        ("InstallAnswer", schema_for!(InstallAnswer)),
        ("InstallSystem", schema_for!(InstallSystem)),
        ("InstallDisk", schema_for!(InstallDisk)),
        ("InstallDiskMatch", schema_for!(InstallDiskMatch)),
        ("InstallNetwork", schema_for!(InstallNetwork)),
        ("InstallNicMatch", schema_for!(InstallNicMatch)),
        ("InstallFerrite", schema_for!(InstallFerrite)),
    ]
}

/// The answer's text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// JSON when the file says so by name or by its first character, TOML otherwise.
    pub fn guess(name: &str, text: &str) -> Format {
        if name.ends_with(".json") || text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Toml
        }
    }
}

/// Parses and validates an answer. All field errors are reported at once.
pub fn parse(reg: &Registry, text: &str, format: Format) -> Result<InstallAnswer, AnswerError> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| AnswerError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?,
        Format::Toml => {
            let t: toml::Table = toml::from_str(text).map_err(|e| AnswerError::Syntax {
                format: "TOML",
                message: e.to_string().trim_end().to_string(),
            })?;
            serde_json::to_value(t).map_err(|e| AnswerError::Syntax {
                format: "TOML",
                message: e.to_string(),
            })?
        }
    };
    let mut problems = exclusive(&value);
    let worded: Vec<String> = problems.iter().map(|p| p.pointer.clone()).collect();
    problems.extend(
        reg.validate("InstallAnswer", &value, "answer")
            .into_iter()
            .filter(|p| !worded.contains(&p.pointer))
            .map(reword),
    );
    if !problems.is_empty() {
        return Err(AnswerError::Invalid(problems));
    }
    let answer: InstallAnswer =
        serde_json::from_value(value).map_err(|e| AnswerError::Invalid(vec![field("", e)]))?;
    let problems = semantic(&answer);
    if problems.is_empty() {
        Ok(answer)
    } else {
        Err(AnswerError::Invalid(problems))
    }
}

/// Pattern errors for hashes and keys say what the value should be and how to make one,
/// instead of quoting the regular expression.
fn reword(mut p: InvalidParam) -> InvalidParam {
    if !p.message.contains("does not match") {
        return p;
    }
    let hint = if p.pointer.ends_with("/admin_password_hash") {
        "not an argon2id PHC hash: make one with `ferrite install hash-password`"
    } else if p.pointer.ends_with("/root_password_hash") {
        "not a crypt(5) hash: make one with `mkpasswd -m yescrypt`"
    } else if p.pointer.contains("/root_ssh_keys/") {
        "not an OpenSSH public key line (type, base64 key, optional comment)"
    } else {
        return p;
    };
    p.message = hint.to_string();
    p
}

fn field(pointer: &str, message: impl ToString) -> InvalidParam {
    InvalidParam {
        pointer: pointer.to_string(),
        location: "answer".to_string(),
        message: message.to_string(),
    }
}

/// The schema's `oneOf` choices, reported in words: JSON Schema's own message for "valid under
/// both branches" names neither field (the autopve mistake of setting both is common).
fn exclusive(v: &Value) -> Vec<InvalidParam> {
    let mut out = Vec::new();
    for (at, a, b) in [
        ("/disk", "path", "match"),
        ("/network/nic", "mac", "name"),
        ("/network", "address", "dhcp"),
    ] {
        let Some(obj) = v.pointer(at).and_then(Value::as_object) else {
            continue;
        };
        // `dhcp = false` is the same as leaving it out.
        let has = |k: &str| obj.get(k).is_some_and(|x| x != &Value::Bool(false));
        match (has(a), has(b)) {
            (true, true) => out.push(field(at, format!("set either '{a}' or '{b}', not both"))),
            (false, false) => out.push(field(at, format!("set '{a}' or '{b}'"))),
            _ => {}
        }
    }
    out
}

/// Rules a JSON Schema cannot say: numeric relations and parsable addresses.
fn semantic(a: &InstallAnswer) -> Vec<InvalidParam> {
    let mut out = Vec::new();
    if let Some(m) = &a.disk.matcher {
        if let (Some(lo), Some(hi)) = (m.min_size_gib, m.max_size_gib) {
            if lo > hi {
                out.push(field(
                    "/disk/match/max_size_gib",
                    format!("{hi} is below min_size_gib {lo}"),
                ));
            }
        }
    }
    if a.ferrite.listen.parse::<SocketAddr>().is_err() {
        out.push(field(
            "/ferrite/listen",
            format!("'{}' is not an address:port", a.ferrite.listen),
        ));
    }
    if let Some(address) = &a.network.address {
        out.extend(address_problems(address, a.network.gateway.as_deref()));
    }
    if let (Some(c), Some(k)) = (&a.ferrite.tls_cert_pem, &a.ferrite.tls_key_pem) {
        if !c.contains("-----BEGIN CERTIFICATE-----") {
            out.push(field("/ferrite/tls_cert_pem", "not a PEM certificate"));
        }
        if !k.contains("PRIVATE KEY-----") {
            out.push(field("/ferrite/tls_key_pem", "not a PEM private key"));
        }
    }
    out
}

/// An address/prefix that parses and, when given, a gateway inside its subnet. Also used for
/// a DHCP lease before it becomes the host's static address.
pub fn address_problems(address: &str, gateway: Option<&str>) -> Vec<InvalidParam> {
    let mut out = Vec::new();
    match crate::network::netlink::parse_cidr(address) {
        None => out.push(field(
            "/network/address",
            format!("'{address}' is not an address/prefix"),
        )),
        Some((ip, len)) => match gateway.map(|g| (g, g.parse::<std::net::IpAddr>())) {
            Some((gw, Err(_))) => out.push(field(
                "/network/gateway",
                format!("'{gw}' is not an address"),
            )),
            Some((gw, Ok(g))) if !same_subnet(ip, len, g) => out.push(field(
                "/network/gateway",
                format!("{gw} is not in {address}"),
            )),
            _ => {}
        },
    }
    out
}

/// Whether `other` lies in `ip/len`: a gateway outside the host's subnet is unreachable.
fn same_subnet(ip: std::net::IpAddr, len: u8, other: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, other) {
        (V4(a), V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (V6(a), V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}
