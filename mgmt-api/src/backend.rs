//! What the API asks of the toolstack. Dom0 implements [`Backend`] over its
//! domain table, builder and console rings; tests use
//! `fake::FakeBackend` (feature `test-utils`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub use xenolith_abi::domain::DomainId;

use crate::metrics::MetricFamily;

/// A domain as a request names it: a number is an id, anything else a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainRef {
    /// By domain id.
    Id(DomainId),
    /// By name.
    Name(String),
}

impl fmt::Display for DomainRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainRef::Id(id) => write!(formatter, "{}", id.0),
            DomainRef::Name(name) => formatter.write_str(name),
        }
    }
}

/// A domain's state as xl shows it: six independent flags, several of
/// which may hold at once (a domain can be paused and blocked). The
/// associated constants give the common single states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainState {
    /// `r`: on a CPU now.
    pub running: bool,
    /// `b`: waiting for an event.
    pub blocked: bool,
    /// `p`: paused by the toolstack.
    pub paused: bool,
    /// `s`: shut down, not yet destroyed.
    pub shutdown: bool,
    /// `c`: shut down by crashing.
    pub crashed: bool,
    /// `d`: being destroyed.
    pub dying: bool,
}

impl DomainState {
    /// No flag set (`------`): runnable, waiting for a CPU.
    pub const RUNNABLE: Self = Self {
        running: false,
        blocked: false,
        paused: false,
        shutdown: false,
        crashed: false,
        dying: false,
    };
    /// `r-----`
    pub const RUNNING: Self = Self {
        running: true,
        ..Self::RUNNABLE
    };
    /// `-b----`
    pub const BLOCKED: Self = Self {
        blocked: true,
        ..Self::RUNNABLE
    };
    /// `--p---`
    pub const PAUSED: Self = Self {
        paused: true,
        ..Self::RUNNABLE
    };
    /// `---s--`
    pub const SHUTDOWN: Self = Self {
        shutdown: true,
        ..Self::RUNNABLE
    };
    /// `---sc-`: xl marks a crash as a shutdown whose reason is a crash.
    pub const CRASHED: Self = Self {
        shutdown: true,
        crashed: true,
        ..Self::RUNNABLE
    };
    /// `-----d`
    pub const DYING: Self = Self {
        dying: true,
        ..Self::RUNNABLE
    };

    /// The six letters xl prints, `-` for each flag not set.
    pub const fn flags(self) -> [u8; 6] {
        const fn flag(set: bool, letter: u8) -> u8 {
            if set { letter } else { b'-' }
        }
        [
            flag(self.running, b'r'),
            flag(self.blocked, b'b'),
            flag(self.paused, b'p'),
            flag(self.shutdown, b's'),
            flag(self.crashed, b'c'),
            flag(self.dying, b'd'),
        ]
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for letter in self.flags() {
            formatter.write_char(char::from(letter))?;
        }
        Ok(())
    }
}

/// Where a guest's build is: a create is answered as soon as the domain
/// exists, and the toolstack loads its kernel afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BuildStatus {
    /// Built and unpaused (or Dom0).
    #[default]
    Ready,
    /// Created, paused, its kernel still being decompressed or loaded.
    Building,
    /// The build failed after the create was answered: the domain is gone,
    /// and this says why.
    Failed(String),
}

impl BuildStatus {
    /// The name the API shows.
    pub fn name(&self) -> &'static str {
        match self {
            BuildStatus::Ready => "ready",
            BuildStatus::Building => "building",
            BuildStatus::Failed(_) => "failed",
        }
    }
}

/// One domain, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its id.
    pub id: DomainId,
    /// Its name.
    pub name: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// State flags.
    pub state: DomainState,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Whether it is built yet.
    pub build: BuildStatus,
}

/// Host facts for `GET /v1/host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// All memory the hypervisor manages, in MiB.
    pub total_memory_mib: u64,
    /// Memory not given to any domain, in MiB.
    pub free_memory_mib: u64,
    /// Physical CPUs.
    pub cpus: u32,
    /// The hypervisor's version.
    pub hypervisor_version: String,
    /// Dom0's version.
    pub dom0_version: String,
    /// Seconds since the hypervisor started.
    pub uptime_seconds: u64,
}

/// A position in a domain's console output: bytes written since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsoleOffset(pub u64);

/// Console bytes read from a domain's output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleChunk {
    /// Offset of `data`'s first byte. Later than the one asked for when the
    /// console's buffer no longer holds the older bytes.
    pub start: ConsoleOffset,
    /// The bytes.
    pub data: Vec<u8>,
}

impl ConsoleChunk {
    /// The offset just after `data`: the `since` of the next read.
    pub fn next(&self) -> ConsoleOffset {
        let length = u64::try_from(self.data.len()).unwrap_or(u64::MAX);
        ConsoleOffset(self.start.0.saturating_add(length))
    }
}

/// An operation on one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainAction {
    /// Ask the guest to power off.
    Shutdown,
    /// Ask the guest to reboot.
    Reboot,
    /// Stop scheduling its vCPUs.
    Pause,
    /// Schedule them again.
    Unpause,
    /// Tear it down now.
    Destroy,
}

impl DomainAction {
    /// The name used in paths and answers.
    pub fn name(self) -> &'static str {
        match self {
            DomainAction::Shutdown => "shutdown",
            DomainAction::Reboot => "reboot",
            DomainAction::Pause => "pause",
            DomainAction::Unpause => "unpause",
            DomainAction::Destroy => "destroy",
        }
    }
}

/// Why the toolstack could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// No domain by that id or name (404).
    NoSuchDomain,
    /// The guest config was refused; the message says where and why (422).
    InvalidConfig(String),
    /// A domain with that name already exists (409).
    DomainExists(String),
    /// The domain's state forbids the operation, e.g. unpausing a running
    /// domain or acting on Dom0 (409).
    InvalidState(String),
    /// Out of memory, domain ids or another resource (503).
    ResourceExhausted(String),
    /// Not supported by this toolstack yet (501).
    Unsupported(String),
    /// Anything else (500).
    Internal(String),
}

impl BackendError {
    /// The status code answering this error.
    pub fn status(&self) -> u16 {
        match self {
            BackendError::NoSuchDomain => 404,
            BackendError::InvalidConfig(_) => 422,
            BackendError::DomainExists(_) | BackendError::InvalidState(_) => 409,
            BackendError::ResourceExhausted(_) => 503,
            BackendError::Unsupported(_) => 501,
            BackendError::Internal(_) => 500,
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::NoSuchDomain => formatter.write_str("no such domain"),
            BackendError::InvalidConfig(message) => write!(formatter, "invalid config: {message}"),
            BackendError::DomainExists(name) => {
                write!(formatter, "a domain named {name:?} already exists")
            }
            BackendError::InvalidState(message)
            | BackendError::ResourceExhausted(message)
            | BackendError::Unsupported(message)
            | BackendError::Internal(message) => formatter.write_str(message),
        }
    }
}

/// The toolstack, as the API sees it. Calls must not block: an operation
/// that takes time (building a guest, a guest's own shutdown) is started
/// and reported as accepted.
pub trait Backend {
    /// Every domain, Dom0 included, in id order.
    fn list_domains(&mut self) -> Result<Vec<DomainInfo>, BackendError>;

    /// One domain.
    fn domain(&mut self, domain: &DomainRef) -> Result<DomainInfo, BackendError>;

    /// Creates a guest from xl.cfg text and starts building it: answers
    /// once the domain exists (its `build` then says `Building`).
    fn create_domain(&mut self, xl_config: &str) -> Result<DomainInfo, BackendError>;

    /// Shuts down, reboots, pauses, unpauses or destroys a domain; returns
    /// the domain as it was found.
    fn act(&mut self, domain: &DomainRef, action: DomainAction)
    -> Result<DomainInfo, BackendError>;

    /// Up to `max_bytes` of the domain's console output from `since` on.
    /// An empty chunk means nothing new yet.
    fn console(
        &mut self,
        domain: &DomainRef,
        since: ConsoleOffset,
        max_bytes: usize,
    ) -> Result<ConsoleChunk, BackendError>;

    /// Host facts.
    fn host(&mut self) -> Result<HostInfo, BackendError>;

    /// The toolstack's metrics; the server adds its own.
    fn metrics(&mut self) -> Vec<MetricFamily>;
}
