//! An 802.1Q VLAN id.

use std::fmt;

/// A VLAN id, 1 to 4094 (0 means "no VLAN" on the wire and 4095 is reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VlanId(u16);

/// Why a number is not a VLAN id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a VLAN id (1 to 4094)")]
pub struct VlanIdError(pub u64);

impl VlanId {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 4094;

    pub fn new(id: u64) -> Result<Self, VlanIdError> {
        match u16::try_from(id) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(VlanId(v)),
            _ => Err(VlanIdError(id)),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for VlanId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VlanId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        VlanId::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for VlanId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VlanId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "integer", "minimum": 1, "maximum": 4094})
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_one_to_4094() {
        assert!(VlanId::new(0).is_err());
        assert!(VlanId::new(4095).is_err());
        assert!(VlanId::new(70_000).is_err());
        assert_eq!(VlanId::new(4094).expect("test").get(), 4094);
        assert!(serde_json::from_str::<VlanId>("0").is_err());
        assert_eq!(
            serde_json::from_str::<VlanId>("10").expect("test").get(),
            10
        );
    }
}
