//! Matches a request path against the route table's templates.

use std::collections::HashMap;

use crate::schema::Route;

enum Seg {
    Lit(String),
    Param(String),
}

struct Compiled {
    segs: Vec<Seg>,
    index: usize,
}

/// The result of matching a path.
pub enum Match {
    Found {
        index: usize,
        params: HashMap<String, String>,
    },
    /// The path exists but not for this method; lists the allowed methods.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

/// Routes compiled for matching.
pub struct Router {
    compiled: Vec<Compiled>,
    methods: Vec<String>,
}

impl Router {
    pub fn new(routes: &[std::sync::Arc<Route>]) -> Self {
        let compiled = routes
            .iter()
            .enumerate()
            .map(|(index, r)| Compiled {
                segs: r
                    .path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(p) => Seg::Param(p.to_string()),
                            None => Seg::Lit(s.to_string()),
                        },
                    )
                    .collect(),
                index,
            })
            .collect();
        Router {
            compiled,
            methods: routes.iter().map(|r| r.method.clone()).collect(),
        }
    }

    /// Matches `path` (under the API prefix, already percent-decoded per segment).
    pub fn find(&self, method: &str, path: &str) -> Match {
        let parts: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let mut allowed = Vec::new();
        for c in &self.compiled {
            if c.segs.len() != parts.len() {
                continue;
            }
            let ok = c.segs.iter().zip(&parts).all(|(s, p)| match s {
                Seg::Lit(l) => l == p,
                Seg::Param(_) => true,
            });
            if !ok {
                continue;
            }
            let params: HashMap<String, String> = c
                .segs
                .iter()
                .zip(&parts)
                .filter_map(|(s, p)| match s {
                    Seg::Param(n) => Some((n.clone(), p.clone())),
                    Seg::Lit(_) => None,
                })
                .collect();
            if self.methods[c.index] == method {
                return Match::Found {
                    index: c.index,
                    params,
                };
            }
            allowed.push(self.methods[c.index].clone());
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_templates() {
        let reg = crate::schema::Registry::load().expect("schema");
        let r = Router::new(reg.routes());
        match r.find("GET", "/access/users/alice%40local") {
            Match::Found { params, .. } => assert_eq!(params["userid"], "alice@local"),
            _ => panic!("no match"),
        }
        assert!(matches!(
            r.find("PATCH", "/access/users/x"),
            Match::MethodNotAllowed(_)
        ));
        assert!(matches!(r.find("GET", "/nope"), Match::NotFound));
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
