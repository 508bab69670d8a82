//! Terraform values and their wire encodings.
//!
//! Terraform sends every value as msgpack (JSON only in stored state), and the bytes carry no
//! types: decoding is driven by the schema's type. Unknown values (not yet computed) may appear
//! at any depth as msgpack extension values, so plain serde structs cannot hold them; this
//! module has its own [`Value`] with an explicit `Unknown`.

use std::collections::BTreeMap;
use std::fmt;

use rmpv::Value as Mp;
use serde_json::{json, Value as Json};

/// A Terraform type constraint, as sent in schemas (`"string"`, `["list","string"]`, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
}

impl Type {
    /// The JSON type expression Terraform expects in `Schema.Attribute.type`.
    pub fn to_json(&self) -> Json {
        match self {
            Type::String => json!("string"),
            Type::Number => json!("number"),
            Type::Bool => json!("bool"),
            Type::List(t) => json!(["list", t.to_json()]),
            Type::Set(t) => json!(["set", t.to_json()]),
            Type::Map(t) => json!(["map", t.to_json()]),
            Type::Object(attrs) => {
                let m: serde_json::Map<String, Json> = attrs
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_json()))
                    .collect();
                json!(["object", m])
            }
        }
    }
}

/// A number as Terraform sends it; integers stay exact.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Integers written as floats (`2.0`) count as integers, as in HCL.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Num::Int(i) => Some(i),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            Num::Float(_) => None,
        }
    }

    fn to_json(self) -> Json {
        match self.as_i64() {
            Some(i) => json!(i),
            None => serde_json::Number::from_f64(self.as_f64())
                .map(Json::Number)
                .unwrap_or(Json::Null),
        }
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        match (self.as_i64(), other.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => self.as_f64() == other.as_f64(),
        }
    }
}

/// A value of some [`Type`], possibly null or not yet known.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Unknown,
    Bool(bool),
    Number(Num),
    String(String),
    /// Lists and sets (a set's order carries no meaning).
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
}

/// A value that does not fit its type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True when the value or anything inside it is unknown.
    pub fn has_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::List(v) => v.iter().any(Value::has_unknown),
            Value::Map(m) | Value::Object(m) => m.values().any(Value::has_unknown),
            _ => false,
        }
    }

    pub fn get(&self, attr: &str) -> &Value {
        match self {
            Value::Object(m) => m.get(attr).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Equality where sets compare without order.
    pub fn same(&self, other: &Value, ty: &Type) -> bool {
        match (self, other, ty) {
            (Value::List(a), Value::List(b), Type::Set(t)) => {
                a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.same(y, t)))
            }
            (Value::List(a), Value::List(b), Type::List(t)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y, t))
            }
            (Value::Map(a), Value::Map(b), Type::Map(t)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, x)| b.get(k).is_some_and(|y| x.same(y, t)))
            }
            (Value::Object(a), Value::Object(b), Type::Object(ts)) => ts.iter().all(|(k, t)| {
                a.get(k)
                    .unwrap_or(&Value::Null)
                    .same(b.get(k).unwrap_or(&Value::Null), t)
            }),
            _ => self == other,
        }
    }

    /// Decodes msgpack bytes of type `ty`.
    pub fn from_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, DecodeError> {
        let mut cur = bytes;
        let mp = rmpv::decode::read_value(&mut cur)
            .map_err(|e| DecodeError(format!("malformed msgpack: {e}")))?;
        Value::from_mp(&mp, ty)
    }

    fn from_mp(mp: &Mp, ty: &Type) -> Result<Value, DecodeError> {
        // Any extension value is an unknown; refinements (code 12) are accepted and dropped.
        if let Mp::Ext(_, _) = mp {
            return Ok(Value::Unknown);
        }
        if mp.is_nil() {
            return Ok(Value::Null);
        }
        let bad = || DecodeError(format!("expected {}, got {mp}", ty.to_json()));
        Ok(match ty {
            Type::String => Value::String(mp.as_str().ok_or_else(bad)?.to_string()),
            Type::Bool => Value::Bool(mp.as_bool().ok_or_else(bad)?),
            Type::Number => match mp {
                Mp::Integer(i) => match i.as_i64() {
                    Some(v) => Value::Number(Num::Int(v)),
                    None => Value::Number(Num::Float(i.as_f64().ok_or_else(bad)?)),
                },
                Mp::F32(f) => Value::Number(Num::Float(f64::from(*f))),
                Mp::F64(f) => Value::Number(Num::Float(*f)),
                // Numbers too large for 64 bits arrive as decimal strings.
                Mp::String(s) => {
                    let s = s.as_str().ok_or_else(bad)?;
                    match s.parse::<i64>() {
                        Ok(i) => Value::Number(Num::Int(i)),
                        Err(_) => Value::Number(Num::Float(s.parse().map_err(|_| bad())?)),
                    }
                }
                _ => return Err(bad()),
            },
            Type::List(t) | Type::Set(t) => Value::List(
                mp.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|v| Value::from_mp(v, t))
                    .collect::<Result<_, _>>()?,
            ),
            Type::Map(t) => {
                let mut m = BTreeMap::new();
                for (k, v) in mp.as_map().ok_or_else(bad)? {
                    m.insert(
                        k.as_str().ok_or_else(bad)?.to_string(),
                        Value::from_mp(v, t)?,
                    );
                }
                Value::Map(m)
            }
            Type::Object(ts) => {
                let mut m = BTreeMap::new();
                for (k, v) in mp.as_map().ok_or_else(bad)? {
                    let k = k.as_str().ok_or_else(bad)?;
                    // Attributes this schema does not know (an older state) are dropped.
                    if let Some(t) = ts.get(k) {
                        m.insert(k.to_string(), Value::from_mp(v, t)?);
                    }
                }
                for k in ts.keys() {
                    m.entry(k.clone()).or_insert(Value::Null);
                }
                Value::Object(m)
            }
        })
    }

    /// Encodes as msgpack for type `ty` (objects always carry every attribute).
    pub fn to_msgpack(&self, ty: &Type) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &self.to_mp(ty));
        out
    }

    fn to_mp(&self, ty: &Type) -> Mp {
        match (self, ty) {
            (Value::Null, _) => Mp::Nil,
            (Value::Unknown, _) => Mp::Ext(0, vec![0]),
            (Value::Bool(b), _) => Mp::Boolean(*b),
            (Value::Number(n), _) => match n.as_i64() {
                Some(i) => Mp::from(i),
                None => Mp::F64(n.as_f64()),
            },
            (Value::String(s), _) => Mp::from(s.as_str()),
            (Value::List(v), Type::List(t) | Type::Set(t)) => {
                Mp::Array(v.iter().map(|x| x.to_mp(t)).collect())
            }
            (Value::Map(m), Type::Map(t)) => Mp::Map(
                m.iter()
                    .map(|(k, v)| (Mp::from(k.as_str()), v.to_mp(t)))
                    .collect(),
            ),
            (Value::Object(m), Type::Object(ts)) => Mp::Map(
                ts.iter()
                    .map(|(k, t)| {
                        (
                            Mp::from(k.as_str()),
                            m.get(k).unwrap_or(&Value::Null).to_mp(t),
                        )
                    })
                    .collect(),
            ),
            // A value of the wrong shape is a provider bug; null is the safest encoding.
            _ => Mp::Nil,
        }
    }

    /// Decodes Terraform's JSON form (stored state) of type `ty`.
    pub fn from_json(j: &Json, ty: &Type) -> Result<Value, DecodeError> {
        if j.is_null() {
            return Ok(Value::Null);
        }
        let bad = || DecodeError(format!("expected {}, got {j}", ty.to_json()));
        Ok(match ty {
            Type::String => Value::String(j.as_str().ok_or_else(bad)?.to_string()),
            Type::Bool => Value::Bool(j.as_bool().ok_or_else(bad)?),
            Type::Number => match j {
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Number(Num::Int(i)),
                    None => Value::Number(Num::Float(n.as_f64().ok_or_else(bad)?)),
                },
                Json::String(s) => Value::Number(match s.parse::<i64>() {
                    Ok(i) => Num::Int(i),
                    Err(_) => Num::Float(s.parse().map_err(|_| bad())?),
                }),
                _ => return Err(bad()),
            },
            Type::List(t) | Type::Set(t) => Value::List(
                j.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|v| Value::from_json(v, t))
                    .collect::<Result<_, _>>()?,
            ),
            Type::Map(t) => Value::Map(
                j.as_object()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Value::from_json(v, t)?)))
                    .collect::<Result<_, DecodeError>>()?,
            ),
            Type::Object(ts) => {
                let o = j.as_object().ok_or_else(bad)?;
                let mut m = BTreeMap::new();
                for (k, t) in ts {
                    m.insert(
                        k.clone(),
                        match o.get(k) {
                            Some(v) => Value::from_json(v, t)?,
                            None => Value::Null,
                        },
                    );
                }
                Value::Object(m)
            }
        })
    }

    /// The value as plain JSON (unknowns become null; callers strip them first).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null | Value::Unknown => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Number(n) => n.to_json(),
            Value::String(s) => json!(s),
            Value::List(v) => Json::Array(v.iter().map(Value::to_json).collect()),
            Value::Map(m) | Value::Object(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unknown => f.write_str("(known after apply)"),
            v => write!(f, "{}", v.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj_type() -> Type {
        Type::Object(BTreeMap::from([
            ("name".to_string(), Type::String),
            ("size".to_string(), Type::Number),
            ("tags".to_string(), Type::Set(Box::new(Type::String))),
            (
                "disks".to_string(),
                Type::Map(Box::new(Type::Object(BTreeMap::from([(
                    "ro".to_string(),
                    Type::Bool,
                )])))),
            ),
        ]))
    }

    #[test]
    fn msgpack_round_trip_keeps_unknowns_and_nulls() {
        let ty = obj_type();
        let v = Value::Object(BTreeMap::from([
            ("name".to_string(), Value::String("a".into())),
            ("size".to_string(), Value::Unknown),
            ("tags".to_string(), Value::Null),
            (
                "disks".to_string(),
                Value::Map(BTreeMap::from([(
                    "disk0".to_string(),
                    Value::Object(BTreeMap::from([("ro".to_string(), Value::Bool(true))])),
                )])),
            ),
        ]));
        let bytes = v.to_msgpack(&ty);
        let back = Value::from_msgpack(&bytes, &ty).expect("decodes");
        assert_eq!(back, v);
    }

    #[test]
    fn refined_unknowns_and_big_numbers_decode() {
        // ext 12 (refined unknown) with a payload map {1: false}.
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &Mp::Ext(12, vec![0x81, 0x01, 0xc2])).expect("enc");
        assert_eq!(
            Value::from_msgpack(&buf, &Type::String).expect("dec"),
            Value::Unknown
        );
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &Mp::from("12345678901")).expect("enc");
        assert_eq!(
            Value::from_msgpack(&buf, &Type::Number).expect("dec"),
            Value::Number(Num::Int(12345678901))
        );
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &Mp::F64(2.5)).expect("enc");
        assert_eq!(
            Value::from_msgpack(&buf, &Type::Number).expect("dec"),
            Value::Number(Num::Float(2.5))
        );
    }

    #[test]
    fn json_state_decodes_and_wrong_types_are_errors() {
        let ty = obj_type();
        let v = Value::from_json(&json!({"name": "x", "size": "7", "tags": ["b", "a"]}), &ty)
            .expect("decodes");
        assert_eq!(v.get("size"), &Value::Number(Num::Int(7)));
        assert!(v.get("disks").is_null());
        assert!(Value::from_json(&json!({"name": 5}), &ty).is_err());
    }

    #[test]
    fn sets_compare_without_order() {
        let t = Type::Set(Box::new(Type::String));
        let a = Value::List(vec![Value::String("a".into()), Value::String("b".into())]);
        let b = Value::List(vec![Value::String("b".into()), Value::String("a".into())]);
        assert!(a.same(&b, &t));
        assert!(!a.same(&b, &Type::List(Box::new(Type::String))));
    }
}
