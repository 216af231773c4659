//! Debian guests for the integration tests: the kernel and busybox
//! initramfs `scripts/fetch-guest` leaves, how long Linux takes under TCG,
//! and typing into a guest's shell through Dom0's `console` verb.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Failure, Running, boot_timeout, repo_root};

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
