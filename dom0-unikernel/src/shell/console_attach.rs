//! Typing into a guest's console after `console <domain>`: every byte goes
//! to the guest until the operator presses the detach key.

/// Ctrl-], the key that leaves a guest's console, as in `xl console`.
pub const DETACH_BYTE: u8 = 0x1d;

/// Bytes typed while attached, split at the detach key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleInput<'a> {
    /// Bytes for the guest, in order; never contains [`DETACH_BYTE`].
    pub forward: &'a [u8],
    /// The detach key was pressed: return to the shell.
    pub detach_requested: bool,
    /// Bytes typed after the detach key, for the shell's line editor
    /// (empty unless `detach_requested`).
    pub after_detach: &'a [u8],
}

/// Splits bytes typed while attached: everything before the first
/// [`DETACH_BYTE`] is forwarded; the detach byte itself is not.
pub fn split_console_input(bytes: &[u8]) -> ConsoleInput<'_> {
    match bytes.iter().position(|&byte| byte == DETACH_BYTE) {
        Some(index) => {
            let (forward, rest) = bytes.split_at(index);
            ConsoleInput {
                forward,
                detach_requested: true,
                after_detach: rest.get(1..).unwrap_or_default(),
            }
        }
        None => ConsoleInput {
            forward: bytes,
            detach_requested: false,
            after_detach: &[],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_without_the_detach_key_are_all_forwarded() {
        let input = split_console_input(b"ls -l\r\x03\x1b[A");
        assert_eq!(input.forward, b"ls -l\r\x03\x1b[A");
        assert!(!input.detach_requested);
        assert!(input.after_detach.is_empty());
    }

    #[test]
    fn the_detach_key_is_not_forwarded() {
        let input = split_console_input(b"exit\r\x1dlist\r");
        assert_eq!(input.forward, b"exit\r");
        assert!(input.detach_requested);
        assert_eq!(input.after_detach, b"list\r");
    }

    #[test]
    fn detach_key_alone_or_at_either_end() {
        let alone = split_console_input(&[DETACH_BYTE]);
        assert_eq!(
            (alone.forward, alone.detach_requested, alone.after_detach),
            (&b""[..], true, &b""[..])
        );
        let first = split_console_input(b"\x1dx");
        assert_eq!((first.forward, first.after_detach), (&b""[..], &b"x"[..]));
        let last = split_console_input(b"x\x1d");
        assert_eq!((last.forward, last.after_detach), (&b"x"[..], &b""[..]));
    }

    #[test]
    fn only_the_first_detach_key_splits() {
        let input = split_console_input(b"a\x1db\x1dc");
        assert_eq!(input.forward, b"a");
        assert_eq!(input.after_detach, b"b\x1dc");
    }

    #[test]
    fn empty_input() {
        let input = split_console_input(b"");
        assert!(input.forward.is_empty() && !input.detach_requested);
    }
}
