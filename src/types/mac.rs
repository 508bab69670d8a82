//! An Ethernet MAC address.

use std::fmt;
use std::str::FromStr;

/// A MAC address: six octets, written `aa:bb:cc:dd:ee:ff` (lower case on output, either case
/// on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (six hex octets separated by colons)")]
pub struct MacError(pub String);

impl Mac {
    pub const fn new(octets: [u8; 6]) -> Self {
        Mac(octets)
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// A multicast address (the low bit of the first octet) cannot be a NIC's own address.
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    /// A locally administered, unicast address whose octets come from `seed` (a hash):
    /// what a guest gets when it names no MAC.
    pub fn local_from(seed: &[u8]) -> Self {
        let mut b = [0u8; 6];
        for (d, s) in b.iter_mut().zip(seed) {
            *d = *s;
        }
        b[0] = (b[0] & 0xfe) | 0x02;
        Mac(b)
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacError(s.to_string());
        let mut b = [0u8; 6];
        let mut parts = s.split(':');
        for o in b.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            // Two hex digits exactly (`from_str_radix` alone would take "+a").
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(b))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Mac {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mac".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_one_form() {
        let m: Mac = "02:AB:cd:00:11:ff".parse().expect("test");
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(m.octets(), [2, 0xab, 0xcd, 0, 0x11, 0xff]);
        for bad in [
            "",
            "02:ab:cd:00:11",
            "02:ab:cd:00:11:ff:00",
            "2:ab:cd:00:11:ff",
            "zz:00:00:00:00:00",
            "02-ab-cd-00-11-ff",
            "+2:ab:cd:00:11:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn local_addresses_are_unicast_and_locally_administered() {
        let m = Mac::local_from(&[0xff; 32]);
        assert!(m.is_unicast());
        assert_eq!(m.octets()[0] & 2, 2);
        let j = serde_json::to_value(m).expect("test");
        assert_eq!(serde_json::from_value::<Mac>(j).expect("test"), m);
    }
}
