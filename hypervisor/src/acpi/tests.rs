//! ACPI tests: hand-built tables in fake memory, QEMU 7.2's real tables
//! (`testdata/`, dumped from a SeaBIOS guest), and seeded mutations that
//! must never panic.

use super::aml::parse_package;
use super::*;
use crate::boot::memory_map::testing::{FakeMemory, XorShift};

/// Where the hand-built layouts put things.
const LOW_SIZE: usize = 0x10_0000;
const RSDP: u64 = 0xf_5a40;
const TABLES: u64 = 0x7fe_0000;
const TABLES_SIZE: usize = 0x1_0000;
const RSDT: u64 = TABLES + 0x1000;
const XSDT: u64 = TABLES + 0x1100;
const FADT: u64 = TABLES + 0x2000;
const OTHER_FADT: u64 = TABLES + 0x2200;
const DSDT: u64 = TABLES + 0x3000;
const APIC: u64 = TABLES + 0x4000;

/// Where `testdata/` images (and the fuzz target's input) put the RSDP;
/// the rest of the image is memory from `TABLES`.
const IMAGE_RSDP: u64 = 0xe_0000;
const IMAGE_RSDP_LENGTH: usize = 36;
const QEMU_PC: &[u8] = include_bytes!("testdata/qemu-7.2-pc.bin");
const QEMU_Q35: &[u8] = include_bytes!("testdata/qemu-7.2-q35.bin");

const SEABIOS_S5: &[u8] = &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0];
/// `Name (\_S5, Package (4) { 0x05, 0x06, Zero, Zero })`.
const FIRMWARE_S5: &[u8] = &[
    0x08, 0x5c, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x06, 0, 0,
];

/// Physical memory in separate regions; a read must fall inside one.
struct Machine {
    regions: Vec<FakeMemory>,
}

impl Machine {
    /// Low memory (BDA, EBDA, BIOS area) and a table area, all zero.
    fn new() -> Self {
        Self {
            regions: vec![
                FakeMemory::new(0, LOW_SIZE),
                FakeMemory::new(TABLES, TABLES_SIZE),
            ],
        }
    }

    /// The layout of a `testdata/` image.
    fn from_image(image: &[u8]) -> Self {
        let (rsdp, tables) = image.split_at(IMAGE_RSDP_LENGTH);
        Self {
            regions: vec![
                FakeMemory {
                    base: IMAGE_RSDP,
                    bytes: rsdp.to_vec(),
                },
                FakeMemory {
                    base: TABLES,
                    bytes: tables.to_vec(),
                },
            ],
        }
    }

    fn region(&mut self, address: u64) -> &mut FakeMemory {
        self.regions
            .iter_mut()
            .find(|region| {
                address >= region.base && address - region.base < region.bytes.len() as u64
            })
            .expect("address in a region")
    }

    fn write(&mut self, address: u64, data: &[u8]) {
        self.region(address).write(address, data);
    }

    fn byte(&self, address: u64) -> u8 {
        let mut byte = [0];
        self.read(HostPhysAddr(address), &mut byte).unwrap();
        byte[0]
    }
}

impl PhysicalMemory for Machine {
    fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
        for region in &self.regions {
            if region.read(address, buffer).is_ok() {
                return Ok(());
            }
        }
        Err(OutOfBounds {
            address,
            len: buffer.len(),
        })
    }
}

/// Sets `bytes[at]` so that `bytes` sum to zero.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    bytes[at] = 0u8.wrapping_sub(checksum(bytes));
}

/// A table of `length` bytes with `fields` (offset, bytes) written in.
fn table(signature: &[u8; 4], revision: u8, length: usize, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut bytes = vec![0; length];
    bytes[..4].copy_from_slice(signature);
    bytes[4..8].copy_from_slice(&(length as u32).to_le_bytes());
    bytes[8] = revision;
    bytes[10..16].copy_from_slice(b"XENOLI");
    bytes[16..24].copy_from_slice(b"TESTTABL");
    bytes[28..32].copy_from_slice(b"XNLT");
    for (offset, field) in fields {
        bytes[*offset..*offset + field.len()].copy_from_slice(field);
    }
    fix_checksum(&mut bytes, 9);
    bytes
}

fn rsdp_v0(rsdt: u32) -> Vec<u8> {
    let mut bytes = b"RSD PTR \0BOCHS \0".to_vec();
    bytes.extend(rsdt.to_le_bytes());
    fix_checksum(&mut bytes, 8);
    bytes
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut bytes = b"RSD PTR \0BOCHS \x02".to_vec();
    bytes.extend(rsdt.to_le_bytes());
    bytes.extend(36u32.to_le_bytes());
    bytes.extend(xsdt.to_le_bytes());
    bytes.extend([0; 4]);
    fix_checksum(&mut bytes[..20], 8);
    fix_checksum(&mut bytes, 32);
    bytes
}

fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries
        .iter()
        .flat_map(|entry| entry.to_le_bytes())
        .collect();
    table(b"RSDT", 1, 36 + body.len(), &[(36, &body)])
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries
        .iter()
        .flat_map(|entry| entry.to_le_bytes())
        .collect();
    table(b"XSDT", 1, 36 + body.len(), &[(36, &body)])
}

/// A Generic Address Structure of one byte.
fn gas(space: u8, address: u64) -> Vec<u8> {
    let mut bytes = vec![space, 8, 0, 1];
    bytes.extend(address.to_le_bytes());
    bytes
}

fn dsdt(aml: &[u8]) -> Vec<u8> {
    table(b"DSDT", 2, 36 + aml.len(), &[(36, aml)])
}

/// An ACPI 1.0 FADT (116 bytes) as SeaBIOS builds it for i440fx.
fn fadt_v1(pm1a: u32, dsdt: u32) -> Vec<u8> {
    table(
        b"FACP",
        1,
        116,
        &[(40, &dsdt.to_le_bytes()), (64, &pm1a.to_le_bytes())],
    )
}

const RESET_REGISTER_SUPPORTED: u32 = 1 << 10;

/// An ACPI 6 FADT (276 bytes): legacy PM1a at 0x404, extended at 0x804,
/// PM1b at 0x408, reset through I/O port 0xcf9.
fn fadt_v6(extra: &[(usize, &[u8])]) -> Vec<u8> {
    let dsdt = DSDT as u32;
    let mut fields: Vec<(usize, &[u8])> = Vec::new();
    let dsdt_field = dsdt.to_le_bytes();
    let pm1a = 0x404u32.to_le_bytes();
    let pm1b = 0x408u32.to_le_bytes();
    let flags = RESET_REGISTER_SUPPORTED.to_le_bytes();
    let reset = gas(1, 0xcf9);
    let x_dsdt = DSDT.to_le_bytes();
    let x_pm1a = gas(1, 0x804);
    fields.extend([
        (40, &dsdt_field[..]),
        (64, &pm1a[..]),
        (68, &pm1b[..]),
        (112, &flags[..]),
        (116, &reset[..]),
        (128, &[0x06][..]),
        (140, &x_dsdt[..]),
        (172, &x_pm1a[..]),
    ]);
    fields.extend_from_slice(extra);
    table(b"FACP", 6, 276, &fields)
}

/// ACPI 1.0 as SeaBIOS lays it out: RSDP v0 → RSDT → FADT v1 → DSDT.
fn acpi_1() -> Machine {
    let mut machine = Machine::new();
    machine.write(RSDP, &rsdp_v0(RSDT as u32));
    machine.write(RSDT, &rsdt(&[APIC as u32, FADT as u32]));
    machine.write(APIC, &table(b"APIC", 1, 44, &[]));
    machine.write(FADT, &fadt_v1(0x604, DSDT as u32));
    machine.write(DSDT, &dsdt(&with_noise(SEABIOS_S5)));
    machine
}

/// ACPI 2.0+: RSDP v2 → XSDT → FADT v6 → DSDT; the RSDT lists another
/// FADT (PM1a 0xb004), so a test can tell which root table was used.
fn acpi_2() -> Machine {
    let mut machine = Machine::new();
    machine.write(RSDP, &rsdp_v2(RSDT as u32, XSDT));
    machine.write(RSDT, &rsdt(&[OTHER_FADT as u32]));
    machine.write(XSDT, &xsdt(&[APIC, FADT]));
    machine.write(APIC, &table(b"APIC", 1, 44, &[]));
    machine.write(FADT, &fadt_v6(&[]));
    machine.write(OTHER_FADT, &fadt_v1(0xb004, DSDT as u32));
    machine.write(DSDT, &dsdt(&with_noise(FIRMWARE_S5)));
    machine
}

/// `aml` after some other AML: a `Scope (\_SB) {}` and Noops.
fn with_noise(aml: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x10, 0x05, 0x5c, b'_', b'S', b'B', b'_'];
    bytes.extend([0xa3; 40]);
    bytes.extend(aml);
    bytes.extend([0xa3; 8]);
    bytes
}

fn hinted(machine: &Machine) -> Result<PowerControl, AcpiError> {
    power_control(machine, Some(HostPhysAddr(RSDP)))
}

/// `\_S5` of a DSDT holding `aml`.
fn s5_of(aml: &[u8]) -> Result<SleepType, AcpiError> {
    let mut machine = Machine::new();
    machine.write(DSDT, &dsdt(aml));
    s5_sleep_type(&machine, HostPhysAddr(DSDT))
}

fn sleep(a: u8, b: u8) -> SleepType {
    SleepType { a, b }
}

// QEMU 7.2's own tables.

#[test]
fn qemu_i440fx_tables() {
    let machine = Machine::from_image(QEMU_PC);
    let expected = PowerControl {
        pm1a_control: 0x604,
        pm1b_control: None,
        sleep_type_a: 0,
        sleep_type_b: 0,
        reset: None,
    };
    assert_eq!(
        power_control(&machine, Some(HostPhysAddr(IMAGE_RSDP))),
        Ok(expected)
    );
    // No BIOS data area here: the scan goes straight to 0xe0000.
    assert_eq!(power_control(&machine, None), Ok(expected));
    let rsdp = find_rsdp(&machine, None).unwrap();
    assert_eq!((rsdp.revision, rsdp.xsdt), (0, None));
    let fadt = read_fadt(&machine, &rsdp).unwrap();
    assert_eq!(fadt.revision, 1);
    assert_eq!(fadt.dsdt, Some(HostPhysAddr(0x7fe_0040)));
}

#[test]
fn qemu_q35_tables() {
    let machine = Machine::from_image(QEMU_Q35);
    assert_eq!(
        power_control(&machine, Some(HostPhysAddr(IMAGE_RSDP))),
        Ok(PowerControl {
            pm1a_control: 0x604,
            pm1b_control: None,
            sleep_type_a: 0,
            sleep_type_b: 0,
            reset: Some(ResetRegister {
                space: ResetSpace::IoPort(0xcf9),
                value: 0x0f,
            }),
        })
    );
    let fadt = read_fadt(&machine, &find_rsdp(&machine, None).unwrap()).unwrap();
    assert_eq!(fadt.revision, 3);
    assert_eq!(fadt.dsdt, Some(HostPhysAddr(0x7fe_0040)));
    assert!(!fadt.hardware_reduced);
}

// Finding the RSDP.

#[test]
fn acpi_1_through_the_rsdt() {
    let machine = acpi_1();
    assert_eq!(
        hinted(&machine),
        Ok(PowerControl {
            pm1a_control: 0x604,
            pm1b_control: None,
            sleep_type_a: 0,
            sleep_type_b: 0,
            reset: None,
        })
    );
}

#[test]
fn acpi_2_prefers_the_xsdt_and_extended_fields() {
    let machine = acpi_2();
    assert_eq!(
        hinted(&machine),
        Ok(PowerControl {
            pm1a_control: 0x804,
            pm1b_control: Some(0x408),
            sleep_type_a: 5,
            sleep_type_b: 6,
            reset: Some(ResetRegister {
                space: ResetSpace::IoPort(0xcf9),
                value: 6,
            }),
        })
    );
    let rsdp = find_rsdp(&machine, None).unwrap();
    assert_eq!(
        rsdp,
        Rsdp {
            address: HostPhysAddr(RSDP),
            revision: 2,
            rsdt: Some(HostPhysAddr(RSDT)),
            xsdt: Some(HostPhysAddr(XSDT)),
        }
    );
}

#[test]
fn revision_2_without_xsdt_uses_the_rsdt() {
    let mut machine = acpi_2();
    machine.write(RSDP, &rsdp_v2(RSDT as u32, 0));
    assert_eq!(hinted(&machine).unwrap().pm1a_control, 0xb004);
}

#[test]
fn unusable_xsdt_falls_back_to_the_rsdt() {
    let mut machine = acpi_2();
    machine.write(XSDT + 20, &[0x55]);
    assert_eq!(hinted(&machine).unwrap().pm1a_control, 0xb004);
    // With the RSDT broken too, the XSDT's fault is the one reported.
    machine.write(RSDT, b"XXXX");
    assert_eq!(
        hinted(&machine),
        Err(AcpiError::BadChecksum {
            table: Table::Xsdt,
            address: HostPhysAddr(XSDT),
        })
    );
}

#[test]
fn scan_finds_the_rsdp_in_the_ebda_first() {
    // The BIOS area's RSDP leads to the RSDT (PM1a 0xb004), the EBDA's to
    // the XSDT (PM1a 0x804).
    let mut machine = acpi_2();
    machine.write(RSDP, &rsdp_v0(RSDT as u32));
    machine.write(0x40e, &0x9fc0u16.to_le_bytes());
    machine.write(0x9_fc00 + 0x3f0, &rsdp_v2(RSDT as u32, XSDT));
    let rsdp = find_rsdp(&machine, None).unwrap();
    assert_eq!(rsdp.address, HostPhysAddr(0x9_fff0));
    assert_eq!(power_control(&machine, None).unwrap().pm1a_control, 0x804);
}

#[test]
fn scan_reads_only_the_first_kib_of_the_ebda() {
    let mut machine = Machine::new();
    machine.write(0x40e, &0x9fc0u16.to_le_bytes());
    machine.write(0x9_fc00 + 0x400, &rsdp_v0(RSDT as u32));
    assert_eq!(find_rsdp(&machine, None), Err(AcpiError::NoRsdp));
}

#[test]
fn scan_finds_the_rsdp_in_the_bios_area() {
    let machine = acpi_1();
    assert_eq!(
        find_rsdp(&machine, None).unwrap().address,
        HostPhysAddr(RSDP)
    );
    let mut machine = Machine::new();
    machine.write(0xe_0004, &rsdp_v0(RSDT as u32));
    machine.write(0xf_fff0, &rsdp_v0(RSDT as u32)[..16]);
    assert_eq!(
        find_rsdp(&machine, None),
        Err(AcpiError::NoRsdp),
        "neither the unaligned copy nor the one cut by the end of the area counts"
    );
}

#[test]
fn scan_passes_over_bad_candidates() {
    let mut machine = acpi_1();
    let mut bad_checksum = rsdp_v0(0x1234);
    bad_checksum[8] ^= 1;
    machine.write(0xe_0000, &bad_checksum);
    let mut bad_extension = rsdp_v2(0x1234, 0x5678);
    bad_extension[32] ^= 1;
    machine.write(0xe_0010 + 0x100, &bad_extension);
    assert_eq!(
        find_rsdp(&machine, None).unwrap().address,
        HostPhysAddr(RSDP)
    );
}

#[test]
fn bad_hint_falls_back_to_the_scan() {
    let machine = acpi_1();
    let rsdp = find_rsdp(&machine, Some(HostPhysAddr(0x1234))).unwrap();
    assert_eq!(rsdp.address, HostPhysAddr(RSDP));
}

#[test]
fn bad_hint_and_nothing_found_reports_the_hint() {
    let mut machine = Machine::new();
    let mut rsdp = rsdp_v0(RSDT as u32);
    rsdp[19] ^= 0x80;
    // Off the 16-byte grid, so the scan does not see it.
    machine.write(0x8_0008, &rsdp);
    assert_eq!(
        find_rsdp(&machine, Some(HostPhysAddr(0x8_0008))),
        Err(AcpiError::BadChecksum {
            table: Table::Rsdp,
            address: HostPhysAddr(0x8_0008),
        })
    );
    assert_eq!(
        find_rsdp(&machine, Some(HostPhysAddr(0x8_0000))),
        Err(AcpiError::BadSignature {
            table: Table::Rsdp,
            address: HostPhysAddr(0x8_0000),
        })
    );
    assert_eq!(
        find_rsdp(&machine, Some(HostPhysAddr(0x7fff_0000))),
        Err(AcpiError::Unreadable(OutOfBounds {
            address: HostPhysAddr(0x7fff_0000),
            len: 20,
        }))
    );
    assert_eq!(find_rsdp(&machine, None), Err(AcpiError::NoRsdp));
}

#[test]
fn rsdp_v2_checks() {
    let mut machine = Machine::new();
    let mut bad_extension = rsdp_v2(RSDT as u32, XSDT);
    bad_extension[24] ^= 1;
    machine.write(0x8_0000, &bad_extension);
    let mut short = rsdp_v2(RSDT as u32, XSDT);
    short[20] = 20;
    fix_checksum(&mut short, 32);
    machine.write(0x8_0100, &short);
    assert_eq!(
        find_rsdp(&machine, Some(HostPhysAddr(0x8_0000))),
        Err(AcpiError::BadChecksum {
            table: Table::Rsdp,
            address: HostPhysAddr(0x8_0000),
        })
    );
    assert_eq!(
        find_rsdp(&machine, Some(HostPhysAddr(0x8_0100))),
        Err(AcpiError::TableTooShort {
            table: Table::Rsdp,
            address: HostPhysAddr(0x8_0100),
            length: 20,
        })
    );
}

#[test]
fn rsdp_without_root_tables() {
    let mut machine = Machine::new();
    machine.write(RSDP, &rsdp_v2(0, 0));
    assert_eq!(hinted(&machine), Err(AcpiError::NoRootTable));
}

// Table headers.

#[test]
fn bad_checksums_name_the_table() {
    for (table, address) in [
        (Table::Rsdt, RSDT),
        (Table::Fadt, FADT),
        (Table::Dsdt, DSDT),
    ] {
        let mut machine = acpi_1();
        let byte = machine.byte(address + 30);
        machine.write(address + 30, &[byte ^ 0x40]);
        assert_eq!(
            hinted(&machine),
            Err(AcpiError::BadChecksum {
                table,
                address: HostPhysAddr(address),
            }),
            "{table}"
        );
    }
}

#[test]
fn bad_signatures() {
    let mut machine = acpi_1();
    machine.write(RSDP, &rsdp_v0(APIC as u32));
    assert_eq!(
        hinted(&machine),
        Err(AcpiError::BadSignature {
            table: Table::Rsdt,
            address: HostPhysAddr(APIC),
        })
    );
    let mut machine = acpi_1();
    machine.write(FADT, &fadt_v1(0x604, APIC as u32));
    assert_eq!(
        hinted(&machine),
        Err(AcpiError::BadSignature {
            table: Table::Dsdt,
            address: HostPhysAddr(APIC),
        })
    );
}

#[test]
fn table_lengths_are_checked() {
    let mut machine = acpi_1();
    machine.write(DSDT + 4, &35u32.to_le_bytes());
    assert_eq!(
        hinted(&machine),
        Err(AcpiError::TableTooShort {
            table: Table::Dsdt,
            address: HostPhysAddr(DSDT),
            length: 35,
        })
    );
    machine.write(DSDT + 4, &(MAX_TABLE_LENGTH + 1).to_le_bytes());
    assert_eq!(
        hinted(&machine),
        Err(AcpiError::TableTooLong {
            table: Table::Dsdt,
            address: HostPhysAddr(DSDT),
            length: MAX_TABLE_LENGTH + 1,
        })
    );
}

#[test]
fn truncated_tables_are_unreadable() {
    // A DSDT whose length runs past the end of readable memory.
    let mut machine = acpi_1();
    let end = TABLES + TABLES_SIZE as u64;
    let near_end = end - 64;
    machine.write(FADT, &fadt_v1(0x604, near_end as u32));
    let mut cut = dsdt(&with_noise(SEABIOS_S5));
    cut.truncate(64);
    machine.write(near_end, &cut);
    assert!(matches!(
        hinted(&machine),
        Err(AcpiError::Unreadable(OutOfBounds { address, .. })) if address.raw() < end
    ));
    // A root table whose header is cut.
    machine.write(RSDP, &rsdp_v0((end - 20) as u32));
    assert!(matches!(hinted(&machine), Err(AcpiError::Unreadable(_))));
}

#[test]
fn table_wrapping_the_address_space() {
    let mut machine = Machine::new();
    machine
        .regions
        .push(FakeMemory::new(u64::MAX - 0xfff, 0x1000));
    let top = u64::MAX - 0x3f;
    machine.write(top, &table(b"DSDT", 1, 64, &[]));
    assert_eq!(
        s5_sleep_type(&machine, HostPhysAddr(top)),
        Err(AcpiError::TableWraps {
            table: Table::Dsdt,
            address: HostPhysAddr(top),
        })
    );
}

// Root table walk.

#[test]
fn no_fadt_listed() {
    let mut machine = acpi_1();
    machine.write(RSDT, &rsdt(&[APIC as u32, 0, 0xdead_0000]));
    assert_eq!(hinted(&machine), Err(AcpiError::NoFadt));
    machine.write(RSDT, &rsdt(&[]));
    assert_eq!(hinted(&machine), Err(AcpiError::NoFadt));
}

#[test]
fn zero_and_unreadable_entries_are_passed_over() {
    let mut machine = acpi_1();
    machine.write(RSDT, &rsdt(&[0, 0xdead_0000, APIC as u32, FADT as u32]));
    assert_eq!(hinted(&machine).unwrap().pm1a_control, 0x604);
}

#[test]
fn a_bad_fadt_is_passed_over_for_a_good_one() {
    let mut machine = acpi_1();
    machine.write(RSDT, &rsdt(&[OTHER_FADT as u32, FADT as u32]));
    let mut bad = fadt_v1(0xb004, DSDT as u32);
    bad[9] ^= 1;
    machine.write(OTHER_FADT, &bad);
    assert_eq!(hinted(&machine).unwrap().pm1a_control, 0x604);
}

// FADT fields.

fn decoded(fields: &[(usize, &[u8])], length: usize) -> Fadt {
    let mut bytes = fadt_v6(fields);
    bytes.truncate(length);
    fadt::decode(HostPhysAddr(FADT), &bytes)
}

#[test]
fn fadt_fields_count_only_when_wholly_inside_the_length() {
    let full = decoded(&[], 276);
    assert_eq!(full.pm1a_control, Some(0x804));
    assert_eq!(full.dsdt, Some(HostPhysAddr(DSDT)));
    assert!(full.reset.is_some());
    // Cut inside X_PM1a_CNT_BLK: the 32-bit field is used.
    assert_eq!(decoded(&[], 180).pm1a_control, Some(0x404));
    // Cut inside X_DSDT: the 32-bit DSDT is used.
    let cut = decoded(&[(40, &0x1000u32.to_le_bytes())], 144);
    assert_eq!(cut.dsdt, Some(HostPhysAddr(0x1000)));
    // Cut before RESET_VALUE: no reset register.
    assert_eq!(decoded(&[], 128).reset, None);
    // Only the header and DSDT: no PM1 blocks at all.
    let tiny = decoded(&[], 44);
    assert_eq!(
        (tiny.pm1a_control, tiny.pm1b_control, tiny.dsdt),
        (None, None, Some(HostPhysAddr(DSDT)))
    );
    assert_eq!(decoded(&[], 0).dsdt, None);
}

#[test]
fn extended_pm1_blocks_only_in_io_space() {
    let memory_space = gas(0, 0xfed8_0804);
    assert_eq!(
        decoded(&[(172, &memory_space)], 276).pm1a_control,
        Some(0x404)
    );
    let zero = gas(1, 0);
    assert_eq!(decoded(&[(172, &zero)], 276).pm1a_control, Some(0x404));
    let too_big = gas(1, 0x1_0000);
    assert_eq!(decoded(&[(172, &too_big)], 276).pm1a_control, Some(0x404));
    let pm1b = gas(1, 0x80c);
    assert_eq!(decoded(&[(184, &pm1b)], 276).pm1b_control, Some(0x80c));
    let legacy_too_big = 0x1_0404u32.to_le_bytes();
    let no_pm1 = decoded(&[(64, &legacy_too_big), (172, &memory_space)], 276);
    assert_eq!(no_pm1.pm1a_control, None);
}

#[test]
fn reset_register_spaces() {
    let reset = |register: &[u8]| decoded(&[(116, register), (128, &[0xfe])], 276).reset;
    assert_eq!(
        reset(&gas(1, 0x64)),
        Some(ResetRegister {
            space: ResetSpace::IoPort(0x64),
            value: 0xfe,
        })
    );
    assert_eq!(
        reset(&gas(0, 0xfed0_0000)),
        Some(ResetRegister {
            space: ResetSpace::Memory(HostPhysAddr(0xfed0_0000)),
            value: 0xfe,
        })
    );
    assert_eq!(
        reset(&gas(2, 0x1f_0003_00cf)),
        Some(ResetRegister {
            space: ResetSpace::PciConfig {
                device: 0x1f,
                function: 3,
                offset: 0xcf,
            },
            value: 0xfe,
        })
    );
    assert_eq!(reset(&gas(2, 0x20_0000_00cf)), None, "device 32");
    assert_eq!(reset(&gas(2, 0x1f_0008_00cf)), None, "function 8");
    assert_eq!(reset(&gas(2, 1 << 48)), None, "bus bits set");
    assert_eq!(reset(&gas(1, 0x1_0000)), None, "port over 16 bits");
    assert_eq!(reset(&gas(1, 0)), None, "no address");
    assert_eq!(reset(&gas(0x7f, 0x10)), None, "functional fixed hardware");
    let unsupported = decoded(&[(112, &0u32.to_le_bytes())], 276);
    assert_eq!(unsupported.reset, None, "RESET_REG_SUP clear");
}

#[test]
fn missing_pm1a_or_dsdt() {
    let mut machine = acpi_1();
    machine.write(FADT, &fadt_v1(0, DSDT as u32));
    assert_eq!(hinted(&machine), Err(AcpiError::NoPm1aControl));
    let hardware_reduced = (1u32 << 20).to_le_bytes();
    machine.write(
        FADT,
        &table(
            b"FACP",
            5,
            276,
            &[(112, &hardware_reduced), (140, &DSDT.to_le_bytes())],
        ),
    );
    assert_eq!(hinted(&machine), Err(AcpiError::HardwareReduced));
    machine.write(FADT, &fadt_v1(0x604, 0));
    assert_eq!(hinted(&machine), Err(AcpiError::NoDsdt));
    // The reset register stays reachable without a DSDT.
    let mut machine = acpi_2();
    machine.write(DSDT, &[0; 64]);
    assert!(hinted(&machine).is_err());
    let fadt = read_fadt(&machine, &find_rsdp(&machine, None).unwrap()).unwrap();
    assert_eq!(fadt.reset.unwrap().space, ResetSpace::IoPort(0xcf9));
}

// `\_S5` in AML.

#[test]
fn s5_encodings() {
    assert_eq!(s5_of(SEABIOS_S5), Ok(sleep(0, 0)));
    assert_eq!(s5_of(FIRMWARE_S5), Ok(sleep(5, 6)));
    // Two elements, OneOp and a byte.
    assert_eq!(
        s5_of(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x01, 0x0a, 0x07
        ]),
        Ok(sleep(1, 7))
    );
    // Word, dword and qword prefixes: the low byte counts.
    assert_eq!(
        s5_of(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x02, 0x0b, 0x07, 0x01, 0x0c, 0x06, 0, 0, 1,
        ]),
        Ok(sleep(7, 6))
    );
    let mut qword = vec![0x08, b'_', b'S', b'5', b'_', 0x12, 0x0c, 0x02, 0x0e];
    qword.extend(0x0102_0304_0506_0705u64.to_le_bytes());
    qword.push(0xff);
    assert_eq!(s5_of(&qword), Ok(sleep(5, 0xff)));
    // One element holds both: SLP_TYPa in bits 0-7, SLP_TYPb in 8-15.
    assert_eq!(
        s5_of(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x01, 0x0b, 0x05, 0x03
        ]),
        Ok(sleep(5, 3))
    );
    // A 2-byte PkgLength (7, not the shortest encoding).
    assert_eq!(
        s5_of(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x47, 0x00, 0x02, 0x0a, 0x03, 0x0a, 0x04
        ]),
        Ok(sleep(3, 4))
    );
}

#[test]
fn s5_found_after_other_uses_of_the_name() {
    let mut aml = Vec::new();
    // Store (\_S5, Local0): a reference, not a definition.
    aml.extend([0x70, 0x5c, b'_', b'S', b'5', b'_', 0x60]);
    // A string "_S5_".
    aml.extend([0x0d, b'_', b'S', b'5', b'_', 0x00]);
    assert_eq!(s5_of(&aml), Err(AcpiError::NoS5));
    // Method (_S5_) { Return (Zero) }: its PkgLength, 8, looks like a
    // NameOp, so without an interpreter this one reads as a broken Name.
    aml.extend([0x14, 0x08, b'_', b'S', b'5', b'_', 0x00, 0xa4, 0x00]);
    assert_eq!(
        s5_of(&aml),
        Err(AcpiError::BadS5 {
            reason: "_S5 is not a package"
        })
    );
    aml.extend(FIRMWARE_S5);
    assert_eq!(s5_of(&aml), Ok(sleep(5, 6)));
}

#[test]
fn s5_across_a_read_boundary() {
    // Chunks are 512 bytes of body; put the name across the first boundary.
    for shift in 505..=512 {
        let mut aml = vec![0xa3; shift];
        aml.extend(FIRMWARE_S5);
        assert_eq!(s5_of(&aml), Ok(sleep(5, 6)), "at {shift}");
    }
}

#[test]
fn s5_name_op_must_be_in_the_body() {
    // The NameOp would be the header's last byte.
    let mut machine = Machine::new();
    let mut table = dsdt(&SEABIOS_S5[1..]);
    table[35] = 0x08;
    fix_checksum(&mut table, 9);
    machine.write(DSDT, &table);
    assert_eq!(
        s5_sleep_type(&machine, HostPhysAddr(DSDT)),
        Err(AcpiError::NoS5)
    );
}

#[test]
fn s5_that_is_not_a_usable_package() {
    let name = [0x08, b'_', b'S', b'5', b'_'];
    let with = |rest: &[u8]| {
        let mut aml = name.to_vec();
        aml.extend(rest);
        s5_of(&aml)
    };
    let bad = |reason| Err(AcpiError::BadS5 { reason });
    assert_eq!(with(&[0x00]), bad("_S5 is not a package"));
    assert_eq!(with(&[0x12, 0x02, 0x00]), bad("the package is empty"));
    assert_eq!(
        with(&[0x12, 0x04, 0x02, 0x53, 0x4c, 0x50]),
        bad("a package element is not an integer constant")
    );
    assert_eq!(
        with(&[0x12, 0x06, 0x04, 0x00]),
        bad("the package runs past the end of the DSDT")
    );
    assert_eq!(
        with(&[0x12, 0x02, 0x02, 0x0a, 0x05, 0x0a, 0x05]),
        bad("the elements run past the package's length")
    );
    assert_eq!(
        with(&[0x12, 0x70, 0x00, 0x02]),
        bad("bad package length encoding")
    );
    assert_eq!(
        with(&[0x12, 0x02, 0x02, 0x0a]),
        bad("the package is cut off by the end of the DSDT")
    );
    assert_eq!(
        with(&[]),
        bad("the package is cut off by the end of the DSDT")
    );
    // A later good definition wins over an earlier broken one.
    let mut aml = name.to_vec();
    aml.push(0x00);
    aml.extend(SEABIOS_S5);
    assert_eq!(s5_of(&aml), Ok(sleep(0, 0)));
}

#[test]
fn package_lengths() {
    // 4 bytes of PkgLength: 0x6 | 0x45 << 4 | 0x23 << 12 | 0x01 << 20,
    // counted from the PkgLength, one byte after the PackageOp.
    let aml = [0x12, 0xc6, 0x45, 0x23, 0x01, 0x01, 0x00];
    assert_eq!(parse_package(&aml, 0x12_3457), Ok(sleep(0, 0)));
    assert_eq!(
        parse_package(&aml, 0x12_3456),
        Err("the package runs past the end of the DSDT")
    );
}

#[test]
fn poweroff_values() {
    assert_eq!(poweroff_value(0), 0x2000);
    assert_eq!(poweroff_value(5), 0x3400);
    assert_eq!(poweroff_value(7), 0x3c00);
    assert_eq!(poweroff_value(0xff), 0x3c00, "only 3 bits of SLP_TYP");
}

#[test]
fn error_messages_are_one_line() {
    let address = HostPhysAddr(0x7fe_1000);
    let errors = [
        AcpiError::NoRsdp,
        AcpiError::BadSignature {
            table: Table::Rsdt,
            address,
        },
        AcpiError::BadChecksum {
            table: Table::Fadt,
            address,
        },
        AcpiError::TableTooShort {
            table: Table::Dsdt,
            address,
            length: 3,
        },
        AcpiError::TableTooLong {
            table: Table::Xsdt,
            address,
            length: u32::MAX,
        },
        AcpiError::TableWraps {
            table: Table::Rsdp,
            address,
        },
        AcpiError::NoRootTable,
        AcpiError::NoFadt,
        AcpiError::NoPm1aControl,
        AcpiError::HardwareReduced,
        AcpiError::NoDsdt,
        AcpiError::NoS5,
        AcpiError::BadS5 { reason: "why" },
        AcpiError::Unreadable(OutOfBounds { address, len: 36 }),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(message.starts_with("ACPI: "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
    assert_eq!(
        AcpiError::BadChecksum {
            table: Table::Fadt,
            address
        }
        .to_string(),
        "ACPI: FADT at 0x7fe1000 has a bad checksum"
    );
}

// Robustness: seeded mutations never panic.

/// Overwrites `count` random bytes of the tables' first bytes, noting the
/// old values so they can be restored; then, half the time, fixes every
/// checksum so the mutation reaches the parsers behind them.
fn mutate(machine: &mut Machine, random: &mut XorShift, undo: &mut Vec<(u64, u8)>) {
    let targets = [
        (RSDP, 36),
        (RSDT, 48),
        (XSDT, 56),
        (FADT, 276),
        (OTHER_FADT, 116),
        (DSDT, 120),
    ];
    let mut poke = |machine: &mut Machine, address: u64, value: u8| {
        undo.push((address, machine.byte(address)));
        machine.write(address, &[value]);
    };
    for _ in 0..=random.below(6) {
        let (start, length) = targets[random.below(targets.len() as u64) as usize];
        let address = start + random.below(length);
        let value = match random.below(4) {
            0 => 0,
            1 => 0xff,
            _ => random.next() as u8,
        };
        poke(machine, address, value);
    }
    if random.below(2) == 0 {
        return;
    }
    let sum = |machine: &Machine, start: u64, length: u64| {
        (start..start + length).fold(0u8, |sum, address| sum.wrapping_add(machine.byte(address)))
    };
    for (start, _) in targets {
        if start == RSDP {
            let fixed = machine.byte(RSDP + 8).wrapping_sub(sum(machine, RSDP, 20));
            poke(machine, RSDP + 8, fixed);
            let fixed = machine.byte(RSDP + 32).wrapping_sub(sum(machine, RSDP, 36));
            poke(machine, RSDP + 32, fixed);
            continue;
        }
        let mut length = [0; 4];
        machine.read(HostPhysAddr(start + 4), &mut length).unwrap();
        let length = u64::from(u32::from_le_bytes(length)).clamp(36, 0x1000);
        let fixed = machine
            .byte(start + 9)
            .wrapping_sub(sum(machine, start, length));
        poke(machine, start + 9, fixed);
    }
}

#[test]
fn mutated_tables_never_panic() {
    let mut random = XorShift(0x5eed_ac91_0000_0001);
    let mut outcomes = [0usize; 2];
    for mut machine in [acpi_1(), acpi_2()] {
        let clean = hinted(&machine);
        for case in 0..2000 {
            let mut undo = Vec::new();
            mutate(&mut machine, &mut random, &mut undo);
            let result = hinted(&machine);
            if let Ok(control) = result {
                assert_ne!(control.pm1a_control, 0);
            }
            if case % 64 == 0 {
                let _ = power_control(&machine, None);
            }
            outcomes[usize::from(result.is_ok())] += 1;
            for (address, value) in undo.into_iter().rev() {
                machine.write(address, &[value]);
            }
        }
        assert_eq!(hinted(&machine), clean, "mutations were undone");
    }
    // Both paths were exercised.
    assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
}

#[test]
fn random_aml_never_panics() {
    let mut random = XorShift(0xa31_5eed);
    let mut machine = Machine::new();
    for _ in 0..3000 {
        let mut aml = vec![0; random.below(96) as usize];
        random.fill(&mut aml);
        // Plant names and the bytes around them where the parser looks.
        for _ in 0..random.below(4) {
            let at = random.below(aml.len() as u64 + 1) as usize;
            let planted: &[u8] = match random.below(3) {
                0 => &FIRMWARE_S5[..random.below(FIRMWARE_S5.len() as u64 + 1) as usize],
                1 => &[0x08, b'_', b'S', b'5', b'_', 0x12],
                _ => b"_S5_",
            };
            aml.splice(at..at, planted.iter().copied());
        }
        let mut table = dsdt(&aml);
        if random.below(4) == 0 {
            let length = random.below(table.len() as u64 + 8) as u32;
            table[4..8].copy_from_slice(&length.to_le_bytes());
            fix_checksum(&mut table, 9);
        }
        machine.write(DSDT, &table);
        if let Ok(sleep_type) = s5_sleep_type(&machine, HostPhysAddr(DSDT)) {
            let _ = poweroff_value(sleep_type.a);
        }
        let available = random.below(64);
        let _ = parse_package(&aml, available);
    }
}
