//! The caps that bound every allocation the parser makes, whatever the input.
//!
//! A config may come from an API client, so its size, and everything sized
//! by it, has a ceiling. Exceeding one is an error that names the limit.

/// Largest config file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Longest string value, in bytes, after escapes are decoded (and after
/// `+=` concatenation).
pub const MAX_STRING_BYTES: usize = 4096;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 64;

/// Most items in one list (after `+=` concatenation).
pub const MAX_LIST_ITEMS: usize = 256;

/// Deepest nesting of lists: `[ [ "a" ] ]` has depth 2. xl only needs 2
/// (`vnuma`).
pub const MAX_LIST_DEPTH: usize = 4;

/// Most distinct keys in one file.
pub const MAX_SETTINGS: usize = 512;

/// Most warnings kept; the last one kept says that more were dropped.
pub const MAX_WARNINGS: usize = 64;

/// Longest guest kernel command line, in bytes: Linux on x86 keeps 2047
/// bytes and a NUL (`COMMAND_LINE_SIZE`), and silently drops the rest.
pub const MAX_COMMAND_LINE_BYTES: usize = 2047;
