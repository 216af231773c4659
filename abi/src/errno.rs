//! Xen error numbers (`errno.h`); they equal Linux's x86 values. Hypercalls
//! return them negated.

/// A Xen errno value (positive); hypercalls return `-(value)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i64);

impl Errno {
    pub const EPERM: Self = Self(1);
    pub const ENOENT: Self = Self(2);
    pub const ESRCH: Self = Self(3);
    pub const EAGAIN: Self = Self(11);
    pub const ENOMEM: Self = Self(12);
    pub const EFAULT: Self = Self(14);
    pub const EBUSY: Self = Self(16);
    pub const EEXIST: Self = Self(17);
    pub const EINVAL: Self = Self(22);
    pub const ENOSPC: Self = Self(28);
    pub const ENOSYS: Self = Self(38);
    pub const ETIME: Self = Self(62);
    pub const EOPNOTSUPP: Self = Self(95);

    /// The value as a hypercall returns it in RAX.
    pub const fn as_return(self) -> u64 {
        (-self.0) as u64
    }
}
