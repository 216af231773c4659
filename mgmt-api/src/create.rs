//! A JSON create body turned into xl.cfg text, so one parser (`config/`)
//! checks every guest config however it arrived.
//!
//! The body is one object whose keys are xl.cfg keys. Strings become quoted
//! strings, integers stay integers, booleans become `1`/`0` (as xl writes
//! them), and arrays of strings or integers become lists:
//!
//! ```text
//! {"name": "web", "type": "pvh", "memory": 512, "vif": ["bridge=xenbr0"]}
//! name = "web"
//! type = "pvh"
//! memory = 512
//! vif = [ "bridge=xenbr0" ]
//! ```

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::json::Value;

/// Longest key accepted (the same as `config`'s).
pub const MAX_KEY_BYTES: usize = 64;

/// Why a JSON body cannot be a guest config. Each names the key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The body is not a JSON object.
    NotAnObject,
    /// A key that is not an xl.cfg identifier.
    InvalidKey(String),
    /// The same key twice.
    DuplicateKey(String),
    /// A value xl.cfg cannot express: null, an object, a fraction, or an
    /// array holding something other than strings and integers.
    UnsupportedValue(String),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreateError::NotAnObject => formatter.write_str("the body must be a JSON object"),
            CreateError::InvalidKey(key) => write!(formatter, "invalid config key {key:?}"),
            CreateError::DuplicateKey(key) => write!(formatter, "duplicate config key {key:?}"),
            CreateError::UnsupportedValue(key) => write!(
                formatter,
                "key {key:?}: values must be strings, integers, booleans or arrays of strings and integers"
            ),
        }
    }
}

/// Converts a JSON create body into xl.cfg text.
pub fn json_to_xl_config(value: &Value) -> Result<String, CreateError> {
    let Value::Object(members) = value else {
        return Err(CreateError::NotAnObject);
    };
    let mut out = String::new();
    for (index, (key, value)) in members.iter().enumerate() {
        if !is_identifier(key) {
            return Err(CreateError::InvalidKey(key.clone()));
        }
        if members
            .get(..index)
            .unwrap_or_default()
            .iter()
            .any(|(earlier, _)| earlier == key)
        {
            return Err(CreateError::DuplicateKey(key.clone()));
        }
        let unsupported = || CreateError::UnsupportedValue(key.clone());
        let _ = write!(out, "{key} = ");
        match value {
            Value::Array(elements) => {
                out.push('[');
                for (position, element) in elements.iter().enumerate() {
                    out.push_str(if position == 0 { " " } else { ", " });
                    scalar(element, &mut out).ok_or_else(unsupported)?;
                }
                out.push_str(" ]");
            }
            Value::Bool(flag) => out.push(if *flag { '1' } else { '0' }),
            other => scalar(other, &mut out).ok_or_else(unsupported)?,
        }
        out.push('\n');
    }
    Ok(out)
}

fn scalar(value: &Value, out: &mut String) -> Option<()> {
    match value {
        Value::String(text) => {
            quote(text, out);
            Some(())
        }
        Value::Number(text)
            if text
                .bytes()
                .all(|byte| byte == b'-' || byte.is_ascii_digit()) =>
        {
            out.push_str(text);
            Some(())
        }
        _ => None,
    }
}

fn is_identifier(key: &str) -> bool {
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_');
    first_ok
        && key.len() <= MAX_KEY_BYTES
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// An xl.cfg double-quoted string; control characters as `\xHH`.
fn quote(text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            control if (control as u32) < 0x20 || control == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", control as u32));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn convert(text: &str) -> Result<String, CreateError> {
        json_to_xl_config(&json::parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn converted_config_parses_with_config_crate() {
        let text = convert(
            r#"{"name": "web", "type": "pvh", "kernel": "vmlinuz",
                "memory": 512, "vcpus": 2, "vif": ["bridge=xenbr0", "mac=00:16:3e:00:00:01"],
                "extra": "console=hvc0 \"q\" \\ \ttab\u0001", "on_crash": "destroy", "pvshim": false}"#,
        )
        .unwrap();
        let guest = config::DomainConfig::parse(&text).unwrap();
        assert_eq!(guest.name, "web");
        assert_eq!(guest.memory.0, 512);
        assert_eq!(guest.vcpus, 2);
        assert_eq!(guest.vifs.len(), 2);
        assert_eq!(
            guest.command_line.as_deref(),
            Some("console=hvc0 \"q\" \\ \ttab\u{1}")
        );
    }

    #[test]
    fn refusals_name_the_key() {
        assert_eq!(convert("[1]"), Err(CreateError::NotAnObject));
        assert_eq!(
            convert(r#"{"1a": 1}"#),
            Err(CreateError::InvalidKey("1a".into()))
        );
        assert_eq!(
            convert(r#"{"a b": 1}"#),
            Err(CreateError::InvalidKey("a b".into()))
        );
        assert_eq!(
            convert(r#"{"a": 1, "a": 2}"#),
            Err(CreateError::DuplicateKey("a".into()))
        );
        for value in ["null", "{}", "1.5", "[[1]]", "[true]", "1e3"] {
            assert_eq!(
                convert(&format!(r#"{{"memory": {value}}}"#)),
                Err(CreateError::UnsupportedValue("memory".into())),
                "{value}"
            );
        }
    }
}
