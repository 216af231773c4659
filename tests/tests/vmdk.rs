//! A monolithicSparse VMDK volume: `xenolith-img` imports a `qemu-img`-made
//! vmdk as it is; a guest given it writable (`format=vmdk, access=rw`) is
//! refused with the reason, one given it read-only reads its bytes.

use xenolith_tests::debian::{guest_value, linux_timeout};
use xenolith_tests::disks::{
    DISK_TROUBLE, appliance_disk, img, path_text, reader_attached, run, writer_and_reader_iso,
};
use xenolith_tests::{Failure, Qemu, TempDir};

/// At 1 MiB in the source the vmdk is made from.
const MARKER: &str = "XENOLITH-VMDK-MARKER-5d1";

#[test]
fn a_vmdk_volume_is_refused_writable_and_served_read_only() -> Result<(), Failure> {
    let dir = TempDir::new("vmdk")?;
    let disk = appliance_disk(&dir, 128 << 20)?;
    let mut source = vec![0u8; 16 << 20];
    source[1 << 20..(1 << 20) + MARKER.len()].copy_from_slice(MARKER.as_bytes());
    let source_file = dir.write("source.raw", &source)?;
    let vmdk = dir.path().join("sparse.vmdk");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=monolithicSparse",
            path_text(&source_file)?,
            path_text(&vmdk)?,
        ],
    )?;
    let kind = xenolith_img::VolumeKind::DiskImage;
    img(xenolith_img::import(&disk, "sparse", &vmdk, kind, false))?;

    let iso = writer_and_reader_iso(&dir, "format=vmdk, vdev=xvda", "sparse")?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    let refused = qemu.wait_for("dom0: cannot create writer", linux_timeout())?;
    if !refused.contains("is a vmdk: served read-only only") || !refused.contains("access=ro") {
        return Err(qemu.failure(format!("unclear refusal: {refused:?}")));
    }
    reader_attached(&mut qemu)?;
    let size = guest_value(
        &mut qemu,
        "echo \"SI\"\"ZE=$(cat /sys/block/xvda/size)\"",
        "SIZE",
    )?;
    if size != (source.len() / 512).to_string() {
        return Err(qemu.failure(format!("xvda is {size} sectors")));
    }
    let read = format!(
        "echo \"VM\"\"DK=$(dd if=/dev/xvda bs=4096 skip=256 count=1 2>/dev/null | head -c {})\"",
        MARKER.len()
    );
    let seen = guest_value(&mut qemu, &read, "VMDK")?;
    if seen != MARKER {
        return Err(qemu.failure(format!("read {seen:?} from the vmdk volume")));
    }
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    Ok(())
}
