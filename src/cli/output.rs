//! Rendering responses: pretty JSON for machines, aligned tables for people.

use std::io::{self, Write};

use serde_json::{Map, Value};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (lists) or KEY/VALUE rows (single objects).
    Table,
    /// The response as pretty-printed JSON, for scripts and `jq`.
    Json,
    /// The response as YAML.
    Yaml,
}

/// Nested values in list cells are cut to this many characters so one large field cannot
/// push every other column off the screen; `--output json` shows them whole.
const MAX_NESTED_CELL: usize = 40;

/// Writes a JSON value in the chosen format.
pub fn write_value(out: &mut dyn Write, v: &Value, format: Format) -> io::Result<()> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
            writeln!(out, "{text}")
        }
        Format::Yaml => {
            let text = serde_norway::to_string(v).map_err(io::Error::other)?;
            write!(out, "{text}")
        }
        Format::Table => write_table(out, v),
    }
}

/// Table rendering: `{"items": [...]}` and arrays become one row per element, an object
/// becomes KEY/VALUE rows, anything else is printed as is.
fn write_table(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    if let Some(items) = v.get("items").and_then(Value::as_array) {
        return write_rows(out, items);
    }
    match v {
        Value::Array(items) => write_rows(out, items),
        Value::Object(map) => write_key_values(out, map),
        other => writeln!(out, "{}", scalar(other)),
    }
}

/// Rows for a list. Objects give one column per key (the union over all rows, so sparse
/// fields still get a column); lists of scalars print one per line.
fn write_rows(out: &mut dyn Write, items: &[Value]) -> io::Result<()> {
    let objects: Vec<&Map<String, Value>> = items.iter().filter_map(Value::as_object).collect();
    if objects.len() != items.len() {
        for item in items {
            writeln!(out, "{}", cell(item, MAX_NESTED_CELL))?;
        }
        return Ok(());
    }
    if objects.is_empty() {
        return Ok(());
    }
    let mut columns: Vec<&str> = Vec::new();
    for o in &objects {
        for k in o.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    // The identifying column reads best first (`userid`, `id`, `node`, ...); the rest keep
    // the document's order.
    if let Some(pos) = IDENTIFIERS
        .iter()
        .find_map(|id| columns.iter().position(|c| c == id))
    {
        let id = columns.remove(pos);
        columns.insert(0, id);
    }
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            columns
                .iter()
                .map(|c| {
                    o.get(*c)
                        .map_or_else(String::new, |v| cell(v, MAX_NESTED_CELL))
                })
                .collect()
        })
        .collect();
    write_aligned(out, &header, &rows)
}

/// Keys that name the object they sit in, in order of preference.
const IDENTIFIERS: &[&str] = &[
    "id", "userid", "groupid", "roleid", "tokenid", "node", "name",
];

/// KEY/VALUE rows for one object. Nested objects become one row per leaf under a dotted key
/// (`status.state`, `net.net0.bridge`), arrays of objects are indexed (`snapshots[0].name`),
/// and arrays of scalars are joined, so nothing is a JSON blob to read by eye.
fn write_key_values(out: &mut dyn Write, map: &Map<String, Value>) -> io::Result<()> {
    let header = vec!["KEY".to_string(), "VALUE".to_string()];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (k, v) in map {
        flatten(k, v, &mut rows);
    }
    write_aligned(out, &header, &rows)
}

fn flatten(key: &str, v: &Value, rows: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                flatten(&format!("{key}.{k}"), x, rows);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), x, rows);
            }
        }
        Value::Array(a) => rows.push(vec![
            key.to_string(),
            a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        ]),
        Value::Object(_) => rows.push(vec![key.to_string(), String::new()]),
        other => rows.push(vec![key.to_string(), scalar(other)]),
    }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn write_aligned(out: &mut dyn Write, header: &[String], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w.saturating_sub(c.chars().count())));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A cell: scalars plainly (null as empty), nested values as compact JSON cut to `max`
/// characters.
fn cell(v: &Value, max: usize) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => truncate(&v.to_string(), max),
        other => scalar(other),
    }
}

/// A scalar without JSON quoting; control characters are escaped so a row stays one line.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if c.is_control() {
                    out.extend(c.escape_default());
                } else {
                    out.push(c);
                }
            }
            out
        }
        other => other.to_string(),
    }
}

/// Cuts to `max` characters, marking the cut with `…`.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// One task log line (`{"seq","time","level","message"}`) as `TIME LEVEL MESSAGE`.
pub fn log_line(v: &Value) -> String {
    let f = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    format!(
        "{} {:<5} {}",
        f("time"),
        f("level").to_uppercase(),
        f("message")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(v: &Value, f: Format) -> String {
        let mut buf = Vec::new();
        write_value(&mut buf, v, f).expect("write");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn lists_become_aligned_tables() {
        let v = json!({"items": [
            {"enabled": true, "userid": "root@local", "groups": [], "email": null},
            {"enabled": false, "userid": "a@local", "groups": ["g"], "extra": {"k": "x".repeat(60)}}
        ]});
        let out = render(&v, Format::Table);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0], "USERID      EMAIL  ENABLED  GROUPS  EXTRA",
            "{out}"
        );
        assert!(lines[1].starts_with("root@local         true"), "{out}");
        assert!(
            lines[2].contains(r#"{"k":"xxx"#) && lines[2].contains('…'),
            "{out}"
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn objects_become_key_value_rows() {
        let v = json!({"api": "v1", "version": "0.1.0", "result": {"path": "/tmp/x"},
                       "tags": ["a", "b"], "snaps": [{"name": "s1"}], "empty": {}});
        let out = render(&v, Format::Table);
        assert_eq!(
            out,
            "KEY            VALUE\napi            v1\nempty\nresult.path    /tmp/x\n\
             snaps[0].name  s1\ntags           a, b\nversion        0.1.0\n"
        );
    }

    #[test]
    fn json_is_pretty() {
        let out = render(&json!({"a": 1}), Format::Json);
        assert_eq!(out, "{\n  \"a\": 1\n}\n");
    }

    #[test]
    fn scalars_and_log_lines() {
        assert_eq!(scalar(&json!("a\nb")), "a\\nb");
        assert_eq!(scalar(&json!("it's \"q\"")), "it's \"q\"");
        assert_eq!(
            log_line(&json!({"seq": 1, "time": "T", "level": "info", "message": "TASK OK"})),
            "T INFO  TASK OK"
        );
    }
}
