//! The templates this host can build: Debian releases in two variants. `minimal` is
//! Debian's `minbase` with systemd as init and what a networked system container needs;
//! `standard` adds OpenSSH (host keys made at first start, none shipped) and everyday tools.

use serde_json::{json, Value};

/// One buildable template.
#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    pub distro: &'static str,
    pub release: &'static str,
    /// Debian's suite name (what mmdebstrap bootstraps).
    pub suite: &'static str,
    pub variant: &'static str,
    pub description: &'static str,
    /// Installed on top of `minbase`: the minimal set, and the variant's additions.
    pub extra: &'static [&'static str],
}

const MINIMAL: &[&str] = &[
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "netbase",
    "ca-certificates",
    "less",
    "procps",
];

/// What `standard` adds to `minimal`.
const STANDARD: &[&str] = &[
    "openssh-server",
    "curl",
    "vim-tiny",
    "bash-completion",
    "sudo",
];

pub static RECIPES: &[Recipe] = &[
    Recipe {
        name: "debian-12-minimal",
        distro: "debian",
        release: "12",
        suite: "bookworm",
        variant: "minimal",
        description: "Debian 12 (bookworm): minbase with systemd, networkd and ping",
        extra: &[],
    },
    Recipe {
        name: "debian-12-standard",
        distro: "debian",
        release: "12",
        suite: "bookworm",
        variant: "standard",
        description: "Debian 12 (bookworm): minimal plus OpenSSH, curl, vim-tiny, sudo",
        extra: STANDARD,
    },
    Recipe {
        name: "debian-13-minimal",
        distro: "debian",
        release: "13",
        suite: "trixie",
        variant: "minimal",
        description: "Debian 13 (trixie): minbase with systemd, networkd and ping",
        extra: &[],
    },
    Recipe {
        name: "debian-13-standard",
        distro: "debian",
        release: "13",
        suite: "trixie",
        variant: "standard",
        description: "Debian 13 (trixie): minimal plus OpenSSH, curl, vim-tiny, sudo",
        extra: STANDARD,
    },
];

/// The build architecture (what the host runs; templates are not cross-built).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Recipe {
    /// The catalogue entry (`TemplateCatalogEntry`).
    pub fn entry(&self) -> Value {
        json!({
            "name": self.name,
            "source": "build",
            "description": self.description,
            "distro": self.distro,
            "release": self.release,
            "variant": self.variant,
            "architecture": architecture(),
        })
    }

    /// The packages installed on top of `minbase`.
    pub fn packages(&self) -> Vec<&'static str> {
        MINIMAL.iter().chain(self.extra).copied().collect()
    }

    /// Whether OpenSSH is in it (its host keys are removed and made at first start).
    pub fn has_ssh(&self) -> bool {
        self.extra.contains(&"openssh-server")
    }
}
