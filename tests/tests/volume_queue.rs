//! Volume disks keep many requests in flight: a Debian guest whose xvda is
//! a raw volume and whose xvdb is a qcow2 volume reads each with 4 MiB
//! O_DIRECT requests (which blkfront splits into 128 KiB ring requests,
//! all issued at once), and Dom0 reports (when the disks detach) that at
//! least 32 disk requests were in flight together (both disks read at
//! once, as a guest's one ring has 32 slots); the data read back is what
//! was written. The test also prints the disk boot's dd figures
//! (`cargo test -p xenolith-tests --test volume_queue -- --nocapture`),
//! the same commands `scripts/bench` times on the whole disk.

use xenolith_img::VolumeKind;
use xenolith_tests::debian::{DETACH, attach, guest_iso, guest_value, linux_timeout};
use xenolith_tests::disks::{DISK_TROUBLE, appliance_disk, img};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout};

/// Runs `body` in the guest timed by /proc/uptime; returns seconds.
fn timed(qemu: &mut Running, label: &str, body: &str) -> Result<f64, Failure> {
    let (first, second) = label.split_at(3);
    let value = guest_value(
        qemu,
        &format!(
            "u0=$(cut -d' ' -f1 /proc/uptime); {body}; r=$?; u1=$(cut -d' ' -f1 /proc/uptime); \
             echo \"{first}\"\"{second}=$r $u0 $u1\""
        ),
        label,
    )?;
    let fields: Vec<&str> = value.split_whitespace().collect();
    let parsed: Vec<f64> = fields
        .iter()
        .filter_map(|field| field.parse().ok())
        .collect();
    match (fields.first(), parsed.as_slice()) {
        (Some(&"0"), [_, start, end]) => Ok((end - start).max(0.01)),
        _ => Err(qemu.failure(format!("{label} failed: {value:?}"))),
    }
}

/// The most disk requests in flight Dom0 reported for `vdev`'s detach.
fn most_in_flight(qemu: &Running, vdev: &str) -> usize {
    qemu.serial_line_with(&[&format!("dom0: domain 1: {vdev} detached")])
        .unwrap_or_default()
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

#[test]
fn volume_disks_keep_many_requests_in_flight() -> Result<(), Failure> {
    let dir = TempDir::new("volume-queue")?;
    let disk = appliance_disk(&dir, 256 << 20)?;
    let raw = dir.write("raw.img", &vec![0u8; 64 << 20])?;
    img(xenolith_img::import(
        &disk,
        "raw",
        &raw,
        VolumeKind::DiskImage,
        false,
    ))?;
    img(xenolith_img::new_qcow2(&disk, "qcow", 64 << 20))?;
    let iso = guest_iso(
        &dir,
        "--",
        "queue",
        "name = \"queue\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
          ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
          disk = [ \"format=raw, vdev=xvda, access=rw, target=raw\",\n\
                   \"format=qcow2, vdev=xvdb, access=rw, target=qcow\" ]\n",
    )?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    qemu.wait_for("dom0: created domain 1 (queue)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: xvdb connected", linux_timeout())?;
    qemu.wait_for("[queue] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "queue", 1)?;

    let mut figures = Vec::new();
    for device in ["xvda", "xvdb"] {
        let path = format!("/dev/{device}");
        // Sequential 1 MiB O_DIRECT writes of a pattern (the qcow2 volume
        // allocates its clusters here), then reads, as scripts/bench does.
        let write = timed(
            &mut qemu,
            "SEQWRITE",
            &format!(
                "tr '\\000' 'x' </dev/zero | dd of={path} bs=1M count=32 iflag=fullblock \
                 oflag=direct conv=fsync 2>/dev/null"
            ),
        )?;
        let read = timed(
            &mut qemu,
            "SEQREAD",
            &format!("dd if={path} of=/dev/null bs=1M count=32 iflag=direct 2>/dev/null"),
        )?;
        let small = timed(
            &mut qemu,
            "SMALLREAD",
            &format!("dd if={path} of=/dev/null bs=4k count=2048 iflag=direct 2>/dev/null"),
        )?;
        // Big requests: many ring requests at once; the pattern comes back.
        let big = timed(
            &mut qemu,
            "BIGREAD",
            &format!(
                "[ \"$(dd if={path} bs=4M count=8 iflag=direct 2>/dev/null | tr -d x | wc -c)\" = 0 ]"
            ),
        )?;
        figures.push(format!(
            "{device}: 1 MiB O_DIRECT writes {:.1} MB/s, reads {:.1} MB/s; 4 KiB reads {:.0}/s; \
             4 MiB O_DIRECT reads {:.1} MB/s",
            32.0 * 1.048_576 / write,
            32.0 * 1.048_576 / read,
            2048.0 / small,
            32.0 * 1.048_576 / big
        ));
    }
    // Both disks at once: two rings' worth of requests for the one disk.
    timed(
        &mut qemu,
        "BOTHREAD",
        "dd if=/dev/xvda of=/dev/null bs=4M count=8 iflag=direct 2>/dev/null & \
         dd if=/dev/xvdb of=/dev/null bs=4M count=8 iflag=direct 2>/dev/null; wait",
    )?;
    qemu.send(DETACH)?;
    qemu.send("destroy queue\r")?;
    qemu.wait_for("dom0: domain 1: xvdb detached", boot_timeout())?;
    qemu.wait_for("dom0: destroyed domain 1 (queue)", boot_timeout())?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    let most = most_in_flight(&qemu, "xvdb").max(most_in_flight(&qemu, "xvda"));
    for line in &figures {
        eprintln!("volume_queue: {line}");
    }
    eprintln!("volume_queue: at most {most} disk requests in flight");
    qemu.kill();
    if most < 32 {
        return Err(Failure::new(format!(
            "at most {most} disk requests were in flight reading 4 MiB at a time"
        )));
    }
    Ok(())
}
