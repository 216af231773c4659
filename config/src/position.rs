//! Where something is in a config file: line and column for people, byte
//! offset for code.

use core::fmt;

/// A place in the text. Lines and columns count from 1; columns count
/// characters (Unicode scalar values), so a tab is one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line number, from 1.
    pub line: u32,
    /// Column number in characters, from 1.
    pub column: u32,
    /// Byte offset from the start of the text, from 0.
    pub offset: usize,
}

impl Position {
    /// The first character of a text.
    pub const START: Position = Position {
        line: 1,
        column: 1,
        offset: 0,
    };
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// A stretch of text: `start` is its first character, `end` the place just
/// after its last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// First character.
    pub start: Position,
    /// Just past the last character.
    pub end: Position,
}

impl Span {
    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end,
        }
    }
}
