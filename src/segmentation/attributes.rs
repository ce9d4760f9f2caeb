//! Reading the few attributes a run uses out of each customer's stored JSON object, without
//! building the whole object: a run over a million customers parses a million objects, and
//! allocating every key and value it does not need was most of the loading time.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// One attribute value as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AttributeValue {
    #[default]
    Missing,
    Number(f64),
    Text(String),
}

impl AttributeValue {
    /// As a number: numbers, and text that reads as one.
    pub fn number(&self) -> Option<f64> {
        match self {
            AttributeValue::Number(n) => Some(*n),
            AttributeValue::Text(t) => t.trim().parse().ok(),
            AttributeValue::Missing => None,
        }
    }

    /// As a category label: text, and numbers written as the JSON had them (3, 2.5).
    pub fn into_label(self) -> Option<String> {
        match self {
            AttributeValue::Text(t) => Some(t),
            AttributeValue::Number(n) => Some(n.to_string()),
            AttributeValue::Missing => None,
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AttributeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_f64<E>(self, v: f64) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Number(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Number(v as f64))
    }
    fn visit_str<E>(self, v: &str) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Text(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Text(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Missing)
    }
    fn visit_none<E>(self) -> Result<AttributeValue, E> {
        Ok(AttributeValue::Missing)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<AttributeValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AttributeValue::Missing)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AttributeValue::Missing)
    }
}

impl<'de> de::Deserialize<'de> for AttributeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// A key's position among the wanted names, if it is one.
struct KeySeed<'w>(&'w [&'w str]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|w| *w == v))
    }
}

struct Extract<'w, 'o, T = AttributeValue> {
    wanted: &'w [&'w str],
    out: &'o mut [T],
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for Extract<'_, '_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(KeySeed(self.wanted))? {
            match slot {
                Some(i) => self.out[i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Fills `out[i]` with the value of attribute `wanted[i]` in the JSON object `json`
/// (`Missing` when absent or null).
pub fn extract(
    json: &str,
    wanted: &[&str],
    out: &mut [AttributeValue],
) -> Result<(), serde_json::Error> {
    if extract_flat(json, wanted, out) {
        return Ok(());
    }
    out.iter_mut().for_each(|v| *v = AttributeValue::Missing);
    let mut d = serde_json::Deserializer::from_str(json);
    d.deserialize_map(Extract { wanted, out })?;
    d.end()
}

/// A value of a flat object, as [`scan_flat`] finds it.
enum Flat<'a> {
    Text(&'a str),
    /// A number with its text (integers keep serde_json's own integer types).
    Number(&'a str, f64),
    Bool(bool),
    Null,
}

/// [`extract`] for the objects imports write: flat, without white space or escapes, values
/// numbers, plain strings, booleans or null. Returns false, leaving `out` to be overwritten,
/// for any other text (which then goes through serde_json, errors included). The values are
/// the same as serde_json's: numbers are checked against JSON's grammar and read by the same
/// correctly rounded conversion (serde_json's `float_roundtrip`); out-of-range ones fall back.
fn extract_flat(json: &str, wanted: &[&str], out: &mut [AttributeValue]) -> bool {
    out.iter_mut().for_each(|v| *v = AttributeValue::Missing);
    scan_flat(json, wanted, |slot, value| {
        out[slot] = match value {
            Flat::Text(t) => AttributeValue::Text(t.to_owned()),
            Flat::Number(_, x) => AttributeValue::Number(x),
            Flat::Bool(b) => AttributeValue::Text(b.to_string()),
            Flat::Null => AttributeValue::Missing,
        };
        true
    })
}

/// [`extract_flat`] into JSON values. Integers are left to serde_json (its integer types).
fn extract_json_flat(json: &str, wanted: &[&str], out: &mut [serde_json::Value]) -> bool {
    use serde_json::Value;
    out.iter_mut().for_each(|v| *v = Value::Null);
    scan_flat(json, wanted, |slot, value| {
        out[slot] = match value {
            Flat::Text(t) => Value::String(t.to_owned()),
            Flat::Number(text, x) => {
                if !text.contains(['.', 'e', 'E']) {
                    return false;
                }
                match serde_json::Number::from_f64(x) {
                    Some(n) => Value::Number(n),
                    None => return false,
                }
            }
            Flat::Bool(b) => Value::Bool(b),
            Flat::Null => Value::Null,
        };
        true
    })
}

/// Walks a flat object (see [`extract_flat`]), handing each wanted value to `put` with its
/// position in `wanted`. False when the text is not of that shape or `put` declines a value.
fn scan_flat<'a>(
    json: &'a str,
    wanted: &[&str],
    mut put: impl FnMut(usize, Flat<'a>) -> bool,
) -> bool {
    let b = json.as_bytes();
    if b.first() != Some(&b'{') {
        return false;
    }
    let mut i = 1;
    if b.get(i) == Some(&b'}') {
        return i + 1 == b.len();
    }
    // The end of a plain string starting at `start`: its closing quote, if no escape or
    // control character comes first.
    let plain_string = |start: usize| -> Option<usize> {
        let len = b
            .get(start..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        (b[start + len] == b'"').then_some(start + len)
    };
    loop {
        if b.get(i) != Some(&b'"') {
            return false;
        }
        let Some(end) = plain_string(i + 1) else {
            return false;
        };
        let slot = wanted.iter().position(|w| *w == &json[i + 1..end]);
        i = end + 1;
        if b.get(i) != Some(&b':') {
            return false;
        }
        i += 1;
        let value = match b.get(i) {
            Some(b'"') => {
                let Some(end) = plain_string(i + 1) else {
                    return false;
                };
                let text = &json[i + 1..end];
                i = end + 1;
                Flat::Text(text)
            }
            Some(b'-' | b'0'..=b'9') => {
                let Some(len) = number_len(&b[i..]) else {
                    return false;
                };
                let text = &json[i..i + len];
                let x = match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => x,
                    _ => return false,
                };
                i += len;
                Flat::Number(text, x)
            }
            _ => {
                let (len, value) = if b[i..].starts_with(b"true") {
                    (4, Flat::Bool(true))
                } else if b[i..].starts_with(b"false") {
                    (5, Flat::Bool(false))
                } else if b[i..].starts_with(b"null") {
                    (4, Flat::Null)
                } else {
                    return false;
                };
                i += len;
                value
            }
        };
        if let Some(slot) = slot
            && !put(slot, value)
        {
            return false;
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return i + 1 == b.len(),
            _ => return false,
        }
    }
}

/// The length of the JSON number at the start of `b`, if it is one by JSON's grammar
/// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
fn number_len(b: &[u8]) -> Option<usize> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// [`extract`] keeping the wanted values as JSON (`Null` when absent), for readers whose rules
/// are written on JSON values: the same values as parsing the whole object into a map and
/// looking the names up (the last of duplicate keys wins), without building the map.
pub fn extract_json(
    json: &str,
    wanted: &[&str],
    out: &mut [serde_json::Value],
) -> Result<(), serde_json::Error> {
    if extract_json_flat(json, wanted, out) {
        return Ok(());
    }
    out.iter_mut().for_each(|v| *v = serde_json::Value::Null);
    let mut d = serde_json::Deserializer::from_str(json);
    d.deserialize_map(Extract { wanted, out })?;
    d.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flat reader agrees with serde_json on every value it accepts, and declines what it
    /// does not know (which serde_json then reads or refuses).
    #[test]
    fn the_flat_reader_agrees_with_serde_json() {
        let texts = [
            r#"{"a":12.345678,"b":-0,"c":"x y","d":true,"e":null,"a":7}"#,
            r#"{"a":-0.000001,"b":18446744073709551616,"c":1e-7,"d":false,"e":"3.5"}"#,
            r#"{"a":123456789012345678901234567890.123456789,"b":-9223372036854775809}"#,
            r#"{"a":2.2250738585072011e-308,"b":0.1,"c":9007199254740993,"d":5E+3}"#,
            r#"{}"#,
            r#"{"b":1}"#,
            r#"{"a":12.5,"c":"x","d":true,"e":null,"b":-1.5e-3}"#,
        ];
        let wanted = ["a", "b", "c", "d", "e"];
        for text in texts {
            let mut flat = vec![AttributeValue::Missing; wanted.len()];
            assert!(extract_flat(text, &wanted, &mut flat), "{text}");
            let mut serde = vec![AttributeValue::Missing; wanted.len()];
            let mut d = serde_json::Deserializer::from_str(text);
            d.deserialize_map(Extract {
                wanted: &wanted,
                out: &mut serde,
            })
            .unwrap();
            for (f, s) in flat.iter().zip(&serde) {
                match (f, s) {
                    (AttributeValue::Number(f), AttributeValue::Number(s)) => {
                        assert_eq!(f.to_bits(), s.to_bits(), "{text}")
                    }
                    _ => assert_eq!(f, s, "{text}"),
                }
            }
        }
        let declined = [
            r#"{"a": 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            "",
            "[]",
        ];
        for text in declined {
            let mut out = vec![AttributeValue::Missing; 1];
            assert!(!extract_flat(text, &["a"], &mut out), "{text}");
        }
        for text in texts {
            let mut flat = vec![serde_json::Value::Null; wanted.len()];
            if !extract_json_flat(text, &wanted, &mut flat) {
                continue;
            }
            let mut serde = vec![serde_json::Value::Null; wanted.len()];
            let mut d = serde_json::Deserializer::from_str(text);
            d.deserialize_map(Extract {
                wanted: &wanted,
                out: &mut serde,
            })
            .unwrap();
            assert_eq!(flat, serde, "{text}");
        }
        let mut json = vec![serde_json::Value::Null; 2];
        assert!(extract_json_flat(
            r#"{"a":"F","b":2.5}"#,
            &["a", "b"],
            &mut json
        ));
        assert!(!extract_json_flat(
            r#"{"a":"F","b":3}"#,
            &["a", "b"],
            &mut json
        ));
        extract_json(r#"{"a":"F","b":3}"#, &["a", "b"], &mut json).unwrap();
        assert_eq!(json[1], serde_json::json!(3));
        let mut out = vec![AttributeValue::Missing; 1];
        assert!(extract(r#"{"a":1e400}"#, &["a"], &mut out).is_err());
        extract(r#"{"a": 1}"#, &["a"], &mut out).unwrap();
        assert_eq!(out[0], AttributeValue::Number(1.0));
    }

    #[test]
    fn extracts_only_the_wanted_attributes_whatever_their_form() {
        let json = r#"{"income": 52000, "other": {"deep": [1, 2]}, "re\u0067ion": "North",
            "score": "7.5", "vip": true, "age_band": null, "ratio": 0.25}"#;
        let wanted = [
            "region", "income", "score", "vip", "age_band", "ratio", "absent",
        ];
        let mut out = vec![AttributeValue::Text("stale".into()); wanted.len()];
        extract(json, &wanted, &mut out).unwrap();
        assert_eq!(out[0], AttributeValue::Text("North".into()), "escaped key");
        assert_eq!(out[1].number(), Some(52000.0));
        assert_eq!(out[2].number(), Some(7.5));
        assert_eq!(out[3].clone().into_label().as_deref(), Some("true"));
        assert_eq!(out[4], AttributeValue::Missing);
        assert_eq!(out[5].clone().into_label().as_deref(), Some("0.25"));
        assert_eq!(out[6], AttributeValue::Missing);
        assert_eq!(out[1].clone().into_label().as_deref(), Some("52000"));
    }

    #[test]
    fn extract_json_sees_what_a_parsed_map_sees() {
        let json = r#"{"sex": "F", "age": 41, "x": {"sex": "M"}, "re\u0067ion": 2.50, "age": 42,
            "blank": " ", "none": null, "flag": true, "big": 1e300}"#;
        let wanted = [
            "sex", "age", "region", "blank", "none", "flag", "big", "absent",
        ];
        let mut out = vec![serde_json::Value::Bool(false); wanted.len()];
        extract_json(json, &wanted, &mut out).unwrap();
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        for (name, value) in wanted.iter().zip(&out) {
            assert_eq!(
                map.get(*name).unwrap_or(&serde_json::Value::Null),
                value,
                "{name}"
            );
        }
        assert!(extract_json("[1]", &wanted, &mut out).is_err());
        assert!(extract_json(r#"{"sex": "F""#, &wanted, &mut out).is_err());
    }

    #[test]
    fn malformed_json_is_an_error() {
        let mut out = vec![AttributeValue::Missing; 1];
        assert!(extract(r#"{"a": 1"#, &["a"], &mut out).is_err());
        assert!(extract(r#"[1, 2]"#, &["a"], &mut out).is_err());
    }
}
