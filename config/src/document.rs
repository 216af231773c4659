//! The generic step: config text to an ordered list of `key = value`
//! settings with spans, following xl's grammar (`libxlu_cfg_y.y`).
//!
//! ```text
//! file    := { setting? ( NEWLINE | ';' ) } setting?
//! setting := KEY ( '=' | '+=' ) value
//! value   := STRING | NUMBER | '[' NL* [ value NL* { ',' NL* value NL* } [ ',' NL* ] ] ']'
//! ```
//!
//! Line breaks are free inside a list and nowhere else in a setting, so a
//! long list spans lines but `key =` and its value share one. A key set
//! twice keeps the later value (xl does the same) and gets a warning; `+=`
//! appends a string to a string or a list to a list.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::{Error, ErrorKind, Found, Warning, WarningKind, push_warning};
use crate::lexer::{Lexer, Token, TokenKind};
use crate::limits::{
    MAX_FILE_BYTES, MAX_LIST_DEPTH, MAX_LIST_ITEMS, MAX_SETTINGS, MAX_STRING_BYTES,
};
use crate::position::{Position, Span};

pub use crate::lexer::Number;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where it is; after `+=`, from the first part to the last.
    pub span: Span,
}

/// The three shapes of value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A quoted string, escapes decoded.
    String(String),
    /// An unquoted number.
    Number(Number),
    /// A list of values, possibly nested.
    List(Vec<Value>),
}

impl Value {
    /// The text of a string, or a number as written; xl treats both as
    /// text, so `name = 7` and `memory = "512"` are both accepted.
    pub fn as_text(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(text) => Some(text),
            ValueKind::Number(number) => Some(&number.text),
            ValueKind::List(_) => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::List(items) => Some(items),
            _ => None,
        }
    }

    /// Whether two values hold the same content, wherever they were written.
    pub fn same_content(&self, other: &Value) -> bool {
        match (&self.kind, &other.kind) {
            (ValueKind::String(left), ValueKind::String(right)) => left == right,
            (ValueKind::Number(left), ValueKind::Number(right)) => left == right,
            (ValueKind::List(left), ValueKind::List(right)) => {
                left.len() == right.len()
                    && left
                        .iter()
                        .zip(right)
                        .all(|(left, right)| left.same_content(right))
            }
            _ => false,
        }
    }

    /// How many lists deep the value goes: 0 for a string or number.
    pub fn depth(&self) -> usize {
        match &self.kind {
            ValueKind::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// Writes the value back in xl syntax; parsing the result gives the same
/// content.
impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::String(text) => write_quoted(formatter, text),
            ValueKind::Number(number) => formatter.write_str(&number.text),
            ValueKind::List(items) => {
                formatter.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    write!(formatter, "{item}")?;
                }
                formatter.write_str("]")
            }
        }
    }
}

fn write_quoted(formatter: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    formatter.write_str("\"")?;
    for character in text.chars() {
        match character {
            '"' => formatter.write_str("\\\"")?,
            '\\' => formatter.write_str("\\\\")?,
            '\n' => formatter.write_str("\\n")?,
            '\r' => formatter.write_str("\\r")?,
            '\u{07}' => formatter.write_str("\\a")?,
            '\u{08}' => formatter.write_str("\\b")?,
            '\u{0b}' => formatter.write_str("\\v")?,
            '\u{0c}' => formatter.write_str("\\f")?,
            '\t' => formatter.write_str("\\t")?,
            control if control.is_ascii_control() => {
                write!(formatter, "\\x{:02x}", u32::from(control))?;
            }
            other => write!(formatter, "{other}")?,
        }
    }
    formatter.write_str("\"")
}

/// One `key = value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// Where the key was last assigned.
    pub key_span: Span,
    /// The value in force.
    pub value: Value,
}

/// A parsed config: settings in the order their keys first appear, plus
/// warnings about the text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    settings: Vec<Setting>,
    warnings: Vec<Warning>,
}

impl Document {
    /// Parses config bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Document, Error> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(Error::whole_file(ErrorKind::FileTooLarge {
                size: bytes.len(),
            }));
        }
        match core::str::from_utf8(bytes) {
            Ok(text) => Document::parse(text),
            Err(fault) => {
                let valid = bytes.get(..fault.valid_up_to()).unwrap_or_default();
                let valid = core::str::from_utf8(valid).unwrap_or_default();
                Err(Error::at(end_of(valid), ErrorKind::InvalidUtf8))
            }
        }
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Document, Error> {
        if text.len() > MAX_FILE_BYTES {
            return Err(Error::whole_file(ErrorKind::FileTooLarge {
                size: text.len(),
            }));
        }
        let mut parser = Parser {
            lexer: Lexer::new(text),
            peeked: None,
            document: Document::default(),
        };
        parser.file()?;
        Ok(parser.document)
    }

    /// The settings, in the order their keys first appear.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    /// The setting for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|setting| setting.key == key)
    }

    /// Warnings about the text itself (keys set twice).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn store(
        &mut self,
        key: String,
        key_span: Span,
        append: bool,
        value: Value,
    ) -> Result<(), Error> {
        let Some(existing) = self.settings.iter_mut().find(|setting| setting.key == key) else {
            if self.settings.len() >= MAX_SETTINGS {
                return Err(Error::at(key_span.start, ErrorKind::TooManySettings));
            }
            self.settings.push(Setting {
                key,
                key_span,
                value,
            });
            return Ok(());
        };
        if !append {
            let first_line = existing.key_span.start.line;
            existing.key_span = key_span;
            existing.value = value;
            push_warning(
                &mut self.warnings,
                Warning {
                    position: Some(key_span.start),
                    kind: WarningKind::DuplicateKey { key, first_line },
                },
            );
            return Ok(());
        }
        let span = existing.value.span.to(value.span);
        match (&mut existing.value.kind, value.kind) {
            (ValueKind::String(text), ValueKind::String(more)) => {
                if text.len() + more.len() > MAX_STRING_BYTES {
                    return Err(Error::at(value.span.start, ErrorKind::StringTooLong));
                }
                text.push_str(&more);
            }
            (ValueKind::List(items), ValueKind::List(more)) => {
                if items.len() + more.len() > MAX_LIST_ITEMS {
                    return Err(Error::at(value.span.start, ErrorKind::ListTooLong));
                }
                items.extend(more);
            }
            (ValueKind::Number(_), _) | (_, ValueKind::Number(_)) => {
                return Err(Error::at(
                    value.span.start,
                    ErrorKind::AppendToNumber { key },
                ));
            }
            _ => {
                return Err(Error::at(
                    value.span.start,
                    ErrorKind::AppendMismatch { key },
                ));
            }
        }
        existing.value.span = span;
        existing.key_span = key_span;
        Ok(())
    }
}

/// Writes the document back in xl syntax, one setting a line.
impl fmt::Display for Document {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for setting in &self.settings {
            writeln!(formatter, "{} = {}", setting.key, setting.value)?;
        }
        Ok(())
    }
}

/// The position just after `text`.
fn end_of(text: &str) -> Position {
    let mut lexer_position = Position {
        line: 1,
        column: 1,
        offset: text.len(),
    };
    for character in text.chars() {
        if character == '\n' {
            lexer_position.line = lexer_position.line.saturating_add(1);
            lexer_position.column = 1;
        } else {
            lexer_position.column = lexer_position.column.saturating_add(1);
        }
    }
    lexer_position
}

fn found(kind: &TokenKind) -> Found {
    match kind {
        TokenKind::Key(key) => Found::Key(key.clone()),
        TokenKind::String(_) => Found::String,
        TokenKind::Number(_) => Found::Number,
        TokenKind::Equals => Found::Equals,
        TokenKind::PlusEquals => Found::PlusEquals,
        TokenKind::Comma => Found::Comma,
        TokenKind::OpenBracket => Found::OpenBracket,
        TokenKind::CloseBracket => Found::CloseBracket,
        TokenKind::Semicolon => Found::Semicolon,
        TokenKind::Newline => Found::EndOfLine,
        TokenKind::End => Found::EndOfFile,
    }
}

/// A recursive-descent parser with one token of look-ahead.
struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    document: Document,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Token, Error> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn peek_kind(&mut self) -> Result<&TokenKind, Error> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some(token) => Ok(&token.kind),
            None => Ok(&TokenKind::End),
        }
    }

    fn skip_newlines(&mut self) -> Result<(), Error> {
        while *self.peek_kind()? == TokenKind::Newline {
            self.next()?;
        }
        Ok(())
    }

    fn file(&mut self) -> Result<(), Error> {
        loop {
            let token = self.next()?;
            let key = match token.kind {
                TokenKind::End => return Ok(()),
                TokenKind::Newline | TokenKind::Semicolon => continue,
                TokenKind::Key(key) => key,
                other => {
                    return Err(Error::at(
                        token.span.start,
                        ErrorKind::ExpectedKey {
                            found: found(&other),
                        },
                    ));
                }
            };
            let operator = self.next()?;
            let append = match operator.kind {
                TokenKind::Equals => false,
                TokenKind::PlusEquals => true,
                other => {
                    return Err(Error::at(
                        operator.span.start,
                        ErrorKind::ExpectedEquals {
                            key,
                            found: found(&other),
                        },
                    ));
                }
            };
            let value = self.value(1)?;
            let end = self.next()?;
            match end.kind {
                TokenKind::Newline | TokenKind::Semicolon | TokenKind::End => {}
                other => {
                    return Err(Error::at(
                        end.span.start,
                        ErrorKind::ExpectedEndOfSetting {
                            key,
                            found: found(&other),
                        },
                    ));
                }
            }
            self.document.store(key, token.span, append, value)?;
            if end.kind == TokenKind::End {
                return Ok(());
            }
        }
    }

    /// A value; `depth` is the list depth it would have if it were a list.
    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        let token = self.next()?;
        let kind = match token.kind {
            TokenKind::String(text) => ValueKind::String(text),
            TokenKind::Number(number) => ValueKind::Number(number),
            TokenKind::OpenBracket => return self.list(token.span, depth),
            other => {
                return Err(Error::at(
                    token.span.start,
                    ErrorKind::ExpectedValue {
                        found: found(&other),
                    },
                ));
            }
        };
        Ok(Value {
            kind,
            span: token.span,
        })
    }

    fn list(&mut self, open: Span, depth: usize) -> Result<Value, Error> {
        if depth > MAX_LIST_DEPTH {
            return Err(Error::at(open.start, ErrorKind::ListTooDeep));
        }
        let mut items = Vec::new();
        self.skip_newlines()?;
        loop {
            match self.peek_kind()? {
                TokenKind::CloseBracket => break,
                TokenKind::End => return Err(Error::at(open.start, ErrorKind::UnterminatedList)),
                _ => {}
            }
            let item = self.value(depth + 1)?;
            if items.len() >= MAX_LIST_ITEMS {
                return Err(Error::at(item.span.start, ErrorKind::ListTooLong));
            }
            items.push(item);
            self.skip_newlines()?;
            match self.peek_kind()? {
                TokenKind::Comma => {
                    self.next()?;
                    self.skip_newlines()?;
                }
                TokenKind::CloseBracket => break,
                TokenKind::End => return Err(Error::at(open.start, ErrorKind::UnterminatedList)),
                _ => {
                    let token = self.next()?;
                    return Err(Error::at(
                        token.span.start,
                        ErrorKind::ExpectedCommaOrBracket {
                            found: found(&token.kind),
                        },
                    ));
                }
            }
        }
        let close = self.next()?;
        Ok(Value {
            kind: ValueKind::List(items),
            span: open.to(close.span),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    fn parse(text: &str) -> Document {
        Document::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
    }

    fn error(text: &str) -> (u32, u32, ErrorKind) {
        let error = Document::parse(text).unwrap_err();
        let position = error.position.unwrap();
        (position.line, position.column, error.kind)
    }

    fn text_of<'a>(document: &'a Document, key: &str) -> &'a str {
        document.get(key).unwrap().value.as_text().unwrap()
    }

    #[test]
    fn empty_and_blank_files() {
        for text in ["", "\n", "\n\n;;\n", "# c\n", "   \t\r\n", ";"] {
            assert!(parse(text).settings().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn settings_in_order_with_spans() {
        let document = parse("name = \"a\"\nmemory = 512\n");
        let keys: Vec<&str> = document
            .settings()
            .iter()
            .map(|setting| setting.key.as_str())
            .collect();
        assert_eq!(keys, ["name", "memory"]);
        let memory = document.get("memory").unwrap();
        assert_eq!(memory.key_span.start.line, 2);
        assert_eq!(memory.value.span.start.column, 10);
        assert_eq!(memory.value.span.end.column, 13);
        assert!(matches!(
            &memory.value.kind,
            ValueKind::Number(number) if number.value == 512
        ));
    }

    #[test]
    fn last_setting_needs_no_newline() {
        assert_eq!(text_of(&parse("a = 'x'"), "a"), "x");
        assert_eq!(text_of(&parse("a = 'x' # comment"), "a"), "x");
    }

    #[test]
    fn semicolons_separate_settings() {
        let document = parse("a = 1; b = 2;c='3'\n");
        assert_eq!(document.settings().len(), 3);
        assert_eq!(text_of(&document, "c"), "3");
    }

    #[test]
    fn lists_span_lines_with_comments_and_trailing_comma() {
        let document =
            parse("disk = [\n  # first\n  'a',   # after\n\n  'b'\n  ,\n  'c',\n]\nnext = 1\n");
        let items = document.get("disk").unwrap().value.as_list().unwrap();
        let texts: Vec<&str> = items.iter().filter_map(Value::as_text).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert_eq!(document.get("disk").unwrap().value.span.end.line, 8);
        assert!(document.get("next").is_some());
    }

    #[test]
    fn empty_and_nested_lists() {
        let document = parse("a = []\nb = [ ]\nc = [[ 'x', 1 ], []]\n");
        assert_eq!(document.get("a").unwrap().value.as_list().unwrap().len(), 0);
        assert_eq!(document.get("b").unwrap().value.depth(), 1);
        assert_eq!(document.get("c").unwrap().value.depth(), 2);
    }

    #[test]
    fn duplicate_key_later_wins_with_warning() {
        let document = parse("a = 1\nb = 2\na = 'x'\n");
        assert_eq!(text_of(&document, "a"), "x");
        assert_eq!(document.settings()[0].key, "a");
        assert_eq!(
            document.warnings(),
            [Warning {
                position: Some(Position {
                    line: 3,
                    column: 1,
                    offset: 12
                }),
                kind: WarningKind::DuplicateKey {
                    key: "a".to_string(),
                    first_line: 1
                }
            }]
        );
    }

    #[test]
    fn append_strings_and_lists() {
        let document = parse("e = 'a'\ne += ' b'\nl += ['x']\nl += ['y', 'z']\n");
        assert_eq!(text_of(&document, "e"), "a b");
        assert_eq!(document.get("e").unwrap().value.span.end.line, 2);
        assert_eq!(document.get("l").unwrap().value.as_list().unwrap().len(), 3);
        assert!(document.warnings().is_empty());
    }

    #[test]
    fn append_errors() {
        assert_eq!(
            error("a = 'x'\na += ['y']"),
            (
                2,
                6,
                ErrorKind::AppendMismatch {
                    key: "a".to_string()
                }
            )
        );
        assert_eq!(
            error("a = 1\na += 2"),
            (
                2,
                6,
                ErrorKind::AppendToNumber {
                    key: "a".to_string()
                }
            )
        );
        let long = "x".repeat(MAX_STRING_BYTES);
        assert_eq!(
            error(&format!("a = '{long}'\na += 'y'")),
            (2, 6, ErrorKind::StringTooLong)
        );
    }

    #[test]
    fn syntax_errors_with_line_and_column() {
        assert_eq!(
            error("name \"x\""),
            (
                1,
                6,
                ErrorKind::ExpectedEquals {
                    key: "name".to_string(),
                    found: Found::String
                }
            )
        );
        assert_eq!(
            error("a =\n'x'"),
            (
                1,
                4,
                ErrorKind::ExpectedValue {
                    found: Found::EndOfLine
                }
            )
        );
        assert_eq!(
            error("a = "),
            (
                1,
                5,
                ErrorKind::ExpectedValue {
                    found: Found::EndOfFile
                }
            )
        );
        assert_eq!(
            error("a = 1 2"),
            (
                1,
                7,
                ErrorKind::ExpectedEndOfSetting {
                    key: "a".to_string(),
                    found: Found::Number
                }
            )
        );
        assert_eq!(
            error("\n  = 1"),
            (
                2,
                3,
                ErrorKind::ExpectedKey {
                    found: Found::Equals
                }
            )
        );
        assert_eq!(
            error("'x' = 1"),
            (
                1,
                1,
                ErrorKind::ExpectedKey {
                    found: Found::String
                }
            )
        );
        assert_eq!(
            error("a = b"),
            (
                1,
                5,
                ErrorKind::ExpectedValue {
                    found: Found::Key("b".to_string())
                }
            )
        );
    }

    #[test]
    fn list_errors_with_line_and_column() {
        assert_eq!(
            error("a = ['x' 'y']"),
            (
                1,
                10,
                ErrorKind::ExpectedCommaOrBracket {
                    found: Found::String
                }
            )
        );
        assert_eq!(
            error("a = [,]"),
            (
                1,
                6,
                ErrorKind::ExpectedValue {
                    found: Found::Comma
                }
            )
        );
        assert_eq!(
            error("a = ['x',,]"),
            (
                1,
                10,
                ErrorKind::ExpectedValue {
                    found: Found::Comma
                }
            )
        );
        assert_eq!(
            error("x = 1\na = [\n 'x',\n"),
            (2, 5, ErrorKind::UnterminatedList)
        );
        assert_eq!(error("a = ['x'"), (1, 5, ErrorKind::UnterminatedList));
        assert_eq!(
            error("a = ]"),
            (
                1,
                5,
                ErrorKind::ExpectedValue {
                    found: Found::CloseBracket
                }
            )
        );
        assert_eq!(
            error("a = ['x'; 'y']"),
            (
                1,
                9,
                ErrorKind::ExpectedCommaOrBracket {
                    found: Found::Semicolon
                }
            )
        );
    }

    #[test]
    fn list_limits() {
        let deep_ok = format!(
            "a = {}{}",
            "[".repeat(MAX_LIST_DEPTH),
            "]".repeat(MAX_LIST_DEPTH)
        );
        assert_eq!(
            parse(&deep_ok).get("a").unwrap().value.depth(),
            MAX_LIST_DEPTH
        );
        let too_deep = format!(
            "a = {}{}",
            "[".repeat(MAX_LIST_DEPTH + 1),
            "]".repeat(MAX_LIST_DEPTH + 1)
        );
        assert_eq!(
            error(&too_deep),
            (1, 5 + MAX_LIST_DEPTH as u32, ErrorKind::ListTooDeep)
        );
        let full = format!("a = [{}]", "1,".repeat(MAX_LIST_ITEMS));
        assert_eq!(
            parse(&full)
                .get("a")
                .unwrap()
                .value
                .as_list()
                .unwrap()
                .len(),
            MAX_LIST_ITEMS
        );
        let over = format!("a = [{}]", "1,".repeat(MAX_LIST_ITEMS + 1));
        assert_eq!(
            error(&over),
            (1, 6 + 2 * MAX_LIST_ITEMS as u32, ErrorKind::ListTooLong)
        );
        let appended = format!("a = [{}]\na += [1]", "1,".repeat(MAX_LIST_ITEMS));
        assert_eq!(error(&appended), (2, 6, ErrorKind::ListTooLong));
    }

    #[test]
    fn settings_limit() {
        let mut text = String::new();
        for index in 0..MAX_SETTINGS {
            text.push_str(&format!("k{index} = 1\n"));
        }
        assert_eq!(parse(&text).settings().len(), MAX_SETTINGS);
        text.push_str("k0 = 2\n");
        assert!(Document::parse(&text).is_ok());
        text.push_str("extra = 1\n");
        let line = MAX_SETTINGS as u32 + 2;
        assert_eq!(error(&text), (line, 1, ErrorKind::TooManySettings));
    }

    #[test]
    fn duplicate_warnings_are_capped() {
        let text = "a = 1\n".repeat(200);
        let document = parse(&text);
        assert_eq!(document.warnings().len(), crate::limits::MAX_WARNINGS);
        assert_eq!(
            document.warnings().last().unwrap().kind,
            WarningKind::TooManyWarnings
        );
    }

    #[test]
    fn file_size_limit() {
        let text = format!("a = 1\n{}", " ".repeat(MAX_FILE_BYTES));
        let error = Document::parse(&text).unwrap_err();
        assert_eq!(error.position, None);
        assert_eq!(error.kind, ErrorKind::FileTooLarge { size: text.len() });
        assert!(Document::parse_bytes(text.as_bytes()).is_err());
        let exact = format!("a = 1\n{}", " ".repeat(MAX_FILE_BYTES - 6));
        assert!(Document::parse(&exact).is_ok());
    }

    #[test]
    fn invalid_utf8_is_located() {
        let error = Document::parse_bytes(b"a = 1\nb = '\xff'").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidUtf8);
        assert_eq!(format!("{error}"), "2:6: the file is not valid UTF-8 text");
    }

    #[test]
    fn display_round_trips() {
        let text = "a = 'q\"\\\\\\n\\t\\x1b é'\nb = [1, 0x10, ['x', []]]\nc = 7\n";
        let document = parse(text);
        let written = document.to_string();
        let again = parse(&written);
        assert_eq!(document.settings().len(), again.settings().len());
        for (left, right) in document.settings().iter().zip(again.settings()) {
            assert_eq!(left.key, right.key);
            assert!(left.value.same_content(&right.value), "{written}");
        }
        assert!(written.contains("\\x1b"));
    }

    #[test]
    fn error_display_is_line_colon_column() {
        let error = Document::parse("a = 1\nb = = 2").unwrap_err();
        assert_eq!(
            format!("{error}"),
            "2:5: expected a value (a \"string\", a number or a [list]), found `=`"
        );
    }
}
