//! Dom0's log, written through the hypervisor's console hypercall.

use core::fmt::{self, Write};

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

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut writer = WRITER.lock();
            let _ = writeln!(writer, "{}", record.args());
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

/// Writes even if a crash interrupted a writer holding the lock.
pub fn write_emergency(args: fmt::Arguments<'_>) {
    // SAFETY: only used on the way to shutting down; garbled output beats
    // a deadlock.
    unsafe { WRITER.force_unlock() };
    let mut writer = WRITER.lock();
    let _ = writer.write_fmt(args);
    writer.flush();
}
