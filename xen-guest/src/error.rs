//! Hypercall failures: Xen errno values (`errno.h`, equal to Linux x86's)
//! and the per-element `GNTST_*` status codes of grant-table operations.

use core::fmt;

/// A failed hypercall: the positive Xen errno value (the hypercall
/// returned its negation in RAX).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct XenError(pub i64);

impl XenError {
    pub const EPERM: Self = Self(1);
    pub const ENOENT: Self = Self(2);
    pub const ESRCH: Self = Self(3);
    pub const E2BIG: Self = Self(7);
    pub const EAGAIN: Self = Self(11);
    pub const ENOMEM: Self = Self(12);
    pub const EACCES: Self = Self(13);
    pub const EFAULT: Self = Self(14);
    pub const EBUSY: Self = Self(16);
    pub const EEXIST: Self = Self(17);
    pub const EXDEV: Self = Self(18);
    pub const ENODEV: Self = Self(19);
    pub const EINVAL: Self = Self(22);
    pub const ENOSPC: Self = Self(28);
    pub const ENOSYS: Self = Self(38);
    pub const ETIME: Self = Self(62);
    pub const EOPNOTSUPP: Self = Self(95);

    /// Splits a raw hypercall result: non-negative values are success,
    /// negative ones `-errno`.
    pub const fn check(raw: i64) -> Result<u64, Self> {
        if raw >= 0 {
            Ok(raw as u64)
        } else {
            // i64::MIN has no positive counterpart; keep it recognisable.
            match raw.checked_neg() {
                Some(errno) => Err(Self(errno)),
                None => Err(Self(i64::MAX)),
            }
        }
    }

    /// The symbolic name, or "E?" for a value this crate does not know.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            7 => "E2BIG",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            62 => "ETIME",
            95 => "EOPNOTSUPP",
            _ => "E?",
        }
    }
}

impl fmt::Debug for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XenError(-{} {})", self.0, self.name())
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{} ({})", self.name(), self.0)
    }
}

/// The `status` a grant-table operation writes into each element
/// (`GNTST_*`): 0 is success, negative values name the fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrantStatus(pub i16);

impl GrantStatus {
    pub const OKAY: Self = Self(0);
    pub const GENERAL_ERROR: Self = Self(-1);
    pub const BAD_DOMAIN: Self = Self(-2);
    pub const BAD_GNTREF: Self = Self(-3);
    pub const BAD_HANDLE: Self = Self(-4);
    pub const BAD_VIRT_ADDR: Self = Self(-5);
    pub const BAD_DEV_ADDR: Self = Self(-6);
    pub const NO_DEVICE_SPACE: Self = Self(-7);
    pub const PERMISSION_DENIED: Self = Self(-8);
    pub const BAD_PAGE: Self = Self(-9);
    pub const BAD_COPY_ARG: Self = Self(-10);
    pub const ADDRESS_TOO_BIG: Self = Self(-11);
    pub const EAGAIN: Self = Self(-12);
    pub const NO_SPACE: Self = Self(-13);

    /// `Ok` for `GNTST_okay`, the status itself otherwise.
    pub const fn check(self) -> Result<(), Self> {
        if self.0 == 0 { Ok(()) } else { Err(self) }
    }

    /// Xen's name without the `GNTST_` prefix.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "okay",
            -1 => "general_error",
            -2 => "bad_domain",
            -3 => "bad_gntref",
            -4 => "bad_handle",
            -5 => "bad_virt_addr",
            -6 => "bad_dev_addr",
            -7 => "no_device_space",
            -8 => "permission_denied",
            -9 => "bad_page",
            -10 => "bad_copy_arg",
            -11 => "address_too_big",
            -12 => "eagain",
            -13 => "no_space",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantStatus({} {})", self.0, self.name())
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GNTST_{} ({})", self.name(), self.0)
    }
}

/// Why a single grant operation failed: the hypercall itself (bad
/// argument pointer, unknown command) or the element's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    Hypercall(XenError),
    Status(GrantStatus),
}

impl From<XenError> for GrantError {
    fn from(error: XenError) -> Self {
        Self::Hypercall(error)
    }
}

impl From<GrantStatus> for GrantError {
    fn from(status: GrantStatus) -> Self {
        Self::Status(status)
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hypercall(error) => write!(f, "hypercall failed with {error}"),
            Self::Status(status) => write!(f, "status {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_results_split_into_values_and_errors() {
        assert_eq!(XenError::check(0), Ok(0));
        assert_eq!(XenError::check(4096), Ok(4096));
        assert_eq!(XenError::check(-22), Err(XenError::EINVAL));
        assert_eq!(XenError::check(-38), Err(XenError::ENOSYS));
        assert_eq!(XenError::check(i64::MIN), Err(XenError(i64::MAX)));
    }

    #[test]
    fn names_follow_xen() {
        assert_eq!(XenError::EFAULT.name(), "EFAULT");
        assert_eq!(XenError(1000).name(), "E?");
        assert_eq!(format!("{}", XenError::ETIME), "-ETIME (62)");
        assert_eq!(GrantStatus::BAD_COPY_ARG.name(), "bad_copy_arg");
        assert_eq!(
            format!("{}", GrantStatus::BAD_DOMAIN),
            "GNTST_bad_domain (-2)"
        );
        assert_eq!(GrantStatus(0).check(), Ok(()));
        assert_eq!(GrantStatus(-3).check(), Err(GrantStatus::BAD_GNTREF));
    }
}
