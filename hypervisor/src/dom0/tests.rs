//! Dom0 planning tests with hand-built ELF images.

use super::*;
use crate::boot::MemoryKind;

const MIB: u64 = 1024 * 1024;

/// An ELF64 x86_64 image: one PT_LOAD of `load_size` file bytes (memsz
/// twice that) at `paddr`, and a PT_NOTE with the Xen PVH entry `entry`.
fn image(paddr: u64, load_size: u64, entry: Option<u64>) -> Vec<u8> {
    let mut file = vec![0u8; 0x200];
    file[..4].copy_from_slice(b"\x7fELF");
    file[4] = 2; // ELF64
    file[5] = 1; // little-endian
    file[6] = 1; // version
    file[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    file[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    file[20..24].copy_from_slice(&1u32.to_le_bytes());
    file[24..32].copy_from_slice(&entry.unwrap_or(paddr).to_le_bytes());
    file[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    file[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    file[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    file[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let note_offset = 0x100u64;
    let load_offset = 0x200u64;
    // PT_LOAD
    let load = 64;
    file[load..load + 4].copy_from_slice(&1u32.to_le_bytes());
    file[load + 4..load + 8].copy_from_slice(&7u32.to_le_bytes());
    file[load + 8..load + 16].copy_from_slice(&load_offset.to_le_bytes());
    file[load + 16..load + 24].copy_from_slice(&paddr.to_le_bytes());
    file[load + 24..load + 32].copy_from_slice(&paddr.to_le_bytes());
    file[load + 32..load + 40].copy_from_slice(&load_size.to_le_bytes());
    file[load + 40..load + 48].copy_from_slice(&(load_size * 2).to_le_bytes());
    file[load + 48..load + 56].copy_from_slice(&4096u64.to_le_bytes());
    // PT_NOTE
    let note = 64 + 56;
    file[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
    file[note + 8..note + 16].copy_from_slice(&note_offset.to_le_bytes());
    file[note + 32..note + 40].copy_from_slice(&24u64.to_le_bytes());
    file[note + 48..note + 56].copy_from_slice(&4u64.to_le_bytes());
    let n = note_offset as usize;
    file[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
    file[n + 4..n + 8].copy_from_slice(&8u32.to_le_bytes());
    let kind: u32 = if entry.is_some() { 18 } else { 5 };
    file[n + 8..n + 12].copy_from_slice(&kind.to_le_bytes());
    file[n + 12..n + 16].copy_from_slice(b"Xen\0");
    file[n + 16..n + 24].copy_from_slice(&entry.unwrap_or(0).to_le_bytes());
    file.resize((load_offset + load_size) as usize, 0x90);
    file
}

fn machine(ram_end: u64) -> Vec<MemoryRegion> {
    vec![
        MemoryRegion {
            range: HostRange {
                start: HostPhysAddr(0),
                end: HostPhysAddr(0x9f000),
            },
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            range: HostRange {
                start: HostPhysAddr(MIB),
                end: HostPhysAddr(ram_end),
            },
            kind: MemoryKind::Usable,
        },
    ]
}

const HYPERVISOR: HostRange = HostRange {
    start: HostPhysAddr(MIB),
    end: HostPhysAddr(2 * MIB),
};

#[test]
fn parses_segments_and_the_pvh_entry() {
    let parsed = parse_image(&image(16 * MIB, 0x3000, Some(16 * MIB + 0x10))).expect("valid image");
    assert_eq!(parsed.entry as u64, 16 * MIB + 0x10);
    assert_eq!(parsed.segments.len(), 1);
    assert_eq!(parsed.segments[0].file_size, 0x3000);
    assert_eq!(parsed.span.len(), 0x6000);
}

#[test]
fn rejects_garbage_and_missing_entry() {
    assert!(matches!(
        parse_image(b"this is not an ELF file at all"),
        Err(Dom0Error::NotElf(_))
    ));
    assert_eq!(
        parse_image(&image(16 * MIB, 0x1000, None)),
        Err(Dom0Error::NoPvhEntry)
    );
    assert_eq!(
        parse_image(&image(16 * MIB, 0x1000, Some(64 * MIB))),
        Err(Dom0Error::EntryOutsideImage {
            entry: 64 * MIB as u32
        })
    );
    let mut truncated = image(16 * MIB, 0x3000, Some(16 * MIB));
    truncated.truncate(0x1000);
    assert_eq!(parse_image(&truncated), Err(Dom0Error::SegmentOutsideFile));
}

#[test]
fn every_prefix_of_an_image_is_handled_without_panic() {
    let full = image(16 * MIB, 0x400, Some(16 * MIB));
    for length in 0..full.len() {
        let _ = parse_image(&full[..length]);
    }
}

#[test]
fn ram_defaults_to_256_mib_at_the_image() {
    let parsed = parse_image(&image(16 * MIB, 0x3000, Some(16 * MIB))).expect("valid image");
    let ram = choose_ram(&parsed, None, &machine(1024 * MIB), HYPERVISOR).expect("fits");
    assert_eq!(
        ram,
        HostRange {
            start: HostPhysAddr(16 * MIB),
            end: HostPhysAddr(272 * MIB)
        }
    );
}

#[test]
fn ram_shrinks_to_fit_unless_asked_for() {
    let parsed = parse_image(&image(16 * MIB, 0x3000, Some(16 * MIB))).expect("valid image");
    let ram = choose_ram(&parsed, None, &machine(100 * MIB), HYPERVISOR).expect("fits");
    assert_eq!(ram.len(), 84 * MIB);
    assert!(matches!(
        choose_ram(&parsed, Some(512 * MIB), &machine(100 * MIB), HYPERVISOR),
        Err(Dom0Error::NoRoom { .. })
    ));
    assert!(matches!(
        choose_ram(&parsed, None, &machine(24 * MIB), HYPERVISOR),
        Err(Dom0Error::NoRoom { .. })
    ));
    assert!(matches!(
        choose_ram(&parsed, None, &machine(8 * MIB), HYPERVISOR),
        Err(Dom0Error::NoRoom { available: 0, .. })
    ));
}

#[test]
fn an_image_on_the_hypervisor_is_refused() {
    let parsed = parse_image(&image(MIB, 0x3000, Some(MIB))).expect("valid image");
    assert!(matches!(
        choose_ram(&parsed, None, &machine(1024 * MIB), HYPERVISOR),
        Err(Dom0Error::OverlapsHypervisor { .. })
    ));
}
