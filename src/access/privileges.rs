//! Privilege sets as bitmasks. Bit positions follow the `Privilege` enum in
//! `schema/common.json`, so the schema stays the one list of privileges.

use std::sync::OnceLock;

/// A set of privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivSet(pub u64);

static NAMES: OnceLock<Vec<String>> = OnceLock::new();

/// Installs the privilege names from the schema (first call wins; they never change).
pub fn init(names: &[String]) {
    assert!(names.len() <= 64, "at most 64 privileges fit a PrivSet");
    let _ = NAMES.set(names.to_vec());
}

fn names() -> &'static [String] {
    NAMES.get().map(Vec::as_slice).unwrap_or(&[])
}

impl PrivSet {
    pub const EMPTY: PrivSet = PrivSet(0);

    /// Every known privilege.
    pub fn all() -> PrivSet {
        let n = names().len();
        PrivSet(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
    }

    /// The set for one privilege name, if known.
    pub fn named(name: &str) -> Option<PrivSet> {
        names()
            .iter()
            .position(|n| n == name)
            .map(|i| PrivSet(1 << i))
    }

    /// Builds a set from names and patterns (`*`, `VM.*`, `*.Audit`); unknown names are ignored
    /// (the schema has already rejected them on input).
    pub fn from_patterns<'a>(patterns: impl IntoIterator<Item = &'a str>) -> PrivSet {
        let mut set = 0u64;
        for p in patterns {
            for (i, n) in names().iter().enumerate() {
                let hit = p == "*"
                    || p == n
                    || p.strip_suffix(".*")
                        .is_some_and(|fam| n.split('.').next() == Some(fam))
                    || p.strip_prefix("*.")
                        .is_some_and(|leaf| n.split('.').nth(1) == Some(leaf));
                if hit {
                    set |= 1 << i;
                }
            }
        }
        PrivSet(set)
    }

    pub fn contains(self, other: PrivSet) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn union(self, other: PrivSet) -> PrivSet {
        PrivSet(self.0 | other.0)
    }

    pub fn intersect(self, other: PrivSet) -> PrivSet {
        PrivSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Names in schema order.
    pub fn names(self) -> Vec<String> {
        names()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// A built-in role: name, description and privilege patterns.
pub struct BuiltinRole {
    pub name: &'static str,
    pub comment: &'static str,
    pub patterns: &'static [&'static str],
}

/// Roles every install has. They are refreshed at each start so new privileges reach them.
pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "Administrator",
        comment: "Every privilege",
        patterns: &["*"],
    },
    BuiltinRole {
        name: "Auditor",
        comment: "Read everything, change nothing",
        patterns: &["*.Audit"],
    },
    BuiltinRole {
        name: "NoAccess",
        comment: "Cancels every privilege inherited at this path",
        patterns: &[],
    },
    BuiltinRole {
        name: "VMAdmin",
        comment: "Full control of VMs",
        patterns: &["VM.*"],
    },
    BuiltinRole {
        name: "VMUser",
        comment: "Use VMs: view, power, console",
        patterns: &["VM.Audit", "VM.PowerMgmt", "VM.Console"],
    },
    BuiltinRole {
        name: "ContainerAdmin",
        comment: "Full control of containers",
        patterns: &["Container.*"],
    },
    BuiltinRole {
        name: "ContainerUser",
        comment: "Use containers: view, power, console",
        patterns: &[
            "Container.Audit",
            "Container.PowerMgmt",
            "Container.Console",
        ],
    },
    BuiltinRole {
        name: "NetworkAdmin",
        comment: "Manage bridges, VLANs and bonds",
        patterns: &["Network.*"],
    },
    BuiltinRole {
        name: "StorageAdmin",
        comment: "Manage pools and volumes",
        patterns: &["Storage.*"],
    },
    BuiltinRole {
        name: "UserAdmin",
        comment: "Manage users, groups, roles and ACLs",
        patterns: &["User.Modify", "Permissions.Modify", "Sys.Audit"],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let reg = crate::schema::Registry::load().expect("schema");
        init(reg.privileges());
        let vm = PrivSet::from_patterns(["VM.*"]);
        assert!(vm.contains(PrivSet::named("VM.Allocate").expect("known")));
        assert!(!vm.contains(PrivSet::named("Container.Audit").expect("known")));
        let audit = PrivSet::from_patterns(["*.Audit"]);
        assert_eq!(audit.names().len(), 5);
        assert_eq!(PrivSet::from_patterns(["*"]), PrivSet::all());
        assert!(!PrivSet::all().contains(PrivSet::EMPTY));
    }
}
