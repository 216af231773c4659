//! Dom0's own devices: with `devcheck`, Dom0 enumerates PCI, drives a
//! virtio-blk disk and a virtio-net NIC through virtio-drivers with MSI-X
//! interrupts, and says what it saw. A disk is written only when its first
//! sector carries the scratch marker.

use xenolith_tests::{EXIT_POWEROFF, Failure, Qemu, Running, TempDir, boot_timeout, make_iso};

/// What Dom0 looks for before it writes to a disk (dom0::virtio_blk).
const SCRATCH_MARKER: &[u8] = b"XENOLITH-SCRATCH-DISK";
const SECTOR: usize = 512;
/// A 1 MiB disk.
const SECTORS: usize = 2048;
/// Sectors the check writes after sector 0.
const DEPTH: usize = 64;
const TROUBLE: &[&str] = &["fatal:", "dom0 crashed", "panic", "check failed", "ERROR"];

/// Boots the ISO with `disk` as a virtio-blk disk and a virtio-net NIC on
/// QEMU's user network, Dom0 told `devcheck poweroff`.
fn boot_with_devices(dir: &TempDir, disk: &std::path::Path) -> Result<Running, Failure> {
    devices(dir, disk)?.spawn()
}

fn devices(dir: &TempDir, disk: &std::path::Path) -> Result<Qemu, Failure> {
    let iso = make_iso(dir, "-- devcheck poweroff")?;
    Ok(Qemu::iso(iso).virtio_disk(disk).user_nic())
}

/// The figure just before `word` in `line` ("64 requests" -> 64).
fn figure_before(line: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = line
        .split([' ', ',', '(', ')'])
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.iter().position(|w| *w == word)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[test]
fn devcheck_drives_the_scratch_disk_and_the_nic_by_interrupt() -> Result<(), Failure> {
    let dir = TempDir::new("devices")?;
    let mut image = vec![0u8; SECTORS * SECTOR];
    image[..SCRATCH_MARKER.len()].copy_from_slice(SCRATCH_MARKER);
    let disk = dir.write("scratch.img", &image)?;
    let mut qemu = boot_with_devices(&dir, &disk)?;

    let pci = qemu.wait_for("functions through", boot_timeout())?;
    let block = qemu.wait_for("dom0: virtio-blk:", boot_timeout())?;
    let net = qemu.wait_for("dom0: virtio-net:", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;

    if !pci.contains("2 virtio") {
        return Err(qemu.failure(format!("expected two virtio functions: {pci:?}")));
    }
    if !block.contains("2048 sectors, read/write check passed, 64 requests in flight") {
        return Err(qemu.failure(format!("unexpected disk line {block:?}")));
    }
    match figure_before(&block, "interrupts") {
        Some(count) if count >= 1 => {}
        _ => return Err(qemu.failure(format!("no disk interrupts counted: {block:?}"))),
    }
    if !net.contains("mac 52:54:00:12:34:56, sent ARP, got reply from 10.0.2.2") {
        return Err(qemu.failure(format!("unexpected NIC line {net:?}")));
    }
    match figure_before(&net, "interrupts") {
        Some(count) if count >= 1 => {}
        _ => return Err(qemu.failure(format!("no NIC interrupts counted: {net:?}"))),
    }

    // The writes reached the disk file, and nothing past them was touched.
    let after = std::fs::read(&disk)
        .map_err(|error| Failure::new(format!("cannot read the disk back: {error}")))?;
    for sector in 1..=DEPTH {
        if after[sector * SECTOR..(sector + 1) * SECTOR]
            .iter()
            .all(|&byte| byte == 0)
        {
            return Err(qemu.failure(format!("sector {sector} was not written")));
        }
    }
    if after[..SECTOR] != image[..SECTOR] || after[(DEPTH + 1) * SECTOR..].iter().any(|&b| b != 0) {
        return Err(qemu.failure("the check wrote outside sectors 1..=64"));
    }
    Ok(())
}

#[test]
fn devcheck_never_writes_a_disk_without_the_scratch_marker() -> Result<(), Failure> {
    let dir = TempDir::new("devices-data")?;
    let image: Vec<u8> = (0..SECTORS * SECTOR)
        .map(|index| (index / SECTOR) as u8 ^ (index % 251) as u8)
        .collect();
    let disk = dir.write("data.img", &image)?;
    let mut qemu = boot_with_devices(&dir, &disk)?;

    let block = qemu.wait_for("dom0: virtio-blk:", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    if !block.contains("2048 sectors, read check passed (not a scratch disk: no writes)") {
        return Err(qemu.failure(format!("unexpected disk line {block:?}")));
    }
    let after = std::fs::read(&disk)
        .map_err(|error| Failure::new(format!("cannot read the disk back: {error}")))?;
    if after != image {
        return Err(qemu.failure("Dom0 changed a disk that was not marked scratch"));
    }
    Ok(())
}

#[test]
fn devcheck_reaches_configuration_space_through_ecam_on_q35() -> Result<(), Failure> {
    let dir = TempDir::new("devices-q35")?;
    let mut image = vec![0u8; SECTORS * SECTOR];
    image[..SCRATCH_MARKER.len()].copy_from_slice(SCRATCH_MARKER);
    let disk = dir.write("scratch.img", &image)?;
    let mut qemu = devices(&dir, &disk)?.arg("-machine").arg("q35").spawn()?;

    let pci = qemu.wait_for("functions through", boot_timeout())?;
    let block = qemu.wait_for("dom0: virtio-blk:", boot_timeout())?;
    let net = qemu.wait_for("dom0: virtio-net:", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    if !pci.contains("through ECAM, 2 virtio") {
        return Err(qemu.failure(format!("expected ECAM (q35 has an MCFG table): {pci:?}")));
    }
    if !block.contains("read/write check passed") || !net.contains("got reply from 10.0.2.2") {
        return Err(qemu.failure(format!("devices not working: {block:?} {net:?}")));
    }
    Ok(())
}
