//! QEMU harness for the integration tests: boots the appliance the way a user
//! would, reads its serial console as it arrives, and fails with the whole
//! console log when something does not show up in time.
//!
//! Every wait has a deadline (QEMU's software emulation is slow but a boot
//! takes seconds, not minutes), and a running QEMU is killed when its
//! [`Running`] handle is dropped, so a failing test never leaves one behind.

pub mod api;
pub mod debian;
pub mod disks;

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// QEMU's exit status when Dom0 powered the machine off cleanly.
pub const EXIT_POWEROFF: i32 = 33;
/// QEMU's exit status when Dom0 crashed (exception or triple fault).
pub const EXIT_DOM0_CRASHED: i32 = 35;
/// QEMU's exit status when the hypervisor stopped at boot on bad input.
pub const EXIT_FATAL: i32 = 37;
/// QEMU's exit status when Dom0 powered the machine off on purpose but
/// reported failure (control command POWER_OFF with a non-zero status).
pub const EXIT_POWEROFF_FAILURE: i32 = 39;
/// QEMU's exit status on a machine reset (QEMU runs with `-no-reboot`).
pub const EXIT_RESET: i32 = 0;

/// How long a boot may take to reach a given line. Most take a few seconds;
/// the margin covers a loaded 2-core machine running tests in parallel.
/// `XENOLITH_TEST_TIMEOUT_SECS` overrides it.
pub fn boot_timeout() -> Duration {
    let seconds = std::env::var("XENOLITH_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// A test failure that carries what QEMU printed, so the report shows what a
/// user would have seen.
pub struct Failure {
    message: String,
}

impl Failure {
    /// A failure with only a message (no QEMU involved).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

// Tests return `Result<(), Failure>`; the test runner prints the error with
// `Debug`, which must keep the log's line breaks readable.
impl fmt::Debug for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::new(format!("I/O error: {error}"))
    }
}

/// The repository root (the workspace containing this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The directory `scripts/build` writes boot images to
/// (`XENOLITH_IMAGE_DIR`, or `target/image` in the repository).
pub fn image_dir() -> PathBuf {
    match std::env::var_os("XENOLITH_IMAGE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("target").join("image"),
    }
}

/// The boot images made by `scripts/build`.
#[derive(Clone, Debug)]
pub struct Images {
    /// The hypervisor ELF (multiboot2 and PVH entry).
    pub hypervisor: PathBuf,
    /// The Dom0 unikernel ELF.
    pub dom0: PathBuf,
    /// The GRUB ISO with an empty hypervisor command line.
    pub iso: PathBuf,
    /// The self-checking PVH test guest.
    pub test_guest: PathBuf,
}

/// The boot images, or a failure telling the reader to run `scripts/build`.
pub fn images() -> Result<Images, Failure> {
    let dir = image_dir();
    let images = Images {
        hypervisor: dir.join("hypervisor.elf"),
        dom0: dir.join("dom0.elf"),
        iso: dir.join("xenolith.iso"),
        test_guest: dir.join("test-guest.elf"),
    };
    for path in [
        &images.hypervisor,
        &images.dom0,
        &images.iso,
        &images.test_guest,
    ] {
        if !path.is_file() {
            return Err(Failure::new(format!(
                "boot image {} is missing: run scripts/build first",
                path.display()
            )));
        }
    }
    Ok(images)
}

/// A directory for one test's files, removed when dropped. Unique per
/// process and call, so tests running in parallel never share files.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    pub fn new(label: &str) -> Result<Self, Failure> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "xenolith-test-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|error| Failure::new(format!("cannot create {}: {error}", path.display())))?;
        Ok(Self { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Failure> {
        let path = self.path.join(name);
        std::fs::write(&path, bytes)
            .map_err(|error| Failure::new(format!("cannot write {}: {error}", path.display())))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The first number after `label` in `line` (a figure in a log line).
pub fn number_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Makes a GRUB ISO with `scripts/mkiso` whose hypervisor command line is
/// `cmdline`, inside `dir`.
pub fn make_iso(dir: &TempDir, cmdline: &str) -> Result<PathBuf, Failure> {
    make_iso_with_modules(dir, cmdline, &[])
}

/// Like [`make_iso`], with extra boot modules: each a file and its module
/// command line (Dom0 starts modules named `test-guest` as guests).
pub fn make_iso_with_modules(
    dir: &TempDir,
    cmdline: &str,
    modules: &[(&Path, &str)],
) -> Result<PathBuf, Failure> {
    let images = images()?;
    let iso = dir.path().join("xenolith.iso");
    let mut command = Command::new(repo_root().join("scripts").join("mkiso"));
    command
        .arg(&iso)
        .arg("--cmdline")
        .arg(cmdline)
        .arg("--hypervisor")
        .arg(&images.hypervisor)
        .arg("--dom0")
        .arg(&images.dom0);
    for (file, module_cmdline) in modules {
        command.arg("--module").arg(file).arg(module_cmdline);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Failure::new(format!("cannot run scripts/mkiso: {error}")))?;
    if !output.status.success() {
        return Err(Failure::new(format!(
            "scripts/mkiso failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(iso)
}

/// What QEMU boots.
#[derive(Clone, Debug)]
enum Boot {
    Iso(PathBuf),
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
}

/// A QEMU command line for one boot of the appliance, with the project's
/// defaults (`-accel tcg -cpu EPYC -m 1G -smp 1`, isa-debug-exit on 0xf4,
/// `-no-reboot`) and the serial console on pipes (`-serial stdio`: QEMU's
/// stdout is what COM1 prints, its stdin what is typed on COM1).
#[derive(Clone, Debug)]
pub struct Qemu {
    boot: Boot,
    memory: String,
    cpu: String,
    cpus: u32,
    debug_exit: bool,
    extra: Vec<String>,
}

impl Qemu {
    fn with_boot(boot: Boot) -> Self {
        Self {
            boot,
            memory: "1G".into(),
            cpu: "EPYC".into(),
            cpus: 1,
            debug_exit: true,
            extra: Vec::new(),
        }
    }

    /// Boots an ISO through the BIOS and GRUB.
    pub fn iso(iso: impl Into<PathBuf>) -> Self {
        Self::with_boot(Boot::Iso(iso.into()))
    }

    /// Boots `kernel` directly (`-kernel`, PVH entry) with `initrd` as the
    /// Dom0 module (none when `None`) and `append` as its command line.
    pub fn kernel(
        kernel: impl Into<PathBuf>,
        initrd: Option<PathBuf>,
        append: impl Into<String>,
    ) -> Self {
        Self::with_boot(Boot::Kernel {
            kernel: kernel.into(),
            initrd,
            append: append.into(),
        })
    }

    /// Boots the built hypervisor directly with the built Dom0 and the
    /// command line `append`.
    pub fn built_kernel(append: impl Into<String>) -> Result<Self, Failure> {
        let images = images()?;
        Ok(Self::kernel(images.hypervisor, Some(images.dom0), append))
    }

    /// Guest RAM, in QEMU's syntax (`1G`, `24M`).
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = memory.into();
        self
    }

    /// The CPU model, in QEMU's syntax (`EPYC`, `EPYC,-svm`).
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// The number of virtual CPUs.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Leaves out the isa-debug-exit device, as on real hardware: the
    /// hypervisor must then power off through ACPI.
    pub fn without_debug_exit(mut self) -> Self {
        self.debug_exit = false;
        self
    }

    /// `disk`, a raw image file, as the virtio-blk disk Dom0 names
    /// `virtio0`.
    pub fn virtio_disk(self, disk: &Path) -> Self {
        self.arg("-drive")
            .arg(format!(
                "file={},if=none,format=raw,id=disk0",
                disk.display()
            ))
            .arg("-device")
            .arg("virtio-blk-pci,drive=disk0")
    }

    /// A virtio-net NIC on QEMU's user network (its DHCP server, gateway
    /// 10.0.2.2), which Dom0 bridges to `xenbr0`.
    pub fn user_nic(self) -> Self {
        self.nic("user,id=net0".into())
    }

    /// Like [`Qemu::user_nic`], with TCP port `host_port` on the host's
    /// 127.0.0.1 forwarded to port `guest_port` of Dom0.
    pub fn user_nic_forwarding(self, host_port: u16, guest_port: u16) -> Self {
        self.nic(format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
        ))
    }

    fn nic(self, netdev: String) -> Self {
        self.arg("-netdev")
            .arg(netdev)
            // No option ROM: the BIOS boots the CD and need not load iPXE.
            .arg("-device")
            .arg("virtio-net-pci,netdev=net0,romfile=")
    }

    /// One more QEMU argument, appended after the defaults.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The QEMU program: `XENOLITH_QEMU`, or `qemu-system-x86_64`.
    fn program() -> String {
        std::env::var("XENOLITH_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
    }

    /// The full argument list (without the program).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-parallel",
            "none",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        if self.debug_exit {
            args.extend([
                "-device".into(),
                "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
            ]);
        }
        args.extend([
            "-cpu".into(),
            self.cpu.clone(),
            "-m".into(),
            self.memory.clone(),
            "-smp".into(),
            self.cpus.to_string(),
        ]);
        match &self.boot {
            Boot::Iso(iso) => {
                args.extend(["-cdrom".into(), iso.display().to_string()]);
                args.extend(["-boot".into(), "d".into()]);
            }
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => {
                args.extend(["-kernel".into(), kernel.display().to_string()]);
                if let Some(initrd) = initrd {
                    args.extend(["-initrd".into(), initrd.display().to_string()]);
                }
                args.extend(["-append".into(), append.clone()]);
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The command line as a shell would show it, for failure reports.
    pub fn command_line(&self) -> String {
        let mut line = Self::program();
        for arg in self.args() {
            line.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                line.push_str(&format!("'{}'", arg.replace('\'', "'\\''")));
            } else {
                line.push_str(&arg);
            }
        }
        line
    }

    /// Starts QEMU. The serial console is read in the background from now
    /// on, and [`Running::send`] types on it.
    pub fn spawn(&self) -> Result<Running, Failure> {
        let mut child = Command::new(Self::program())
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                Failure::new(format!(
                    "cannot start {} ({error}): run scripts/setup",
                    Self::program()
                ))
            })?;
        let serial = Arc::new(Stream::default());
        let stderr = Arc::new(Stream::default());
        let input = child.stdin.take();
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(Stream::pump(pipe, Arc::clone(&serial)));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(Stream::pump(pipe, Arc::clone(&stderr)));
        }
        Ok(Running {
            child,
            command_line: self.command_line(),
            started: Instant::now(),
            serial,
            stderr,
            input,
            cursor: 0,
            status: None,
            readers,
        })
    }
}

/// Bytes arriving from one of QEMU's pipes, with a signal for waiters.
#[derive(Default)]
struct Stream {
    state: Mutex<StreamState>,
    changed: Condvar,
}

#[derive(Default)]
struct StreamState {
    bytes: Vec<u8>,
    closed: bool,
}

impl Stream {
    /// Copies `pipe` into `stream` on a thread until end of file.
    fn pump(mut pipe: impl Read + Send + 'static, stream: Arc<Stream>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let count = match pipe.read(&mut buffer) {
                    Ok(count) => count,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let mut state = stream.lock();
                if count == 0 {
                    state.closed = true;
                } else {
                    state.bytes.extend_from_slice(&buffer[..count]);
                }
                let closed = state.closed;
                drop(state);
                stream.changed.notify_all();
                if closed {
                    break;
                }
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A reader thread cannot panic while holding the lock, but a
        // poisoned lock still holds good bytes.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).replace('\r', "")
    }
}

/// A running QEMU. Killed when dropped.
pub struct Running {
    child: Child,
    command_line: String,
    started: Instant,
    serial: Arc<Stream>,
    stderr: Arc<Stream>,
    /// QEMU's stdin: what is written here is typed on the serial line.
    input: Option<ChildStdin>,
    /// Where the next [`Running::wait_for`] starts searching the serial log.
    cursor: usize,
    status: Option<ExitStatus>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Running {
    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the serial console printed so far (carriage returns removed).
    pub fn serial(&self) -> String {
        self.serial.text()
    }

    /// Everything QEMU itself printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// A failure whose message is `what` followed by the command line, the
    /// serial log and QEMU's stderr.
    pub fn failure(&self, what: impl fmt::Display) -> Failure {
        let stderr = self.stderr();
        let stderr = stderr
            .lines()
            .filter(|line| !line.contains("TCG doesn't support requested feature"))
            .collect::<Vec<_>>()
            .join("\n");
        Failure::new(format!(
            "{what}\n  after {:.1} s\n  command: {}\n--- serial console ---\n{}\n--- QEMU stderr \
             (TCG feature warnings omitted) ---\n{stderr}\n--- end ---",
            self.elapsed().as_secs_f64(),
            self.command_line,
            self.serial().trim_end(),
        ))
    }

    /// Whether QEMU has exited; records its status when it has.
    fn poll_exit(&mut self) -> Result<Option<ExitStatus>, Failure> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|error| self.failure(format!("cannot query QEMU: {error}")))?;
        }
        Ok(self.status)
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> Result<bool, Failure> {
        Ok(self.poll_exit()?.is_none())
    }

    /// Types `text` on the serial line (COM1's receiver). Text holding
    /// Ctrl-A (0x01), the escape of QEMU's `-nographic` console, is refused
    /// so that a test run by hand never drives QEMU instead of the appliance.
    pub fn send(&mut self, text: &str) -> Result<(), Failure> {
        typeable(text)?;
        let written = match self.input.as_mut() {
            Some(input) => input
                .write_all(text.as_bytes())
                .and_then(|()| input.flush())
                .map_err(|error| format!("cannot type on the serial line: {error}")),
            None => Err("cannot type on the serial line: QEMU's stdin is closed".into()),
        };
        written.map_err(|what| self.failure(what))
    }

    /// Waits until the serial console prints `needle` after the previous
    /// match, and returns the whole line it is on (once the line is complete,
    /// or as far as it got if the console closes or time runs out).
    /// Fails with the full log on timeout or if QEMU exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.poll_exit()?;
            let state = self.serial.lock();
            let now = Instant::now();
            let from = self.cursor.min(state.bytes.len());
            if let Some(offset) = find(&state.bytes[from..], needle.as_bytes()) {
                let start = from + offset;
                let end = start + needle.len();
                let line_start = state.bytes[..start]
                    .iter()
                    .rposition(|&byte| byte == b'\n')
                    .map_or(0, |position| position + 1);
                let line_end = state.bytes[end..]
                    .iter()
                    .position(|&byte| byte == b'\n')
                    .map(|position| end + position);
                if line_end.is_some() || state.closed || now >= deadline {
                    let line_end = line_end.unwrap_or(state.bytes.len());
                    let line = String::from_utf8_lossy(&state.bytes[line_start..line_end])
                        .replace('\r', "");
                    self.cursor = end;
                    return Ok(line);
                }
                // Found, but the rest of the line is still on its way.
            } else if exited.is_some() && state.closed {
                let silent = state.bytes.is_empty();
                drop(state);
                let how = if silent && exited.and_then(|status| status.code()) == Some(1) {
                    "status 1 with no serial output: QEMU itself failed, see its stderr".into()
                } else {
                    describe(exited)
                };
                return Err(self.failure(format!(
                    "QEMU exited ({how}) before the serial console printed {needle:?}"
                )));
            } else if now >= deadline {
                drop(state);
                return Err(self.failure(format!(
                    "timed out after {:.0} s waiting for {needle:?} on the serial console",
                    timeout.as_secs_f64()
                )));
            }
            // Wake up at least every 50 ms to notice QEMU exiting.
            let wait = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            drop(
                self.serial
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
        }
    }

    /// Waits for QEMU to exit and returns its exit status. Fails with the
    /// full log on timeout (QEMU is then killed) or if QEMU died of a signal.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32, Failure> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.poll_exit()? {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(format!(
                    "QEMU still running after {:.0} s; expected it to exit",
                    timeout.as_secs_f64()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.drain();
        status
            .code()
            .ok_or_else(|| self.failure(format!("QEMU ended without an exit status ({status})")))
    }

    /// Waits for QEMU to exit with `expected`; fails otherwise.
    pub fn expect_exit(&mut self, expected: i32, timeout: Duration) -> Result<(), Failure> {
        let status = self.wait_exit(timeout)?;
        if status == expected {
            Ok(())
        } else {
            Err(self.failure(format!(
                "QEMU exited with status {status}, expected {expected} ({})",
                meaning(expected)
            )))
        }
    }

    /// Those of `needles` the serial log so far does not contain.
    fn missing<'a>(&self, needles: &[&'a str]) -> Vec<&'a str> {
        let serial = self.serial();
        needles
            .iter()
            .copied()
            .filter(|needle| !serial.contains(needle))
            .collect()
    }

    /// Fails unless the serial log so far contains every one of `needles`.
    pub fn assert_serial_contains(&self, needles: &[&str]) -> Result<(), Failure> {
        let missing = self.missing(needles);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.failure(format!("serial console lacks {missing:?}")))
        }
    }

    /// Waits until the serial log holds every one of `needles`, in any
    /// order (unlike [`Running::wait_for`], whose matches follow each
    /// other). Fails with the full log, naming those still missing, on
    /// timeout or if QEMU exits first.
    pub fn wait_for_all(&mut self, needles: &[&str], timeout: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = self.missing(needles);
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline || !self.is_running()? {
                return Err(self.failure(format!("the serial console never showed {missing:?}")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails if the serial log so far contains any of `needles`.
    pub fn assert_serial_lacks(&self, needles: &[&str]) -> Result<(), Failure> {
        let serial = self.serial();
        let present: Vec<&str> = needles
            .iter()
            .copied()
            .filter(|needle| serial.contains(needle))
            .collect();
        if present.is_empty() {
            Ok(())
        } else {
            Err(self.failure(format!("serial console unexpectedly shows {present:?}")))
        }
    }

    /// The first complete line of the serial log that contains every one of
    /// `needles`, in that order.
    pub fn serial_line_with(&self, needles: &[&str]) -> Option<String> {
        self.serial()
            .lines()
            .find(|line| {
                let mut rest = *line;
                needles.iter().all(|needle| match rest.find(needle) {
                    Some(position) => {
                        rest = &rest[position + needle.len()..];
                        true
                    }
                    None => false,
                })
            })
            .map(str::to_string)
    }

    /// The memory Dom0 says it was given on its `dom0 ready: memory N MiB`
    /// line, for checking what `list` shows against it.
    pub fn dom0_memory_mib(&self) -> Result<u64, Failure> {
        self.serial_line_with(&["dom0 ready: memory "])
            .and_then(|line| {
                let rest = line.split("dom0 ready: memory ").nth(1)?;
                rest.split(" MiB").next()?.parse().ok()
            })
            .ok_or_else(|| self.failure("no \"dom0 ready: memory N MiB\" line"))
    }

    /// Waits until a line of the serial log holds every one of `needles`,
    /// in that order (see [`Running::serial_line_with`]), and returns it.
    /// Fails with the full log, saying there was no `what`, on timeout or
    /// if QEMU exits first.
    pub fn wait_for_line_with(
        &mut self,
        needles: &[&str],
        timeout: Duration,
        what: &str,
    ) -> Result<String, Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.serial_line_with(needles) {
                return Ok(line);
            }
            if Instant::now() >= deadline || !self.is_running()? {
                return Err(self.failure(format!("no {what}")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time (user + system) QEMU has used so far, from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Result<Duration, Failure> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path)
            .map_err(|error| self.failure(format!("cannot read {path}: {error}")))?;
        // The command name (field 2) may hold spaces; fields after it are
        // plain numbers. utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| self.failure(format!("cannot parse {path}: {stat:?}")))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |index: usize| -> Result<u64, Failure> {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
                .ok_or_else(|| self.failure(format!("cannot parse {path}: {stat:?}")))
        };
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        let total = ticks(14 - 3)? + ticks(15 - 3)?;
        Ok(Duration::from_secs_f64(
            total as f64 / clock_ticks_per_second() as f64,
        ))
    }

    /// Kills QEMU (if still running) and waits for it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.drain();
    }

    /// Lets the reader threads finish once QEMU is gone, so the log is
    /// complete.
    fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn describe(status: Option<ExitStatus>) -> String {
    match status.and_then(|status| status.code()) {
        Some(code) => format!("status {code}: {}", meaning(code)),
        None => "killed by a signal".into(),
    }
}

/// What a QEMU exit status means for Xenolith.
pub fn meaning(status: i32) -> &'static str {
    match status {
        EXIT_POWEROFF => "Dom0 powered off",
        EXIT_DOM0_CRASHED => "Dom0 crashed",
        EXIT_FATAL => "hypervisor fatal error at boot",
        EXIT_POWEROFF_FAILURE => "Dom0 powered off, reporting failure",
        EXIT_RESET => "machine reset",
        _ => "unexpected",
    }
}

/// Ctrl-A: the escape byte of QEMU's multiplexed console.
const QEMU_ESCAPE: u8 = 0x01;

/// Whether `text` may be typed on the serial line (see [`Running::send`]).
fn typeable(text: &str) -> Result<(), Failure> {
    if text.bytes().any(|byte| byte == QEMU_ESCAPE) {
        return Err(Failure::new(format!(
            "refusing to type {text:?}: Ctrl-A (0x01) is QEMU's console escape"
        )));
    }
    Ok(())
}

/// The kernel's clock tick rate for `/proc` times (`getconf CLK_TCK`; 100 on
/// every Linux this runs on).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// Millisecond figures in `text`: every number directly followed by `ms`
/// (with or without a space), e.g. `42 ms` or `1.5ms`.
pub fn millisecond_figures(text: &str) -> Vec<f64> {
    let mut figures = Vec::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index].is_ascii_digit() && (index == 0 || !is_word_byte(bytes[index - 1])) {
            let start = index;
            while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.') {
                index += 1;
            }
            let number = &text[start..index];
            let mut unit = index;
            if bytes.get(unit) == Some(&b' ') {
                unit += 1;
            }
            let is_ms = bytes.get(unit) == Some(&b'm')
                && bytes.get(unit + 1) == Some(&b's')
                && !bytes.get(unit + 2).is_some_and(|&byte| is_word_byte(byte));
            if is_ms && let Ok(value) = number.trim_end_matches('.').parse::<f64>() {
                figures.push(value);
            }
        } else {
            index += 1;
        }
    }
    figures
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// A minimal ELF64 executable for x86-64 that is a well-formed PVH kernel:
/// the header, a `PT_LOAD` program header loading the whole file at physical
/// and virtual address `load_address`, a `PT_NOTE` with Xen's
/// `PHYS32_ENTRY` note, and a `hlt; jmp` loop as code. No sections.
pub fn minimal_elf64(load_address: u64) -> Vec<u8> {
    const HEADER_SIZE: u64 = 64;
    const PROGRAM_HEADER_SIZE: u64 = 56;
    const PROGRAM_HEADERS: u64 = 2;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    const NOTE_SIZE: u64 = 12 + 4 + 4; // header, "Xen\0", 32-bit entry
    const CODE: [u8; 3] = [0xf4, 0xeb, 0xfd]; // hlt; jmp back to hlt

    let note_offset = HEADER_SIZE + PROGRAM_HEADERS * PROGRAM_HEADER_SIZE;
    let code_offset = note_offset + NOTE_SIZE;
    let file_size = code_offset + CODE.len() as u64;
    let entry = load_address + code_offset;

    let mut elf = Vec::with_capacity(file_size as usize);
    let put16 = |elf: &mut Vec<u8>, value: u16| elf.extend_from_slice(&value.to_le_bytes());
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // ELF64, LE, v1, SysV
    elf.extend_from_slice(&[0; 8]);
    put16(&mut elf, 2); // e_type: EXEC
    put16(&mut elf, 0x3e); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry
    elf.extend_from_slice(&HEADER_SIZE.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    put16(&mut elf, HEADER_SIZE as u16); // e_ehsize
    put16(&mut elf, PROGRAM_HEADER_SIZE as u16); // e_phentsize
    put16(&mut elf, PROGRAM_HEADERS as u16); // e_phnum
    put16(&mut elf, 64); // e_shentsize
    put16(&mut elf, 0); // e_shnum
    put16(&mut elf, 0); // e_shstrndx

    let program_header = |elf: &mut Vec<u8>,
                          kind: u32,
                          flags: u32,
                          offset: u64,
                          size: u64,
                          memory_size: u64,
                          align: u64| {
        elf.extend_from_slice(&kind.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        elf.extend_from_slice(&offset.to_le_bytes());
        elf.extend_from_slice(&(load_address + offset).to_le_bytes()); // p_vaddr
        elf.extend_from_slice(&(load_address + offset).to_le_bytes()); // p_paddr
        elf.extend_from_slice(&size.to_le_bytes());
        elf.extend_from_slice(&memory_size.to_le_bytes());
        elf.extend_from_slice(&align.to_le_bytes());
    };
    program_header(&mut elf, 1, 5, 0, file_size, 0x1000, 0x1000); // PT_LOAD, R X
    program_header(&mut elf, 4, 4, note_offset, NOTE_SIZE, NOTE_SIZE, 4); // PT_NOTE, R

    elf.extend_from_slice(&4u32.to_le_bytes()); // n_namesz
    elf.extend_from_slice(&4u32.to_le_bytes()); // n_descsz
    elf.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes()); // n_type
    elf.extend_from_slice(b"Xen\0");
    // The entry fits in 32 bits for any load address a test uses.
    elf.extend_from_slice(&(entry as u32).to_le_bytes());

    elf.extend_from_slice(&CODE);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_millisecond_figures() {
        assert_eq!(
            millisecond_figures("dom0 ready: memory 256 MiB, 42 ms since hypervisor entry"),
            vec![42.0]
        );
        assert_eq!(
            millisecond_figures("hypervisor entry -> dom0 entry: 1.25ms (x 3 ms)"),
            vec![1.25, 3.0]
        );
        assert!(millisecond_figures("256 MiB, 3 msec, v2ms, 4 mss").is_empty());
    }

    #[test]
    fn minimal_elf_is_well_formed() {
        let elf = minimal_elf64(0x10_0000);
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "ELF64");
        let program_header_offset =
            u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
        assert_eq!(program_header_offset, 64);
        let paddr = u64::from_le_bytes(
            elf[program_header_offset + 24..program_header_offset + 32]
                .try_into()
                .expect("8 bytes"),
        );
        assert_eq!(paddr, 0x10_0000);
        let file_size = u64::from_le_bytes(
            elf[program_header_offset + 32..program_header_offset + 40]
                .try_into()
                .expect("8 bytes"),
        );
        assert_eq!(file_size, elf.len() as u64);
        let note = &elf[64 + 2 * 56..];
        assert_eq!(&note[..12], &[4, 0, 0, 0, 4, 0, 0, 0, 18, 0, 0, 0]);
        assert_eq!(&note[12..16], b"Xen\0");
    }

    #[test]
    fn ctrl_a_is_never_typed() {
        assert!(typeable("xl list\r\x1b[A\x7f\x03").is_ok());
        assert!(typeable("\x01x").is_err());
    }

    #[test]
    fn every_exit_status_has_a_meaning() {
        for status in [
            EXIT_POWEROFF,
            EXIT_DOM0_CRASHED,
            EXIT_FATAL,
            EXIT_POWEROFF_FAILURE,
            EXIT_RESET,
        ] {
            assert_ne!(meaning(status), "unexpected", "status {status}");
        }
    }

    #[test]
    fn finds_needles() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
    }
}
