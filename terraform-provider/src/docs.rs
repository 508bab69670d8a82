//! Registry-format documentation generated from the same catalog Terraform sees, so docs
//! cannot drift from the schema (`tests/terraform.rs` compares the checked-in copy).

use std::fmt::Write as _;
use std::path::Path;

use crate::resources::catalog;
use crate::tfschema::{Attr, Kind, Nesting};
use crate::value::Type;

fn type_name(t: &Type) -> String {
    match t {
        Type::String => "String".into(),
        Type::Number => "Number".into(),
        Type::Bool => "Boolean".into(),
        Type::List(t) => format!("List of {}", type_name(t)),
        Type::Set(t) => format!("Set of {}", type_name(t)),
        Type::Map(t) => format!("Map of {}", type_name(t)),
        Type::Object(_) => "Object".into(),
    }
}

fn kind_name(a: &Attr) -> String {
    match &a.kind {
        Kind::Prim(t, _) => type_name(t),
        Kind::Nested(Nesting::Single, _) => "Attributes".into(),
        Kind::Nested(Nesting::List, _) => "Attributes List".into(),
        Kind::Nested(Nesting::Set, _) => "Attributes Set".into(),
        Kind::Nested(Nesting::Map, _) => "Attributes Map".into(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Which attributes a docs section lists.
type Pick = fn(&Attr) -> bool;

fn section(out: &mut String, prefix: &str, attrs: &[Attr], nested: &mut Vec<(String, Vec<Attr>)>) {
    let groups: [(&str, Pick); 3] = [
        ("Required", |a| a.required),
        ("Optional", |a| a.optional),
        ("Read-Only", |a| !a.required && !a.optional),
    ];
    for (title, pick) in groups {
        let list: Vec<&Attr> = attrs.iter().filter(|a| pick(a)).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n### {title}\n");
        for a in list {
            let anchor = format!("{prefix}{}", a.name);
            let mut notes = Vec::new();
            if a.sensitive {
                notes.push("Sensitive".to_string());
            }
            if a.force_new && (a.required || a.optional) {
                notes.push("Changing this forces a new resource".to_string());
            }
            if let Some(d) = &a.default {
                notes.push(format!("Default `{d}`"));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            let see = if let Kind::Nested(_, inner) = &a.kind {
                nested.push((anchor.clone(), inner.clone()));
                format!(" (see [below for nested schema](#nestedatt--{anchor}))")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "- `{}` ({}){notes} {}{see}",
                a.name,
                kind_name(a),
                one_line(&a.description)
            );
        }
    }
}

fn schema_md(attrs: &[Attr]) -> String {
    let mut out = String::from("\n## Schema\n");
    let mut nested = Vec::new();
    section(&mut out, "", attrs, &mut nested);
    while !nested.is_empty() {
        let (anchor, inner) = nested.remove(0);
        let _ = writeln!(
            out,
            "\n<a id=\"nestedatt--{anchor}\"></a>\n### Nested Schema for `{}`",
            anchor.replace("--", ".")
        );
        let mut more = Vec::new();
        section(&mut out, &format!("{anchor}--"), &inner, &mut more);
        nested.extend(more);
    }
    out
}

/// Writes `resources/*.md` and `data-sources/*.md` under `dir`.
pub fn write(dir: &str) -> std::io::Result<()> {
    let cat = catalog();
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir.join("resources"))?;
    std::fs::create_dir_all(dir.join("data-sources"))?;
    for (name, r) in &cat.resources {
        let short = name.trim_start_matches("ferrite_");
        let mut parts: Vec<&str> = r.def.parents.iter().map(|p| p.name).collect();
        parts.push(r.def.key);
        let import = parts.join("/");
        let mut md = format!(
            "---\npage_title: \"{name} Resource - ferrite\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n\n# {name} (Resource)\n\n{}\n\nGenerated from `schema/{}` ({} / {}).\n",
            one_line(r.def.description),
            r.def.description,
            "*.json",
            r.def.create,
            r.def.read,
        );
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/resources")
            .join(name)
            .join("resource.tf");
        if let Ok(ex) = std::fs::read_to_string(&example) {
            let _ = write!(md, "\n## Example Usage\n\n```terraform\n{}```\n", ex);
        }
        md.push_str(&schema_md(&r.attrs));
        let _ = write!(
            md,
            "\n## Import\n\nImport is supported using the following syntax:\n\n```shell\nterraform import {name}.example <{import}>\n```\n"
        );
        std::fs::write(dir.join("resources").join(format!("{short}.md")), md)?;
    }
    for (name, d) in &cat.data_sources {
        let short = name.trim_start_matches("ferrite_");
        let mut md = format!(
            "---\npage_title: \"{name} Data Source - ferrite\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n\n# {name} (Data Source)\n\n{}\n",
            one_line(d.def.description),
            d.def.description
        );
        md.push_str(&schema_md(&d.attrs));
        std::fs::write(dir.join("data-sources").join(format!("{short}.md")), md)?;
    }
    Ok(())
}
