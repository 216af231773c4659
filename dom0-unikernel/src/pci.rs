//! PCI facts Dom0 computes before touching a device: configuration-space
//! addresses (the 0xCF8/0xCFC mechanism and ECAM), the capability list,
//! the MSI-X capability, MSI messages aimed at the physical local APIC,
//! and the ECAM window an ACPI MCFG table describes.

use crate::start_info::Physical;

/// PCI vendor id of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Capability id of MSI-X.
pub const CAPABILITY_MSIX: u8 = 0x11;
/// Capability id of vendor-specific capabilities (virtio's structures).
pub const CAPABILITY_VENDOR: u8 = 0x09;
/// Vectors Dom0 may give its devices (docs/control-interface.md, "Device
/// interrupts"); the hypervisor keeps the rest.
pub const DOM0_VECTORS: core::ops::RangeInclusive<u8> = 0x30..=0xef;
/// The most capabilities followed in one list: a 256-byte configuration
/// space holds at most 48 four-byte-aligned capabilities past the header,
/// so more means a loop.
const MAX_CAPABILITIES: usize = 48;

/// A PCI function's address: bus, device (0–31), function (0–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Function {
    /// A function address, or `None` when device or function is out of range.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            bus,
            device,
            function,
        })
    }

    /// The value written to port 0xCF8 to reach the dword at `offset`
    /// (configuration mechanism 1: enable bit, bus, device, function,
    /// dword-aligned register).
    pub fn port_address(self, offset: u8) -> u32 {
        0x8000_0000
            | u32::from(self.bus) << 16
            | u32::from(self.device & 31) << 11
            | u32::from(self.function & 7) << 8
            | u32::from(offset & 0xfc)
    }

    /// The byte offset of register `offset` inside an ECAM window whose
    /// first bus is `start_bus`, or `None` for a bus below it.
    pub fn ecam_offset(self, start_bus: u8, offset: u16) -> Option<u64> {
        let bus = self.bus.checked_sub(start_bus)?;
        Some(
            u64::from(bus) << 20
                | u64::from(self.device & 31) << 15
                | u64::from(self.function & 7) << 12
                | u64::from(offset & 0xffc),
        )
    }
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Reads dwords of one function's configuration space.
pub trait ConfigRead {
    fn read_dword(&self, offset: u8) -> u32;
}

impl<F: Fn(u8) -> u32> ConfigRead for F {
    fn read_dword(&self, offset: u8) -> u32 {
        self(offset)
    }
}

/// One entry of the capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    /// Where it starts in configuration space.
    pub offset: u8,
}

/// Walks the capability list, at most [`MAX_CAPABILITIES`] entries, never
/// into the header (offsets below 0x40) and never twice round a loop.
pub fn capabilities(config: &impl ConfigRead) -> impl Iterator<Item = Capability> + '_ {
    let status = (config.read_dword(0x04) >> 16) as u16;
    let mut next = if status & (1 << 4) != 0 {
        (config.read_dword(0x34) & 0xfc) as u8
    } else {
        0
    };
    let mut seen = 0usize;
    core::iter::from_fn(move || {
        if next < 0x40 || seen >= MAX_CAPABILITIES {
            return None;
        }
        seen += 1;
        let offset = next;
        let header = config.read_dword(offset);
        next = ((header >> 8) & 0xfc) as u8;
        Some(Capability {
            id: header as u8,
            offset,
        })
    })
}

/// The MSI-X capability's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    /// Where the capability sits in configuration space.
    pub offset: u8,
    /// Entries in the vector table (1–2048).
    pub table_size: u16,
    /// The BAR holding the table, and the table's offset in it.
    pub table_bar: u8,
    pub table_offset: u32,
}

/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Message control: MSI-X enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// Message control: every vector masked.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

impl Msix {
    /// Finds and decodes the MSI-X capability, if the function has one
    /// with a table in a real BAR (0–5).
    pub fn find(config: &impl ConfigRead) -> Option<Self> {
        let capability = capabilities(config).find(|c| c.id == CAPABILITY_MSIX)?;
        let control = (config.read_dword(capability.offset) >> 16) as u16;
        let table = config.read_dword(capability.offset.checked_add(4)?);
        let table_bar = (table & 7) as u8;
        if table_bar > 5 {
            return None;
        }
        Some(Self {
            offset: capability.offset,
            table_size: (control & 0x7ff) + 1,
            table_bar,
            table_offset: table & !7,
        })
    }

    /// The offset of entry `index` from the table's start.
    pub fn entry_offset(&self, index: u16) -> Option<u64> {
        (index < self.table_size)
            .then(|| u64::from(self.table_offset) + u64::from(index) * MSIX_ENTRY_SIZE)
    }

    /// The dword holding the message control register (its upper half).
    pub fn control_dword(&self) -> u8 {
        self.offset
    }
}

/// An MSI message: where the device writes and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// The message that delivers `vector` to the local APIC `apic_id`: fixed
/// delivery, physical destination, edge-triggered. `None` for a vector
/// Dom0 may not use.
pub fn msi_message(apic_id: u8, vector: u8) -> Option<MsiMessage> {
    DOM0_VECTORS.contains(&vector).then(|| MsiMessage {
        address: 0xfee0_0000 | u64::from(apic_id) << 12,
        data: u32::from(vector),
    })
}

/// A memory BAR as firmware left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBar {
    pub address: u64,
    pub size: u64,
}

impl MemoryBar {
    /// Whether `[offset, offset + length)` lies inside the BAR and below
    /// `limit` (the end of what Dom0's page tables map).
    pub fn covers(&self, offset: u64, length: u64, limit: u64) -> Option<u64> {
        let end = offset.checked_add(length)?;
        if self.address == 0 || end > self.size {
            return None;
        }
        let start = self.address.checked_add(offset)?;
        (start.checked_add(length)? <= limit).then_some(start)
    }
}

/// One ECAM window from an MCFG table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamWindow {
    /// The physical address of register `offset` of `function`, when the
    /// function's bus is in this window.
    pub fn address(&self, function: Function, offset: u16) -> Option<u64> {
        if function.bus > self.end_bus {
            return None;
        }
        self.base
            .checked_add(function.ecam_offset(self.start_bus, offset)?)
    }
}

/// Why no ECAM window was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP was handed over.
    NoRsdp,
    /// A table could not be read at this address.
    Unreadable(u64),
    /// The RSDP's signature or checksum is wrong.
    BadRsdp,
    /// The RSDT/XSDT has a wrong signature, length or checksum.
    BadRoot(u64),
    /// No MCFG table (QEMU's `pc` machine has none: use port I/O).
    NoMcfg,
    /// The MCFG table is malformed or describes no segment-0 window.
    BadMcfg(u64),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRsdp => write!(f, "no ACPI RSDP"),
            Self::Unreadable(at) => write!(f, "ACPI table at {at:#x} unreadable"),
            Self::BadRsdp => write!(f, "bad ACPI RSDP"),
            Self::BadRoot(at) => write!(f, "bad ACPI root table at {at:#x}"),
            Self::NoMcfg => write!(f, "no MCFG table"),
            Self::BadMcfg(at) => write!(f, "bad MCFG table at {at:#x}"),
        }
    }
}

/// The most root-table entries looked at.
const MAX_ROOT_ENTRIES: usize = 256;
/// The largest MCFG table read (a header and 256 windows).
const MAX_MCFG: usize = 44 + 16 * 256;

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) == 0
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a whole ACPI table (header then body), checking its signature,
/// length bounds and checksum.
fn read_table(
    memory: &impl Physical,
    address: u64,
    signature: &[u8; 4],
    max: usize,
) -> Result<Option<alloc::vec::Vec<u8>>, AcpiError> {
    let mut header = [0u8; 36];
    if !memory.read(address, &mut header) {
        return Err(AcpiError::Unreadable(address));
    }
    if &header[..4] != signature {
        return Ok(None);
    }
    let length = read_u32(&header, 4).unwrap_or(0) as usize;
    if !(36..=max).contains(&length) {
        return Ok(None);
    }
    let mut table = alloc::vec![0u8; length];
    if !memory.read(address, &mut table) {
        return Err(AcpiError::Unreadable(address));
    }
    Ok(checksum_ok(&table).then_some(table))
}

/// Physical memory Dom0 may read: only ranges wholly inside one region of
/// its memory map (its RAM, and the host's reserved and ACPI regions).
/// Anything else may be the hypervisor's, and touching it kills Dom0.
pub struct MappedOnly<'a, M> {
    pub memory: &'a M,
    pub regions: &'a [crate::start_info::Region],
}

impl<M: Physical> Physical for MappedOnly<'_, M> {
    fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
        let Some(end) = address.checked_add(buffer.len() as u64) else {
            return false;
        };
        self.regions
            .iter()
            .any(|region| region.range.start <= address && end <= region.range.end)
            && self.memory.read(address, buffer)
    }
}

fn is_rsdp(memory: &impl Physical, address: u64) -> bool {
    let mut pointer = [0u8; 20];
    memory.read(address, &mut pointer) && &pointer[..8] == b"RSD PTR " && checksum_ok(&pointer)
}

/// Where the BIOS keeps the RSDP when nobody says (the EBDA is not looked
/// at: its pointer lies in low RAM that is not Dom0's).
const BIOS_AREA: core::ops::Range<u64> = 0xe_0000..0x10_0000;

/// The RSDP: `hint` if a valid one is readable there, else the first in the
/// BIOS area (a multiboot2 loader's copy of it may lie in memory that is
/// now the hypervisor's).
pub fn find_rsdp(memory: &impl Physical, hint: u64) -> Option<u64> {
    if hint != 0 && is_rsdp(memory, hint) {
        return Some(hint);
    }
    BIOS_AREA
        .step_by(16)
        .find(|&address| is_rsdp(memory, address))
}

/// Finds the segment-0 ECAM window through the RSDP (see [`find_rsdp`]),
/// the XSDT (or RSDT) and the MCFG table.
pub fn find_ecam(memory: &impl Physical, hint: u64) -> Result<EcamWindow, AcpiError> {
    let Some(rsdp) = find_rsdp(memory, hint) else {
        return Err(if hint == 0 {
            AcpiError::NoRsdp
        } else {
            AcpiError::BadRsdp
        });
    };
    let mut pointer = [0u8; 36];
    if !memory.read(rsdp, &mut pointer[..20]) {
        return Err(AcpiError::Unreadable(rsdp));
    }
    if &pointer[..8] != b"RSD PTR " || !checksum_ok(&pointer[..20]) {
        return Err(AcpiError::BadRsdp);
    }
    let revision = pointer[15];
    let (root, signature, entry_size): (u64, &[u8; 4], usize) = if revision >= 2 {
        if !memory.read(rsdp, &mut pointer) {
            return Err(AcpiError::Unreadable(rsdp));
        }
        match read_u64(&pointer, 24) {
            Some(xsdt) if xsdt != 0 && checksum_ok(&pointer) => (xsdt, b"XSDT", 8),
            _ => (u64::from(read_u32(&pointer, 16).unwrap_or(0)), b"RSDT", 4),
        }
    } else {
        (u64::from(read_u32(&pointer, 16).unwrap_or(0)), b"RSDT", 4)
    };
    let Some(root_table) = read_table(memory, root, signature, 36 + 8 * MAX_ROOT_ENTRIES)? else {
        return Err(AcpiError::BadRoot(root));
    };
    let entries = root_table[36..]
        .chunks_exact(entry_size)
        .map(|entry| match entry_size {
            8 => read_u64(entry, 0).unwrap_or(0),
            _ => u64::from(read_u32(entry, 0).unwrap_or(0)),
        });
    for address in entries.filter(|&address| address != 0) {
        let mut signature = [0u8; 4];
        if !memory.read(address, &mut signature) || &signature != b"MCFG" {
            continue;
        }
        let Some(mcfg) = read_table(memory, address, b"MCFG", MAX_MCFG)? else {
            return Err(AcpiError::BadMcfg(address));
        };
        // 36-byte header, 8 reserved bytes, then 16-byte allocations.
        let window = mcfg
            .get(44..)
            .unwrap_or(&[])
            .chunks_exact(16)
            .map(|entry| EcamWindow {
                base: read_u64(entry, 0).unwrap_or(0),
                segment: u16::from_le_bytes([entry[8], entry[9]]),
                start_bus: entry[10],
                end_bus: entry[11],
            })
            .find(|window| window.segment == 0 && window.base != 0);
        return window.ok_or(AcpiError::BadMcfg(address));
    }
    Err(AcpiError::NoMcfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn port_addresses_follow_mechanism_one() {
        let function = Function::new(0, 3, 0).unwrap();
        assert_eq!(function.port_address(0), 0x8000_1800);
        let function = Function::new(0x12, 31, 7).unwrap();
        assert_eq!(function.port_address(0x3e), 0x8012_ff3c);
        assert_eq!(Function::new(0, 32, 0), None);
        assert_eq!(Function::new(0, 0, 8), None);
        assert_eq!(function.to_string(), "12:1f.7");
    }

    #[test]
    fn ecam_offsets_and_windows() {
        let window = EcamWindow {
            base: 0xb000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 0xff,
        };
        let function = Function::new(1, 2, 3).unwrap();
        assert_eq!(window.address(function, 0x104), Some(0xb011_3104));
        let late = EcamWindow {
            start_bus: 2,
            end_bus: 3,
            ..window
        };
        assert_eq!(late.address(function, 0), None);
        assert_eq!(late.address(Function::new(4, 0, 0).unwrap(), 0), None);
    }

    fn space(entries: &[(u8, u32)]) -> impl Fn(u8) -> u32 + use<> {
        let map: BTreeMap<u8, u32> = entries.iter().copied().collect();
        move |offset| map.get(&offset).copied().unwrap_or(0)
    }

    #[test]
    fn capability_list_finds_msix() {
        // Status has the capability bit; list 0x98 (vendor) -> 0x84 (MSI-X).
        let config = space(&[
            (0x04, 0x0010_0000),
            (0x34, 0x98),
            (0x98, 0x0000_8409),
            (0x84, 0x0002_0011), // control: table size 3
            (0x88, 0x0000_0001), // table in BAR 1 at offset 0
        ]);
        let found: Vec<_> = capabilities(&config).collect();
        assert_eq!(
            found,
            [
                Capability {
                    id: 9,
                    offset: 0x98
                },
                Capability {
                    id: 0x11,
                    offset: 0x84
                }
            ]
        );
        let msix = Msix::find(&config).unwrap();
        assert_eq!(msix.table_size, 3);
        assert_eq!(msix.table_bar, 1);
        assert_eq!(msix.entry_offset(2), Some(32));
        assert_eq!(msix.entry_offset(3), None);
    }

    #[test]
    fn capability_loops_and_missing_lists_end() {
        let looping = space(&[(0x04, 0x0010_0000), (0x34, 0x40), (0x40, 0x0000_4009)]);
        assert_eq!(capabilities(&looping).count(), MAX_CAPABILITIES);
        let none = space(&[(0x34, 0x40), (0x40, 0x0000_0011)]);
        assert_eq!(capabilities(&none).count(), 0);
        let into_header = space(&[(0x04, 0x0010_0000), (0x34, 0x10)]);
        assert_eq!(capabilities(&into_header).count(), 0);
    }

    #[test]
    fn msi_messages_only_for_dom0_vectors() {
        assert_eq!(
            msi_message(0, 0x50),
            Some(MsiMessage {
                address: 0xfee0_0000,
                data: 0x50
            })
        );
        assert_eq!(msi_message(3, 0x30).unwrap().address, 0xfee0_3000);
        assert_eq!(msi_message(0, 0x2f), None);
        assert_eq!(msi_message(0, 0xf0), None);
    }

    #[test]
    fn bars_cover_only_what_is_inside_and_mapped() {
        let bar = MemoryBar {
            address: 0xfe00_0000,
            size: 0x4000,
        };
        assert_eq!(bar.covers(0x3000, 0x1000, 1 << 32), Some(0xfe00_3000));
        assert_eq!(bar.covers(0x3000, 0x1001, 1 << 32), None);
        assert_eq!(bar.covers(0, 0x10, 0xfe00_0008), None);
        let high = MemoryBar {
            address: 0x8_0000_0000,
            size: 0x4000,
        };
        assert_eq!(high.covers(0, 4, 1 << 32), None);
        let unassigned = MemoryBar {
            address: 0,
            size: 0x4000,
        };
        assert_eq!(unassigned.covers(0, 4, 1 << 32), None);
    }

    struct Memory(BTreeMap<u64, Vec<u8>>);

    impl Physical for Memory {
        fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
            for (&start, bytes) in &self.0 {
                let offset = address.wrapping_sub(start) as usize;
                if address >= start && offset + buffer.len() <= bytes.len() {
                    buffer.copy_from_slice(&bytes[offset..offset + buffer.len()]);
                    return true;
                }
            }
            false
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 36];
        bytes[..4].copy_from_slice(signature);
        bytes.extend_from_slice(body);
        let length = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&length.to_le_bytes());
        fix_checksum(&mut bytes, 9);
        bytes
    }

    fn machine(with_mcfg: bool) -> Memory {
        let mut rsdp = vec![0u8; 36];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[15] = 2;
        rsdp[16..20].copy_from_slice(&0x2000u32.to_le_bytes());
        rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
        rsdp[24..32].copy_from_slice(&0x3000u64.to_le_bytes());
        fix_checksum(&mut rsdp[..20], 8);
        fix_checksum(&mut rsdp, 32);
        let mut body = Vec::new();
        body.extend_from_slice(&0x4000u64.to_le_bytes());
        if with_mcfg {
            body.extend_from_slice(&0x5000u64.to_le_bytes());
        }
        let xsdt = table(b"XSDT", &body);
        let facp = table(b"FACP", &[0; 8]);
        let mut allocation = vec![0u8; 8];
        allocation.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        allocation.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
        let mcfg = table(b"MCFG", &allocation);
        Memory(BTreeMap::from([
            (0x1000, rsdp),
            (0x3000, xsdt),
            (0x4000, facp),
            (0x5000, mcfg),
        ]))
    }

    #[test]
    fn mcfg_gives_the_ecam_window() {
        assert_eq!(
            find_ecam(&machine(true), 0x1000),
            Ok(EcamWindow {
                base: 0xb000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xff
            })
        );
    }

    #[test]
    fn the_rsdp_is_found_in_the_bios_area_when_the_hint_is_unreadable() {
        let mut memory = machine(true);
        let rsdp = memory.0.remove(&0x1000).unwrap();
        let mut area = vec![0u8; 0x2_0000];
        area[0x1_5a40..0x1_5a40 + 36].copy_from_slice(&rsdp);
        memory.0.insert(0xe_0000, area);
        let regions = [
            crate::start_info::Region {
                range: crate::start_info::Range {
                    start: 0xf_0000,
                    end: 0x10_0000,
                },
                kind: 2,
            },
            crate::start_info::Region {
                range: crate::start_info::Range {
                    start: 0x3000,
                    end: 0x6000,
                },
                kind: 2,
            },
        ];
        let mapped = MappedOnly {
            memory: &memory,
            regions: &regions,
        };
        // The hint points at memory outside every region: never read.
        assert!(!mapped.read(0x1000, &mut [0u8; 4]));
        assert!(!mapped.read(0xe_fff0, &mut [0u8; 32]));
        assert_eq!(find_rsdp(&mapped, 0x1000), Some(0xf_5a40));
        assert_eq!(
            find_ecam(&mapped, 0x1000).map(|window| window.base),
            Ok(0xb000_0000)
        );
    }

    #[test]
    fn no_mcfg_or_no_rsdp_says_so() {
        assert_eq!(find_ecam(&machine(false), 0x1000), Err(AcpiError::NoMcfg));
        assert_eq!(find_ecam(&machine(true), 0), Err(AcpiError::NoRsdp));
        assert_eq!(find_ecam(&machine(true), 0x3000), Err(AcpiError::BadRsdp));
        let mut broken = machine(true);
        broken.0.get_mut(&0x5000).unwrap()[40] ^= 1;
        assert_eq!(find_ecam(&broken, 0x1000), Err(AcpiError::BadMcfg(0x5000)));
    }
}
