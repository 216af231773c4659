//! COM1, a 16550 UART at 115200 8N1: the hypervisor's console, and the sink
//! of its log.

use core::fmt::{self, Write};

use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// The COM1 transmitter.
pub struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
}

static COM1_PORT: Mutex<Serial> = Mutex::new(Serial {
    data: Port::new(COM1),
    line_status: Port::new(COM1 + 5),
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
            if unsafe { self.line_status.read() } & 0x20 != 0 {
                break;
            }
        }
        // SAFETY: writing COM1's data register transmits one byte.
        unsafe { self.data.write(byte) };
    }
}

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                self.send(b'\r');
            }
            self.send(byte);
        }
        Ok(())
    }
}

/// Writes formatted text to COM1, holding the port for the whole message.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut port = COM1_PORT.lock();
    let _ = port.write_fmt(args);
}

/// Writes formatted text even if the port lock is held: for crash reports
/// from an exception that may have interrupted a writer.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    // SAFETY: called only on the way to halting; interleaving with an
    // interrupted writer is acceptable there, a deadlock is not.
    unsafe { COM1_PORT.force_unlock() };
    write_fmt(args);
}
