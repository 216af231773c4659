//! A qcow2 volume over a backing volume: `xenolith-img` imports a raw
//! volume `base` and a `qemu-img`-made qcow2 `overlay` whose backing file
//! is named `base`; a Debian guest on `overlay` reads base's bytes through
//! it and writes; afterwards `base` is byte for byte what was imported,
//! and the exported overlay (over the exported base) holds both. A guest
//! given `base` writable is refused (it would change what the overlay
//! reads); one given it read-only reads it.

use xenolith_tests::debian::{DETACH, attach, guest_iso, guest_value, linux_timeout};
use xenolith_tests::disks::{
    DISK_TROUBLE, appliance_disk, holds_marker, img, path_text, qcow2_as_raw, reader_attached, run,
    writer_and_reader_iso,
};
use xenolith_tests::{Failure, Qemu, TempDir, boot_timeout};

/// At 1 MiB in the base volume.
const BASE_MARKER: &str = "XENOLITH-BASE-MARKER-7e3";
/// Written by the guest at 2 MiB.
const OVERLAY_MARKER: &str = "XENOLITH-OVERLAY-MARKER-19c";

/// An appliance disk with raw volume `base` (base's bytes: 0x5a with
/// [`BASE_MARKER`] at 1 MiB, returned) and qcow2 volume `overlay` over it.
fn disk_with_overlay(dir: &TempDir) -> Result<(std::path::PathBuf, Vec<u8>), Failure> {
    let disk = appliance_disk(dir, 128 << 20)?;
    let mut base = vec![0x5au8; 16 << 20];
    base[1 << 20..(1 << 20) + BASE_MARKER.len()].copy_from_slice(BASE_MARKER.as_bytes());
    // qemu-img records the backing name as given, relative to the overlay.
    let base_file = dir.write("base", &base)?;
    let overlay_file = dir.path().join("overlay.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base",
            "-F",
            "raw",
            path_text(&overlay_file)?,
        ],
    )?;
    let kind = xenolith_img::VolumeKind::DiskImage;
    img(xenolith_img::import(&disk, "base", &base_file, kind, false))?;
    img(xenolith_img::import(
        &disk,
        "overlay",
        &overlay_file,
        kind,
        false,
    ))?;
    Ok((disk, base))
}

#[test]
fn a_qcow2_overlay_reads_its_backing_volume_and_keeps_its_writes() -> Result<(), Failure> {
    let dir = TempDir::new("backing")?;
    let (disk, base) = disk_with_overlay(&dir)?;

    let config = "name = \"layered\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"format=qcow2, vdev=xvda, access=rw, target=overlay\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let iso = guest_iso(&dir, "--", "layered", config)?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 2 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for(
        "dom0: volume \"overlay\": backing volume \"base\", read-only",
        linux_timeout(),
    )?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[layered] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "layered", 1)?;

    let read_base = format!(
        "echo \"BA\"\"SE=$(dd if=/dev/xvda bs=4096 skip=256 count=1 2>/dev/null | head -c {})\"",
        BASE_MARKER.len()
    );
    let seen = guest_value(&mut qemu, &read_base, "BASE")?;
    if seen != BASE_MARKER {
        return Err(qemu.failure(format!("read {seen:?} through the overlay")));
    }
    let wrote = guest_value(
        &mut qemu,
        &format!(
            "printf {OVERLAY_MARKER} | dd of=/dev/xvda bs=4096 seek=512 conv=notrunc \
             2>/dev/null && sync; echo \"WRO\"\"TE=$?\""
        ),
        "WROTE",
    )?;
    if wrote != "0" {
        return Err(qemu.failure(format!("the write failed: {wrote:?}")));
    }
    let seen = guest_value(&mut qemu, &read_base, "BASE")?;
    if seen != BASE_MARKER {
        return Err(qemu.failure(format!("read {seen:?} through the overlay after a write")));
    }
    qemu.send(DETACH)?;
    qemu.send("destroy layered\r")?;
    qemu.wait_for("dom0: destroyed domain 1 (layered)", boot_timeout())?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();

    // The base volume is untouched; the overlay over it holds both.
    let exported = dir.path().join("exported");
    std::fs::create_dir(&exported)
        .map_err(|error| Failure::new(format!("cannot make a directory: {error}")))?;
    let exported_base = exported.join("base");
    let exported_overlay = exported.join("overlay.qcow2");
    img(xenolith_img::export(&disk, "base", &exported_base, false))?;
    img(xenolith_img::export(
        &disk,
        "overlay",
        &exported_overlay,
        false,
    ))?;
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| Failure::new(format!("cannot read {}: {error}", path.display())))
    };
    if read(&exported_base)? != base {
        return Err(Failure::new("the base volume changed under the overlay"));
    }
    run("qemu-img", &["check", path_text(&exported_overlay)?])?;
    let flat = qcow2_as_raw(&exported_overlay, &dir.path().join("flat.raw"))?;
    if !holds_marker(&flat, BASE_MARKER) || !holds_marker(&flat, OVERLAY_MARKER) {
        return Err(Failure::new(
            "the overlay over its base lacks the base's or the guest's marker",
        ));
    }
    Ok(())
}

#[test]
fn a_backing_volume_is_refused_writable_and_served_read_only() -> Result<(), Failure> {
    let dir = TempDir::new("backing-locked")?;
    let (disk, _) = disk_with_overlay(&dir)?;
    let iso = writer_and_reader_iso(&dir, "format=raw, vdev=xvda", "base")?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    let refused = qemu.wait_for("dom0: cannot create writer", linux_timeout())?;
    if !refused.contains("volume base is the backing volume of overlay")
        || !refused.contains("read-only")
    {
        return Err(qemu.failure(format!("unclear refusal: {refused:?}")));
    }
    reader_attached(&mut qemu)?;
    let read_base = format!(
        "echo \"BA\"\"SE=$(dd if=/dev/xvda bs=4096 skip=256 count=1 2>/dev/null | head -c {})\"",
        BASE_MARKER.len()
    );
    let seen = guest_value(&mut qemu, &read_base, "BASE")?;
    if seen != BASE_MARKER {
        return Err(qemu.failure(format!("read {seen:?} from base read-only")));
    }
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    Ok(())
}
