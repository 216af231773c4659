//! The errors a request can end in, each sent back as Xen's errno name in an
//! `ERROR` reply (`xsd_errors` in `xs_wire.h`, plus oxenstored's `EQUOTA`).

use core::fmt;

/// Why a request failed. The wire carries the errno *name*, never a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// `EINVAL`: malformed payload, bad path, bad domain id.
    InvalidArgument,
    /// `EACCES`: the caller lacks the permission, or the type is Dom0-only.
    AccessDenied,
    /// `EEXIST`: the watch is already registered.
    AlreadyExists,
    /// `ENOENT`: no such node, watch, transaction or domain.
    NotFound,
    /// `ENOMEM`: an allocation bound was hit.
    OutOfMemory,
    /// `ENOSPC`: kept for completeness of the table; quotas use `EQUOTA`.
    NoSpace,
    /// `EIO`: the store found itself inconsistent.
    InputOutput,
    /// `ENOSYS`: unknown or unsupported message type.
    NotImplemented,
    /// `EBUSY`: a transaction was started inside a transaction.
    Busy,
    /// `EAGAIN`: the transaction conflicted with another change; retry it.
    TryAgain,
    /// `E2BIG`: a value or reply is larger than allowed.
    TooBig,
    /// `EPERM`: an unprivileged domain tried to change a node's owner.
    NotPermitted,
    /// `EQUOTA`: a per-domain quota (nodes, watches, transactions, ...).
    QuotaExceeded,
}

impl Error {
    /// The errno name as it goes on the wire, without the terminating NUL.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "EINVAL",
            Self::AccessDenied => "EACCES",
            Self::AlreadyExists => "EEXIST",
            Self::NotFound => "ENOENT",
            Self::OutOfMemory => "ENOMEM",
            Self::NoSpace => "ENOSPC",
            Self::InputOutput => "EIO",
            Self::NotImplemented => "ENOSYS",
            Self::Busy => "EBUSY",
            Self::TryAgain => "EAGAIN",
            Self::TooBig => "E2BIG",
            Self::NotPermitted => "EPERM",
            Self::QuotaExceeded => "EQUOTA",
        }
    }

    /// Every variant, for tests and tables.
    pub const ALL: [Self; 13] = [
        Self::InvalidArgument,
        Self::AccessDenied,
        Self::AlreadyExists,
        Self::NotFound,
        Self::OutOfMemory,
        Self::NoSpace,
        Self::InputOutput,
        Self::NotImplemented,
        Self::Busy,
        Self::TryAgain,
        Self::TooBig,
        Self::NotPermitted,
        Self::QuotaExceeded,
    ];

    /// The error an `ERROR` payload names, if it is one of ours.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|error| error.name().as_bytes() == name)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for error in Error::ALL {
            assert_eq!(Error::from_name(error.name().as_bytes()), Some(error));
        }
        assert_eq!(Error::from_name(b"EWHATEVER"), None);
    }
}
