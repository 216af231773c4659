//! `console_io` hypercall (number 18): `console_io(cmd, count, buffer)`.

/// Write `count` bytes from the guest-virtual `buffer` to the console.
pub const CONSOLEIO_WRITE: u64 = 0;
/// Read up to `count` bytes of console input into `buffer` (Dom0 only).
pub const CONSOLEIO_READ: u64 = 1;
