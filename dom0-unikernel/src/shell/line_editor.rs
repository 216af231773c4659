//! The shell's line editor: typed bytes in, one at a time; terminal echo
//! out through a callback; a whole line back when Enter is pressed.

use arrayvec::ArrayString;

use super::NEWLINE;

/// The longest line the editor keeps; bytes typed beyond it are refused
/// with a bell.
pub const MAXIMUM_LINE_LENGTH: usize = 256;

/// Rung when a typed byte does not fit in the line.
pub const BELL: u8 = 0x07;

/// A completed line: printable ASCII only, at most
/// [`MAXIMUM_LINE_LENGTH`] bytes.
pub type Line = ArrayString<MAXIMUM_LINE_LENGTH>;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CONTROL_C: u8 = 0x03;
const CONTROL_U: u8 = 0x15;
const ESCAPE: u8 = 0x1b;
const CARRIAGE_RETURN: u8 = b'\r';
const LINE_FEED: u8 = b'\n';

/// Moves the cursor back over one character and blanks it.
const ERASE: &[u8] = b"\x08 \x08";
const ABANDON: &[u8] = b"^C\r\n";

/// A control sequence longer than this is not a key the editor knows; it
/// stops swallowing bytes so a stray escape cannot eat the line forever.
const MAXIMUM_ESCAPE_LENGTH: u8 = 16;

/// What one typed byte did to the line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per key and consumed at once; boxing would put every line on the heap"
)]
pub enum LineEvent {
    /// The line is still being typed.
    Editing,
    /// Enter was pressed: the finished line (possibly empty).
    Entered(Line),
    /// Ctrl-C threw the line away; the caller should prompt again.
    Abandoned,
}

/// Where the editor is inside a terminal escape sequence. Arrow and
/// function keys send `ESC [ ...` or `ESC O x`; without this their
/// printable tails (`[A`) would land in the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EscapeState {
    /// Not in a sequence.
    Ground,
    /// After `ESC`.
    Escape,
    /// After `ESC [`, counting the bytes swallowed so far.
    ControlSequence { length: u8 },
    /// After `ESC O`: exactly one more byte names the key.
    SingleShift,
}

/// Builds a line from typed bytes, echoing what a terminal needs.
///
/// Printable ASCII is inserted and echoed; Backspace (0x7f or 0x08) erases
/// the last character; Ctrl-U erases the whole line; Ctrl-C abandons it;
/// CR or LF ends it (CR LF counts as one Enter). Other control bytes,
/// escape sequences (arrow keys) and non-ASCII bytes are ignored.
#[derive(Clone, Debug)]
pub struct LineEditor {
    line: Line,
    escape: EscapeState,
    /// The previous byte was a CR that ended a line: a LF right after it is
    /// the second half of the same Enter.
    after_carriage_return: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An editor with an empty line.
    pub const fn new() -> Self {
        Self {
            line: ArrayString::new_const(),
            escape: EscapeState::Ground,
            after_carriage_return: false,
        }
    }

    /// The line typed so far (for redrawing it after other output).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Forgets the line typed so far without echoing anything.
    pub fn clear(&mut self) {
        self.line.clear();
        self.escape = EscapeState::Ground;
        self.after_carriage_return = false;
    }

    /// Takes one typed byte; `echo` receives the bytes to send back to the
    /// terminal.
    pub fn feed(&mut self, byte: u8, mut echo: impl FnMut(&[u8])) -> LineEvent {
        let after_carriage_return = core::mem::replace(&mut self.after_carriage_return, false);
        if self.swallow_escape(byte) {
            return LineEvent::Editing;
        }
        match byte {
            LINE_FEED if after_carriage_return => LineEvent::Editing,
            CARRIAGE_RETURN | LINE_FEED => {
                self.after_carriage_return = byte == CARRIAGE_RETURN;
                echo(NEWLINE.as_bytes());
                let line = self.line;
                self.line.clear();
                LineEvent::Entered(line)
            }
            CONTROL_C => {
                echo(ABANDON);
                self.line.clear();
                LineEvent::Abandoned
            }
            BACKSPACE | DELETE => {
                if self.line.pop().is_some() {
                    echo(ERASE);
                }
                LineEvent::Editing
            }
            CONTROL_U => {
                while self.line.pop().is_some() {
                    echo(ERASE);
                }
                LineEvent::Editing
            }
            ESCAPE => {
                self.escape = EscapeState::Escape;
                LineEvent::Editing
            }
            b' '..=b'~' => {
                if self.line.try_push(char::from(byte)).is_ok() {
                    echo(&[byte]);
                } else {
                    echo(&[BELL]);
                }
                LineEvent::Editing
            }
            _ => LineEvent::Editing,
        }
    }

    /// Whether `byte` belongs to an escape sequence in progress (and is
    /// therefore dropped). A control byte ends any sequence and is then
    /// handled as itself, so Enter and Ctrl-C always work.
    fn swallow_escape(&mut self, byte: u8) -> bool {
        if byte < b' ' || byte == DELETE {
            self.escape = EscapeState::Ground;
            return false;
        }
        self.escape = match self.escape {
            EscapeState::Ground => return false,
            EscapeState::Escape => match byte {
                b'[' => EscapeState::ControlSequence { length: 0 },
                b'O' => EscapeState::SingleShift,
                // ESC plus one character is an Alt-modified key.
                _ => EscapeState::Ground,
            },
            // Parameter and intermediate bytes (0x20..=0x3f) continue the
            // sequence; anything else is its final byte.
            EscapeState::ControlSequence { length } => match byte {
                b' '..=b'?' if length < MAXIMUM_ESCAPE_LENGTH => {
                    EscapeState::ControlSequence { length: length + 1 }
                }
                _ => EscapeState::Ground,
            },
            EscapeState::SingleShift => EscapeState::Ground,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes`, returning the echo and every event other than
    /// `Editing`.
    fn type_bytes(editor: &mut LineEditor, bytes: &[u8]) -> (Vec<u8>, Vec<LineEvent>) {
        let mut echo = Vec::new();
        let mut events = Vec::new();
        for &byte in bytes {
            let event = editor.feed(byte, |out| echo.extend_from_slice(out));
            if event != LineEvent::Editing {
                events.push(event);
            }
        }
        (echo, events)
    }

    fn entered(text: &str) -> LineEvent {
        LineEvent::Entered(Line::from(text).unwrap())
    }

    #[test]
    fn echoes_printable_bytes_and_returns_the_line_on_carriage_return() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"list\r");
        assert_eq!(echo, b"list\r\n");
        assert_eq!(events, [entered("list")]);
        assert_eq!(editor.line(), "");
    }

    #[test]
    fn line_feed_alone_ends_a_line() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"info\n");
        assert_eq!(echo, b"info\r\n");
        assert_eq!(events, [entered("info")]);
    }

    #[test]
    fn carriage_return_line_feed_is_one_enter() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"list\r\ninfo\r\n");
        assert_eq!(echo, b"list\r\ninfo\r\n");
        assert_eq!(events, [entered("list"), entered("info")]);
    }

    #[test]
    fn repeated_enters_give_empty_lines() {
        let mut editor = LineEditor::new();
        let (_, events) = type_bytes(&mut editor, b"\r\r\n\n");
        assert_eq!(events, [entered(""), entered(""), entered("")]);
    }

    #[test]
    fn line_feed_then_carriage_return_is_two_enters() {
        let mut editor = LineEditor::new();
        let (_, events) = type_bytes(&mut editor, b"\n\r");
        assert_eq!(events, [entered(""), entered("")]);
    }

    #[test]
    fn line_feed_after_other_bytes_following_a_carriage_return_still_counts() {
        let mut editor = LineEditor::new();
        let (_, events) = type_bytes(&mut editor, b"\rx\n");
        assert_eq!(events, [entered(""), entered("x")]);
    }

    #[test]
    fn both_backspace_bytes_erase_one_character() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"lisx\x7fz\x08t\r");
        assert_eq!(echo, b"lisx\x08 \x08z\x08 \x08t\r\n");
        assert_eq!(events, [entered("list")]);
    }

    #[test]
    fn backspace_on_an_empty_line_echoes_nothing() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"\x7f\x08");
        assert!(echo.is_empty());
        assert!(events.is_empty());
    }

    #[test]
    fn control_u_erases_the_whole_line() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"ab\x15info\r");
        assert_eq!(echo, b"ab\x08 \x08\x08 \x08info\r\n");
        assert_eq!(events, [entered("info")]);
    }

    #[test]
    fn control_c_abandons_the_line() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"destroy 3\x03");
        assert_eq!(echo, b"destroy 3^C\r\n");
        assert_eq!(events, [LineEvent::Abandoned]);
        assert_eq!(editor.line(), "");
        let (_, events) = type_bytes(&mut editor, b"list\r");
        assert_eq!(events, [entered("list")]);
    }

    #[test]
    fn other_control_bytes_and_non_ascii_are_ignored() {
        let mut editor = LineEditor::new();
        let (echo, events) = type_bytes(&mut editor, b"l\x00\x01\x07\x09\x0c\x1di\xc3\xa9\xffst\r");
        assert_eq!(echo, b"list\r\n");
        assert_eq!(events, [entered("list")]);
    }

    #[test]
    fn arrow_and_function_keys_are_ignored() {
        let mut editor = LineEditor::new();
        // Up, Left, F1 (SS3), Page Up, Ctrl-Right, Alt-x, F5.
        let keys = b"\x1b[A\x1b[D\x1bOP\x1b[5~\x1b[1;5C\x1bx\x1b[15~";
        let mut typed = b"li".to_vec();
        typed.extend_from_slice(keys);
        typed.extend_from_slice(b"st\r");
        let (echo, events) = type_bytes(&mut editor, &typed);
        assert_eq!(echo, b"list\r\n");
        assert_eq!(events, [entered("list")]);
    }

    #[test]
    fn enter_and_control_c_end_an_unfinished_escape_sequence() {
        let mut editor = LineEditor::new();
        let (_, events) = type_bytes(&mut editor, b"info\x1b[1\r");
        assert_eq!(events, [entered("info")]);
        let (_, events) = type_bytes(&mut editor, b"x\x1b\x03");
        assert_eq!(events, [LineEvent::Abandoned]);
        let (_, events) = type_bytes(&mut editor, b"\x1b\x1b[Ahelp\r");
        assert_eq!(events, [entered("help")]);
    }

    #[test]
    fn an_overlong_control_sequence_stops_swallowing() {
        let mut editor = LineEditor::new();
        let mut typed = b"\x1b[".to_vec();
        typed.extend_from_slice(&[b'1'; 100]);
        typed.extend_from_slice(b"\r");
        let (_, events) = type_bytes(&mut editor, &typed);
        // The sequence is dropped after its bound; the rest is typed text.
        let LineEvent::Entered(line) = &events[0] else {
            panic!("expected a line, got {events:?}");
        };
        assert!(line.len() < 100);
        assert!(line.bytes().all(|byte| byte == b'1'));
    }

    #[test]
    fn a_full_line_refuses_more_bytes_with_a_bell() {
        let mut editor = LineEditor::new();
        let typed = vec![b'a'; MAXIMUM_LINE_LENGTH + 3];
        let (echo, events) = type_bytes(&mut editor, &typed);
        assert!(events.is_empty());
        assert_eq!(echo.len(), MAXIMUM_LINE_LENGTH + 3);
        assert_eq!(&echo[MAXIMUM_LINE_LENGTH..], [BELL; 3]);
        // Room comes back after an erase.
        let (echo, events) = type_bytes(&mut editor, b"\x7fb\r");
        assert_eq!(echo, b"\x08 \x08b\r\n");
        let mut expected = "a".repeat(MAXIMUM_LINE_LENGTH - 1);
        expected.push('b');
        assert_eq!(events, [entered(&expected)]);
    }

    #[test]
    fn clear_forgets_the_line_silently() {
        let mut editor = LineEditor::new();
        let _ = type_bytes(&mut editor, b"dest");
        assert_eq!(editor.line(), "dest");
        editor.clear();
        let (echo, events) = type_bytes(&mut editor, b"ls\r");
        assert_eq!(echo, b"ls\r\n");
        assert_eq!(events, [entered("ls")]);
    }
}
