//! Splits config text into tokens, following xl's `libxlu_cfg_l.l`.
//!
//! Tokens: keys `[a-z][a-z0-9_]*`, numbers, quoted strings (`"..."` or
//! `'...'`, escapes decoded here), `=`, `+=`, `,`, `[`, `]`, `;` and line
//! ends. Spaces, tabs and carriage returns separate tokens; `#` starts a
//! comment that runs to the end of the line. Each token is checked against
//! the limits as it is made, so nothing larger than a limit is allocated.

use alloc::string::String;

use crate::error::{Error, ErrorKind, NumberFault};
use crate::limits::{MAX_KEY_BYTES, MAX_STRING_BYTES};
use crate::position::{Position, Span};

/// A number as written and as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Number {
    /// The digits as written (`0x1f`, `512`).
    pub text: String,
    /// Their value.
    pub value: u64,
}

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Key(String),
    String(String),
    Number(Number),
    Equals,
    PlusEquals,
    Comma,
    OpenBracket,
    CloseBracket,
    Semicolon,
    Newline,
    End,
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Reads decimal (`512`) or hex (`0x200`) digits, as xl's `strtol(.., 0)`
/// does, but refuses the leading zero xl would read as octal.
pub(crate) fn parse_number(text: &str) -> Result<u64, NumberFault> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    let (digits, radix) = match hex {
        Some(digits) => (digits, 16),
        None => (text, 10),
    };
    let all_digits = !digits.is_empty() && digits.chars().all(|digit| digit.is_digit(radix));
    if !all_digits {
        return Err(NumberFault::NotANumber);
    }
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        return Err(NumberFault::LeadingZero);
    }
    u64::from_str_radix(digits, radix).map_err(|_| NumberFault::TooLarge)
}

/// The lexer's cursor over the text.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    offset: usize,
    line: u32,
    column: u32,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
            offset: self.offset,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.offset..)?.chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut rest = self.text.get(self.offset..)?.chars();
        rest.next();
        rest.next()
    }

    fn bump(&mut self) -> Option<char> {
        let character = self.peek()?;
        self.offset += character.len_utf8();
        if character == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(character)
    }

    fn span_from(&self, start: Position) -> Span {
        Span {
            start,
            end: self.position(),
        }
    }

    /// The next token; `End` forever once the text is used up.
    pub fn next_token(&mut self) -> Result<Token, Error> {
        self.skip_blanks_and_comments();
        let start = self.position();
        let Some(character) = self.bump() else {
            return Ok(Token {
                kind: TokenKind::End,
                span: self.span_from(start),
            });
        };
        let kind = match character {
            '\n' => TokenKind::Newline,
            '=' => TokenKind::Equals,
            ',' => TokenKind::Comma,
            '[' => TokenKind::OpenBracket,
            ']' => TokenKind::CloseBracket,
            ';' => TokenKind::Semicolon,
            '+' if self.peek() == Some('=') => {
                self.bump();
                TokenKind::PlusEquals
            }
            '"' | '\'' => TokenKind::String(self.string(character, start)?),
            '0'..='9' => TokenKind::Number(self.number(start)?),
            'a'..='z' | 'A'..='Z' | '_' => TokenKind::Key(self.key(start)?),
            other => {
                return Err(Error::at(
                    start,
                    ErrorKind::UnexpectedCharacter { character: other },
                ));
            }
        };
        Ok(Token {
            kind,
            span: self.span_from(start),
        })
    }

    fn skip_blanks_and_comments(&mut self) {
        while let Some(character) = self.peek() {
            match character {
                ' ' | '\t' | '\r' => {
                    self.bump();
                }
                '#' => {
                    while self.peek().is_some_and(|inside| inside != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    /// The text of a word (key or number) that started one character ago.
    fn word(&mut self, start: Position, also: fn(char) -> bool) -> &'a str {
        while self.peek().is_some_and(|character| {
            character.is_ascii_alphanumeric() || character == '_' || also(character)
        }) {
            self.bump();
        }
        self.text.get(start.offset..self.offset).unwrap_or("")
    }

    fn key(&mut self, start: Position) -> Result<String, Error> {
        let word = self.word(start, |_| false);
        if word.len() > MAX_KEY_BYTES {
            return Err(Error::at(start, ErrorKind::KeyTooLong));
        }
        let starts_lowercase = word.starts_with(|first: char| first.is_ascii_lowercase());
        let rest_valid = word.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
        });
        if !starts_lowercase || !rest_valid {
            return Err(Error::at(
                start,
                ErrorKind::InvalidKey {
                    key: String::from(word),
                },
            ));
        }
        Ok(String::from(word))
    }

    fn number(&mut self, start: Position) -> Result<Number, Error> {
        // Take letters and dots too, so `512M` and `1.5` are one bad number
        // with a clear message rather than a number and a puzzling token.
        let word = self.word(start, |character| character == '.');
        let invalid = |fault| {
            let mut text = String::new();
            text.push_str(word.get(..MAX_KEY_BYTES).unwrap_or(word));
            Error::at(start, ErrorKind::InvalidNumber { text, fault })
        };
        // The word is at most the file's length; only the message is capped.
        let value = parse_number(word).map_err(invalid)?;
        Ok(Number {
            text: String::from(word),
            value,
        })
    }

    fn string(&mut self, quote: char, start: Position) -> Result<String, Error> {
        let mut decoded = String::new();
        loop {
            let here = self.position();
            let character = match self.peek() {
                None | Some('\n') => return Err(Error::at(start, ErrorKind::UnterminatedString)),
                Some(character) => character,
            };
            self.bump();
            let decoded_character = if character == quote {
                return Ok(decoded);
            } else if character == '\\' {
                self.escape(here)?
            } else if character.is_ascii_control() && character != '\t' {
                return Err(Error::at(
                    here,
                    ErrorKind::ControlCharacterInString {
                        value: u32::from(character),
                    },
                ));
            } else {
                character
            };
            if decoded.len() + decoded_character.len_utf8() > MAX_STRING_BYTES {
                return Err(Error::at(start, ErrorKind::StringTooLong));
            }
            decoded.push(decoded_character);
        }
    }

    /// Decodes the escape after a backslash at `backslash`.
    fn escape(&mut self, backslash: Position) -> Result<char, Error> {
        let Some(character) = self.peek() else {
            return Err(Error::at(backslash, ErrorKind::UnterminatedString));
        };
        if character == '\n' {
            return Err(Error::at(backslash, ErrorKind::BackslashAtEndOfLine));
        }
        self.bump();
        let simple = match character {
            '"' | '\'' | '\\' => Some(character),
            'a' => Some('\u{07}'),
            'b' => Some('\u{08}'),
            'f' => Some('\u{0c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{0b}'),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        let value = match character {
            'x' => {
                let high = self.peek().and_then(|digit| digit.to_digit(16));
                let low = self.peek_second().and_then(|digit| digit.to_digit(16));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(Error::at(backslash, ErrorKind::InvalidHexEscape));
                };
                self.bump();
                self.bump();
                high * 16 + low
            }
            '0'..='7' => {
                let mut value = character.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|digit| digit.to_digit(8)) {
                        Some(digit) => {
                            self.bump();
                            value = value * 8 + digit;
                        }
                        None => break,
                    }
                }
                value
            }
            other => {
                return Err(Error::at(
                    backslash,
                    ErrorKind::InvalidEscape { character: other },
                ));
            }
        };
        if value == 0 {
            return Err(Error::at(backslash, ErrorKind::NulInString));
        }
        if value > 0x7f {
            return Err(Error::at(backslash, ErrorKind::NonAsciiEscape { value }));
        }
        char::from_u32(value).ok_or(Error::at(backslash, ErrorKind::NonAsciiEscape { value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn kinds(text: &str) -> Result<Vec<TokenKind>, Error> {
        let mut lexer = Lexer::new(text);
        let mut kinds = Vec::new();
        loop {
            let token = lexer.next_token()?;
            if token.kind == TokenKind::End {
                return Ok(kinds);
            }
            kinds.push(token.kind);
        }
    }

    fn string(text: &str) -> TokenKind {
        TokenKind::String(String::from(text))
    }

    fn error_at(text: &str) -> (u32, u32, ErrorKind) {
        let error = kinds(text).unwrap_err();
        let position = error.position.unwrap();
        (position.line, position.column, error.kind)
    }

    #[test]
    fn numbers_decimal_and_hex() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("512"), Ok(512));
        assert_eq!(parse_number("0x1f"), Ok(31));
        assert_eq!(parse_number("0X1F"), Ok(31));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_number("18446744073709551616"),
            Err(NumberFault::TooLarge)
        );
        assert_eq!(parse_number("0755"), Err(NumberFault::LeadingZero));
        assert_eq!(parse_number("0x"), Err(NumberFault::NotANumber));
        assert_eq!(parse_number("+5"), Err(NumberFault::NotANumber));
        assert_eq!(parse_number(""), Err(NumberFault::NotANumber));
        assert_eq!(parse_number("12abc"), Err(NumberFault::NotANumber));
    }

    #[test]
    fn all_punctuation() {
        assert_eq!(
            kinds("a=[1,'x'];b+=\"y\"\n").unwrap(),
            [
                TokenKind::Key(String::from("a")),
                TokenKind::Equals,
                TokenKind::OpenBracket,
                TokenKind::Number(Number {
                    text: String::from("1"),
                    value: 1
                }),
                TokenKind::Comma,
                string("x"),
                TokenKind::CloseBracket,
                TokenKind::Semicolon,
                TokenKind::Key(String::from("b")),
                TokenKind::PlusEquals,
                string("y"),
                TokenKind::Newline,
            ]
        );
    }

    #[test]
    fn comments_run_to_end_of_line() {
        assert_eq!(
            kinds("# only a comment\n a # trailing ' \" [\n").unwrap(),
            [
                TokenKind::Newline,
                TokenKind::Key(String::from("a")),
                TokenKind::Newline
            ]
        );
        assert_eq!(kinds("# no newline at end").unwrap(), []);
    }

    #[test]
    fn crlf_and_tabs_are_blanks() {
        assert_eq!(
            kinds("a\t=\r\n").unwrap(),
            [
                TokenKind::Key(String::from("a")),
                TokenKind::Equals,
                TokenKind::Newline
            ]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            kinds(r#""q\"s\'b\\a\a\b\f\n\r\t\v""#).unwrap(),
            [string("q\"s'b\\a\u{7}\u{8}\u{c}\n\r\t\u{b}")]
        );
        assert_eq!(kinds(r"'\x41\101\7z'").unwrap(), [string("AA\u{7}z")]);
        assert_eq!(kinds(r#"'"' "'""#).unwrap(), [string("\""), string("'")]);
        assert_eq!(kinds("'é ü 中'").unwrap(), [string("é ü 中")]);
    }

    #[test]
    fn string_errors_point_at_the_fault() {
        assert_eq!(
            error_at("a = \"open"),
            (1, 5, ErrorKind::UnterminatedString)
        );
        assert_eq!(
            error_at("a = 'open\n'"),
            (1, 5, ErrorKind::UnterminatedString)
        );
        assert_eq!(
            error_at("a = \"x\\\ny\""),
            (1, 7, ErrorKind::BackslashAtEndOfLine)
        );
        assert_eq!(
            error_at("a = 'x\\q'"),
            (1, 7, ErrorKind::InvalidEscape { character: 'q' })
        );
        assert_eq!(error_at("'\\x4'"), (1, 2, ErrorKind::InvalidHexEscape));
        assert_eq!(error_at("'\\xg0'"), (1, 2, ErrorKind::InvalidHexEscape));
        assert_eq!(error_at("'\\x00'"), (1, 2, ErrorKind::NulInString));
        assert_eq!(error_at("'\\0'"), (1, 2, ErrorKind::NulInString));
        assert_eq!(
            error_at("'\\xff'"),
            (1, 2, ErrorKind::NonAsciiEscape { value: 0xff })
        );
        assert_eq!(
            error_at("'\\777'"),
            (1, 2, ErrorKind::NonAsciiEscape { value: 0o777 })
        );
        assert_eq!(
            error_at("x\n 'a\u{1}'"),
            (2, 4, ErrorKind::ControlCharacterInString { value: 1 })
        );
        assert_eq!(error_at("'\\"), (1, 2, ErrorKind::UnterminatedString));
    }

    #[test]
    fn string_length_is_capped_after_decoding() {
        let fits = alloc::format!("'{}'", "\\n".repeat(MAX_STRING_BYTES));
        assert!(kinds(&fits).is_ok());
        let too_long = alloc::format!("'{}'", "x".repeat(MAX_STRING_BYTES + 1));
        assert_eq!(error_at(&too_long), (1, 1, ErrorKind::StringTooLong));
        let multibyte = alloc::format!("'{}'", "é".repeat(MAX_STRING_BYTES / 2 + 1));
        assert_eq!(error_at(&multibyte), (1, 1, ErrorKind::StringTooLong));
    }

    #[test]
    fn key_errors() {
        assert_eq!(
            error_at("  Memory = 1"),
            (
                1,
                3,
                ErrorKind::InvalidKey {
                    key: String::from("Memory")
                }
            )
        );
        assert_eq!(
            error_at("_x = 1"),
            (
                1,
                1,
                ErrorKind::InvalidKey {
                    key: String::from("_x")
                }
            )
        );
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(error_at(&long), (1, 1, ErrorKind::KeyTooLong));
        assert!(kinds(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    }

    #[test]
    fn number_errors() {
        assert_eq!(
            error_at("m = 512M"),
            (
                1,
                5,
                ErrorKind::InvalidNumber {
                    text: String::from("512M"),
                    fault: NumberFault::NotANumber
                }
            )
        );
        assert_eq!(
            error_at("m = 1.5"),
            (
                1,
                5,
                ErrorKind::InvalidNumber {
                    text: String::from("1.5"),
                    fault: NumberFault::NotANumber
                }
            )
        );
        assert_eq!(
            error_at("m = 010"),
            (
                1,
                5,
                ErrorKind::InvalidNumber {
                    text: String::from("010"),
                    fault: NumberFault::LeadingZero
                }
            )
        );
    }

    #[test]
    fn long_numbers_are_reported_shortened() {
        let digits = "9".repeat(100);
        let (_, _, kind) = error_at(&digits);
        assert_eq!(
            kind,
            ErrorKind::InvalidNumber {
                text: "9".repeat(MAX_KEY_BYTES),
                fault: NumberFault::TooLarge
            }
        );
        let junk = format!("1{}", "a".repeat(100));
        assert!(matches!(
            error_at(&junk).2,
            ErrorKind::InvalidNumber {
                fault: NumberFault::NotANumber,
                ..
            }
        ));
    }

    #[test]
    fn stray_characters() {
        assert_eq!(
            error_at("a = 1 + 2"),
            (1, 7, ErrorKind::UnexpectedCharacter { character: '+' })
        );
        assert_eq!(
            error_at("a = (1)"),
            (1, 5, ErrorKind::UnexpectedCharacter { character: '(' })
        );
        assert_eq!(
            error_at("é"),
            (1, 1, ErrorKind::UnexpectedCharacter { character: 'é' })
        );
        assert_eq!(
            error_at("'é' ~"),
            (1, 5, ErrorKind::UnexpectedCharacter { character: '~' })
        );
        assert_eq!(
            error_at("a\0"),
            (1, 2, ErrorKind::UnexpectedCharacter { character: '\0' })
        );
    }

    #[test]
    fn python_hint_in_message() {
        let error = kinds("a = foo()").unwrap_err();
        assert!(alloc::format!("{error}").contains("Python"));
    }

    #[test]
    fn spans_cover_the_token() {
        let mut lexer = Lexer::new("ab = 'xé'");
        let key = lexer.next_token().unwrap();
        assert_eq!((key.span.start.column, key.span.end.column), (1, 3));
        lexer.next_token().unwrap();
        let value = lexer.next_token().unwrap();
        assert_eq!((value.span.start.column, value.span.end.column), (6, 10));
        assert_eq!((value.span.start.offset, value.span.end.offset), (5, 10));
    }
}
