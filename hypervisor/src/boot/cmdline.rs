//! The hypervisor's command line: options before a standalone `--`, Dom0's
//! command line after it. Never fails: what it cannot use becomes a warning.
//!
//! ```text
//! dom0_mem=512M loglevel=debug dom0_crash=reboot -- console=hvc0 quiet
//! ```

use arrayvec::{ArrayString, ArrayVec};

use super::CmdLine;

/// Most warnings kept; the rest are only counted.
pub const MAX_WARNINGS: usize = 8;
/// Longest word a warning quotes, in bytes.
pub const MAX_WARNING_WORD: usize = 64;

/// How much the hypervisor logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub const fn filter(self) -> log::LevelFilter {
        match self {
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }
}

/// What the hypervisor does when Dom0 crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashAction {
    /// Stop the machine, leaving the crash on the console.
    Halt,
    /// Reset the machine.
    Reboot,
}

/// A word of the command line that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The word, cut to [`MAX_WARNING_WORD`] bytes.
    pub word: ArrayString<MAX_WARNING_WORD>,
    pub reason: &'static str,
}

/// The hypervisor's options, as the command line set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `dom0_mem=`: Dom0's memory in bytes; `None` lets the hypervisor choose.
    pub dom0_memory: Option<u64>,
    /// `loglevel=`; `Info` by default.
    pub log_level: LogLevel,
    /// `dom0_crash=`; `Halt` by default.
    pub dom0_crash: CrashAction,
    /// Everything after `--`, trimmed.
    pub dom0_args: CmdLine,
    /// The first [`MAX_WARNINGS`] words that were not understood.
    pub warnings: ArrayVec<Warning, MAX_WARNINGS>,
    /// How many warnings did not fit in `warnings`.
    pub dropped_warnings: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dom0_memory: None,
            log_level: LogLevel::Info,
            dom0_crash: CrashAction::Halt,
            dom0_args: CmdLine::new(),
            warnings: ArrayVec::new(),
            dropped_warnings: 0,
        }
    }
}

impl Options {
    fn warn(&mut self, word: &str, reason: &'static str) {
        let mut quoted = ArrayString::new();
        push_truncated(&mut quoted, word);
        if self
            .warnings
            .try_push(Warning {
                word: quoted,
                reason,
            })
            .is_err()
        {
            self.dropped_warnings = self.dropped_warnings.saturating_add(1);
        }
    }
}

/// Parses the hypervisor's command line. Words are separated by whitespace;
/// a later setting of a key overrides an earlier one.
pub fn parse(cmdline: &str) -> Options {
    let mut options = Options::default();
    let mut rest = cmdline;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (word, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        rest = after;
        if word == "--" {
            // Cutting a long line may leave whitespace at its new end.
            let mut cut = CmdLine::new();
            push_truncated(&mut cut, rest.trim());
            push_truncated(&mut options.dom0_args, cut.trim_end());
            break;
        }
        parse_word(&mut options, word);
    }
    options
}

fn parse_word(options: &mut Options, word: &str) {
    let Some((key, value)) = word.split_once('=') else {
        options.warn(word, "unknown option");
        return;
    };
    match key {
        "dom0_mem" => match parse_size(value) {
            Ok(bytes) => options.dom0_memory = Some(bytes),
            Err(reason) => options.warn(word, reason),
        },
        "loglevel" => match value {
            "error" => options.log_level = LogLevel::Error,
            "warn" => options.log_level = LogLevel::Warn,
            "info" => options.log_level = LogLevel::Info,
            "debug" => options.log_level = LogLevel::Debug,
            "trace" => options.log_level = LogLevel::Trace,
            _ => options.warn(word, "log level is not error, warn, info, debug or trace"),
        },
        "dom0_crash" => match value {
            "halt" => options.dom0_crash = CrashAction::Halt,
            "reboot" => options.dom0_crash = CrashAction::Reboot,
            _ => options.warn(word, "crash action is not halt or reboot"),
        },
        _ => options.warn(word, "unknown option"),
    }
}

/// A size in bytes: decimal digits with an optional K, M or G suffix (any
/// case, powers of 1024). Zero is refused: Dom0 cannot run in no memory.
fn parse_size(text: &str) -> Result<u64, &'static str> {
    const NOT_A_SIZE: &str = "size is not decimal digits with an optional K, M or G";
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (text.get(..text.len() - 1), 10),
        Some(b'm' | b'M') => (text.get(..text.len() - 1), 20),
        Some(b'g' | b'G') => (text.get(..text.len() - 1), 30),
        _ => (Some(text), 0),
    };
    let digits = digits
        .filter(|digits| !digits.is_empty())
        .ok_or(NOT_A_SIZE)?;
    let mut number: u64 = 0;
    for digit in digits.bytes() {
        if !digit.is_ascii_digit() {
            return Err(NOT_A_SIZE);
        }
        number = number
            .checked_mul(10)
            .and_then(|number| number.checked_add(u64::from(digit - b'0')))
            .ok_or("size does not fit in 64 bits")?;
    }
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or("size does not fit in 64 bits")?;
    if bytes == 0 {
        return Err("size is zero");
    }
    Ok(bytes)
}

/// Appends as much of `text` to `target` as fits, cut at a character
/// boundary. Returns whether all of it fit.
pub fn push_truncated<const CAPACITY: usize>(
    target: &mut ArrayString<CAPACITY>,
    text: &str,
) -> bool {
    let room = target.remaining_capacity();
    if text.len() <= room {
        target.push_str(text);
        return true;
    }
    // A boundary lies within any four bytes; index 0 always is one.
    let mut cut = room;
    while !text.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    if let Some(head) = text.get(..cut) {
        target.push_str(head);
    }
    false
}

/// Copies a string from loader memory: it ends at the first NUL (or at the
/// end of `bytes`), invalid UTF-8 is replaced by U+FFFD rather than refused
/// (a stray byte should not stop the boot, and the replacement shows in
/// logs), and it is cut at a character boundary to
/// [`MAX_CMDLINE`](super::MAX_CMDLINE) bytes.
pub fn copy_lossy(bytes: &[u8]) -> CmdLine {
    let end = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len());
    let mut text = CmdLine::new();
    for chunk in bytes.get(..end).unwrap_or(bytes).utf8_chunks() {
        if !push_truncated(&mut text, chunk.valid()) {
            break;
        }
        if !chunk.invalid().is_empty() && !push_truncated(&mut text, "\u{fffd}") {
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::MAX_CMDLINE;
    use crate::boot::memory_map::testing::XorShift;

    const MIB: u64 = 1024 * 1024;

    fn reasons(options: &Options) -> Vec<(&str, &'static str)> {
        options
            .warnings
            .iter()
            .map(|warning| (warning.word.as_str(), warning.reason))
            .collect()
    }

    #[test]
    fn empty_line_gives_defaults() {
        for line in ["", "   ", "\t\n"] {
            assert_eq!(parse(line), Options::default());
        }
    }

    #[test]
    fn reads_every_key() {
        let options = parse("dom0_mem=512M loglevel=debug dom0_crash=reboot");
        assert_eq!(options.dom0_memory, Some(512 * MIB));
        assert_eq!(options.log_level, LogLevel::Debug);
        assert_eq!(options.dom0_crash, CrashAction::Reboot);
        assert!(options.dom0_args.is_empty());
        assert!(options.warnings.is_empty());
    }

    #[test]
    fn sizes_take_suffixes_in_any_case() {
        let cases = [
            ("4096", 4096),
            ("4k", 4096),
            ("4K", 4096),
            ("3m", 3 * MIB),
            ("2G", 2 * 1024 * MIB),
            ("2g", 2 * 1024 * MIB),
            ("0001", 1),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_warnings() {
        for text in ["", "K", "12T", "-1", "0x10", "1.5G", "1 G", "１"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
        assert_eq!(parse_size("0"), Err("size is zero"));
        assert_eq!(parse_size("0M"), Err("size is zero"));
        assert_eq!(
            parse_size("18446744073709551616"),
            Err("size does not fit in 64 bits")
        );
        assert_eq!(
            parse_size("17179869184G"),
            Err("size does not fit in 64 bits")
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));

        let options = parse("dom0_mem=0 dom0_mem=lots");
        assert_eq!(options.dom0_memory, None);
        assert_eq!(
            reasons(&options),
            [
                ("dom0_mem=0", "size is zero"),
                (
                    "dom0_mem=lots",
                    "size is not decimal digits with an optional K, M or G"
                )
            ]
        );
    }

    #[test]
    fn later_setting_wins() {
        let options = parse("loglevel=trace dom0_mem=1G loglevel=warn dom0_mem=2M");
        assert_eq!(options.log_level, LogLevel::Warn);
        assert_eq!(options.dom0_memory, Some(2 * MIB));
    }

    #[test]
    fn bad_values_keep_the_previous_setting() {
        let options = parse("loglevel=error loglevel=loud dom0_crash=explode");
        assert_eq!(options.log_level, LogLevel::Error);
        assert_eq!(options.dom0_crash, CrashAction::Halt);
        assert_eq!(options.warnings.len(), 2);
    }

    #[test]
    fn unknown_words_are_warnings() {
        let options = parse("quiet foo=bar =x LOGLEVEL=info");
        assert_eq!(
            reasons(&options),
            [
                ("quiet", "unknown option"),
                ("foo=bar", "unknown option"),
                ("=x", "unknown option"),
                ("LOGLEVEL=info", "unknown option")
            ]
        );
    }

    #[test]
    fn warnings_are_capped_and_counted() {
        let options = parse("a b c d e f g h i j");
        assert_eq!(options.warnings.len(), MAX_WARNINGS);
        assert_eq!(options.dropped_warnings, 2);
        assert_eq!(options.warnings[7].word.as_str(), "h");
    }

    #[test]
    fn long_warning_words_are_cut_at_a_character_boundary() {
        let word = "é".repeat(40); // 80 bytes.
        let options = parse(&word);
        assert_eq!(options.warnings[0].word.as_str(), "é".repeat(32));
        let word = format!("x{}", "é".repeat(40));
        let options = parse(&word);
        assert_eq!(options.warnings[0].word.len(), 63);
    }

    #[test]
    fn dom0_line_is_kept_verbatim_after_double_dash() {
        let options = parse("loglevel=warn -- console=hvc0  root=/dev/xvda --  loglevel=trace  ");
        assert_eq!(options.log_level, LogLevel::Warn);
        assert_eq!(
            options.dom0_args.as_str(),
            "console=hvc0  root=/dev/xvda --  loglevel=trace"
        );
        assert!(options.warnings.is_empty());
    }

    #[test]
    fn double_dash_must_stand_alone() {
        let options = parse("--x a --");
        assert_eq!(
            reasons(&options),
            [("--x", "unknown option"), ("a", "unknown option")]
        );
        assert!(options.dom0_args.is_empty());
        assert_eq!(parse("--\tquiet").dom0_args.as_str(), "quiet");
        assert_eq!(parse("--").dom0_args.as_str(), "");
    }

    #[test]
    fn long_dom0_line_is_cut() {
        let line = format!("-- {}", "ü".repeat(MAX_CMDLINE));
        let options = parse(&line);
        assert_eq!(options.dom0_args.as_str(), "ü".repeat(MAX_CMDLINE / 2));
    }

    #[test]
    fn cut_dom0_line_is_trimmed_again() {
        let line = format!("-- {} tail", "x".repeat(MAX_CMDLINE - 1));
        let options = parse(&line);
        assert_eq!(options.dom0_args.as_str(), "x".repeat(MAX_CMDLINE - 1));
    }

    #[test]
    fn copy_lossy_stops_at_nul_and_replaces_bad_bytes() {
        assert_eq!(
            copy_lossy(b"root=/dev/sda\0garbage").as_str(),
            "root=/dev/sda"
        );
        assert_eq!(copy_lossy(b"no terminator").as_str(), "no terminator");
        assert_eq!(copy_lossy(b"a\xffb\xc3").as_str(), "a\u{fffd}b\u{fffd}");
        assert_eq!(copy_lossy(b"\0").as_str(), "");
        assert_eq!(copy_lossy(b"").as_str(), "");
    }

    #[test]
    fn copy_lossy_cuts_at_a_character_boundary() {
        let mut bytes = vec![b'a'];
        bytes.extend("€".repeat(MAX_CMDLINE).bytes());
        let text = copy_lossy(&bytes);
        // 1 + 341 * 3 = 1024 bytes.
        assert_eq!(text.len(), 1 + (MAX_CMDLINE - 1) / 3 * 3);
        let text = copy_lossy(&[0xff; 2 * MAX_CMDLINE]);
        assert_eq!(text.as_str(), "\u{fffd}".repeat(MAX_CMDLINE / 3));
    }

    #[test]
    fn random_lines_never_panic() {
        let alphabet: Vec<char> =
            "dom0_mem=loglevel=dom0_crash=-- KMGkmg0123456789\t\néü€\u{a0}\u{3000}"
                .chars()
                .collect();
        let mut random = XorShift(0x5eed_0002);
        for _ in 0..3000 {
            // Now and then longer than a command line, to cut the Dom0 part.
            let length = match random.below(10) {
                0 => 1000 + random.below(100),
                _ => random.below(200),
            } as usize;
            let line: String = (0..length)
                .map(|_| alphabet[random.below(alphabet.len() as u64) as usize])
                .collect();
            let options = parse(&line);
            assert!(options.warnings.len() <= MAX_WARNINGS);
            assert_eq!(options.dom0_args.as_str(), options.dom0_args.trim());
            if let Some(bytes) = options.dom0_memory {
                assert_ne!(bytes, 0);
            }
        }
    }
}
