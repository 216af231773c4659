//! Bad input at boot: a missing or broken Dom0 image, too little memory or a
//! CPU without SVM makes the hypervisor print `fatal:` with the reason and
//! stop with QEMU status 37 — promptly, never a hang.
//!
//! Dom0's command line asks for `poweroff`, so a hypervisor that wrongly
//! carries on ends the test quickly (status 33) instead of by timeout.

use xenolith_tests::{EXIT_FATAL, Failure, Qemu, TempDir, boot_timeout, images, minimal_elf64};

/// Where the hypervisor is loaded; a Dom0 segment here overlaps it.
const HYPERVISOR_LOAD_ADDRESS: u64 = 0x10_0000;

/// Boots `qemu`, expects a `fatal:` line naming `reason` and exit status 37.
fn expect_fatal(qemu: Qemu, reason: &str) -> Result<(), Failure> {
    let mut running = qemu.spawn()?;
    running.wait_for("fatal:", boot_timeout())?;
    running.expect_exit(EXIT_FATAL, boot_timeout())?;
    if running.serial_line_with(&["fatal:", reason]).is_none() {
        return Err(running.failure(format!("no line with \"fatal:\" followed by {reason:?}")));
    }
    running.assert_serial_lacks(&["dom0 ready"])
}

#[test]
fn missing_dom0_module_is_fatal() -> Result<(), Failure> {
    let images = images()?;
    expect_fatal(
        Qemu::kernel(images.hypervisor, None, "-- poweroff"),
        "no Dom0 module",
    )
}

#[test]
fn garbage_dom0_image_is_fatal() -> Result<(), Failure> {
    let images = images()?;
    let dir = TempDir::new("garbage-dom0")?;
    let garbage: Vec<u8> = b"this is not an ELF image\n"
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect();
    let dom0 = dir.write("garbage.bin", &garbage)?;
    expect_fatal(
        Qemu::kernel(images.hypervisor, Some(dom0), "-- poweroff"),
        "Dom0 image is not a valid ELF",
    )
}

#[test]
fn dom0_image_over_the_hypervisor_is_fatal() -> Result<(), Failure> {
    let images = images()?;
    let dir = TempDir::new("overlapping-dom0")?;
    let dom0 = dir.write("overlap.elf", &minimal_elf64(HYPERVISOR_LOAD_ADDRESS))?;
    expect_fatal(
        Qemu::kernel(images.hypervisor, Some(dom0), "-- poweroff"),
        "Dom0 image overlaps the hypervisor",
    )
}

#[test]
fn too_little_memory_is_fatal() -> Result<(), Failure> {
    expect_fatal(
        Qemu::built_kernel("-- poweroff")?.memory("24M"),
        "no room for Dom0",
    )
}

#[test]
fn amd_cpu_without_svm_is_fatal() -> Result<(), Failure> {
    expect_fatal(
        Qemu::built_kernel("-- poweroff")?.cpu("EPYC,-svm"),
        "SVM not available",
    )
}

#[test]
fn intel_cpu_is_fatal() -> Result<(), Failure> {
    expect_fatal(
        Qemu::built_kernel("-- poweroff")?.cpu("Skylake-Client"),
        "SVM not available",
    )
}
