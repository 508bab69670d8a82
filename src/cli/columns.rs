//! The few columns people read in a list (`ferrite ct list`, `ferrite storage list`, ...),
//! instead of every field cut at the column width. `--output json|yaml` prints the objects
//! whole for scripts.

use std::io::{self, Write};

use serde_json::Value;

/// One column: its header and how a cell is read from an object.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Static addresses of every NIC (`ip`, `ip6`, `addresses`), slot order.
fn addresses(v: &Value) -> String {
    let mut out = Vec::new();
    if let Some(nics) = v.get("net").and_then(Value::as_object) {
        for nic in nics.values() {
            for k in ["ip", "ip6"] {
                if let Some(a) = nic.get(k).and_then(Value::as_str) {
                    out.push(a.to_string());
                }
            }
        }
    }
    if let Some(a) = v.get("addresses").and_then(Value::as_array) {
        out.extend(a.iter().map(text));
    }
    out.join(",")
}

fn mib(v: &Value) -> String {
    v.as_u64().map(|m| format!("{m} MiB")).unwrap_or_default()
}

fn bytes(v: &Value) -> String {
    let Some(b) = v.as_u64() else {
        return String::new();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// Columns for containers and VMs.
pub const GUESTS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| text(&v["id"]),
    },
    Column {
        header: "NAME",
        cell: |v| text(&v["name"]),
    },
    Column {
        header: "STATE",
        cell: |v| text(&v["status"]["state"]),
    },
    Column {
        header: "IPS",
        cell: addresses,
    },
    Column {
        header: "MEMORY",
        cell: |v| mib(&v["memory"]),
    },
    Column {
        header: "POOL",
        cell: |v| text(&v["pool"]),
    },
];

/// Columns for bridges, VLANs and bonds together (`kind` is added by the caller).
pub const LINKS: &[Column] = &[
    Column {
        header: "KIND",
        cell: |v| text(&v["kind"]),
    },
    Column {
        header: "NAME",
        cell: |v| text(&v["name"]),
    },
    Column {
        header: "STATE",
        cell: |v| text(&v["status"]["operstate"]),
    },
    Column {
        header: "LOWER",
        cell: |v| {
            let keys = |x: &Value| -> Vec<String> {
                match x {
                    Value::Object(m) => m.keys().cloned().collect(),
                    Value::Array(a) => a.iter().map(text).collect(),
                    other => vec![text(other)],
                }
            };
            let mut out = keys(&v["ports"]);
            out.extend(keys(&v["members"]));
            if v["parent"].is_string() {
                out.push(format!("{}.{}", text(&v["parent"]), text(&v["vlan_id"])));
            }
            out.retain(|s| !s.is_empty());
            out.join(",")
        },
    },
    Column {
        header: "ADDRESSES",
        cell: addresses,
    },
    Column {
        header: "DRIFT",
        cell: |v| {
            v["status"]["drift"]
                .as_array()
                .map(|d| d.len().to_string())
                .unwrap_or_default()
        },
    },
];

/// Columns for storage pools.
pub const POOLS: &[Column] = &[
    Column {
        header: "NAME",
        cell: |v| text(&v["name"]),
    },
    Column {
        header: "TYPE",
        cell: |v| text(&v["type"]),
    },
    Column {
        header: "CONTENT",
        cell: |v| {
            v["content"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        },
    },
    Column {
        header: "USED",
        cell: |v| bytes(&v["capacity"]["used"]),
    },
    Column {
        header: "TOTAL",
        cell: |v| bytes(&v["capacity"]["total"]),
    },
];

/// Columns for volumes.
pub const VOLUMES: &[Column] = &[
    Column {
        header: "VOLID",
        cell: |v| text(&v["volid"]),
    },
    Column {
        header: "CONTENT",
        cell: |v| text(&v["content"]),
    },
    Column {
        header: "FORMAT",
        cell: |v| text(&v["format"]),
    },
    Column {
        header: "SIZE",
        cell: |v| bytes(&v["size"]),
    },
    Column {
        header: "USED BY",
        cell: |v| {
            v["used_by"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        },
    },
];

/// Columns for tasks.
pub const TASKS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| text(&v["id"]),
    },
    Column {
        header: "TYPE",
        cell: |v| text(&v["type"]),
    },
    Column {
        header: "OBJECT",
        cell: |v| text(&v["object"]),
    },
    Column {
        header: "STATE",
        cell: |v| text(&v["state"]),
    },
    Column {
        header: "USER",
        cell: |v| text(&v["user"]),
    },
    Column {
        header: "CREATED",
        cell: |v| text(&v["created_at"]),
    },
];

/// Writes `items` as aligned columns under a header row.
pub fn write(out: &mut dyn Write, columns: &[Column], items: &[Value]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|c| (c.cell)(i)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(n, c)| {
            rows.iter()
                .map(|r| r[n].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (n, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if n < last {
                let pad = widths[n] - cell.chars().count() + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(columns.iter().map(|c| c.header).collect()))?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `ferrite template list`: the catalogue.
pub const TEMPLATES: &[Column] = &[
    Column {
        header: "NAME",
        cell: |v| text(&v["name"]),
    },
    Column {
        header: "SOURCE",
        cell: |v| match v["index"].as_str() {
            Some(ix) => format!("index {ix}"),
            None if v["cached"] == true => "build (cached)".into(),
            None => text(&v["source"]),
        },
    },
    Column {
        header: "RELEASE",
        cell: |v| format!("{} {}", text(&v["distro"]), text(&v["release"])),
    },
    Column {
        header: "ARCH",
        cell: |v| text(&v["architecture"]),
    },
    Column {
        header: "DESCRIPTION",
        cell: |v| text(&v["description"]),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guest_rows_show_state_addresses_and_memory() {
        let items = vec![
            json!({"id": 100, "name": "web", "status": {"state": "running"}, "memory": 512,
                   "pool": "local", "net": {"net0": {"bridge": "vmbr0", "ip": "192.0.2.10/24"}}}),
            json!({"id": 101, "name": "db", "status": {"state": "stopped"}}),
        ];
        let mut out = Vec::new();
        write(&mut out, GUESTS, &items).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID   NAME  STATE    IPS            MEMORY   POOL");
        assert_eq!(
            lines[1],
            "100  web   running  192.0.2.10/24  512 MiB  local"
        );
        assert_eq!(lines[2], "101  db    stopped");
    }
}
