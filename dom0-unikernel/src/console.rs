//! Dom0's output on the appliance's serial line, written through the
//! hypervisor's console hypercall: its log (also kept for `dmesg`), the
//! management shell, and mirrored guest consoles.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use dom0::console_log::ConsoleLog;

use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

use crate::hypercall;

/// Gathers one message so it reaches the console in one hypercall.
struct LineWriter {
    buffer: [u8; 512],
    length: usize,
}

impl LineWriter {
    const fn new() -> Self {
        Self {
            buffer: [0; 512],
            length: 0,
        }
    }

    fn flush(&mut self) {
        hypercall::console_write(&self.buffer[..self.length]);
        self.length = 0;
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.length == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.length] = byte;
            self.length += 1;
        }
        Ok(())
    }
}

static WRITER: Mutex<LineWriter> = Mutex::new(LineWriter::new());

/// The shell's prompt ends the screen: output starts on a new line, and
/// the shell shows its prompt again afterwards.
static PROMPT_SHOWN: AtomicBool = AtomicBool::new(false);

/// Records that the shell just printed its prompt.
pub fn set_prompt_shown() {
    PROMPT_SHOWN.store(true, Ordering::Relaxed);
}

/// Records that the shell moved off its prompt's line itself.
pub fn clear_prompt_shown() {
    PROMPT_SHOWN.store(false, Ordering::Relaxed);
}

/// Whether the prompt is still the last thing on the screen.
pub fn prompt_shown() -> bool {
    PROMPT_SHOWN.load(Ordering::Relaxed)
}

/// Moves off the prompt's line before other output.
fn leave_prompt() {
    if PROMPT_SHOWN.swap(false, Ordering::Relaxed) {
        hypercall::console_write(b"\r\n");
    }
}

/// Dom0's recent log lines, for `dmesg`.
static HISTORY: Mutex<ConsoleLog> = Mutex::new(ConsoleLog::new());

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut writer = WRITER.lock();
            leave_prompt();
            let _ = writeln!(writer, "{}", record.args());
            HISTORY.lock().push(&writer.buffer[..writer.length], |_| {});
            writer.flush();
        }
    }

    fn flush(&self) {}
}

/// Routes the `log` crate to the console.
pub fn init() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Writes bytes as they are (a shell's echo, an attached guest console).
pub fn write_raw(bytes: &[u8]) {
    let _writer = WRITER.lock();
    for chunk in bytes.chunks(512) {
        hypercall::console_write(chunk);
    }
}

/// Writes one line (a mirrored guest console line, shell output).
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut writer = WRITER.lock();
    leave_prompt();
    let _ = writer.write_fmt(args);
    let _ = writer.write_str("\n");
    writer.flush();
}

/// Dom0's recent log, oldest first.
pub fn history() -> alloc::vec::Vec<u8> {
    HISTORY.lock().history()
}

/// Writes even if a crash interrupted a writer holding the lock.
pub fn write_emergency(args: fmt::Arguments<'_>) {
    // SAFETY: only used on the way to shutting down; garbled output beats
    // a deadlock.
    unsafe { WRITER.force_unlock() };
    let mut writer = WRITER.lock();
    let _ = writer.write_fmt(args);
    writer.flush();
}
