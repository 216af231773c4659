//! A create does not freeze the appliance: the API answers it as soon as
//! the domain exists, and Dom0 builds the guest (decompressing Debian's
//! XZ kernel, seconds under TCG) a bounded step at a time between serving
//! everything else. While a Debian guest is built, a running guest's pings
//! to Dom0 and the host's API requests keep being answered; a guest
//! destroyed while it is built is dropped cleanly; a build that fails after
//! the `201` is torn down and its error kept for `GET /v1/domains/{d}`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xenolith_tests::api::{self, HttpResponse, TOKEN};
use xenolith_tests::debian::{attach, guest_files, linux_timeout};
use xenolith_tests::{Failure, Running, TempDir, boot_timeout};

const TROUBLE: &[&str] = &["dom0 crashed", "panic", "dom0: api: cannot listen"];

fn config(name: &str, kernel: &str, memory_mib: u32, mac: u8) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = {memory_mib}\nkernel = \"{kernel}\"\n\
         ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
         vif = [ \"mac=00:16:3e:00:00:{mac:02x}, bridge=xenbr0\" ]\n"
    )
}

fn send(
    qemu: &Running,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<HttpResponse, Failure> {
    api::request(
        port,
        method,
        path,
        Some(TOKEN),
        body.map(|body| ("text/plain", body)),
        linux_timeout(),
    )
    .map_err(|error| qemu.failure(error))
}

fn expect(qemu: &Running, what: &str, response: &HttpResponse, status: u16) -> Result<(), Failure> {
    if response.status != status {
        return Err(qemu.failure(format!("{what}: expected {status}, got {response:?}")));
    }
    Ok(())
}

/// A copy of Debian's kernel that Dom0 has not cached, for a cold create:
/// the cache knows a kernel by its bytes, so the copy has one more byte
/// after the image (beyond the payload, which is all Dom0 reads).
fn kernel_copy(dir: &TempDir, kernel: &Path, name: &str) -> Result<std::path::PathBuf, Failure> {
    let mut bytes = std::fs::read(kernel)?;
    bytes.push(0);
    dir.write(name, &bytes)
}

/// Requests `GET /v1/host` back to back on a thread until stopped; returns
/// the longest any one took to be answered.
fn poll_api(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Duration, u32)> {
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let result = api::request(
                port,
                "GET",
                "/v1/host",
                Some(TOKEN),
                None,
                Duration::from_secs(120),
            );
            let took = started.elapsed();
            if result.is_ok_and(|response| response.status == 200) {
                answered += 1;
            }
            longest = longest.max(took);
            std::thread::sleep(Duration::from_millis(20));
        }
        (longest, answered)
    })
}

#[test]
fn a_running_guest_and_the_api_are_served_while_a_debian_guest_is_built() -> Result<(), Failure> {
    let dir = TempDir::new("background-create")?;
    let (kernel, initramfs) = guest_files()?;
    let cold = kernel_copy(&dir, &kernel, "vmlinuz-cold")?;
    let modules: [(&Path, &str); 3] = [
        (&kernel, "guest-file vmlinuz"),
        (&cold, "guest-file vmlinuz-cold"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let mut appliance = api::boot_with_api(&dir, &api::appliance_config(""), &modules)?;
    let port = appliance.port;
    let dom0_address = appliance
        .address
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let qemu = &mut appliance.qemu;
    api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;

    // The neighbour: a Debian guest that is up, on the bridge, its kernel
    // cached (so no caching runs in the window measured below).
    let created = send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(&config("neighbour", "vmlinuz", 160, 0x31)),
    )?;
    expect(qemu, "create neighbour", &created, 201)?;
    qemu.wait_for_all(
        &["[neighbour] XENOLITH-GUEST: shell", "dom0: kernel cached"],
        linux_timeout(),
    )?;
    attach(qemu, "neighbour", 1)?;
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: lease of 10.0.2.", linux_timeout())?;

    // The neighbour pings Dom0 once a second for 40 s, and the host asks
    // the API back to back, while a second Debian guest is created from a
    // kernel Dom0 must decompress.
    qemu.send(&format!("ping -c 40 -W 60 {dom0_address}\r"))?;
    qemu.wait_for("bytes from", linux_timeout())?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_api(port, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    let created = send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(&config("second", "vmlinuz-cold", 160, 0x32)),
    )?;
    let answered = asked.elapsed();
    let line = qemu.wait_for("dom0: created domain 2 (second)", linux_timeout())?;
    let built = asked.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (longest_api, api_answers) = poller
        .join()
        .map_err(|_| qemu.failure("the API poller panicked"))?;
    let summary = qemu.wait_for("round-trip min/avg/max", linux_timeout())?;
    let longest_ping = summary
        .rsplit('=')
        .next()
        .and_then(|figures| figures.trim().split('/').nth(2))
        .and_then(|max| max.trim_end_matches(" ms").trim().parse::<f64>().ok())
        .ok_or_else(|| qemu.failure(format!("no ping summary: {summary:?}")))?;
    let transmitted = qemu.serial_line_with(&["packets transmitted"]);
    eprintln!(
        "FIGURES: create answered in {} ms; guest built {} ms after the request ({line}); \
         longest API answer meanwhile {} ms ({api_answers} answers); the running guest's \
         longest ping to Dom0 {longest_ping} ms ({transmitted:?})",
        answered.as_millis(),
        built.as_millis(),
        longest_api.as_millis()
    );

    expect(qemu, "create second", &created, 201)?;
    if !line.contains("ms decompressing the kernel") {
        return Err(qemu.failure(format!("the second guest's kernel was not cold: {line}")));
    }
    if api::json_string(&created.body, "build").as_deref() != Some("building") {
        return Err(qemu.failure(format!("the 201 is not building: {}", created.body)));
    }
    // Far below the build: the build went a step at a time.
    let build_ms = built.as_millis() as f64;
    if answered.as_millis() as f64 * 4.0 > build_ms {
        return Err(qemu.failure(format!(
            "the create was answered after {answered:?} of a {built:?} build"
        )));
    }
    if longest_api.as_millis() as f64 * 4.0 > build_ms {
        return Err(qemu.failure(format!(
            "an API request waited {longest_api:?} during a {built:?} build"
        )));
    }
    if longest_ping * 4.0 > build_ms {
        return Err(qemu.failure(format!(
            "the running guest's ping waited {longest_ping} ms during a {built:?} build"
        )));
    }
    if !transmitted.is_some_and(|line| line.contains(" 0% packet loss")) {
        return Err(qemu.failure("the running guest lost pings to Dom0"));
    }
    // (It may have reached its shell while the neighbour still pinged.)
    qemu.wait_for_all(&["[second] XENOLITH-GUEST: shell"], linux_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}

/// Flips bytes in the second half of a bzImage's payload: its headers
/// (and the start of its vmlinux) still read, so the create is answered,
/// and the decompression fails part way.
fn corrupt_kernel(dir: &TempDir, kernel: &Path) -> Result<std::path::PathBuf, Failure> {
    let mut bytes = std::fs::read(kernel)?;
    let length = bytes.len();
    for byte in &mut bytes[length * 3 / 4..length * 3 / 4 + 4096] {
        *byte ^= 0xa5;
    }
    dir.write("vmlinuz-corrupt", &bytes)
}

#[test]
fn a_build_is_dropped_when_destroyed_and_a_failed_one_keeps_its_error() -> Result<(), Failure> {
    let dir = TempDir::new("background-create-failures")?;
    let (kernel, initramfs) = guest_files()?;
    let corrupt = corrupt_kernel(&dir, &kernel)?;
    let modules: [(&Path, &str); 3] = [
        (&kernel, "guest-file vmlinuz"),
        (&corrupt, "guest-file vmlinuz-corrupt"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let mut appliance = api::boot_with_api(&dir, &api::appliance_config(""), &modules)?;
    let port = appliance.port;
    let qemu = &mut appliance.qemu;
    api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;

    // A kernel whose payload is corrupt past its headers: answered 201,
    // then the build fails; the domain is torn down and the error stays.
    let created = send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(&config("broken", "vmlinuz-corrupt", 160, 0x41)),
    )?;
    expect(qemu, "create broken", &created, 201)?;
    if api::json_number(&created.body, "id") != Some(1)
        || api::json_string(&created.body, "build").as_deref() != Some("building")
    {
        return Err(qemu.failure(format!("create broken: {}", created.body)));
    }
    qemu.wait_for("dom0: cannot create broken (domain 1)", linux_timeout())?;
    qemu.wait_for("dom0: destroyed domain 1 (broken)", boot_timeout())?;
    let failed = send(qemu, port, "GET", "/v1/domains/broken", None)?;
    expect(qemu, "GET the failed build", &failed, 200)?;
    let error = api::json_string(&failed.body, "error").unwrap_or_default();
    if api::json_string(&failed.body, "build").as_deref() != Some("failed") || !error.contains("xz")
    {
        return Err(qemu.failure(format!("the failed build: {}", failed.body)));
    }
    let listed = send(qemu, port, "GET", "/v1/domains", None)?;
    if !listed.body.contains("\"failed\"") {
        return Err(qemu.failure(format!("the list lacks the failed build: {}", listed.body)));
    }
    // Acting on it other than destroying is refused; destroying forgets it.
    let paused = send(qemu, port, "POST", "/v1/domains/broken/unpause", None)?;
    expect(qemu, "unpause the failed build", &paused, 409)?;
    let forgotten = send(qemu, port, "DELETE", "/v1/domains/broken", None)?;
    expect(qemu, "DELETE the failed build", &forgotten, 200)?;
    let gone = send(qemu, port, "GET", "/v1/domains/broken", None)?;
    expect(qemu, "GET the forgotten build", &gone, 404)?;

    // A guest destroyed while it is built: dropped, nothing left.
    let created = send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(&config("doomed", "vmlinuz", 160, 0x42)),
    )?;
    expect(qemu, "create doomed", &created, 201)?;
    if api::json_number(&created.body, "id") != Some(2) {
        return Err(qemu.failure(format!("create doomed: {}", created.body)));
    }
    let building = send(qemu, port, "GET", "/v1/domains/doomed", None)?;
    if api::json_string(&building.body, "build").as_deref() != Some("building") {
        return Err(qemu.failure(format!("doomed is not building: {}", building.body)));
    }
    let unpause = send(qemu, port, "POST", "/v1/domains/doomed/unpause", None)?;
    expect(qemu, "unpause while building", &unpause, 409)?;
    let destroyed = send(qemu, port, "DELETE", "/v1/domains/doomed", None)?;
    expect(qemu, "destroy while building", &destroyed, 200)?;
    qemu.wait_for(
        "dom0: dropped the build of domain 2 (doomed)",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: destroyed domain 2 (doomed)", boot_timeout())?;
    let gone = send(qemu, port, "GET", "/v1/domains/doomed", None)?;
    expect(qemu, "GET the destroyed build", &gone, 404)?;

    // A refusal made before the domain exists uses no id: the next create
    // is domain 3, and it builds and runs.
    let small = config("small", "vmlinuz", 64, 0x43);
    let refused = send(qemu, port, "POST", "/v1/domains", Some(&small))?;
    expect(qemu, "a kernel beyond a 64 MiB guest", &refused, 422)?;
    if !refused.body.contains("guest image ends at 0x") {
        return Err(qemu.failure(format!("the 422: {}", refused.body)));
    }
    let created = send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(&config("after", "vmlinuz", 160, 0x44)),
    )?;
    expect(qemu, "create after", &created, 201)?;
    if api::json_number(&created.body, "id") != Some(3) {
        return Err(qemu.failure(format!("the id after a 422 skipped: {}", created.body)));
    }
    qemu.wait_for("dom0: created domain 3 (after)", linux_timeout())?;
    qemu.wait_for("[after] XENOLITH-GUEST: shell", linux_timeout())?;
    let running = send(qemu, port, "GET", "/v1/domains/after", None)?;
    if api::json_string(&running.body, "build").as_deref() != Some("ready") {
        return Err(qemu.failure(format!("after is not ready: {}", running.body)));
    }
    // Each failure is logged once.
    let serial = qemu.serial();
    if serial.matches("cannot create broken").count() != 1 {
        return Err(qemu.failure("the failed build was not logged exactly once"));
    }
    qemu.assert_serial_lacks(&["created domain 2 (doomed)", "(d2) ", "[doomed]"])?;
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}
