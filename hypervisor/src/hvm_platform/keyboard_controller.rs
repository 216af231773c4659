//! The PS/2 keyboard controller (8042) of an HVM guest, as far as a guest
//! with no keyboard or mouse needs it: its status register, so a guest
//! polling for "input buffer empty" goes on at once, the commands
//! bootloaders use (command byte, self-test, output port for the A20
//! gate), and its reset line: pulsing it (0xFE, Linux's `reboot=kbd`) or
//! clearing it through the output port restarts the domain, as on a PC.

/// The data port (keyboard data; a command's argument or answer).
pub const DATA_PORT: u16 = 0x60;
/// The status register (read) and command register (write).
pub const COMMAND_PORT: u16 = 0x64;

/// Status bits: a byte waits in the output buffer; the system flag
/// (self-test passed, set by firmware); the last write was a command;
/// the keyboard is not inhibited. "Input buffer full" (bit 1) never is:
/// every write is taken at once.
const STATUS_OUTPUT_FULL: u8 = 1 << 0;
const STATUS_SYSTEM: u8 = 1 << 2;
const STATUS_COMMAND: u8 = 1 << 3;
const STATUS_UNINHIBITED: u8 = 1 << 4;

/// Commands.
const READ_COMMAND_BYTE: u8 = 0x20;
const WRITE_COMMAND_BYTE: u8 = 0x60;
const SELF_TEST: u8 = 0xaa;
const READ_OUTPUT_PORT: u8 = 0xd0;
const WRITE_OUTPUT_PORT: u8 = 0xd1;
/// 0xF0–0xFF pulse output port bits 3–0 low for a moment, those whose
/// bit in the command is clear: 0xFE pulses bit 0, the reset line.
const PULSE_OUTPUT_PORT: u8 = 0xf0;

/// Self-test's answer: passed.
const SELF_TEST_PASSED: u8 = 0x55;
/// Output port bit 0: the CPU's reset line, active low. Bit 1: the A20
/// gate (always open here).
const OUTPUT_PORT_RESET: u8 = 1 << 0;
const OUTPUT_PORT_A20: u8 = 1 << 1;
/// The command byte as firmware leaves it: keyboard interrupt on, system
/// flag, scan-code translation.
const INITIAL_COMMAND_BYTE: u8 = 0x45;

/// What a write to the controller did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Taken (or ignored, as the real controller ignores unknown commands).
    Taken,
    /// The guest pulled the reset line: restart the domain.
    Reset,
}

/// One guest's keyboard controller.
#[derive(Clone, Debug)]
pub struct KeyboardController {
    /// The byte in the output buffer, if one waits.
    output: Option<u8>,
    /// What the data port last read: read again when the buffer is empty,
    /// as hardware does.
    last_output: u8,
    /// The command whose argument the next data-port write is.
    awaiting_argument: Option<u8>,
    command_byte: u8,
    /// Status bit 3: whether the last write went to the command port.
    last_write_was_command: bool,
}

impl Default for KeyboardController {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyboardController {
    /// The controller as firmware leaves it: self-tested, buffers empty.
    pub const fn new() -> Self {
        Self {
            output: None,
            last_output: 0,
            awaiting_argument: None,
            command_byte: INITIAL_COMMAND_BYTE,
            last_write_was_command: false,
        }
    }

    /// The status register.
    pub fn status(&self) -> u8 {
        let mut status = STATUS_SYSTEM | STATUS_UNINHIBITED;
        if self.output.is_some() {
            status |= STATUS_OUTPUT_FULL;
        }
        if self.last_write_was_command {
            status |= STATUS_COMMAND;
        }
        status
    }

    /// Reads the data port: the waiting byte, which empties the buffer.
    pub fn read_data(&mut self) -> u8 {
        if let Some(byte) = self.output.take() {
            self.last_output = byte;
        }
        self.last_output
    }

    /// A command written to the command port.
    pub fn write_command(&mut self, command: u8) -> Written {
        self.last_write_was_command = true;
        self.awaiting_argument = None;
        match command {
            READ_COMMAND_BYTE => self.output = Some(self.command_byte),
            WRITE_COMMAND_BYTE | WRITE_OUTPUT_PORT => self.awaiting_argument = Some(command),
            SELF_TEST => self.output = Some(SELF_TEST_PASSED),
            READ_OUTPUT_PORT => self.output = Some(OUTPUT_PORT_RESET | OUTPUT_PORT_A20),
            PULSE_OUTPUT_PORT..=0xff if command & OUTPUT_PORT_RESET == 0 => {
                return Written::Reset;
            }
            // Keyboard and mouse port enables, the other pulses, and the
            // rest: nothing to do with no keyboard and no mouse.
            _ => {}
        }
        Written::Taken
    }

    /// A byte written to the data port: the argument of the command
    /// before it. Without one it is for the keyboard, which is not there.
    pub fn write_data(&mut self, byte: u8) -> Written {
        self.last_write_was_command = false;
        match self.awaiting_argument.take() {
            Some(WRITE_COMMAND_BYTE) => self.command_byte = byte,
            Some(WRITE_OUTPUT_PORT) if byte & OUTPUT_PORT_RESET == 0 => return Written::Reset,
            // The A20 gate stays open whatever is asked.
            _ => {}
        }
        Written::Taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT_FULL: u8 = 1 << 1;

    #[test]
    fn an_idle_controller_has_both_buffers_empty_and_passed_self_test() {
        let controller = KeyboardController::new();
        let status = controller.status();
        assert_eq!(status & (STATUS_OUTPUT_FULL | INPUT_FULL), 0);
        assert_ne!(status & STATUS_SYSTEM, 0);
        assert_ne!(status, 0xff, "not the all ones of an empty bus");
    }

    #[test]
    fn pulsing_the_reset_line_resets_and_other_pulses_do_not() {
        let mut controller = KeyboardController::new();
        assert_eq!(controller.write_command(0xfe), Written::Reset);
        for command in [0xf0, 0xfc, 0xfa] {
            assert_eq!(
                controller.write_command(command),
                Written::Reset,
                "{command:#x}"
            );
        }
        // Bit 0 set in the command: the reset line is not pulsed.
        for command in [0xff, 0xfd, 0xf1] {
            assert_eq!(
                controller.write_command(command),
                Written::Taken,
                "{command:#x}"
            );
        }
        assert_eq!(controller.status() & INPUT_FULL, 0);
    }

    #[test]
    fn the_output_port_opens_a20_without_a_reset_and_resets_when_bit_0_is_clear() {
        let mut controller = KeyboardController::new();
        // A bootloader's A20 enable: 0xD1, then 0xDF on the data port.
        assert_eq!(controller.write_command(WRITE_OUTPUT_PORT), Written::Taken);
        assert_eq!(controller.write_data(0xdf), Written::Taken);
        assert_eq!(controller.write_command(READ_OUTPUT_PORT), Written::Taken);
        assert_eq!(
            controller.read_data() & 0b11,
            0b11,
            "reset line high, A20 open"
        );
        assert_eq!(controller.write_command(WRITE_OUTPUT_PORT), Written::Taken);
        assert_eq!(controller.write_data(0xde), Written::Reset);
        // A data byte with no command before it is the keyboard's.
        assert_eq!(controller.write_data(0x00), Written::Taken);
    }

    #[test]
    fn command_answers_wait_in_the_output_buffer_until_read() {
        let mut controller = KeyboardController::new();
        controller.write_command(SELF_TEST);
        assert_ne!(controller.status() & STATUS_OUTPUT_FULL, 0);
        assert_eq!(controller.read_data(), SELF_TEST_PASSED);
        assert_eq!(controller.status() & STATUS_OUTPUT_FULL, 0);
        assert_eq!(
            controller.read_data(),
            SELF_TEST_PASSED,
            "the latch reads again"
        );
        // The command byte, written and read back.
        controller.write_command(WRITE_COMMAND_BYTE);
        assert_eq!(controller.status() & STATUS_COMMAND, STATUS_COMMAND);
        controller.write_data(0x61);
        assert_eq!(controller.status() & STATUS_COMMAND, 0);
        controller.write_command(READ_COMMAND_BYTE);
        assert_eq!(controller.read_data(), 0x61);
        // A new command forgets a pending argument.
        controller.write_command(WRITE_OUTPUT_PORT);
        controller.write_command(READ_COMMAND_BYTE);
        assert_eq!(controller.write_data(0x00), Written::Taken);
        assert_eq!(controller.read_data(), 0x61);
    }
}
