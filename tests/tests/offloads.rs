//! A guest's NIC offloads end to end: Dom0's vif offers
//! `feature-gso-tcpv4/v6` and checksum offload, so Debian's netfront sends
//! TCP segmentation-offload packets with blank checksums; Dom0 cuts them
//! into segments and fills their checksums before QEMU's user network
//! sees them. The guest uploads 2 MiB with `wget --post-file` to an HTTP
//! server this test runs on the host; the host receives exactly those
//! bytes (SHA-256), and the vif's counters, printed when the guest is
//! destroyed, show GSO packets were taken.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use xenolith_tests::debian::{DETACH, attach, guest_iso, guest_value, linux_timeout};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout, number_after};

const TROUBLE: &[&str] = &[
    "dom0 crashed",
    "dom0: panic",
    "disconnected:",
    "connecting failed",
];
/// What the guest uploads: random bytes in hex (busybox's `wget` sends a
/// file as a C string, so it must hold no NUL).
const UPLOAD_BYTES: usize = 2 << 20;
/// The longest request head or body the server takes.
const BODY_MAX: usize = 8 << 20;

/// Serves one POST on `listener`: sends the body's SHA-256 back to the
/// test and answers `200` with it. Gives up after `timeout`.
fn serve_one_upload(
    listener: TcpListener,
    timeout: Duration,
    report: mpsc::Sender<(usize, String, Duration)>,
) {
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => return,
        }
    };
    let started = Instant::now();
    if let Some((length, digest)) = read_upload(stream) {
        let _ = report.send((length, digest, started.elapsed()));
    }
}

fn read_upload(mut stream: TcpStream) -> Option<(usize, String)> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())?;
    if length > BODY_MAX {
        return None;
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    let digest = hex(&Sha256::digest(&body));
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{digest}",
        digest.len()
    );
    stream.write_all(answer.as_bytes()).ok()?;
    Some((length, digest))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn boot(dir: &TempDir) -> Result<Running, Failure> {
    let config = "name = \"sender\"\ntype = \"pvh\"\nmemory = 192\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  vif = [ \"mac=00:16:3e:00:00:1a, bridge=xenbr0\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let iso = guest_iso(dir, "--", "sender", config)?;
    Qemu::iso(iso).user_nic().spawn()
}

#[test]
fn a_guests_tso_upload_reaches_the_host_intact() -> Result<(), Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (report, uploads) = mpsc::channel();
    let server = std::thread::spawn(move || {
        serve_one_upload(listener, linux_timeout() * 2, report);
    });

    let dir = TempDir::new("offloads")?;
    let mut qemu = boot(&dir)?;
    qemu.wait_for("dom0: created domain 1 (sender)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: vif1.0 connected", linux_timeout())?;
    qemu.wait_for("[sender] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "sender", 1)?;
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: configured 10.0.2.", linux_timeout())?;
    let made = guest_value(
        &mut qemu,
        &format!(
            "dd if=/dev/urandom bs=4096 count={} 2>/dev/null | hexdump -v -e '/1 \"%02x\"' \
             >/tmp/up; echo \"MA\"\"DE=$?\"",
            UPLOAD_BYTES / 2 / 4096
        ),
        "MADE",
    )?;
    if made != "0" {
        return Err(qemu.failure(format!("making the file failed: {made}")));
    }
    let uploaded = guest_value(
        &mut qemu,
        &format!(
            "wget -q -O /tmp/reply --post-file=/tmp/up http://10.0.2.2:{port}/upload; \
             echo \"UPLOA\"\"DED=$? $(sha256sum </tmp/up | cut -c1-64) $(cat /tmp/reply)\""
        ),
        "UPLOADED",
    )?;
    let fields: Vec<&str> = uploaded.split_whitespace().collect();
    let (length, received, took) = uploads.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        qemu.failure(format!(
            "the host got no upload; the guest said {uploaded:?}"
        ))
    })?;
    let _ = server.join();
    if fields.len() != 3 || fields[0] != "0" {
        return Err(qemu.failure(format!("wget failed: {uploaded:?}")));
    }
    if length != UPLOAD_BYTES || fields[1] != received || fields[2] != received {
        return Err(qemu.failure(format!(
            "the host received {length} bytes with SHA-256 {received}; the guest sent \
             {UPLOAD_BYTES} with {} (and heard back {})",
            fields[1], fields[2]
        )));
    }

    // A figure for the operator (shown with --nocapture).
    println!(
        "upload: {length} bytes in {} ms ({:.2} MB/s)",
        took.as_millis(),
        length as f64 / took.as_secs_f64().max(0.001) / 1e6
    );

    // The vif's counters: the guest handed Dom0 GSO packets.
    qemu.send(DETACH)?;
    qemu.send("destroy sender\r")?;
    let detached = qemu.wait_for("dom0: domain 1: vif1.0 detached", boot_timeout())?;
    println!("{detached}");
    let gso = number_after(&detached, "(gso").unwrap_or(0);
    if gso == 0 {
        return Err(qemu.failure(format!(
            "the guest sent no GSO packet (is GSO offered?): {detached:?}"
        )));
    }
    qemu.wait_for("dom0: destroyed domain 1 (sender)", boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
