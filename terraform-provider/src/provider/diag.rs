//! Terraform diagnostics, with API field pointers mapped onto attribute paths so an error
//! points at the line in the user's configuration.

use crate::api::ApiError;
use crate::proto::tfplugin6 as pb;
use crate::tfschema::{Attr, Kind, Nesting};
use crate::value::Type;

use pb::attribute_path::step::Selector;

fn diag(sev: pb::diagnostic::Severity, summary: &str, detail: &str) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: sev as i32,
        summary: summary.to_string(),
        detail: detail.to_string(),
        attribute: None,
    }
}

pub fn error(summary: &str, detail: &str) -> pb::Diagnostic {
    diag(pb::diagnostic::Severity::Error, summary, detail)
}

pub fn warning(summary: &str, detail: &str) -> pb::Diagnostic {
    diag(pb::diagnostic::Severity::Warning, summary, detail)
}

pub fn path_of(names: &[&str]) -> pb::AttributePath {
    pb::AttributePath {
        steps: names
            .iter()
            .map(|n| pb::attribute_path::Step {
                selector: Some(Selector::AttributeName(n.to_string())),
            })
            .collect(),
    }
}

pub fn at(mut d: pb::Diagnostic, names: &[&str]) -> pb::Diagnostic {
    d.attribute = Some(path_of(names));
    d
}

/// Maps a JSON pointer into a request body (`/net/net0/tag`) onto an attribute path.
pub fn pointer_path(attrs: &[Attr], pointer: &str) -> Option<pb::AttributePath> {
    let segs: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut steps = Vec::new();
    let mut cur: &[Attr] = attrs;
    let mut i = 0;
    while i < segs.len() {
        let a = cur.iter().find(|a| a.name == segs[i])?;
        steps.push(Selector::AttributeName(a.name.clone()));
        i += 1;
        match &a.kind {
            Kind::Nested(n, inner) => {
                if matches!(n, Nesting::Map | Nesting::List | Nesting::Set) && i < segs.len() {
                    steps.push(element(n == &Nesting::Map, &segs[i]));
                    i += 1;
                }
                cur = inner;
            }
            Kind::Prim(t, _) => {
                if i < segs.len() {
                    steps.push(element(matches!(t, Type::Map(_)), &segs[i]));
                }
                break;
            }
        }
    }
    if steps.is_empty() {
        return None;
    }
    Some(pb::AttributePath {
        steps: steps
            .into_iter()
            .map(|s| pb::attribute_path::Step { selector: Some(s) })
            .collect(),
    })
}

fn element(by_key: bool, seg: &str) -> Selector {
    match (by_key, seg.parse::<i64>()) {
        (false, Ok(i)) => Selector::ElementKeyInt(i),
        _ => Selector::ElementKeyString(seg.to_string()),
    }
}

/// One diagnostic per invalid field (each pointing at its attribute), or one for the whole
/// refusal.
pub fn problem_diags(summary: &str, e: &ApiError, attrs: &[Attr]) -> Vec<pb::Diagnostic> {
    match e {
        ApiError::Problem(p) if !p.invalid_params.is_empty() => p
            .invalid_params
            .iter()
            .map(|(ptr, msg)| {
                let mut d = error(
                    summary,
                    &format!("{} ({}): {ptr}: {msg}", p.title, p.status),
                );
                d.attribute = pointer_path(attrs, ptr);
                d
            })
            .collect(),
        e => {
            let mut d = error(summary, &e.to_string());
            // A refusal that names one field in its detail still points at it.
            if let ApiError::Problem(p) = e {
                if let Some(detail) = &p.detail {
                    if let Some(a) = attrs.iter().find(|a| {
                        detail.starts_with(&format!("{} ", a.name))
                            || detail.contains(&format!("/{} ", a.name))
                    }) {
                        d.attribute = Some(path_of(&[a.name.as_str()]));
                    }
                }
            }
            vec![d]
        }
    }
}
