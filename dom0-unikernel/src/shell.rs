//! The management shell on the serial line: xl-like verbs typed by the
//! operator. Pure logic — bytes come in one at a time and output leaves
//! through a callback or as text, so everything here runs in host tests.
//!
//! A caller's loop, in outline:
//!
//! ```ignore
//! let mut editor = LineEditor::new();
//! write(PROMPT.as_bytes());
//! for byte in typed_bytes {
//!     match editor.feed(byte, &mut write) {
//!         LineEvent::Editing => {}
//!         LineEvent::Abandoned => write(PROMPT.as_bytes()),
//!         LineEvent::Entered(line) => {
//!             match parse(&line) {
//!                 Ok(command) => run(command),
//!                 Err(error) => write(format!("{error}{NEWLINE}").as_bytes()),
//!             }
//!             write(PROMPT.as_bytes());
//!         }
//!     }
//! }
//! ```
//!
//! While attached to a guest's console (`console <domain>`), typed bytes
//! go through [`split_console_input`] instead of the editor.

mod command;
mod console_attach;
mod line_editor;
mod list;

pub use command::{
    Argument, Command, ParseError, Target, VERBS, Verb, format_help, parse, write_help,
};
pub use console_attach::{ConsoleInput, DETACH_BYTE, split_console_input};
pub use line_editor::{BELL, Line, LineEditor, LineEvent, MAXIMUM_LINE_LENGTH};
pub use list::{DomainRow, DomainState, format_list, write_list};

/// Domain 0's name, as xl lists it.
pub const DOM0_NAME: &str = "Domain-0";

/// What the shell prints before each command.
pub const PROMPT: &str = "xenolith# ";

/// Line ending for everything the shell prints: the operator's terminal
/// needs the carriage return as well as the line feed.
pub const NEWLINE: &str = "\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64), so failures reproduce.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Feeds bytes through the editor and every finished line through the
    /// parser and its error messages, as the shell loop does.
    fn drive(editor: &mut LineEditor, bytes: &[u8]) -> usize {
        let mut lines = 0;
        for &byte in bytes {
            let mut echoed = 0;
            let event = editor.feed(byte, |out| echoed += out.len());
            // One byte never echoes more than a whole-line erase.
            assert!(echoed <= 3 * MAXIMUM_LINE_LENGTH);
            assert!(editor.line().len() <= MAXIMUM_LINE_LENGTH);
            assert!(
                editor
                    .line()
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() || byte == b' ')
            );
            if let LineEvent::Entered(line) = event {
                lines += 1;
                if let Err(error) = parse(&line) {
                    assert!(!error.to_string().contains('\n'));
                }
            }
        }
        lines
    }

    #[test]
    fn every_byte_value_alone_and_after_text() {
        for byte in 0..=u8::MAX {
            drive(&mut LineEditor::new(), &[byte]);
            drive(
                &mut LineEditor::new(),
                &[b'd', b'e', b's', byte, b' ', byte, b'\r'],
            );
            drive(&mut LineEditor::new(), &[0x1b, byte, byte, b'\r']);
            drive(&mut LineEditor::new(), &[0x1b, b'[', byte, b'\n']);
            let _ = split_console_input(&[byte, byte]);
        }
    }

    #[test]
    fn random_byte_streams_do_not_panic() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut editor = LineEditor::new();
        let mut lines = 0;
        for _ in 0..200 {
            let length = (random.next() % 600) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| match random.next() % 8 {
                    // Mostly printable, with plenty of Enter, erase and
                    // escape, so lines both finish and overflow.
                    0 => b'\r',
                    1 => [0x7f, 0x08, 0x15, 0x03, 0x1b, b'\n'][(random.next() % 6) as usize],
                    2 => random.next() as u8,
                    _ => b' ' + (random.next() % 95) as u8,
                })
                .collect();
            lines += drive(&mut editor, &bytes);
            let _ = split_console_input(&bytes);
        }
        assert!(lines > 100);
    }

    #[test]
    fn random_words_through_the_parser_do_not_panic() {
        let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
        let words = [
            "list",
            "create",
            "destroy",
            "shutdown",
            "reboot",
            "pause",
            "unpause",
            "console",
            "info",
            "dmesg",
            "help",
            "0",
            "32751",
            "32752",
            "65535",
            "65536",
            "x",
            "é",
            "\t",
            "",
            "99999999999999999999",
        ];
        for _ in 0..5000 {
            let count = random.next() % 5;
            let mut line = String::new();
            for _ in 0..count {
                line.push_str(words[(random.next() % words.len() as u64) as usize]);
                line.push(' ');
            }
            if let Err(error) = parse(&line) {
                let _ = error.to_string();
            }
        }
    }

    #[test]
    fn a_typed_command_reaches_the_parser() {
        let mut editor = LineEditor::new();
        let mut echo = Vec::new();
        let mut commands = Vec::new();
        for &byte in b"destroy web\x1b[D\x7f\x7f\x7fweb\r\n" {
            if let LineEvent::Entered(line) = editor.feed(byte, |out| echo.extend_from_slice(out)) {
                commands.push(match parse(&line) {
                    Ok(command) => format!("{command:?}"),
                    Err(error) => error.to_string(),
                });
            }
        }
        assert_eq!(commands, ["Destroy(Name(\"web\"))"]);
    }
}
