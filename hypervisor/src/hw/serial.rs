//! COM1, a 16550 UART at 115200 8N1: the hypervisor's console, the sink
//! of its log and of Dom0's console output, and the source of typed input
//! (polled: Dom0 owns the interrupt controllers).

use core::fmt::{self, Write};

use hypervisor::console::SerialLine;
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// Line status: a received byte waits in the data register.
const DATA_READY: u8 = 0x01;
/// Line status: the transmit holding register is empty.
const TRANSMIT_EMPTY: u8 = 0x20;
/// What a line status read returns when no UART answers (the bus floats).
const NO_UART: u8 = 0xff;

/// COM1: its data and line status registers and the state of the line.
pub struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
    line: SerialLine,
}

static COM1_PORT: Mutex<Serial> = Mutex::new(Serial {
    data: Port::new(COM1),
    line_status: Port::new(COM1 + 5),
    line: SerialLine::new(),
});

/// Programs COM1 for 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    let setup: [(u16, u8); 7] = [
        (1, 0x00), // interrupts off
        (3, 0x80), // DLAB on
        (0, 0x01), // divisor 1: 115200 baud
        (1, 0x00),
        (3, 0x03), // 8N1, DLAB off
        (2, 0xc7), // FIFOs on and cleared
        (4, 0x03), // DTR, RTS
    ];
    for (offset, value) in setup {
        // SAFETY: COM1's registers are owned by the hypervisor (Dom0 is
        // kept off these ports) and programming them has no memory effects.
        unsafe { Port::<u8>::new(COM1 + offset).write(value) };
    }
}

impl Serial {
    fn send(&mut self, byte: u8) {
        // Bounded wait for the transmit holding register; a missing UART
        // must not hang the hypervisor.
        for _ in 0..100_000 {
            // SAFETY: reading COM1's line status has no side effects.
            if unsafe { self.line_status.read() } & TRANSMIT_EMPTY != 0 {
                break;
            }
        }
        // SAFETY: writing COM1's data register transmits one byte.
        unsafe { self.data.write(byte) };
    }

    /// Sends `bytes` with the line's newline handling.
    fn put(&mut self, bytes: &[u8]) {
        let mut line = self.line;
        for &byte in bytes {
            line.put(byte, |out| self.send(out));
        }
        self.line = line;
    }

    /// Takes one received byte, if one waits.
    fn receive(&mut self) -> Option<u8> {
        // SAFETY: reading COM1's line status has no side effects beyond
        // clearing its error bits, which nothing here uses.
        let status = unsafe { self.line_status.read() };
        if status == NO_UART || status & DATA_READY == 0 {
            return None;
        }
        // SAFETY: reading COM1's data register takes the received byte,
        // which is what we want.
        Some(unsafe { self.data.read() })
    }
}

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.put(text.as_bytes());
        Ok(())
    }
}

/// Writes formatted text to COM1, holding the port for the whole message.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut port = COM1_PORT.lock();
    let _ = port.write_fmt(args);
}

/// Writes one log line: on a fresh line if Dom0 left its output mid-line
/// (at its shell prompt, say), so log lines always start at the margin.
pub fn write_line_fmt(args: fmt::Arguments<'_>) {
    let mut port = COM1_PORT.lock();
    let mut line = port.line;
    line.start_line(|byte| port.send(byte));
    port.line = line;
    let _ = port.write_fmt(args);
}

/// Writes bytes as they are (Dom0's console output: prompts, echo, escape
/// sequences), a lone line feed as CR LF.
pub fn write_bytes(bytes: &[u8]) {
    COM1_PORT.lock().put(bytes);
}

/// Takes up to `buffer.len()` bytes typed on the serial line; returns how
/// many. Zero when nothing waits or there is no UART.
pub fn receive(buffer: &mut [u8]) -> usize {
    let mut port = COM1_PORT.lock();
    let mut count = 0;
    for slot in buffer.iter_mut() {
        let Some(byte) = port.receive() else {
            break;
        };
        *slot = byte;
        count += 1;
    }
    count
}

/// Writes formatted text even if the port lock is held: for crash reports
/// from an exception that may have interrupted a writer.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    // SAFETY: called only on the way to halting; interleaving with an
    // interrupted writer is acceptable there, a deadlock is not.
    unsafe { COM1_PORT.force_unlock() };
    write_fmt(args);
}
