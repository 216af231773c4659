//! The verdict on the console: one `test-guest: PASS <name>` or
//! `test-guest: FAIL <name>: <detail>` line per check, then
//! `test-guest: <N> passed, <M> failed`. The hypervisor prefixes each line
//! with the domain id. In bench mode, `test-guest: bench <name> <value>
//! <unit> (<how>)` lines take the place of the PASS lines. Also the
//! helpers checks use to build details.
//!
//! Lines go out through `console_io`. A hypervisor that refuses it to
//! DomUs (a release build of Xen: -EPERM) gets them on the PV console ring
//! instead, which xenconsoled serves (`xl console`). The ring is the
//! fallback rather than a second copy: Xenolith's Dom0 would show every
//! line twice, and no command-line word is needed to run on either.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use xen_guest::console::{self, ConsoleRing, LineBuffer};
use xen_guest::hvm::{self, HvmParamIndex};
use xen_guest::{DomainId, GrantError, GrantStatus, Port, XenError, event_channel, sched};

use crate::memory;

/// Why a check failed: a short, truncated text.
#[derive(Clone)]
pub struct Detail {
    bytes: [u8; 200],
    length: usize,
}

impl Detail {
    const fn new() -> Self {
        Self {
            bytes: [0; 200],
            length: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("(garbled detail)")
    }
}

impl Write for Detail {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for character in text.chars() {
            let mut encoded = [0; 4];
            let encoded = character.encode_utf8(&mut encoded).as_bytes();
            let Some(slot) = self.bytes.get_mut(self.length..self.length + encoded.len()) else {
                return Ok(());
            };
            slot.copy_from_slice(encoded);
            self.length += encoded.len();
        }
        Ok(())
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check's result.
pub type Outcome = Result<(), Detail>;

/// Formats a detail (see the `fail!` and `ensure!` macros).
pub fn detail(args: fmt::Arguments<'_>) -> Detail {
    let mut detail = Detail::new();
    let _ = detail.write_fmt(args);
    detail
}

/// Fails the check with a formatted detail.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::report::detail(format_args!($($arg)*)))
    };
}

/// Fails the check unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($arg:tt)*) => {
        if !$condition {
            $crate::report::fail!($($arg)*);
        }
    };
}

pub(crate) use {ensure, fail};

/// A hypercall that must succeed.
pub fn ok<T>(what: &str, result: Result<T, XenError>) -> Result<T, Detail> {
    result.map_err(|error| detail(format_args!("{what} failed with {error}")))
}

/// A grant operation that must succeed.
pub fn grant_ok<T>(what: &str, result: Result<T, GrantError>) -> Result<T, Detail> {
    result.map_err(|error| detail(format_args!("{what}: {error}")))
}

/// A hypercall that must fail with one of `expected`.
pub fn expect_error<T: fmt::Debug>(
    what: &str,
    result: Result<T, XenError>,
    expected: &[XenError],
) -> Outcome {
    match result {
        Err(error) if expected.contains(&error) => Ok(()),
        Err(error) => fail!("{what}: expected {}, got {error}", Names(expected)),
        Ok(value) => fail!(
            "{what}: expected {}, got success {value:?}",
            Names(expected)
        ),
    }
}

/// A raw hypercall result that must be one of `expected` errors.
pub fn expect_raw(what: &str, raw: i64, expected: &[XenError]) -> Outcome {
    expect_error(what, XenError::check(raw), expected)
}

/// A grant operation whose element must fail with `expected`.
pub fn expect_status<T: fmt::Debug>(
    what: &str,
    result: Result<T, GrantError>,
    expected: GrantStatus,
) -> Outcome {
    match result {
        Err(GrantError::Status(status)) if status == expected => Ok(()),
        Err(error) => fail!("{what}: expected {expected}, got {error}"),
        Ok(value) => fail!("{what}: expected {expected}, got success {value:?}"),
    }
}

/// `-EINVAL or -ENOSYS` for a list of errors.
struct Names<'a>(&'a [XenError]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "-{}", error.name())?;
        }
        Ok(())
    }
}

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
/// Index + 1 of the check running now (0: none), for crash reports.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// Where lines go: not yet decided, `console_io`, the console ring (its
/// frame and port in `RING_FRAME` and `RING_PORT`), or nowhere.
static OUTPUT: AtomicU8 = AtomicU8::new(OUTPUT_UNDECIDED);
const OUTPUT_UNDECIDED: u8 = 0;
const OUTPUT_CONSOLE_IO: u8 = 1;
const OUTPUT_RING: u8 = 2;
const OUTPUT_NONE: u8 = 3;
static RING_FRAME: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);
/// Bytes dropped because the console ring stayed full.
static RING_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Kicks (notify, then yield) a full ring gets before the rest of a line
/// is dropped: xenconsoled drains it far sooner, a stuck one never does.
const RING_PATIENCE: u32 = 10_000;
/// Longest line: the prefix, a 200-byte detail and a check name fit.
const LINE_MAX: usize = 320;

/// The console ring the HVM params name, if it is a page we can reach.
fn open_ring() -> Option<(ConsoleRing, Port)> {
    let frame = hvm::get_param(DomainId::SELF, HvmParamIndex::CONSOLE_PFN).ok()?;
    let port = hvm::get_param(DomainId::SELF, HvmParamIndex::CONSOLE_EVTCHN).ok()?;
    let port = u32::try_from(port).ok().filter(|&port| port != 0)?;
    let slot = memory::shared_ring_slot(frame)?;
    RING_FRAME.store(frame, Ordering::Relaxed);
    RING_PORT.store(port, Ordering::Relaxed);
    Some((ConsoleRing::new(slot), Port(port)))
}

/// The ring chosen earlier.
fn ring() -> Option<(ConsoleRing, Port)> {
    let slot = memory::shared_ring_slot(RING_FRAME.load(Ordering::Relaxed))?;
    Some((
        ConsoleRing::new(slot),
        Port(RING_PORT.load(Ordering::Relaxed)),
    ))
}

fn write_ring(ring: ConsoleRing, port: Port, bytes: &[u8]) {
    let dropped = ring.write_all(bytes, RING_PATIENCE, || {
        let _ = event_channel::send(port);
        let _ = sched::yield_now();
    });
    RING_DROPPED.fetch_add(dropped as u64, Ordering::Relaxed);
}

/// Sends one whole line where lines go, choosing on the first one.
fn output(bytes: &[u8]) {
    match OUTPUT.load(Ordering::Relaxed) {
        OUTPUT_CONSOLE_IO => {
            let _ = console::write(bytes);
        }
        OUTPUT_RING => {
            if let Some((ring, port)) = ring() {
                write_ring(ring, port, bytes);
            }
        }
        OUTPUT_UNDECIDED => match console::write(bytes) {
            Err(XenError::EPERM | XenError::ENOSYS) => match open_ring() {
                Some((ring, port)) => {
                    OUTPUT.store(OUTPUT_RING, Ordering::Relaxed);
                    write_ring(ring, port, bytes);
                }
                None => OUTPUT.store(OUTPUT_NONE, Ordering::Relaxed),
            },
            // Any other answer: console_io is there (a transient error
            // is no reason to switch).
            _ => OUTPUT.store(OUTPUT_CONSOLE_IO, Ordering::Relaxed),
        },
        _ => {}
    }
}

/// A line's text, truncated to `LINE_MAX` bytes.
struct Line {
    bytes: [u8; LINE_MAX],
    length: usize,
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = LINE_MAX.saturating_sub(self.length);
        let count = text.len().min(room);
        if let Some(slot) = self.bytes.get_mut(self.length..self.length + count) {
            slot.copy_from_slice(&text.as_bytes()[..count]);
            self.length += count;
        }
        Ok(())
    }
}

/// Writes `test-guest: <text>` as one console line.
pub fn line(args: fmt::Arguments<'_>) {
    let mut text = Line {
        bytes: [0; LINE_MAX],
        length: 0,
    };
    let _ = text.write_str("test-guest: ");
    let _ = text.write_fmt(args);
    // The newline survives truncation.
    text.length = text.length.min(LINE_MAX - 1);
    let _ = text.write_str("\n");
    output(&text.bytes[..text.length]);
}

/// Runs one check and prints its line.
pub fn run(index: usize, name: &str, check: impl FnOnce() -> Outcome) {
    CURRENT.store(index + 1, Ordering::Relaxed);
    match check() {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            line(format_args!("PASS {name}"));
        }
        Err(detail) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            line(format_args!("FAIL {name}: {}", detail.as_str()));
        }
    }
    CURRENT.store(0, Ordering::Relaxed);
}

/// A measured figure (bench mode): `value unit`, and how it was measured.
pub struct Figure {
    pub value: u64,
    pub unit: &'static str,
    pub how: Detail,
}

/// Measures one figure and prints `bench <name> <value> <unit> (<how>)`,
/// or a `FAIL bench-<name>` line; counted as a pass or a failure.
pub fn measure(index: usize, name: &str, benchmark: impl FnOnce() -> Result<Figure, Detail>) {
    CURRENT.store(index + 1, Ordering::Relaxed);
    match benchmark() {
        Ok(figure) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            line(format_args!(
                "bench {name} {} {} ({})",
                figure.value,
                figure.unit,
                figure.how.as_str()
            ));
        }
        Err(detail) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            line(format_args!("FAIL bench-{name}: {}", detail.as_str()));
        }
    }
    CURRENT.store(0, Ordering::Relaxed);
}

/// The check running now, if any (its table index).
pub fn current() -> Option<usize> {
    CURRENT.load(Ordering::Relaxed).checked_sub(1)
}

/// Records a failure outside `run` (a crash) and prints its line.
pub fn fail_now(name: &str, args: fmt::Arguments<'_>) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    line(format_args!("FAIL {name}: {args}"));
}

/// Writes multi-line text as indented `test-guest:` lines.
pub fn lines(args: fmt::Arguments<'_>) {
    let mut splitter = LineSplitter {
        line: LineBuffer::new(),
    };
    let _ = splitter.write_fmt(args);
    splitter.emit();
}

/// Sends each line it is given as its own console line.
struct LineSplitter {
    line: LineBuffer<256>,
}

impl LineSplitter {
    fn emit(&mut self) {
        if !self.line.as_bytes().is_empty() {
            let text = core::str::from_utf8(self.line.as_bytes()).unwrap_or("?");
            line(format_args!("  {text}"));
        }
        self.line.clear();
    }
}

impl Write for LineSplitter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for (index, part) in text.split('\n').enumerate() {
            if index > 0 {
                self.emit();
            }
            // Text beyond one line's buffer is dropped rather than sent
            // unprefixed.
            if self.line.as_bytes().len() + part.len() <= 250 {
                self.line.write_str(part)?;
            }
        }
        Ok(())
    }
}

/// The last line: `<N> passed, <M> failed` (after a line saying how
/// much output the console ring dropped, if any).
pub fn summary() {
    let dropped = RING_DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        line(format_args!(
            "{dropped} bytes of output dropped: the console ring stayed full"
        ));
    }
    line(format_args!(
        "{} passed, {} failed",
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed)
    ));
}
