//! A virtio PCI function made ready for Dom0: its BARs checked to lie in
//! what Dom0 maps, memory decoding and bus mastering on, legacy INTx off,
//! MSI-X on with one table entry per virtqueue aimed at APIC id 0 — and
//! virtio-drivers' `PciTransport` wrapped so each queue is bound to its
//! MSI-X entry (`queue_msix_vector`) before the queue is enabled, as the
//! virtio spec asks.

use core::fmt;

use dom0::pci::{
    self, CAPABILITY_VENDOR, MSIX_ENABLE, MSIX_FUNCTION_MASK, MemoryBar, Msix, msi_message,
};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{BarInfo, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result as VirtioResult};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::config::{ConfigSpace, MAPPED_LIMIT};
use super::hal::Dom0Hal;

/// virtio's "no MSI-X vector".
const NO_VECTOR: u16 = 0xffff;
/// `virtio_pci_cap.cfg_type` of the common configuration structure.
const COMMON_CONFIG: u8 = 1;
/// Offsets in the common configuration structure (virtio 1.x, 4.1.4.3).
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const COMMAND_INTX_DISABLE: u32 = 1 << 10;

/// Why a function could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// A memory BAR lies where Dom0's page tables do not reach.
    UnmappedBar {
        bar: u8,
        address: u64,
    },
    NoMsix,
    /// The MSI-X table has fewer entries than the queues need.
    SmallMsixTable(u16),
    BadVector(u8),
    NoCommonConfig,
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    Pci(virtio_drivers::transport::pci::bus::PciError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnmappedBar { bar, address } => {
                write!(f, "BAR {bar} at {address:#x} is above the 4 GiB Dom0 maps")
            }
            Self::NoMsix => write!(f, "no MSI-X capability"),
            Self::SmallMsixTable(size) => write!(f, "MSI-X table of only {size} entries"),
            Self::BadVector(vector) => write!(f, "vector {vector:#x} is not Dom0's to use"),
            Self::NoCommonConfig => write!(f, "no virtio common configuration in a mapped BAR"),
            Self::Transport(error) => write!(f, "{error}"),
            Self::Pci(error) => write!(f, "{error}"),
        }
    }
}

fn memory_bar(
    root: &mut PciRoot<ConfigSpace>,
    function: DeviceFunction,
    bar: u8,
) -> Option<MemoryBar> {
    match root.bar_info(function, bar).ok()?? {
        BarInfo::Memory { address, size, .. } => Some(MemoryBar { address, size }),
        BarInfo::IO { .. } => None,
    }
}

/// The physical address of the common configuration structure.
fn common_config(
    root: &mut PciRoot<ConfigSpace>,
    config: &ConfigSpace,
    function: DeviceFunction,
) -> Option<u64> {
    let read = |offset: u8| config.read_word(function, offset);
    let capability = pci::capabilities(&read).find(|capability| {
        capability.id == CAPABILITY_VENDOR && (read(capability.offset) >> 24) as u8 == COMMON_CONFIG
    })?;
    let bar = read(capability.offset.checked_add(4)?) as u8;
    let offset = read(capability.offset.checked_add(8)?);
    let length = read(capability.offset.checked_add(12)?);
    memory_bar(root, function, bar)?.covers(u64::from(offset), u64::from(length), MAPPED_LIMIT)
}

/// virtio-drivers' PCI transport, with each queue bound to an MSI-X entry.
pub struct MsixTransport {
    inner: PciTransport,
    common: u64,
    /// The MSI-X entry of queue `index` (queues past the end: none).
    entries: &'static [u16],
}

impl MsixTransport {
    /// Prepares `function` and creates its transport. `vectors[i]` is the
    /// CPU vector of MSI-X entry `i`; `entries[q]` the entry of queue `q`.
    pub fn new(
        root: &mut PciRoot<ConfigSpace>,
        config: &mut ConfigSpace,
        function: DeviceFunction,
        vectors: &[u8],
        entries: &'static [u16],
    ) -> Result<Self, SetupError> {
        let bars = root.bars(function).map_err(SetupError::Pci)?;
        for (bar, info) in bars.iter().enumerate() {
            if let Some((address, size)) = info.as_ref().and_then(BarInfo::memory_address_size)
                && address != 0
                && address.saturating_add(size) > MAPPED_LIMIT
            {
                return Err(SetupError::UnmappedBar {
                    bar: bar as u8,
                    address,
                });
            }
        }
        let command = config.read_word(function, 0x04) & 0xffff;
        config.write_word(
            function,
            0x04,
            command | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE,
        );

        let read = |offset: u8| config.read_word(function, offset);
        let msix = Msix::find(&read).ok_or(SetupError::NoMsix)?;
        if usize::from(msix.table_size) < vectors.len() {
            return Err(SetupError::SmallMsixTable(msix.table_size));
        }
        let table = memory_bar(root, function, msix.table_bar).ok_or(SetupError::NoMsix)?;
        // Everything masked while the table is written, then enabled.
        let control = config.read_word(function, msix.control_dword());
        let control_with = |bits: u16| (control & 0x0000_ffff) | u32::from(bits) << 16;
        let current = (control >> 16) as u16;
        config.write_word(
            function,
            msix.control_dword(),
            control_with(current | MSIX_ENABLE | MSIX_FUNCTION_MASK),
        );
        for (index, &vector) in vectors.iter().enumerate() {
            let message = msi_message(0, vector).ok_or(SetupError::BadVector(vector))?;
            let entry = msix
                .entry_offset(index as u16)
                .and_then(|offset| table.covers(offset, pci::MSIX_ENTRY_SIZE, MAPPED_LIMIT))
                .ok_or(SetupError::SmallMsixTable(msix.table_size))?;
            // SAFETY: one MSI-X table entry inside the function's BAR,
            // checked to lie in Dom0's identity map; device memory the
            // hypervisor maps into Dom0.
            unsafe {
                let words = entry as *mut u32;
                words.write_volatile(message.address as u32);
                words.add(1).write_volatile((message.address >> 32) as u32);
                words.add(2).write_volatile(message.data);
                words.add(3).write_volatile(0); // unmasked
            }
        }
        config.write_word(
            function,
            msix.control_dword(),
            control_with((current | MSIX_ENABLE) & !MSIX_FUNCTION_MASK),
        );

        let common = common_config(root, config, function).ok_or(SetupError::NoCommonConfig)?;
        let inner =
            PciTransport::new::<Dom0Hal, _>(root, function).map_err(SetupError::Transport)?;
        Ok(Self {
            inner,
            common,
            entries,
        })
    }

    fn bind_queue(&mut self, queue: u16) {
        let entry = self
            .entries
            .get(usize::from(queue))
            .copied()
            .unwrap_or(NO_VECTOR);
        // SAFETY: two 16-bit registers of the common configuration
        // structure, inside a BAR checked to lie in Dom0's identity map.
        // virtio-drivers' transport writes the same structure but never
        // while this runs (both are driven from this one thread).
        let read_back = unsafe {
            ((self.common + QUEUE_SELECT) as *mut u16).write_volatile(queue);
            let vector = (self.common + QUEUE_MSIX_VECTOR) as *mut u16;
            vector.write_volatile(entry);
            vector.read_volatile()
        };
        if read_back != entry {
            log::warn!("dom0: virtio queue {queue}: MSI-X entry {entry} refused ({read_back:#x})");
        }
    }
}

impl Transport for MsixTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.bind_queue(queue);
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> VirtioResult<T> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> VirtioResult<()> {
        self.inner.write_config_space(offset, value)
    }
}
