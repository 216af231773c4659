//! Dom0 planning tests with hand-built ELF images.

use super::*;
use crate::boot::MemoryKind;

const MIB: u64 = 1024 * 1024;

fn image(paddr: u64, load_size: u64, entry: Option<u64>) -> Vec<u8> {
    pvh::image::testing::elf_image(paddr, load_size, entry)
        .bytes()
        .to_vec()
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
fn image_errors_name_dom0() {
    let error = parse_image(b"garbage").unwrap_err();
    assert_eq!(
        error.to_string(),
        "Dom0 image is not a valid ELF: bad header"
    );
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
