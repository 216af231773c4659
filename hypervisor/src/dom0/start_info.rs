//! Dom0's boot data block: the host memory map turned into Dom0's (its RAM
//! plus every non-RAM range, so it can find ACPI tables and devices), then
//! written by the shared PVH writer.

use arrayvec::ArrayVec;
use pvh::start_info::{BLOCK_SIZE, MAX_MEMORY_ENTRIES, MemoryEntry, ModuleEntry, StartInfoInput};
use xenolith_abi::start_info::{SIF_INITDOMAIN, SIF_PRIVILEGED, memmap_type};

use crate::boot::{MemoryKind, MemoryRegion};
use crate::memory::{HostPhysAddr, HostRange};

/// Dom0's memory map: its RAM, then the host's non-RAM regions.
pub fn memory_map(
    ram: HostRange,
    host_memory: &[MemoryRegion],
) -> ArrayVec<MemoryEntry, MAX_MEMORY_ENTRIES> {
    let mut map = ArrayVec::new();
    map.push(MemoryEntry {
        address: ram.start.0,
        size: ram.len(),
        kind: memmap_type::RAM,
    });
    for region in host_memory {
        let kind = match region.kind {
            MemoryKind::Usable | MemoryKind::Bad => continue,
            MemoryKind::Reserved => memmap_type::RESERVED,
            MemoryKind::AcpiReclaimable => memmap_type::ACPI,
            MemoryKind::AcpiNvs => memmap_type::NVS,
        };
        let entry = MemoryEntry {
            address: region.range.start.0,
            size: region.range.len(),
            kind,
        };
        if map.try_push(entry).is_err() {
            break;
        }
    }
    map
}

/// Builds Dom0's block, to be written at `base`.
pub fn build(
    base: HostPhysAddr,
    ram: HostRange,
    host_memory: &[MemoryRegion],
    cmdline: &str,
    modules: &[ModuleEntry<'_>],
    rsdp: Option<HostPhysAddr>,
) -> [u8; BLOCK_SIZE] {
    pvh::start_info::build(&StartInfoInput {
        base: base.0,
        flags: SIF_PRIVILEGED | SIF_INITDOMAIN,
        memory: &memory_map(ram, host_memory),
        cmdline,
        modules,
        rsdp: rsdp.map_or(0, |rsdp| rsdp.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_sees_its_ram_and_the_host_non_ram_regions() {
        let ram = HostRange {
            start: HostPhysAddr(0x100_0000),
            end: HostPhysAddr(0x1100_0000),
        };
        let regions = [
            MemoryRegion {
                range: HostRange {
                    start: HostPhysAddr(0x10_0000),
                    end: HostPhysAddr(0x4000_0000),
                },
                kind: MemoryKind::Usable,
            },
            MemoryRegion {
                range: HostRange {
                    start: HostPhysAddr(0xfffc_0000),
                    end: HostPhysAddr(0x1_0000_0000),
                },
                kind: MemoryKind::Reserved,
            },
        ];
        let map = memory_map(ram, &regions);
        assert_eq!(map.len(), 2);
        assert_eq!(
            map[0],
            MemoryEntry {
                address: 0x100_0000,
                size: 0x1000_0000,
                kind: memmap_type::RAM
            }
        );
        assert_eq!(map[1].kind, memmap_type::RESERVED);
        let block = build(
            HostPhysAddr(0x10ff_c000),
            ram,
            &regions,
            "poweroff",
            &[],
            None,
        );
        assert_eq!(block[8], 3, "privileged initial domain");
    }
}
