//! Guests on the network end to end: two Debian guests whose xl.cfg give
//! each a vif on `xenbr0`, Debian's xen-netfront against Dom0's netif back
//! end, bridged to the appliance's virtio NIC on QEMU's user network. Guest
//! A gets a DHCP lease from QEMU, pings the gateway and fetches a file with
//! `wget` from an HTTP server this test runs on the host (QEMU's user
//! network shows the host's 127.0.0.1 to guests as 10.0.2.2); A and B ping
//! each other across the bridge.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use xenolith_tests::debian::{DETACH, attach, guest_files, guest_value, linux_timeout};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules};

const TROUBLE: &[&str] = &[
    "dom0 crashed",
    "panic",
    "disconnected:",
    "connecting failed",
];

/// Size of the file the guest fetches: a few hundred KiB, many TCP
/// segments and several of netfront's RX rings' worth.
const PAYLOAD_BYTES: usize = 384 * 1024;

/// An HTTP/1.1 server on 127.0.0.1 (a port the system picks) that answers
/// every GET with one payload, on a thread that stops when this is dropped.
struct FileServer {
    port: u16,
    /// Request lines served, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(payload: Vec<u8>) -> Result<FileServer, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(line) = serve(stream, &payload) {
                                requests
                                    .lock()
                                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                                    .push(line);
                            }
                        }
                        Err(error) if error.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        Ok(FileServer {
            port,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it with `payload` (200) or a 405 for
/// anything but GET; returns the request line. Gives up on a client that
/// sends nothing for a minute.
fn serve(mut stream: TcpStream, payload: &[u8]) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default().to_string();
    let answer = if line.starts_with("GET ") {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        )
        .into_bytes();
        answer.extend_from_slice(payload);
        answer
    } else {
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    };
    stream.write_all(&answer).ok()?;
    Some(line)
}

/// `length` bytes that differ from run to run (xorshift from the clock), so
/// a stale file in the guest cannot pass for the fetched one.
fn random_bytes(length: usize) -> Vec<u8> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0x2545_f491_4f6c_dd1d)
        | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn config(name: &str, mac: &str) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = 192\nkernel = \"vmlinuz\"\n\
         ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
         vif = [ \"mac={mac}, bridge=xenbr0\" ]\non_poweroff = \"destroy\"\n"
    )
}

/// Boots the appliance (interactive) with a virtio NIC on QEMU's user
/// network and two guests with a vif each.
fn boot(dir: &TempDir) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let alpha = dir.write("alpha.cfg", config("alpha", "00:16:3e:00:00:0a").as_bytes())?;
    let beta = dir.write("beta.cfg", config("beta", "00:16:3e:00:00:0b").as_bytes())?;
    // Each config is followed by the files it names.
    let modules: [(&Path, &str); 6] = [
        (&alpha, "guest-config alpha.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
        (&beta, "guest-config beta.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let iso = make_iso_with_modules(dir, "--", &modules)?;
    Qemu::iso(iso).user_nic().spawn()
}

/// Pings `address` from the attached guest; fails unless replies came.
fn ping(qemu: &mut Running, from: &str, address: &str, label: &str) -> Result<(), Failure> {
    let status = guest_value(
        qemu,
        &format!(
            "ping -c 3 -W 10 {address}; echo \"{}\"\"{}=$?\"",
            &label[..2],
            &label[2..]
        ),
        label,
    )?;
    if status != "0" {
        return Err(qemu.failure(format!("{from} could not ping {address}: status {status}")));
    }
    Ok(())
}

#[test]
fn guests_get_a_lease_ping_the_gateway_fetch_over_http_and_ping_each_other() -> Result<(), Failure>
{
    let dir = TempDir::new("network")?;
    let payload = random_bytes(PAYLOAD_BYTES);
    let expected = sha256_hex(&payload);
    let server = FileServer::start(payload)?;
    let mut qemu = boot(&dir)?;
    qemu.wait_for("dom0: nic: virtio-net 52:54:00", boot_timeout())?;
    qemu.wait_for("dom0: created domain 1 (alpha)", linux_timeout())?;
    qemu.wait_for("dom0: created domain 2 (beta)", linux_timeout())?;
    // The two guests boot side by side: their lines come in either order.
    qemu.wait_for_all(
        &[
            "dom0: domain 1: vif1.0 connected",
            "dom0: domain 2: vif2.0 connected",
            "[alpha] XENOLITH-GUEST: shell",
            "[beta] XENOLITH-GUEST: shell",
        ],
        linux_timeout(),
    )?;

    // Alpha: a lease from QEMU's DHCP server through the bridge, then the
    // gateway answers.
    attach(&mut qemu, "alpha", 1)?;
    let mac = guest_value(
        &mut qemu,
        "echo \"MA\"\"C=$(cat /sys/class/net/eth0/address)\"",
        "MAC",
    )?;
    if mac != "00:16:3e:00:00:0a" {
        return Err(qemu.failure(format!("alpha's eth0 has MAC {mac:?}")));
    }
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: lease of 10.0.2.", linux_timeout())?;
    let configured = qemu.wait_for("udhcpc: configured 10.0.2.", linux_timeout())?;
    if !configured.contains("on eth0") {
        return Err(qemu.failure(format!("odd lease line: {configured:?}")));
    }
    ping(&mut qemu, "alpha", "10.0.2.2", "GWPING")?;

    // A file from the host's HTTP server, checked by its SHA-256 and size.
    let fetched = guest_value(
        &mut qemu,
        &format!(
            "wget -q -O /tmp/payload http://10.0.2.2:{}/payload.bin; \
             echo \"FET\"\"CHED=$? $(sha256sum </tmp/payload | cut -c1-64) $(wc -c </tmp/payload)\"",
            server.port
        ),
        "FETCHED",
    )?;
    let wanted = format!("0 {expected} {PAYLOAD_BYTES}");
    if fetched != wanted {
        return Err(qemu.failure(format!(
            "alpha's wget gave {fetched:?} (status, sha256, bytes), expected {wanted:?}; \
             the server saw {:?}",
            server.requests()
        )));
    }
    let requests = server.requests();
    if requests.len() != 1 || !requests[0].starts_with("GET /payload.bin HTTP/1.") {
        return Err(qemu.failure(format!(
            "the host's server saw {requests:?}, expected one GET of /payload.bin"
        )));
    }
    let added = guest_value(
        &mut qemu,
        "ip addr add 192.168.77.1/24 dev eth0; echo \"AD\"\"DED=$?\"",
        "ADDED",
    )?;
    if added != "0" {
        return Err(qemu.failure(format!("adding alpha's address failed: {added}")));
    }
    qemu.send(DETACH)?;

    // Beta: a static address on the same bridge; it and alpha reach each
    // other.
    attach(&mut qemu, "beta", 2)?;
    let added = guest_value(
        &mut qemu,
        "ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0; echo \"AD\"\"DED=$?\"",
        "ADDED",
    )?;
    if added != "0" {
        return Err(qemu.failure(format!("adding beta's address failed: {added}")));
    }
    ping(&mut qemu, "beta", "192.168.77.1", "BAPING")?;
    qemu.send(DETACH)?;
    attach(&mut qemu, "alpha", 1)?;
    ping(&mut qemu, "alpha", "192.168.77.2", "ABPING")?;
    qemu.send(DETACH)?;

    qemu.send("destroy beta\r")?;
    qemu.wait_for("dom0: domain 2: vif2.0 detached", boot_timeout())?;
    qemu.wait_for("dom0: destroyed domain 2 (beta)", boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
