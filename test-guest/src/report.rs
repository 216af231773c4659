//! The verdict on the console: one `test-guest: PASS <name>` or
//! `test-guest: FAIL <name>: <detail>` line per check, then
//! `test-guest: <N> passed, <M> failed`. The hypervisor prefixes each line
//! with the domain id. In bench mode, `test-guest: bench <name> <value>
//! <unit> (<how>)` lines take the place of the PASS lines. Also the
//! helpers checks use to build details.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use xen_guest::console::LineBuffer;
use xen_guest::{GrantError, GrantStatus, XenError};

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

/// Writes `test-guest: <text>` as one console line.
pub fn line(args: fmt::Arguments<'_>) {
    let mut buffer = LineBuffer::<320>::new();
    let _ = buffer.write_str("test-guest: ");
    let _ = buffer.write_fmt(args);
    let _ = buffer.write_str("\n");
    let _ = buffer.flush();
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

/// The last line: `<N> passed, <M> failed`.
pub fn summary() {
    line(format_args!(
        "{} passed, {} failed",
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed)
    ));
}
