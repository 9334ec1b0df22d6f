//! SQLite values on the wire, losslessly.
//!
//! | SQLite  | JSON                                        |
//! |---------|---------------------------------------------|
//! | NULL    | `null`                                      |
//! | INTEGER | a number without fraction or exponent (all of i64, exactly) |
//! | REAL    | a number with a fraction (`1100.0`, `-0.0`); `{"$real": "inf"}`, `{"$real": "-inf"}` for infinities |
//! | TEXT    | a string                                    |
//! | BLOB    | `{"$blob": "<standard base64>"}`            |
//!
//! Text is always a JSON string and a blob never is, so the two cannot be
//! confused. When reading parameters, `true`/`false` bind as 1/0 (as most
//! SQLite drivers do); any other array or object is refused.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The key of a tagged blob object.
pub const BLOB_TAG: &str = "$blob";
/// The key of a tagged non-finite real.
pub const REAL_TAG: &str = "$real";

/// One SQLite value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer, carried exactly.
    Integer(i64),
    /// An IEEE-754 double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Real(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Real(f) => {
                let mut m = s.serialize_map(Some(1))?;
                let tag = if f.is_nan() {
                    "nan"
                } else if *f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                };
                m.serialize_entry(REAL_TAG, tag)?;
                m.end()
            }
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(BLOB_TAG, &B64.encode(b))?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "null, a number, a string, a boolean, {\"$blob\": \"<base64>\"} or {\"$real\": \"inf\"}",
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Integer(v as i64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Integer)
            .map_err(|_| E::custom(format!("integer {v} is out of SQLite's 64-bit range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Real(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let key: Option<String> = map.next_key()?;
        let value = match key.as_deref() {
            Some(BLOB_TAG) => {
                let text: String = map.next_value()?;
                Value::Blob(
                    B64.decode(text.as_bytes())
                        .map_err(|e| de::Error::custom(format!("{BLOB_TAG} is not base64: {e}")))?,
                )
            }
            Some(REAL_TAG) => {
                let text: String = map.next_value()?;
                Value::Real(match text.as_str() {
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    "nan" => f64::NAN,
                    other => {
                        return Err(de::Error::custom(format!(
                            "{REAL_TAG} must be \"inf\", \"-inf\" or \"nan\", not {other:?}"
                        )))
                    }
                })
            }
            _ => {
                return Err(de::Error::custom(
                    "an object value must be {\"$blob\": \"<base64>\"} or {\"$real\": \"inf\"}",
                ))
            }
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a tagged value has exactly one key"));
        }
        Ok(value)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "an array is not a SQLite value (bind it as JSON text instead)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(v: Value) -> Value {
        let s = serde_json::to_string(&v).unwrap();
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn integers_are_exact_at_every_size() {
        for i in [
            i64::MIN,
            i64::MIN + 1,
            -(1 << 53) - 1,
            -1,
            0,
            1,
            (1 << 53) + 1,
            i64::MAX - 1,
            i64::MAX,
        ] {
            assert_eq!(rt(Value::Integer(i)), Value::Integer(i));
            assert_eq!(
                serde_json::to_string(&Value::Integer(i)).unwrap(),
                i.to_string()
            );
        }
    }

    #[test]
    fn reals_keep_their_kind_and_sign() {
        assert_eq!(
            serde_json::to_string(&Value::Real(1100.0)).unwrap(),
            "1100.0"
        );
        let neg_zero = rt(Value::Real(-0.0));
        assert!(matches!(neg_zero, Value::Real(f) if f == 0.0 && f.is_sign_negative()));
        for f in [0.1, f64::MIN_POSITIVE, f64::MAX, -1e300, 2.5e-310] {
            assert_eq!(rt(Value::Real(f)), Value::Real(f));
        }
        assert_eq!(rt(Value::Real(f64::INFINITY)), Value::Real(f64::INFINITY));
        assert_eq!(
            rt(Value::Real(f64::NEG_INFINITY)),
            Value::Real(f64::NEG_INFINITY)
        );
        assert!(matches!(rt(Value::Real(f64::NAN)), Value::Real(f) if f.is_nan()));
    }

    #[test]
    fn blobs_hold_every_byte_and_differ_from_text() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(rt(Value::Blob(all.clone())), Value::Blob(all));
        assert_eq!(rt(Value::Blob(vec![])), Value::Blob(vec![]));
        let as_text = Value::Text(r#"{"$blob":"AA=="}"#.into());
        assert_eq!(rt(as_text.clone()), as_text);
        assert_eq!(
            serde_json::to_string(&Value::Blob(vec![0])).unwrap(),
            r#"{"$blob":"AA=="}"#
        );
    }

    #[test]
    fn text_null_and_unicode() {
        assert_eq!(rt(Value::Text(String::new())), Value::Text(String::new()));
        assert_eq!(rt(Value::Null), Value::Null);
        let u = Value::Text("żółć 🦀 \u{0} \"\n".into());
        assert_eq!(rt(u.clone()), u);
    }

    #[test]
    fn params_accept_booleans_and_refuse_the_unbindable() {
        assert_eq!(
            serde_json::from_str::<Value>("true").unwrap(),
            Value::Integer(1)
        );
        for bad in [
            "[1,2]",
            r#"{"a":1}"#,
            r#"{"$blob":"!!"}"#,
            r#"{"$blob":"AA==","x":1}"#,
            "18446744073709551615",
            r#"{"$real":"big"}"#,
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }
}
