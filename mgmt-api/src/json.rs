//! A small JSON value with a writer and a bounded parser (RFC 8259).
//!
//! Numbers keep their text: the API only ever sends integers, and the
//! parser needs no floating point to check and carry any number through.
//! The parser bounds nesting depth and the number of values, so hostile
//! input can neither exhaust the stack nor the heap beyond its own size.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Deepest nesting of arrays and objects the parser accepts.
pub const MAX_DEPTH: usize = 16;

/// Most values (of any kind, nested ones included) in one document.
pub const MAX_VALUES: usize = 16 * 1024;

/// A JSON value. Objects keep their members in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as its checked literal text.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object's members in document order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// An unsigned integer value.
    pub fn unsigned(number: u64) -> Value {
        let mut text = String::new();
        let _ = write!(text, "{number}");
        Value::Number(text)
    }

    /// A string value.
    pub fn string(text: &str) -> Value {
        Value::String(String::from(text))
    }

    /// An object from `(key, value)` pairs.
    pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Object(
            members
                .into_iter()
                .map(|(key, value)| (String::from(key), value))
                .collect(),
        )
    }

    /// Member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The number as an unsigned integer, if it is one that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(elements) => Some(elements),
            _ => None,
        }
    }

    /// Writes the value, compactly, to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(text) => out.push_str(text),
            Value::String(text) => write_string(text, out),
            Value::Array(elements) => {
                out.push('[');
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    element.write(out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as compact JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// Writes `text` as a JSON string literal.
pub fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 || control == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Why a JSON text was refused, with the byte offset where it went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the input.
    pub offset: usize,
    /// What was wrong there.
    pub fault: JsonFault,
}

/// What was wrong with a JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonFault {
    /// The input is not UTF-8.
    NotUtf8,
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A character that cannot start or continue a value here.
    UnexpectedCharacter,
    /// Text after the top-level value.
    TrailingCharacters,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    TooManyValues,
    /// A malformed number.
    InvalidNumber,
    /// A malformed escape, a raw control character or a lone surrogate
    /// in a string.
    InvalidString,
}

impl JsonFault {
    /// A short description.
    pub fn message(self) -> &'static str {
        match self {
            JsonFault::NotUtf8 => "not UTF-8",
            JsonFault::UnexpectedEnd => "unexpected end of input",
            JsonFault::UnexpectedCharacter => "unexpected character",
            JsonFault::TrailingCharacters => "characters after the value",
            JsonFault::TooDeep => "nested too deeply",
            JsonFault::TooManyValues => "too many values",
            JsonFault::InvalidNumber => "invalid number",
            JsonFault::InvalidString => "invalid string",
        }
    }
}

/// Parses one JSON value filling all of `input` (whitespace around it
/// allowed).
pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    let text = core::str::from_utf8(input).map_err(|error| JsonError {
        offset: error.valid_up_to(),
        fault: JsonFault::NotUtf8,
    })?;
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        position: 0,
        values: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.position != parser.bytes.len() {
        return Err(parser.error(JsonFault::TrailingCharacters));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    values: usize,
}

impl Parser<'_> {
    fn error(&self, fault: JsonFault) -> JsonError {
        JsonError {
            offset: self.position,
            fault,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn next_byte(&mut self) -> Result<u8, JsonError> {
        let byte = self.peek().ok_or(self.error(JsonFault::UnexpectedEnd))?;
        self.position += 1;
        Ok(byte)
    }

    fn expect(&mut self, expected: u8) -> Result<(), JsonError> {
        match self.peek() {
            Some(byte) if byte == expected => {
                self.position += 1;
                Ok(())
            }
            Some(_) => Err(self.error(JsonFault::UnexpectedCharacter)),
            None => Err(self.error(JsonFault::UnexpectedEnd)),
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.error(JsonFault::TooManyValues));
        }
        match self.peek() {
            None => Err(self.error(JsonFault::UnexpectedEnd)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error(JsonFault::UnexpectedCharacter)),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, JsonError> {
        let end = self.position + word.len();
        if self.bytes.get(self.position..end) == Some(word.as_bytes()) {
            self.position = end;
            Ok(value)
        } else {
            Err(self.error(JsonFault::UnexpectedCharacter))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(JsonFault::TooDeep));
        }
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error(self.fault_here()));
            }
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.next_byte()? {
                b',' => continue,
                b'}' => return Ok(Value::Object(members)),
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonFault::UnexpectedCharacter));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(JsonFault::TooDeep));
        }
        self.expect(b'[')?;
        let mut elements = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(Value::Array(elements));
        }
        loop {
            self.skip_whitespace();
            elements.push(self.value(depth)?);
            self.skip_whitespace();
            match self.next_byte()? {
                b',' => continue,
                b']' => return Ok(Value::Array(elements)),
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonFault::UnexpectedCharacter));
                }
            }
        }
    }

    fn fault_here(&self) -> JsonFault {
        if self.peek().is_none() {
            JsonFault::UnexpectedEnd
        } else {
            JsonFault::UnexpectedCharacter
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => self.position += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error(JsonFault::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error(JsonFault::InvalidNumber));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error(JsonFault::InvalidNumber));
            }
            self.digits();
        }
        let text = self.text.get(start..self.position).unwrap_or_default();
        Ok(Value::Number(String::from(text)))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.position += 1;
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let run_start = self.position;
            while let Some(byte) = self.peek() {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.position += 1;
            }
            // The run stops only at ASCII bytes, so it ends on a character
            // boundary.
            out.push_str(self.text.get(run_start..self.position).unwrap_or_default());
            match self.next_byte()? {
                b'"' => return Ok(out),
                b'\\' => out.push(self.escape()?),
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonFault::InvalidString));
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, JsonError> {
        let character = match self.next_byte()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{08}',
            b'f' => '\u{0c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                if (0xd800..0xdc00).contains(&first) {
                    if self.next_byte()? != b'\\' || self.next_byte()? != b'u' {
                        return Err(self.error(JsonFault::InvalidString));
                    }
                    let second = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&second) {
                        return Err(self.error(JsonFault::InvalidString));
                    }
                    let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                    char::from_u32(code).ok_or(self.error(JsonFault::InvalidString))?
                } else {
                    char::from_u32(first).ok_or(self.error(JsonFault::InvalidString))?
                }
            }
            _ => return Err(self.error(JsonFault::InvalidString)),
        };
        Ok(character)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = char::from(self.next_byte()?)
                .to_digit(16)
                .ok_or(self.error(JsonFault::InvalidString))?;
            value = value * 16 + digit;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = r#"{"a":[1,-2.5e3,true,false,null],"b":"x\"\\\n\u0001é","c":{}}"#;
        let value = parse(text.as_bytes()).unwrap();
        assert_eq!(value.to_text(), text);
    }

    #[test]
    fn escapes_and_surrogates() {
        let value = parse(br#""\ud83d\ude00 \u00e9\/""#).unwrap();
        assert_eq!(value.as_str(), Some("\u{1f600} \u{e9}/"));
        assert_eq!(
            parse(br#""\ud83d""#).unwrap_err().fault,
            JsonFault::InvalidString
        );
        assert_eq!(
            parse(br#""\udc00""#).unwrap_err().fault,
            JsonFault::InvalidString
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], JsonFault)] = &[
            (b"", JsonFault::UnexpectedEnd),
            (b"{", JsonFault::UnexpectedEnd),
            (b"{\"a\" 1}", JsonFault::UnexpectedCharacter),
            (b"{\"a\":1,}", JsonFault::UnexpectedCharacter),
            (b"[1,]", JsonFault::UnexpectedCharacter),
            (b"[1 2]", JsonFault::UnexpectedCharacter),
            (b"01", JsonFault::TrailingCharacters),
            (b"1.", JsonFault::InvalidNumber),
            (b"-", JsonFault::InvalidNumber),
            (b"1e", JsonFault::InvalidNumber),
            (b"\"a\nb\"", JsonFault::InvalidString),
            (b"\"\\q\"", JsonFault::InvalidString),
            (b"tru", JsonFault::UnexpectedCharacter),
            (b"\xff", JsonFault::NotUtf8),
            (b"{} {}", JsonFault::TrailingCharacters),
        ];
        for (input, fault) in cases {
            assert_eq!(
                parse(input).map_err(|error| error.fault),
                Err(*fault),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = Vec::new();
        deep.resize(MAX_DEPTH, b'[');
        deep.resize(MAX_DEPTH * 2, b']');
        assert!(parse(&deep).is_ok());
        let mut too_deep = Vec::new();
        too_deep.resize(100_000, b'[');
        assert_eq!(parse(&too_deep).unwrap_err().fault, JsonFault::TooDeep);
    }

    #[test]
    fn value_count_is_bounded() {
        let mut many = String::from("[");
        for _ in 0..MAX_VALUES {
            many.push_str("0,");
        }
        many.push_str("0]");
        assert_eq!(
            parse(many.as_bytes()).unwrap_err().fault,
            JsonFault::TooManyValues
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Value::string("a\u{1}\u{7f}").to_text(),
            "\"a\\u0001\\u007f\""
        );
    }
}
