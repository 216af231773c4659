//! Errors and warnings, each with the place in the file it is about.
//!
//! An error stops parsing; a warning is kept beside the result. Both print
//! as `line:column: message` so a caller only prefixes the file name.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::disk::{DiskFault, DiskFormat};
use crate::limits::{
    MAX_COMMAND_LINE_BYTES, MAX_FILE_BYTES, MAX_KEY_BYTES, MAX_LIST_DEPTH, MAX_LIST_ITEMS,
    MAX_SETTINGS, MAX_STRING_BYTES, MAX_WARNINGS,
};
use crate::position::Position;
use crate::vif::VifFault;

/// Why a config was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Where the fault is; `None` when it is about something absent (a
    /// required key).
    pub position: Option<Position>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// An error at a place in the file.
    pub fn at(position: Position, kind: ErrorKind) -> Error {
        Error {
            position: Some(position),
            kind,
        }
    }

    /// An error about the file as a whole.
    pub fn whole_file(kind: ErrorKind) -> Error {
        Error {
            position: None,
            kind,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(formatter, "{position}: {}", self.kind),
            None => write!(formatter, "{}", self.kind),
        }
    }
}

impl core::error::Error for Error {}

/// What a token turned out to be, for "expected X, found Y" messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A key (an identifier).
    Key(String),
    /// A quoted string.
    String,
    /// A number.
    Number,
    /// `=`.
    Equals,
    /// `+=`.
    PlusEquals,
    /// `,`.
    Comma,
    /// `[`.
    OpenBracket,
    /// `]`.
    CloseBracket,
    /// `;`.
    Semicolon,
    /// A line break (or a comment running to one).
    EndOfLine,
    /// The end of the text.
    EndOfFile,
}

impl fmt::Display for Found {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Key(key) => write!(formatter, "`{}`", Shown(key)),
            Found::String => formatter.write_str("a string"),
            Found::Number => formatter.write_str("a number"),
            Found::Equals => formatter.write_str("`=`"),
            Found::PlusEquals => formatter.write_str("`+=`"),
            Found::Comma => formatter.write_str("`,`"),
            Found::OpenBracket => formatter.write_str("`[`"),
            Found::CloseBracket => formatter.write_str("`]`"),
            Found::Semicolon => formatter.write_str("`;`"),
            Found::EndOfLine => formatter.write_str("end of line"),
            Found::EndOfFile => formatter.write_str("end of file"),
        }
    }
}

/// Why a number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberFault {
    /// Not decimal digits nor `0x` and hex digits.
    NotANumber,
    /// A leading zero: xl reads `0755` as octal, which surprises.
    LeadingZero,
    /// More than 64 bits.
    TooLarge,
}

/// Everything that makes a config unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    // ---- the text as a whole
    /// The file is larger than [`MAX_FILE_BYTES`].
    FileTooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// The bytes are not UTF-8.
    InvalidUtf8,

    // ---- lexical
    /// A character that cannot start a token here.
    UnexpectedCharacter {
        /// The character.
        character: char,
    },
    /// A string with no closing quote on its line.
    UnterminatedString,
    /// A backslash as the last character of a line inside a string.
    BackslashAtEndOfLine,
    /// A backslash followed by a character that is not an escape.
    InvalidEscape {
        /// The character after the backslash.
        character: char,
    },
    /// `\x` not followed by two hex digits.
    InvalidHexEscape,
    /// An escape that decodes to NUL, which would cut the string short in C.
    NulInString,
    /// An escape for a byte above 0x7f: strings are UTF-8 text.
    NonAsciiEscape {
        /// The value the escape names.
        value: u32,
    },
    /// A raw control character inside quotes.
    ControlCharacterInString {
        /// Its code.
        value: u32,
    },
    /// A string longer than [`MAX_STRING_BYTES`].
    StringTooLong,
    /// A key that is not `[a-z][a-z0-9_]*`.
    InvalidKey {
        /// The key as written.
        key: String,
    },
    /// A key longer than [`MAX_KEY_BYTES`].
    KeyTooLong,
    /// A malformed number.
    InvalidNumber {
        /// The number as written.
        text: String,
        /// What is wrong with it.
        fault: NumberFault,
    },

    // ---- syntax
    /// A key not followed by `=` or `+=`.
    ExpectedEquals {
        /// The key.
        key: String,
        /// What came instead.
        found: Found,
    },
    /// `=` not followed by a value.
    ExpectedValue {
        /// What came instead.
        found: Found,
    },
    /// A value followed by something other than the end of the setting.
    ExpectedEndOfSetting {
        /// The key being set.
        key: String,
        /// What came instead.
        found: Found,
    },
    /// A setting that does not start with a key.
    ExpectedKey {
        /// What came instead.
        found: Found,
    },
    /// A list item followed by something other than `,` or `]`.
    ExpectedCommaOrBracket {
        /// What came instead.
        found: Found,
    },
    /// A `[` never closed.
    UnterminatedList,
    /// A list longer than [`MAX_LIST_ITEMS`].
    ListTooLong,
    /// Lists nested deeper than [`MAX_LIST_DEPTH`].
    ListTooDeep,
    /// More distinct keys than [`MAX_SETTINGS`].
    TooManySettings,
    /// `+=` joining a list and a string.
    AppendMismatch {
        /// The key.
        key: String,
    },
    /// `+=` on a number.
    AppendToNumber {
        /// The key.
        key: String,
    },

    // ---- typed values, shared
    /// A required key is absent.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A list where a single value belongs.
    ExpectedSingleValue {
        /// The key.
        key: &'static str,
    },
    /// A single value where a list belongs.
    ExpectedList {
        /// The key.
        key: &'static str,
    },
    /// A nested list where a list item must be a string.
    ExpectedStringItem {
        /// The key.
        key: &'static str,
        /// The item's index, from 0.
        index: usize,
    },
    /// A value that must be a number is not one.
    NotANumber {
        /// The key.
        key: &'static str,
        /// The value as written.
        text: String,
    },
    /// A number outside the range the key allows.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A value from a fixed set that is not in it.
    UnknownChoice {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// The allowed values, for the message.
        allowed: &'static str,
    },
    /// An empty string where text is needed.
    EmptyValue {
        /// The key.
        key: &'static str,
    },

    // ---- domain config
    /// A domain name that cannot be used.
    InvalidName {
        /// Why.
        reason: &'static str,
    },
    /// `type = "pv"` or `builder = "generic"`: Xenolith runs PVH and HVM only.
    PvNotSupported,
    /// `builder` and `type` name different kinds of guest.
    ContradictingBuilderAndType,
    /// `maxmem` below `memory`.
    MaxMemoryBelowMemory {
        /// `memory` in MiB.
        memory: u64,
        /// `maxmem` in MiB.
        max_memory: u64,
    },
    /// `maxvcpus` below `vcpus`.
    MaxVcpusBelowVcpus {
        /// `vcpus`.
        vcpus: u32,
        /// `maxvcpus`.
        max_vcpus: u32,
    },
    /// A PVH guest without `kernel`: there is no firmware or bootloader.
    KernelRequired,
    /// The combined command line is longer than Linux keeps.
    CommandLineTooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// A malformed `uuid`.
    InvalidUuid,
    /// A fault in one `vif` entry.
    Vif {
        /// The entry's index, from 0.
        index: usize,
        /// What is wrong.
        fault: VifFault,
    },
    /// A fault in one `disk` entry.
    Disk {
        /// The entry's index, from 0.
        index: usize,
        /// What is wrong.
        fault: DiskFault,
    },
    /// Two vifs with the same MAC address.
    DuplicateMac {
        /// The second vif's index.
        index: usize,
        /// The first vif's index.
        first: usize,
    },
    /// Two disks with the same `vdev`.
    DuplicateVdev {
        /// The second disk's index.
        index: usize,
        /// The first disk's index.
        first: usize,
    },
    /// A disk format xl knows but Xenolith's storage does not serve.
    UnsupportedDiskFormat {
        /// The disk's index.
        index: usize,
        /// The format.
        format: DiskFormat,
    },

    // ---- appliance config
    /// `address` is not `a.b.c.d/prefix`.
    InvalidAddress {
        /// The key (`address` or `gateway`).
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// `network = "static"` without `address`.
    StaticWithoutAddress,
    /// `address` or `gateway` with `network = "dhcp"`.
    AddressWithDhcp {
        /// The key that should not be there.
        key: &'static str,
    },
    /// The gateway is not inside the address's subnet, or is the address.
    GatewayNotInSubnet,
    /// `api_port` without `api_token`: the API never runs unauthenticated.
    ApiPortWithoutToken,
    /// An API token that is too short, too long or has unsafe characters.
    InvalidApiToken {
        /// Why.
        reason: &'static str,
    },
    /// A boot guest name that cannot name a config or module.
    InvalidGuestName {
        /// The entry's index.
        index: usize,
    },
    /// The same guest listed twice in `guests`.
    DuplicateGuest {
        /// The second entry's index.
        index: usize,
    },
    /// A storage name (`storage_disk`, `volume_store`) with unsafe characters.
    InvalidStorageName {
        /// The key.
        key: &'static str,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::FileTooLarge { size } => write!(
                formatter,
                "the file is {size} bytes; the limit is {MAX_FILE_BYTES}"
            ),
            ErrorKind::InvalidUtf8 => formatter.write_str("the file is not valid UTF-8 text"),
            ErrorKind::UnexpectedCharacter { character } => {
                write!(formatter, "unexpected character {character:?}")?;
                if matches!(character, '+' | '-' | '.' | '(' | ')' | ':') {
                    formatter.write_str(
                        " (this looks like Python: xl configs are `key = value` lines, \
                         values are quoted strings, numbers or [lists])",
                    )?;
                } else if character.is_ascii_uppercase() {
                    formatter.write_str(" (keys are lowercase)")?;
                }
                Ok(())
            }
            ErrorKind::UnterminatedString => {
                formatter.write_str("string has no closing quote on this line")
            }
            ErrorKind::BackslashAtEndOfLine => formatter.write_str(
                "backslash at end of line: a string cannot continue onto the next line \
                 (use `+=` to build long strings)",
            ),
            ErrorKind::InvalidEscape { character } => write!(
                formatter,
                "invalid escape `\\{}` in string (known: \\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v \\xHH \\ooo)",
                character.escape_debug()
            ),
            ErrorKind::InvalidHexEscape => {
                formatter.write_str("`\\x` must be followed by exactly two hex digits")
            }
            ErrorKind::NulInString => formatter.write_str("a string cannot contain NUL"),
            ErrorKind::NonAsciiEscape { value } => write!(
                formatter,
                "escape for byte {value:#x} is above 0x7f: write the character itself (files are UTF-8)"
            ),
            ErrorKind::ControlCharacterInString { value } => write!(
                formatter,
                "control character {value:#04x} inside a string: use an escape such as \\t or \\x1b"
            ),
            ErrorKind::StringTooLong => {
                write!(formatter, "string is longer than {MAX_STRING_BYTES} bytes")
            }
            ErrorKind::InvalidKey { key } => write!(
                formatter,
                "invalid key `{}`: keys are a lowercase letter then lowercase letters, digits or `_`",
                Shown(key)
            ),
            ErrorKind::KeyTooLong => write!(formatter, "key is longer than {MAX_KEY_BYTES} bytes"),
            ErrorKind::InvalidNumber { text, fault } => {
                write!(formatter, "invalid number `{}`: ", Shown(text))?;
                match fault {
                    NumberFault::NotANumber => formatter.write_str(
                        "numbers are decimal digits or `0x` and hex digits, with no unit",
                    ),
                    NumberFault::LeadingZero => formatter.write_str(
                        "a leading zero makes xl read it as octal; drop the zero or write hex (0x...)",
                    ),
                    NumberFault::TooLarge => formatter.write_str("it does not fit in 64 bits"),
                }
            }
            ErrorKind::ExpectedEquals { key, found } => write!(
                formatter,
                "expected `=` or `+=` after `{}`, found {found}",
                Shown(key)
            ),
            ErrorKind::ExpectedValue { found } => write!(
                formatter,
                "expected a value (a \"string\", a number or a [list]), found {found}"
            ),
            ErrorKind::ExpectedEndOfSetting { key, found } => write!(
                formatter,
                "expected end of line or `;` after the value of `{}`, found {found}",
                Shown(key)
            ),
            ErrorKind::ExpectedKey { found } => write!(
                formatter,
                "expected a setting (`key = value`), found {found}"
            ),
            ErrorKind::ExpectedCommaOrBracket { found } => {
                write!(
                    formatter,
                    "expected `,` or `]` after a list item, found {found}"
                )
            }
            ErrorKind::UnterminatedList => formatter.write_str("this `[` is never closed"),
            ErrorKind::ListTooLong => {
                write!(formatter, "list has more than {MAX_LIST_ITEMS} items")
            }
            ErrorKind::ListTooDeep => write!(
                formatter,
                "lists are nested more than {MAX_LIST_DEPTH} deep"
            ),
            ErrorKind::TooManySettings => {
                write!(formatter, "more than {MAX_SETTINGS} different keys")
            }
            ErrorKind::AppendMismatch { key } => write!(
                formatter,
                "`+=` cannot add a [list] to a \"string\" or a string to a list (`{}`)",
                Shown(key)
            ),
            ErrorKind::AppendToNumber { key } => write!(
                formatter,
                "`+=` works on strings and lists, not numbers (`{}`)",
                Shown(key)
            ),
            ErrorKind::MissingKey { key } => write!(formatter, "`{key}` is required"),
            ErrorKind::ExpectedSingleValue { key } => {
                write!(formatter, "`{key}` takes a single value, not a list")
            }
            ErrorKind::ExpectedList { key } => write!(
                formatter,
                "`{key}` takes a list: {key} = [ \"...\", \"...\" ]"
            ),
            ErrorKind::ExpectedStringItem { key, index } => write!(
                formatter,
                "item {index} of `{key}` must be a string, not a list"
            ),
            ErrorKind::NotANumber { key, text } => {
                write!(
                    formatter,
                    "`{key}` must be a number, not \"{}\"",
                    Shown(text)
                )
            }
            ErrorKind::OutOfRange {
                key,
                value,
                min,
                max,
            } => write!(
                formatter,
                "`{key}` is {value}; it must be between {min} and {max}"
            ),
            ErrorKind::UnknownChoice {
                key,
                value,
                allowed,
            } => write!(
                formatter,
                "unknown {key} \"{}\" (expected one of: {allowed})",
                Shown(value)
            ),
            ErrorKind::EmptyValue { key } => write!(formatter, "`{key}` is empty"),
            ErrorKind::InvalidName { reason } => write!(formatter, "invalid `name`: {reason}"),
            ErrorKind::PvNotSupported => {
                formatter.write_str("PV guests are not supported: use type = \"pvh\" (or \"hvm\")")
            }
            ErrorKind::ContradictingBuilderAndType => {
                formatter.write_str("`builder` and `type` name different kinds of guest")
            }
            ErrorKind::MaxMemoryBelowMemory { memory, max_memory } => write!(
                formatter,
                "`maxmem` ({max_memory} MiB) is below `memory` ({memory} MiB)"
            ),
            ErrorKind::MaxVcpusBelowVcpus { vcpus, max_vcpus } => write!(
                formatter,
                "`maxvcpus` ({max_vcpus}) is below `vcpus` ({vcpus})"
            ),
            ErrorKind::KernelRequired => formatter
                .write_str("a PVH guest needs `kernel` (there is no bootloader or firmware)"),
            ErrorKind::CommandLineTooLong { length } => write!(
                formatter,
                "the kernel command line is {length} bytes; Linux keeps only {MAX_COMMAND_LINE_BYTES}"
            ),
            ErrorKind::InvalidUuid => formatter.write_str(
                "invalid `uuid`: expected 32 hex digits as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            ),
            ErrorKind::Vif { index, fault } => write!(formatter, "vif {index}: {fault}"),
            ErrorKind::Disk { index, fault } => write!(formatter, "disk {index}: {fault}"),
            ErrorKind::DuplicateMac { index, first } => {
                write!(
                    formatter,
                    "vif {index} has the same MAC address as vif {first}"
                )
            }
            ErrorKind::DuplicateVdev { index, first } => {
                write!(formatter, "disk {index} has the same vdev as disk {first}")
            }
            ErrorKind::UnsupportedDiskFormat { index, format } => write!(
                formatter,
                "disk {index}: format {} is not served by Xenolith (use raw, qcow2 or vmdk)",
                format.name()
            ),
            ErrorKind::InvalidAddress { key, value } => write!(
                formatter,
                "invalid `{key}` \"{}\": expected {}",
                Shown(value),
                if *key == "address" {
                    "an IPv4 address with a prefix length, such as 192.168.1.10/24"
                } else {
                    "an IPv4 address, such as 192.168.1.1"
                }
            ),
            ErrorKind::StaticWithoutAddress => {
                formatter.write_str("network = \"static\" needs `address`")
            }
            ErrorKind::AddressWithDhcp { key } => write!(
                formatter,
                "`{key}` is set but network is \"dhcp\"; set network = \"static\" or remove it"
            ),
            ErrorKind::GatewayNotInSubnet => formatter
                .write_str("`gateway` must be inside the subnet of `address` and not the address"),
            ErrorKind::ApiPortWithoutToken => formatter.write_str(
                "`api_port` is set without `api_token`: the API never runs unauthenticated",
            ),
            ErrorKind::InvalidApiToken { reason } => {
                write!(formatter, "invalid `api_token`: {reason}")
            }
            ErrorKind::InvalidGuestName { index } => write!(
                formatter,
                "guests item {index}: a guest is named by 1 to 64 letters, digits, `.`, `_` or `-`"
            ),
            ErrorKind::DuplicateGuest { index } => {
                write!(formatter, "guests item {index} repeats an earlier guest")
            }
            ErrorKind::InvalidStorageName { key } => write!(
                formatter,
                "`{key}` must be 1 to 64 letters, digits, `.`, `_`, `-` or `:`"
            ),
        }
    }
}

/// Something in a config that is accepted but deserves attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Where, when it is about a place.
    pub position: Option<Position>,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(formatter, "{position}: warning: {}", self.kind),
            None => write!(formatter, "warning: {}", self.kind),
        }
    }
}

/// The kinds of warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// A key this config type does not use; kept in the [`Document`](crate::Document).
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key set twice with `=`: the later value wins, as in xl.
    DuplicateKey {
        /// The key.
        key: String,
        /// Line of the earlier assignment.
        first_line: u32,
    },
    /// `builder` is deprecated since Xen 4.10.
    BuilderDeprecated,
    /// Neither `type` nor `builder`: xl would build PV; Xenolith builds PVH.
    TypeDefaultedToPvh,
    /// Neither `memory` nor `maxmem`: libxl's default applies.
    MemoryDefaulted {
        /// The default, in MiB.
        mebibytes: u64,
    },
    /// `cmdline` wins over `root` and `extra`, as in xl.
    CommandLineOverridesRootAndExtra,
    /// `ramdisk` without `kernel` is ignored, as in xl.
    RamdiskWithoutKernel,
    /// A vif option xl knows that Xenolith ignores.
    IgnoredVifOption {
        /// The vif's index.
        index: usize,
        /// The option as written.
        option: String,
    },
    /// A disk option xl knows that Xenolith ignores.
    IgnoredDiskOption {
        /// The disk's index.
        index: usize,
        /// The option as written.
        option: String,
    },
    /// The warning list was full; later warnings were dropped.
    TooManyWarnings,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::UnknownKey { key } => {
                write!(formatter, "unknown key `{}` is ignored", Shown(key))
            }
            WarningKind::DuplicateKey { key, first_line } => write!(
                formatter,
                "`{}` was already set on line {first_line}; this later value wins",
                Shown(key)
            ),
            WarningKind::BuilderDeprecated => {
                formatter.write_str("`builder` is deprecated; use `type`")
            }
            WarningKind::TypeDefaultedToPvh => formatter.write_str(
                "no `type`: using \"pvh\" (xl would build a PV guest, which Xenolith does not run)",
            ),
            WarningKind::MemoryDefaulted { mebibytes } => write!(
                formatter,
                "no `memory`: using libxl's default of {mebibytes} MiB"
            ),
            WarningKind::CommandLineOverridesRootAndExtra => {
                formatter.write_str("ignoring `root` and `extra` in favour of `cmdline`")
            }
            WarningKind::RamdiskWithoutKernel => {
                formatter.write_str("`ramdisk` is ignored without `kernel`")
            }
            WarningKind::IgnoredVifOption { index, option } => write!(
                formatter,
                "vif {index}: option `{}` is not used by Xenolith",
                Shown(option)
            ),
            WarningKind::IgnoredDiskOption { index, option } => write!(
                formatter,
                "disk {index}: option `{}` is not used by Xenolith",
                Shown(option)
            ),
            WarningKind::TooManyWarnings => write!(
                formatter,
                "more than {MAX_WARNINGS} warnings; the rest are dropped"
            ),
        }
    }
}

/// Appends a warning unless the list is full; the last slot says so.
pub(crate) fn push_warning(warnings: &mut Vec<Warning>, warning: Warning) {
    let kept = warnings.len();
    if kept + 1 < MAX_WARNINGS {
        warnings.push(warning);
    } else if kept + 1 == MAX_WARNINGS {
        warnings.push(Warning {
            position: None,
            kind: WarningKind::TooManyWarnings,
        });
    }
}

/// Shows at most 48 characters of a value in a message, so one long string
/// cannot flood a log line.
pub(crate) struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 48;
        let mut characters = self.0.chars();
        for character in characters.by_ref().take(LIMIT) {
            write!(formatter, "{}", character.escape_debug())?;
        }
        if characters.next().is_some() {
            formatter.write_str("…")?;
        }
        Ok(())
    }
}
