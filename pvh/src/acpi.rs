//! The ACPI tables a PVH guest boots with, as libxl gives them: RSDP,
//! XSDT, a hardware-reduced FADT, an empty DSDT and a MADT with one local
//! APIC per vCPU (APIC id 2·i, processor UID i = the Xen vCPU id, no
//! IO-APIC). Linux needs the MADT to choose its APIC driver and to see
//! more than one CPU. Written as one block at a guest-physical address.

/// Size of the block (all tables together).
pub const BLOCK_SIZE: usize = 4096;
/// Most vCPUs the MADT lists (keeps the block in one page).
pub const MAX_VCPUS: u32 = 128;

const RSDP_SIZE: usize = 36;
const HEADER_SIZE: usize = 36;
const XSDT_OFFSET: usize = 64;
const XSDT_SIZE: usize = HEADER_SIZE + 2 * 8;
const FADT_OFFSET: usize = 128;
const FADT_SIZE: usize = 276;
const DSDT_OFFSET: usize = FADT_OFFSET + FADT_SIZE + 12;
const DSDT_SIZE: usize = HEADER_SIZE;
const MADT_OFFSET: usize = 512;
/// FADT flags: HW_REDUCED_ACPI (bit 20).
const FADT_HW_REDUCED: u32 = 1 << 20;
/// FADT IA-PC boot architecture flags: no VGA (bit 2), no CMOS RTC (bit
/// 5); no legacy devices and no 8042 (bits 0 and 1 clear). Without "no
/// CMOS RTC", Linux probes ports 0x70/0x71 for seconds before giving up.
const FADT_BOOT_ARCH: u16 = (1 << 2) | (1 << 5);
/// The same for an HVM guest: "no VGA" is not claimed, as on Xen's HVM
/// guests (hvmloader's FADT). Linux takes a guest whose FADT says neither
/// a VGA nor a CMOS RTC is there for PVH (`xen_hvm_guest_late_init`).
const FADT_BOOT_ARCH_HVM: u16 = 1 << 5;
/// FADT flags: RESET_REG_SUP (bit 10), the reset register is there.
const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// The reset register an HVM guest gets: port 0xCF9 (the chipset's reset
/// control, which the hypervisor takes as a reboot request), written with
/// 0x06 (full reset): what `reboot=acpi` uses; otherwise Linux jumps to the
/// BIOS reset vector ([`RESET_VECTOR`]), as it does by default on
/// hardware-reduced ACPI.
const RESET_PORT: u64 = 0xcf9;
const RESET_VALUE: u8 = 0x06;
/// Where real mode's reset vector (F000:FFF0) is in an HVM guest's RAM.
pub const RESET_VECTOR_ADDRESS: u64 = 0xf_fff0;
/// What an HVM guest finds at its reset vector in place of firmware:
/// `mov al, 0x06; mov dx, 0xcf9; out dx, al; cli; hlt` and a jump back
/// to the `hlt`. Linux 6.1 on hardware-reduced ACPI without EFI restarts
/// by jumping there in real mode (`reboot_init` picks BOOT_EFI, which falls back to BOOT_BIOS,
/// `machine_real_restart`); over zeroed RAM it would run for ever.
pub const RESET_VECTOR: [u8; 16] = [
    0xb0,
    RESET_VALUE,
    0xba,
    RESET_PORT as u8,
    (RESET_PORT >> 8) as u8,
    0xee,
    0xfa,
    0xf4,
    0xeb,
    0xfd,
    0,
    0,
    0,
    0,
    0,
    0,
];
/// The local APIC's address, in the MADT header.
const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;

/// The tables for a guest with `vcpus` vCPUs, to sit at guest-physical
/// `base`. Returns the block and the RSDP's address (for
/// `hvm_start_info.rsdp_paddr`). `vcpus` is clamped to 1..=[`MAX_VCPUS`].
pub fn build(base: u64, vcpus: u32) -> ([u8; BLOCK_SIZE], u64) {
    build_for(base, vcpus, false)
}

/// [`build`] for an HVM guest (`hvm`) or a PVH one: they differ only in
/// the FADT's boot architecture flags and reset register.
pub fn build_for(base: u64, vcpus: u32, hvm: bool) -> ([u8; BLOCK_SIZE], u64) {
    let boot_arch = if hvm {
        FADT_BOOT_ARCH_HVM
    } else {
        FADT_BOOT_ARCH
    };
    let vcpus = vcpus.clamp(1, MAX_VCPUS);
    let mut block = [0u8; BLOCK_SIZE];

    // MADT: header, local APIC address, flags (no 8259s), one Processor
    // Local APIC entry (type 0, 8 bytes) per vCPU.
    let madt_size = HEADER_SIZE + 8 + 8 * vcpus as usize;
    header(&mut block, MADT_OFFSET, b"APIC", madt_size, 5);
    put(
        &mut block,
        MADT_OFFSET + 36,
        &LOCAL_APIC_ADDRESS.to_le_bytes(),
    );
    for vcpu in 0..vcpus as usize {
        let entry = MADT_OFFSET + 44 + 8 * vcpu;
        block[entry] = 0; // Processor Local APIC
        block[entry + 1] = 8;
        block[entry + 2] = vcpu as u8; // ACPI processor UID = vCPU id
        block[entry + 3] = (2 * vcpu) as u8; // APIC id
        put(&mut block, entry + 4, &1u32.to_le_bytes()); // enabled
    }
    checksum(&mut block, MADT_OFFSET, madt_size, 9);

    // DSDT: no objects for PVH (no _S5: a PVH guest halts to power off);
    // for HVM the PCI host bridge and its windows.
    let (dsdt_offset, dsdt_size) = if hvm {
        let aml = hvm_dsdt_body();
        put(&mut block, HVM_DSDT_OFFSET + HEADER_SIZE, &aml);
        (HVM_DSDT_OFFSET, HEADER_SIZE + aml.len())
    } else {
        (DSDT_OFFSET, DSDT_SIZE)
    };
    header(&mut block, dsdt_offset, b"DSDT", dsdt_size, 2);
    checksum(&mut block, dsdt_offset, dsdt_size, 9);

    // FADT revision 6, hardware-reduced: no PM timer, no SCI, no legacy.
    header(&mut block, FADT_OFFSET, b"FACP", FADT_SIZE, 6);
    put(
        &mut block,
        FADT_OFFSET + 40,
        &((base + dsdt_offset as u64) as u32).to_le_bytes(),
    );
    put(&mut block, FADT_OFFSET + 109, &boot_arch.to_le_bytes());
    let flags = if hvm {
        FADT_HW_REDUCED | FADT_RESET_REG_SUP
    } else {
        FADT_HW_REDUCED
    };
    put(&mut block, FADT_OFFSET + 112, &flags.to_le_bytes());
    if hvm {
        // RESET_REG: a generic address in system I/O space, 8 bits wide,
        // byte access; then RESET_VALUE. (PVH guests reboot by hypercall.)
        put(&mut block, FADT_OFFSET + 116, &[1, 8, 0, 1]);
        put(&mut block, FADT_OFFSET + 120, &RESET_PORT.to_le_bytes());
        block[FADT_OFFSET + 128] = RESET_VALUE;
    }
    block[FADT_OFFSET + 131] = 5; // minor version (FADT 6.5 layout)
    put(
        &mut block,
        FADT_OFFSET + 140,
        &(base + dsdt_offset as u64).to_le_bytes(),
    ); // X_DSDT
    checksum(&mut block, FADT_OFFSET, FADT_SIZE, 9);

    // XSDT: the FADT and the MADT.
    header(&mut block, XSDT_OFFSET, b"XSDT", XSDT_SIZE, 1);
    put(
        &mut block,
        XSDT_OFFSET + 36,
        &(base + FADT_OFFSET as u64).to_le_bytes(),
    );
    put(
        &mut block,
        XSDT_OFFSET + 44,
        &(base + MADT_OFFSET as u64).to_le_bytes(),
    );
    checksum(&mut block, XSDT_OFFSET, XSDT_SIZE, 9);

    // RSDP revision 2 at the start of the block.
    put(&mut block, 0, b"RSD PTR ");
    put(&mut block, 9, b"XENLTH");
    block[15] = 2;
    put(&mut block, 20, &(RSDP_SIZE as u32).to_le_bytes());
    put(&mut block, 24, &(base + XSDT_OFFSET as u64).to_le_bytes());
    checksum(&mut block, 0, 20, 8); // ACPI 1.0 checksum over the first 20 bytes
    checksum(&mut block, 0, RSDP_SIZE, 32); // extended checksum
    (block, base)
}

/// Where an HVM guest's DSDT goes (after the largest MADT).
const HVM_DSDT_OFFSET: usize = 2048;
const _: () = assert!(MADT_OFFSET + HEADER_SIZE + 8 + 8 * MAX_VCPUS as usize <= HVM_DSDT_OFFSET);

/// The PCI host bridge's windows, as the platform device's BARs need
/// them (`xenolith_hypervisor::hvm_platform`): ports 0xD00–0xFFFF,
/// memory 0xF0000000–0xF0FFFFFF.
pub const HVM_PCI_IO_WINDOW: (u16, u16) = (0x0d00, 0xffff);
pub const HVM_PCI_MEMORY_WINDOW: (u32, u32) = (0xf000_0000, 0xf0ff_ffff);

/// An HVM guest's DSDT body (AML): `\_SB.PCI0`, a PCI host bridge
/// (PNP0A03) for bus 0 with configuration ports 0xCF8–0xCFF and the
/// windows above. Linux with ACPI finds PCI root buses only here.
fn hvm_dsdt_body() -> alloc::vec::Vec<u8> {
    let mut resources = alloc::vec::Vec::new();
    // Word bus number range 0–0, produced, fixed.
    resources.extend_from_slice(&[0x88, 0x0d, 0x00, 2, 0x0c, 0x00]);
    for word in [0u16, 0, 0, 0, 1] {
        resources.extend_from_slice(&word.to_le_bytes());
    }
    // I/O ports 0xCF8–0xCFF, 16-bit decode (consumed).
    resources.extend_from_slice(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]);
    // Word I/O window, produced, fixed, entire range.
    let (io_min, io_max) = HVM_PCI_IO_WINDOW;
    resources.extend_from_slice(&[0x88, 0x0d, 0x00, 1, 0x0c, 0x03]);
    for word in [0, io_min, io_max, 0, io_max - io_min + 1] {
        resources.extend_from_slice(&word.to_le_bytes());
    }
    // DWord memory window, produced, fixed, cacheable, read-write.
    let (memory_min, memory_max) = HVM_PCI_MEMORY_WINDOW;
    resources.extend_from_slice(&[0x87, 0x17, 0x00, 0, 0x0c, 0x03]);
    for dword in [0, memory_min, memory_max, 0, memory_max - memory_min + 1] {
        resources.extend_from_slice(&dword.to_le_bytes());
    }
    resources.extend_from_slice(&[0x79, 0x00]); // end tag
    // Name(_CRS, Buffer(n) { resources })
    let mut crs = alloc::vec::Vec::new();
    crs.extend_from_slice(b"\x08_CRS\x11");
    let mut buffer = alloc::vec![0x0a, resources.len() as u8];
    buffer.extend_from_slice(&resources);
    package(&mut crs, &buffer);
    // Device(PCI0) { Name(_HID, EisaId("PNP0A03")) Name(_UID, 0) _CRS }
    let mut device_body = alloc::vec::Vec::new();
    device_body.extend_from_slice(b"PCI0");
    device_body.extend_from_slice(b"\x08_HID\x0c");
    device_body.extend_from_slice(&[0x41, 0xd0, 0x0a, 0x03]);
    device_body.extend_from_slice(b"\x08_UID\x00");
    device_body.extend_from_slice(&crs);
    let mut device = alloc::vec![0x5b, 0x82];
    package(&mut device, &device_body);
    // Scope(\_SB) { device }
    let mut scope_body = alloc::vec::Vec::new();
    scope_body.extend_from_slice(b"\\_SB_");
    scope_body.extend_from_slice(&device);
    let mut scope = alloc::vec![0x10];
    package(&mut scope, &scope_body);
    scope
}

/// Appends an AML PkgLength (which counts itself) and `body` to `out`.
fn package(out: &mut alloc::vec::Vec<u8>, body: &[u8]) {
    let length = body.len() + 1;
    if length < 0x40 {
        out.push(length as u8);
    } else {
        let length = body.len() + 2; // two-byte encoding, up to 4 KiB
        out.push(0x40 | (length & 0x0f) as u8);
        out.push((length >> 4) as u8);
    }
    out.extend_from_slice(body);
}

fn put(block: &mut [u8], at: usize, bytes: &[u8]) {
    block[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A table header: signature, length, revision, OEM fields.
fn header(block: &mut [u8], at: usize, signature: &[u8; 4], length: usize, revision: u8) {
    put(block, at, signature);
    put(block, at + 4, &(length as u32).to_le_bytes());
    block[at + 8] = revision;
    put(block, at + 10, b"XENLTH");
    put(block, at + 16, b"XENOLITH");
    put(block, at + 24, &1u32.to_le_bytes());
    put(block, at + 28, b"XNLT");
    put(block, at + 32, &1u32.to_le_bytes());
}

/// Sets the byte at `at + field` so the `length` bytes from `at` sum to 0.
fn checksum(block: &mut [u8], at: usize, length: usize, field: usize) {
    block[at + field] = 0;
    let sum = block[at..at + length]
        .iter()
        .fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    block[at + field] = 0u8.wrapping_sub(sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) == 0
    }

    fn u32_at(block: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(block[at..at + 4].try_into().unwrap())
    }

    fn u64_at(block: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(block[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn every_table_checks_out_and_links_to_the_next() {
        let base = 0xe_0000;
        let (block, rsdp) = build(base, 4);
        assert_eq!(rsdp, base);
        assert_eq!(&block[0..8], b"RSD PTR ");
        assert!(sums_to_zero(&block[0..20]) && sums_to_zero(&block[0..36]));
        let xsdt = (u64_at(&block, 24) - base) as usize;
        assert_eq!(&block[xsdt..xsdt + 4], b"XSDT");
        let length = u32_at(&block, xsdt + 4) as usize;
        assert!(sums_to_zero(&block[xsdt..xsdt + length]));
        let mut signatures = Vec::new();
        for entry in (xsdt + 36..xsdt + length).step_by(8) {
            let table = (u64_at(&block, entry) - base) as usize;
            let size = u32_at(&block, table + 4) as usize;
            assert!(
                sums_to_zero(&block[table..table + size]),
                "table at {table:#x}"
            );
            signatures.push(block[table..table + 4].to_vec());
        }
        assert_eq!(signatures, [b"FACP".to_vec(), b"APIC".to_vec()]);
    }

    #[test]
    fn the_madt_lists_each_vcpu_with_uid_i_and_apic_id_2i() {
        let (block, _) = build(0x1000, 3);
        let madt = MADT_OFFSET;
        assert_eq!(u32_at(&block, madt + 4), 44 + 3 * 8);
        for vcpu in 0..3 {
            let entry = madt + 44 + 8 * vcpu;
            assert_eq!(
                &block[entry..entry + 4],
                &[0, 8, vcpu as u8, 2 * vcpu as u8]
            );
            assert_eq!(u32_at(&block, entry + 4), 1);
        }
    }

    #[test]
    fn the_fadt_is_hardware_reduced_and_points_at_the_dsdt() {
        let base = 0x2000;
        let (block, _) = build(base, 1);
        assert_ne!(u32_at(&block, FADT_OFFSET + 112) & FADT_HW_REDUCED, 0);
        // No VGA and no CMOS RTC: Linux leaves those ports alone.
        assert_eq!(
            u16::from_le_bytes([block[FADT_OFFSET + 109], block[FADT_OFFSET + 110]]),
            0x24
        );
        // An HVM guest's FADT does not claim "no VGA", and its DSDT has
        // the PCI host bridge, whole and summing to zero.
        let (hvm_block, _) = build_for(base, 1, true);
        let hvm_dsdt = (u64_at(&hvm_block, FADT_OFFSET + 140) - base) as usize;
        assert_eq!(
            u64::from(u32_at(&hvm_block, FADT_OFFSET + 40)),
            base + hvm_dsdt as u64
        );
        let hvm_dsdt_size = u32_at(&hvm_block, hvm_dsdt + 4) as usize;
        let table = &hvm_block[hvm_dsdt..hvm_dsdt + hvm_dsdt_size];
        assert!(sums_to_zero(table));
        let body = &table[HEADER_SIZE..];
        // Scope(\_SB) whose PkgLength covers the whole body.
        assert_eq!(&body[..1], &[0x10]);
        let scope_length = usize::from(body[1] & 0x0f) | (usize::from(body[2]) << 4);
        assert_eq!(body[1] >> 6, 1, "two-byte PkgLength");
        assert_eq!(scope_length + 1, body.len());
        assert_eq!(&body[3..8], b"\\_SB_");
        let has = |needle: &[u8]| body.windows(needle.len()).any(|window| window == needle);
        assert!(has(b"PCI0") && has(&[0x41, 0xd0, 0x0a, 0x03]) && has(b"_CRS"));
        assert!(has(&0xf000_0000u32.to_le_bytes()) && has(&[0x79, 0x00]));
        let hvm = build_for(base, 1, true).0;
        assert_eq!(
            u16::from_le_bytes([hvm[FADT_OFFSET + 109], hvm[FADT_OFFSET + 110]]),
            0x20
        );
        // An HVM guest resets through port 0xCF9 (Linux's acpi_reboot);
        // a PVH guest's FADT names no reset register.
        assert_ne!(u32_at(&hvm, FADT_OFFSET + 112) & (1 << 10), 0);
        assert_eq!(&hvm[FADT_OFFSET + 116..FADT_OFFSET + 120], &[1, 8, 0, 1]);
        assert_eq!(u64_at(&hvm, FADT_OFFSET + 120), 0xcf9);
        assert_eq!(hvm[FADT_OFFSET + 128], 0x06);
        assert!(sums_to_zero(&hvm[FADT_OFFSET..FADT_OFFSET + FADT_SIZE]));
        assert_eq!(u32_at(&block, FADT_OFFSET + 112) & (1 << 10), 0);
        assert_eq!(u64_at(&block, FADT_OFFSET + 120), 0);
        let dsdt = (u64_at(&block, FADT_OFFSET + 140) - base) as usize;
        assert_eq!(&block[dsdt..dsdt + 4], b"DSDT");
        assert_eq!(
            build(0, 0).0[MADT_OFFSET + 4],
            (44 + 8) as u8,
            "at least one vCPU"
        );
        assert_eq!(
            u32_at(&build(0, 1000).0, MADT_OFFSET + 4) as usize,
            44 + 8 * MAX_VCPUS as usize
        );
    }
}
