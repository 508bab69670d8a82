//! Text emitters: Python literals and the YAML of `DOCUMENTATION` and `RETURN`.

use serde_json::Value;

use crate::fields::Field;

/// A Python literal for a JSON value, one entry per line, indented by `indent` spaces.
pub fn py(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent + 4);
    let end = " ".repeat(indent);
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Array(a) => {
            let flat: Vec<String> = a.iter().map(|x| py(x, indent + 4)).collect();
            let one = format!("[{}]", flat.join(", "));
            if one.len() + indent < 100 && !one.contains('\n') {
                return one;
            }
            format!("[\n{pad}{},\n{end}]", flat.join(&format!(",\n{pad}")))
        }
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, x)| format!("{}: {}", py_str(k), py(x, indent + 4)))
                .collect();
            let one = format!("{{{}}}", items.join(", "));
            if one.len() + indent < 150 && !one.contains('\n') {
                return one;
            }
            format!("{{\n{pad}{},\n{end}}}", items.join(&format!(",\n{pad}")))
        }
    }
}

/// A double-quoted Python string (JSON escapes are valid Python escapes).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A YAML double-quoted scalar, folded over lines of at most ~100 characters; each
/// continuation line is indented by `indent` (a line break inside the quotes reads as a space).
pub fn yaml_str(s: &str, indent: usize) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    let mut out = String::new();
    let mut line = 0;
    for (i, word) in q.split(' ').enumerate() {
        if i > 0 {
            if line + word.len() > 100 {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                line = indent;
            } else {
                out.push(' ');
                line += 1;
            }
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

/// The option's description with what the schema says beyond its text.
pub fn option_description(f: &Field) -> Vec<String> {
    let mut d = Vec::new();
    d.push(if f.description.is_empty() {
        format!("The C({}) field of the object.", f.name)
    } else {
        f.description.replace('`', "")
    });
    if let Some(v) = &f.default {
        d.push(format!("Server default when never set: C({v})."));
    }
    if f.server_default {
        d.push("Chosen by the server when not given.".into());
    }
    if f.create && !f.update && f.read {
        d.push("Set at creation only; a different value is reported as an error.".into());
    }
    if f.live {
        d.push("A running guest picks up a change at once.".into());
    }
    if f.nullable {
        d.push("An empty value (C('') or C([])) clears it.".into());
    }
    if f.shape == "map" {
        d.push("Keyed by slot: entries are compared key by key; entries not listed are removed, fields not given inside an entry are kept.".into());
    }
    if f.shape == "set" {
        d.push("Compared as a set: order does not matter.".into());
    }
    if f.shape == "vlanset" {
        d.push("VLAN ids and ranges such as C(10) or C(20-29).".into());
    }
    d
}

/// One documented option (`name:` and its keys), indented by `indent`.
pub fn doc_option(name: &str, f: &Field, desc: &[String], indent: usize) -> String {
    let p = " ".repeat(indent);
    let mut s = format!("{p}{name}:\n{p}  description:\n");
    for line in desc {
        s.push_str(&format!("{p}    - {}\n", yaml_str(line, indent + 6)));
    }
    s.push_str(&format!("{p}  type: {}\n", f.ty));
    if let Some(e) = f.elements {
        s.push_str(&format!("{p}  elements: {e}\n"));
    }
    if f.required {
        s.push_str(&format!("{p}  required: true\n"));
    }
    if !f.choices.is_empty() {
        s.push_str(&format!("{p}  choices:\n"));
        for c in &f.choices {
            s.push_str(&format!("{p}    - {c}\n"));
        }
    }
    s
}

/// One documented return value.
pub fn doc_return(f: &Field, returned: &str, indent: usize) -> String {
    let p = " ".repeat(indent);
    let desc = if f.description.is_empty() {
        format!("The C({}) field.", f.name)
    } else {
        f.description.replace('`', "")
    };
    let mut s = format!(
        "{p}{}:\n{p}  description: {}\n{p}  returned: {returned}\n{p}  type: {}\n",
        f.name,
        yaml_str(&desc, indent + 4),
        f.ty
    );
    if let Some(e) = f.elements {
        s.push_str(&format!("{p}  elements: {e}\n"));
    }
    s
}

/// The argument-spec entry of a field.
pub fn spec_entry(f: &Field) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), Value::String(f.ty.into()));
    if let Some(e) = f.elements {
        m.insert("elements".into(), Value::String(e.into()));
    }
    if f.required {
        m.insert("required".into(), Value::Bool(true));
    }
    if !f.choices.is_empty() {
        m.insert("choices".into(), Value::Array(f.choices.clone()));
    }
    if f.no_log {
        m.insert("no_log".into(), Value::Bool(true));
    } else if ["password", "token", "secret", "key", "pass"]
        .iter()
        .any(|k| f.name.contains(k))
    {
        m.insert("no_log".into(), Value::Bool(false));
    }
    Value::Object(m)
}

/// The field table entry the diff engine reads (flags that are false are left out).
pub fn rule_entry(f: &Field) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), Value::String(f.ty.into()));
    m.insert("shape".into(), Value::String(f.shape.into()));
    for (k, v) in [
        ("create", f.create),
        ("required", f.required),
        ("update", f.update),
        ("read", f.read),
        ("nullable", f.nullable),
        ("live", f.live),
        ("server_default", f.server_default),
        ("no_log", f.no_log),
    ] {
        if v {
            m.insert(k.into(), Value::Bool(true));
        }
    }
    Value::Object(m)
}
