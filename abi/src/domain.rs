//! Domain identifiers (`xen.h`).

/// A domain id. Dom0 is 0; ids from 0x7FF0 up are special.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DomainId(pub u16);

impl DomainId {
    /// The privileged control domain.
    pub const DOM0: Self = Self(0);
    /// "The calling domain" in hypercall arguments.
    pub const SELF: Self = Self(0x7ff0);
    /// Ids at or above this are not real domains.
    pub const FIRST_RESERVED: Self = Self(0x7ff0);
}
