//! The few emulated devices an HVM guest has, as a pure state machine the
//! machine feeds the guest's port accesses: PCI configuration mechanism 1
//! (ports 0xCF8/0xCFC) with a host bridge at 00:00.0 and the Xen platform
//! device at 00:02.0, and the Xen platform I/O ports at 0x10 (the magic
//! Linux's `xen_unplug_emulated_devices` checks), and the keyboard
//! controller's status and reset line at 0x60/0x64 ([`keyboard_controller`]).
//! Everything else on an HVM guest's port bus reads as nothing there (all
//! ones).
//!
//! Why these: Linux HVM guests load their PV frontends only when the
//! platform ports answer (`xen_has_pv_devices`), and set up grant tables
//! only from the platform PCI device's driver (`platform_pci_probe`: it
//! maps the grant frames in the device's memory BAR). There is no INTx
//! pin: guests use the callback vector (HVM_PARAM_CALLBACK_IRQ).

pub mod keyboard_controller;

use keyboard_controller::{KeyboardController, Written};

/// The PCI configuration address register.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The PCI configuration data window (0xCFC–0xCFF).
pub const CONFIG_DATA: u16 = 0xcfc;
/// Xen's platform I/O ports: magic / unplug / driver version at +0,
/// protocol version / product number / log at +2.
pub const XEN_IOPORT_BASE: u16 = 0x10;
/// What `inw(0x10)` answers.
pub const XEN_IOPORT_MAGIC: u16 = 0x49d2;
/// The platform I/O protocol version (`inb(0x12)`).
pub const XEN_IOPORT_PROTOCOL: u8 = 1;

/// The Xen platform device's memory BAR: where guests map their grant
/// frames (and anything else they place with XENMEM_add_to_physmap). Above
/// any HVM guest's RAM (limited to 3 GiB) and below the APIC.
pub const PLATFORM_MMIO_BASE: u32 = 0xf000_0000;
/// Its size (as Xen's: 16 MiB).
pub const PLATFORM_MMIO_SIZE: u32 = 0x100_0000;
/// Its I/O BAR (as Xen's: 256 ports; nothing answers there).
pub const PLATFORM_IO_BASE: u32 = 0xc000;
pub const PLATFORM_IO_SIZE: u32 = 0x100;

/// Device numbers on bus 0.
const HOST_BRIDGE: u8 = 0;
const PLATFORM_DEVICE: u8 = 2;

/// Command register bits a guest may set: I/O space, memory space, bus
/// master.
const COMMAND_WRITABLE: u16 = 0b111;
/// BAR type bits: I/O space; memory, prefetchable.
const BAR_IO: u32 = 1;
const BAR_MEMORY_PREFETCHABLE: u32 = 1 << 3;

/// One HVM guest's platform devices.
#[derive(Clone, Debug)]
pub struct HvmPlatform {
    /// The last value written to 0xCF8.
    config_address: u32,
    /// Command registers of the host bridge and the platform device.
    commands: [u16; 2],
    /// The platform device's BAR 0 (I/O) and BAR 1 (memory) as written.
    bars: [u32; 2],
    /// What the guest asked to unplug (Xen's UNPLUG_* bits), if it did.
    unplugged: Option<u16>,
    keyboard: KeyboardController,
}

/// What an OUT to the platform did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWrite {
    /// No device is there: the caller ignores it.
    Unclaimed,
    /// A device took it.
    Taken,
    /// The guest pulled the keyboard controller's reset line: the caller
    /// restarts the domain, as for the reset register at 0xCF9.
    Reset,
}

impl From<bool> for PortWrite {
    fn from(taken: bool) -> Self {
        if taken { Self::Taken } else { Self::Unclaimed }
    }
}

impl Default for HvmPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl HvmPlatform {
    /// The devices as firmware would leave them: BARs assigned, decoding
    /// off until the guest's driver enables them.
    pub const fn new() -> Self {
        Self {
            config_address: 0,
            commands: [0; 2],
            bars: [
                PLATFORM_IO_BASE | BAR_IO,
                PLATFORM_MMIO_BASE | BAR_MEMORY_PREFETCHABLE,
            ],
            unplugged: None,
            keyboard: KeyboardController::new(),
        }
    }

    /// What the guest asked to unplug through port 0x10, if it did.
    pub const fn unplugged(&self) -> Option<u16> {
        self.unplugged
    }

    /// An IN of `size` bytes from `port`: `Some(value)` when a device here
    /// answers, `None` when nothing does (the caller reads all ones).
    pub fn read(&mut self, port: u16, size: u8) -> Option<u32> {
        match (port, size) {
            (XEN_IOPORT_BASE, 2) => Some(u32::from(XEN_IOPORT_MAGIC)),
            // PLATFLAGS: no flags.
            (XEN_IOPORT_BASE, 1) => Some(0),
            (port, 1) if port == XEN_IOPORT_BASE + 2 => Some(u32::from(XEN_IOPORT_PROTOCOL)),
            (keyboard_controller::COMMAND_PORT, 1) => Some(u32::from(self.keyboard.status())),
            (keyboard_controller::DATA_PORT, 1) => Some(u32::from(self.keyboard.read_data())),
            (CONFIG_ADDRESS, 4) => Some(self.config_address),
            (CONFIG_DATA..=0xcff, 1 | 2 | 4) => {
                let offset = port - CONFIG_DATA;
                if u16::from(size) + offset > 4 {
                    return None;
                }
                let register = self.selected_register()?;
                let dword = self.config_read(register.0, register.1);
                Some(extract(dword, offset, size))
            }
            _ => None,
        }
    }

    /// An OUT of `value` (`size` bytes) to `port`.
    pub fn write(&mut self, port: u16, size: u8, value: u32) -> PortWrite {
        let keyboard = match (port, size) {
            (keyboard_controller::COMMAND_PORT, 1) => self.keyboard.write_command(value as u8),
            (keyboard_controller::DATA_PORT, 1) => self.keyboard.write_data(value as u8),
            _ => return self.write_other(port, size, value).into(),
        };
        match keyboard {
            Written::Taken => PortWrite::Taken,
            Written::Reset => PortWrite::Reset,
        }
    }

    /// [`Self::write`] to the Xen and PCI ports; true if a device here
    /// took it.
    fn write_other(&mut self, port: u16, size: u8, value: u32) -> bool {
        match (port, size) {
            (XEN_IOPORT_BASE, 2) => {
                self.unplugged = Some(value as u16);
                true
            }
            // The driver version (4 bytes at +0), the product number
            // (2 bytes at +2) and log bytes (1 byte at +2): noted, unused.
            (XEN_IOPORT_BASE, 4) => true,
            (port, 1 | 2) if port == XEN_IOPORT_BASE + 2 => true,
            (CONFIG_ADDRESS, 4) => {
                self.config_address = value;
                true
            }
            (CONFIG_DATA..=0xcff, 1 | 2 | 4) => {
                let offset = port - CONFIG_DATA;
                if u16::from(size) + offset > 4 {
                    return false;
                }
                if let Some((device, register)) = self.selected_register() {
                    let old = self.config_read(device, register);
                    let merged = insert(old, offset, size, value);
                    self.config_write(device, register, merged);
                }
                true
            }
            _ => false,
        }
    }

    /// The (device, dword-aligned register) 0xCF8 selects on bus 0
    /// function 0, if enabled and a device is there.
    fn selected_register(&self) -> Option<(u8, u8)> {
        let address = self.config_address;
        let enabled = address & (1 << 31) != 0;
        let bus = (address >> 16) & 0xff;
        let device = ((address >> 11) & 0x1f) as u8;
        let function = (address >> 8) & 0b111;
        let register = (address & 0xfc) as u8;
        let present = matches!(device, HOST_BRIDGE | PLATFORM_DEVICE);
        (enabled && bus == 0 && function == 0 && present).then_some((device, register))
    }

    /// Configuration dword `register` of `device` (one that is present).
    fn config_read(&self, device: u8, register: u8) -> u32 {
        let platform = device == PLATFORM_DEVICE;
        let index = usize::from(platform);
        match register {
            // Vendor and device: Intel 440FX host bridge; Xen platform.
            0x00 if platform => 0x0001_5853,
            0x00 => 0x1237_8086,
            0x04 => u32::from(self.commands[index]),
            // Class code and revision: "other" device rev 1; host bridge.
            0x08 if platform => 0xff80_0001,
            0x08 => 0x0600_0002,
            // Header type 0, single function.
            0x0c => 0,
            0x10 if platform => self.bars[0],
            0x14 if platform => self.bars[1],
            // Subsystem: Xen, platform device.
            0x2c if platform => 0x0001_5853,
            // No capabilities, no interrupt pin.
            _ => 0,
        }
    }

    /// Writes configuration dword `register` of `device`: the command
    /// register's enable bits and the platform device's BARs (which read
    /// back their size mask after all ones, as BAR sizing expects); the
    /// rest is read-only.
    fn config_write(&mut self, device: u8, register: u8, value: u32) {
        let index = usize::from(device == PLATFORM_DEVICE);
        match (device, register) {
            (_, 0x04) => {
                if let Some(command) = self.commands.get_mut(index) {
                    *command = value as u16 & COMMAND_WRITABLE;
                }
            }
            (PLATFORM_DEVICE, 0x10) => {
                self.bars[0] = (value & !(PLATFORM_IO_SIZE - 1) & 0xffff) | BAR_IO;
            }
            (PLATFORM_DEVICE, 0x14) => {
                self.bars[1] = (value & !(PLATFORM_MMIO_SIZE - 1)) | BAR_MEMORY_PREFETCHABLE;
            }
            _ => {}
        }
    }
}

/// The `size` bytes at byte `offset` of `dword`.
fn extract(dword: u32, offset: u16, size: u8) -> u32 {
    let shifted = dword >> (8 * u32::from(offset));
    match size {
        1 => shifted & 0xff,
        2 => shifted & 0xffff,
        _ => shifted,
    }
}

/// `dword` with the `size` bytes at byte `offset` replaced by `value`.
fn insert(dword: u32, offset: u16, size: u8, value: u32) -> u32 {
    let mask: u32 = match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    };
    let shift = 8 * u32::from(offset);
    (dword & !(mask << shift)) | ((value & mask) << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `pci_conf1_read`: address, then the data port.
    fn config_read(platform: &mut HvmPlatform, device: u8, register: u8, size: u8) -> u32 {
        let address = (1 << 31) | (u32::from(device) << 11) | u32::from(register & 0xfc);
        assert_eq!(platform.write(CONFIG_ADDRESS, 4, address), PortWrite::Taken);
        platform
            .read(CONFIG_DATA + u16::from(register & 3), size)
            .unwrap_or(u32::MAX)
    }

    fn config_write(platform: &mut HvmPlatform, device: u8, register: u8, size: u8, value: u32) {
        let address = (1 << 31) | (u32::from(device) << 11) | u32::from(register & 0xfc);
        assert_eq!(platform.write(CONFIG_ADDRESS, 4, address), PortWrite::Taken);
        let data = CONFIG_DATA + u16::from(register & 3);
        assert_eq!(platform.write(data, size, value), PortWrite::Taken);
    }

    #[test]
    fn the_xen_platform_ports_answer_linux_check_platform_magic() {
        let mut platform = HvmPlatform::new();
        assert_eq!(platform.read(0x10, 2), Some(0x49d2));
        assert_eq!(platform.read(0x12, 1), Some(1));
        assert_eq!(platform.write(0x12, 2, 0xffff), PortWrite::Taken); // product number
        assert_eq!(platform.write(0x10, 4, 0x0006_0100), PortWrite::Taken); // driver version
        assert_eq!(platform.read(0x10, 2), Some(0x49d2), "not blacklisted");
        assert_eq!(platform.unplugged(), None);
        assert_eq!(platform.write(0x10, 2, 0b11), PortWrite::Taken); // unplug IDE disks and NICs
        assert_eq!(platform.unplugged(), Some(0b11));
        assert_eq!(platform.read(0x11, 1), None, "nothing else there");
    }

    #[test]
    fn type_1_configuration_passes_linux_sanity_check() {
        let mut platform = HvmPlatform::new();
        // pci_check_type1: 0x80000000 reads back from 0xCF8.
        assert_eq!(
            platform.write(CONFIG_ADDRESS, 4, 0x8000_0000),
            PortWrite::Taken
        );
        assert_eq!(platform.read(CONFIG_ADDRESS, 4), Some(0x8000_0000));
        // A host bridge at 00:00.0 (class 0x0600 at 0x0a).
        assert_eq!(config_read(&mut platform, 0, 0x0a, 2), 0x0600);
        assert_eq!(config_read(&mut platform, 0, 0x00, 2), 0x8086);
        // The Xen platform device at 00:02.0.
        assert_eq!(config_read(&mut platform, 2, 0x00, 4), 0x0001_5853);
        assert_eq!(config_read(&mut platform, 2, 0x02, 2), 0x0001);
        assert_eq!(config_read(&mut platform, 2, 0x3d, 1), 0, "no INTx pin");
        // Nothing elsewhere: other slots, functions, buses, or disabled.
        assert_eq!(config_read(&mut platform, 1, 0x00, 4), u32::MAX);
        assert_eq!(
            platform.write(CONFIG_ADDRESS, 4, 0x8000_0200),
            PortWrite::Taken
        ); // 00:00.2
        assert_eq!(platform.read(CONFIG_DATA, 4), None);
        assert_eq!(
            platform.write(CONFIG_ADDRESS, 4, 0x8001_0000),
            PortWrite::Taken
        ); // bus 1
        assert_eq!(platform.read(CONFIG_DATA, 4), None);
        assert_eq!(
            platform.write(CONFIG_ADDRESS, 4, 0x0000_0000),
            PortWrite::Taken
        );
        assert_eq!(platform.read(CONFIG_DATA, 4), None);
        // A misaligned wide access is not a configuration access.
        assert_eq!(
            platform.write(CONFIG_ADDRESS, 4, 0x8000_0000),
            PortWrite::Taken
        );
        assert_eq!(platform.read(CONFIG_DATA + 3, 2), None);
    }

    #[test]
    fn bars_size_like_hardware_and_keep_their_type() {
        let mut platform = HvmPlatform::new();
        assert_eq!(config_read(&mut platform, 2, 0x10, 4), 0xc001);
        assert_eq!(config_read(&mut platform, 2, 0x14, 4), 0xf000_0008);
        // Sizing: all ones, read the mask, put the address back.
        config_write(&mut platform, 2, 0x14, 4, u32::MAX);
        assert_eq!(config_read(&mut platform, 2, 0x14, 4), 0xff00_0008);
        config_write(&mut platform, 2, 0x14, 4, 0xf000_0000);
        assert_eq!(config_read(&mut platform, 2, 0x14, 4), 0xf000_0008);
        config_write(&mut platform, 2, 0x10, 4, u32::MAX);
        assert_eq!(config_read(&mut platform, 2, 0x10, 4), 0xff01);
        // The command register keeps only the enable bits; IDs stay.
        config_write(&mut platform, 2, 0x04, 2, 0xffff);
        assert_eq!(config_read(&mut platform, 2, 0x04, 2), 0b111);
        config_write(&mut platform, 2, 0x00, 4, 0);
        assert_eq!(config_read(&mut platform, 2, 0x00, 2), 0x5853);
    }

    #[test]
    fn linux_reboot_kbd_finds_the_input_buffer_empty_and_resets_the_domain() {
        // native_machine_emergency_restart's BOOT_KBD: kb_wait() polls
        // status bit 1 up to 0x10000 times, then writes 0xFE to 0x64.
        let mut platform = HvmPlatform::new();
        let polls = (0..0x10000).position(|_| {
            platform
                .read(0x64, 1)
                .is_some_and(|status| status & 0b10 == 0)
        });
        assert_eq!(polls, Some(0), "the first poll sees the input buffer empty");
        assert_eq!(platform.write(0x64, 1, 0xfe), PortWrite::Reset);
        // The same through the output port (0xD1, then bit 0 clear).
        assert_eq!(platform.write(0x64, 1, 0xd1), PortWrite::Taken);
        assert_eq!(platform.write(0x60, 1, 0x00), PortWrite::Reset);
        // Only byte accesses reach the controller; other ports stay empty.
        assert_eq!(platform.write(0x64, 2, 0xfe), PortWrite::Unclaimed);
        assert_eq!(platform.read(0x64, 2), None);
        assert_eq!(platform.write(0x61, 1, 0xfe), PortWrite::Unclaimed);
        assert_eq!(platform.read(0x61, 1), None);
    }
}
