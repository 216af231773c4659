//! Debian guests for the integration tests: the kernel and busybox
//! initramfs `scripts/fetch-guest` leaves, how long Linux takes under TCG,
//! and typing into a guest's shell through Dom0's `console` verb.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Failure, Running, TempDir, boot_timeout, make_iso_with_modules, repo_root};

/// Ctrl-], which detaches from a guest console in Dom0's shell.
pub const DETACH: &str = "\x1d";

/// The kernel and the shell-mode initramfs `scripts/fetch-guest` leaves.
pub fn guest_files() -> Result<(PathBuf, PathBuf), Failure> {
    let dir = repo_root().join("target").join("guest");
    let kernel = dir.join("vmlinuz");
    let initramfs = dir.join("initramfs.cpio.gz");
    for file in [&kernel, &initramfs] {
        if !file.is_file() {
            return Err(Failure::new(format!(
                "{} is missing: run scripts/fetch-guest (scripts/test does)",
                file.display()
            )));
        }
    }
    Ok((kernel, initramfs))
}

/// An ISO whose Dom0 (command line `cmdline`) has one Debian guest: its
/// xl.cfg `config` as `<name>.cfg`, followed by the kernel and initramfs
/// the config names `vmlinuz` and `initramfs.cpio.gz`.
pub fn guest_iso(
    dir: &TempDir,
    cmdline: &str,
    name: &str,
    config: &str,
) -> Result<PathBuf, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let file_name = format!("{name}.cfg");
    let config = dir.write(&file_name, config.as_bytes())?;
    let config_module = format!("guest-config {file_name}");
    let modules: [(&Path, &str); 3] = [
        (&config, &config_module),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    make_iso_with_modules(dir, cmdline, &modules)
}

/// How long a Linux guest may take to reach a line: tens of seconds under
/// TCG, more when two guests share the CPU.
pub fn linux_timeout() -> Duration {
    boot_timeout() * 4
}

/// Types a command into the guest shell the operator is attached to and
/// waits for the line its output starts with (`marker` is printed by the
/// command itself, so the shell's echo of the command does not match).
pub fn guest_says(qemu: &mut Running, command: &str, marker: &str) -> Result<String, Failure> {
    qemu.send(&format!("{command}\r"))?;
    qemu.wait_for(marker, linux_timeout())
}

/// Types `command` into the attached guest shell and waits for the line
/// with `label=`; the command must spell the label split in two quoted
/// halves so that its echo does not match. Returns what follows `label=`.
pub fn guest_value(qemu: &mut Running, command: &str, label: &str) -> Result<String, Failure> {
    qemu.send(&format!("{command}\r"))?;
    let line = qemu.wait_for(&format!("{label}="), linux_timeout())?;
    let value = line
        .split(&format!("{label}="))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(value)
}

/// In the attached guest: `/sys/hypervisor/type` says `xen` and
/// `xenstore-read name` (the guest's own node, through /dev/xen/xenbus)
/// gives `name`.
pub fn expect_xen_guest_named(qemu: &mut Running, name: &str) -> Result<(), Failure> {
    let kind = guest_says(qemu, "echo \"TYPE=$(cat /sys/hypervisor/type)\"", "TYPE=x")?;
    if !kind.contains("TYPE=xen") {
        return Err(qemu.failure(format!("/sys/hypervisor/type: {kind:?}")));
    }
    let first = &name[..name.len().min(1)];
    let read = guest_says(
        qemu,
        "echo \"NAME=$(xenstore-read name)\"",
        &format!("NAME={first}"),
    )?;
    if !read.contains(&format!("NAME={name}")) {
        return Err(qemu.failure(format!("xenstore-read name: {read:?}")));
    }
    Ok(())
}

/// Whether `text` is an md5 as `md5sum` prints it (32 hex digits), not an
/// error message.
pub fn is_md5(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Attaches to guest `name`'s console (domain `domain`) from Dom0's shell
/// and gets a fresh prompt.
pub fn attach(qemu: &mut Running, name: &str, domain: u16) -> Result<(), Failure> {
    qemu.send(&format!("console {name}\r"))?;
    qemu.wait_for(
        &format!("attached to domain {domain}'s console"),
        boot_timeout(),
    )?;
    // A fresh prompt, so the next command starts on a clean line.
    qemu.send("\r")?;
    Ok(())
}

/// In the attached guest: makes ext4 on /dev/xvda, writes 2 MiB of random
/// data and a file holding `marker`, syncs and unmounts. Returns the data's
/// md5.
pub fn write_filesystem(qemu: &mut Running, marker: &str) -> Result<String, Failure> {
    let written = guest_value(
        qemu,
        &format!(
            "mke2fs -q /dev/xvda && mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && \
             dd if=/dev/urandom of=/mnt/data bs=4096 count=512 2>/dev/null && \
             echo {marker} >/mnt/marker && sync && \
             echo \"WRI\"\"TTEN=$(md5sum </mnt/data | cut -c1-32)\""
        ),
        "WRITTEN",
    )?;
    if !is_md5(&written) {
        return Err(qemu.failure(format!("writing the file failed: {written:?}")));
    }
    let unmounted = guest_value(qemu, "umount /mnt; echo \"UNMOUN\"\"TED=$?\"", "UNMOUNTED")?;
    if unmounted != "0" {
        return Err(qemu.failure(format!("umount failed: {unmounted:?}")));
    }
    Ok(written)
}

/// In the attached guest: mounts /dev/xvda's ext4 on /mnt (and leaves it
/// mounted), checks the file holding `marker` is there, and returns the
/// md5 of the data file beside it (as [`write_filesystem`] wrote them).
pub fn read_back(qemu: &mut Running, marker: &str) -> Result<String, Failure> {
    guest_value(
        qemu,
        &format!(
            "mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && grep -q {marker} /mnt/marker && \
             echo \"READ\"\"BACK=$(md5sum </mnt/data | cut -c1-32)\""
        ),
        "READBACK",
    )
}

/// Detaches and destroys guest `name` (domain `domain`, one xvda), waiting
/// for its disk to detach and the domain to go.
pub fn destroy_with_disk(qemu: &mut Running, name: &str, domain: u16) -> Result<(), Failure> {
    qemu.send(DETACH)?;
    qemu.send(&format!("destroy {name}\r"))?;
    qemu.wait_for(
        &format!("dom0: domain {domain}: xvda detached"),
        boot_timeout(),
    )?;
    qemu.wait_for(
        &format!("dom0: destroyed domain {domain} ({name})"),
        boot_timeout(),
    )?;
    Ok(())
}

/// Creates guest `name` again (as domain `domain`), attaches to it, mounts
/// /dev/xvda on /mnt, checks the `marker` file and checks the data's md5
/// is `written`. Leaves /mnt mounted.
pub fn recreate_and_read_back(
    qemu: &mut Running,
    name: &str,
    domain: u16,
    marker: &str,
    written: &str,
) -> Result<(), Failure> {
    qemu.send(&format!("create {name}\r"))?;
    qemu.wait_for(
        &format!("dom0: created domain {domain} ({name})"),
        linux_timeout(),
    )?;
    qemu.wait_for(
        &format!("dom0: domain {domain}: xvda connected"),
        linux_timeout(),
    )?;
    qemu.wait_for(&format!("[{name}] XENOLITH-GUEST: shell"), linux_timeout())?;
    attach(qemu, name, domain)?;
    let read_back = read_back(qemu, marker)?;
    if read_back != written {
        return Err(qemu.failure(format!(
            "the file changed across destroy and create: wrote {written}, read {read_back}"
        )));
    }
    Ok(())
}
