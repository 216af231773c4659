//! Node permissions: a list whose first entry names the owner (full access)
//! and the access of every domain not listed; later entries grant `n`, `r`,
//! `w` or `b` to one domain each. The privileged domain bypasses them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use xenolith_abi::domain::DomainId;

use crate::Error;

/// `DOMID_ANY`: in a non-owner entry, matches every domain (the
/// `XENSTORE_SERVER_FEATURE_DOMID_ANY` feature).
pub const DOMID_ANY: DomainId = DomainId(0x7ff5);

/// One access level, as the letters of a permission string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: neither read nor write.
    None,
    /// `r`.
    Read,
    /// `w`.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The letter used on the wire.
    pub const fn letter(self) -> char {
        match self {
            Self::None => 'n',
            Self::Read => 'r',
            Self::Write => 'w',
            Self::Both => 'b',
        }
    }

    /// Whether this grants reading.
    pub const fn reads(self) -> bool {
        matches!(self, Self::Read | Self::Both)
    }

    /// Whether this grants writing.
    pub const fn writes(self) -> bool {
        matches!(self, Self::Write | Self::Both)
    }

    fn from_letter(letter: u8) -> Option<Self> {
        Some(match letter {
            b'n' => Self::None,
            b'r' => Self::Read,
            b'w' => Self::Write,
            b'b' => Self::Both,
            _ => return None,
        })
    }
}

/// One entry: a domain and what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    /// The domain this entry is about.
    pub domain: DomainId,
    /// Its access.
    pub access: Access,
}

impl Permission {
    /// Parses `<letter><decimal domid>`, e.g. `r5`.
    pub fn parse(text: &[u8]) -> Result<Self, Error> {
        let (&letter, digits) = text.split_first().ok_or(Error::InvalidArgument)?;
        let access = Access::from_letter(letter).ok_or(Error::InvalidArgument)?;
        let domain = parse_domain_id(digits)?;
        Ok(Self { domain, access })
    }
}

/// What a caller may do with one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rights {
    /// May read the value, list children, get permissions.
    pub read: bool,
    /// May write, create children, remove.
    pub write: bool,
    /// Owns the node (or is privileged): may set permissions.
    pub owner: bool,
}

impl Rights {
    /// Everything: the owner's and the privileged domain's rights.
    pub const ALL: Self = Self {
        read: true,
        write: true,
        owner: true,
    };
}

/// Who is asking: the identity permission checks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling domain.
    pub domain: DomainId,
    /// Dom0 and its in-process services: bypass permissions and quotas.
    pub privileged: bool,
    /// `SET_TARGET`: this caller also acts as the target domain.
    pub target: Option<DomainId>,
}

impl Caller {
    /// The privileged domain (Dom0 and its own services).
    pub const PRIVILEGED: Self = Self {
        domain: DomainId::DOM0,
        privileged: true,
        target: None,
    };

    /// An unprivileged guest with no target.
    pub const fn guest(domain: DomainId) -> Self {
        Self {
            domain,
            privileged: false,
            target: None,
        }
    }

    fn is(&self, domain: DomainId) -> bool {
        domain == self.domain || Some(domain) == self.target
    }
}

/// A node's permission list; never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    entries: Vec<Permission>,
}

impl Permissions {
    /// Owned by `owner`, everyone else gets `others`.
    pub fn new(owner: DomainId, others: Access) -> Self {
        Self {
            entries: alloc::vec![Permission {
                domain: owner,
                access: others,
            }],
        }
    }

    /// From a list; the first entry is the owner. Rejects an empty list and
    /// `DOMID_ANY` as owner (which would make every domain an owner).
    pub fn from_entries(entries: Vec<Permission>) -> Result<Self, Error> {
        match entries.first() {
            Some(owner) if owner.domain != DOMID_ANY => Ok(Self { entries }),
            _ => Err(Error::InvalidArgument),
        }
    }

    /// Adds an entry for one more domain.
    pub fn with(mut self, domain: DomainId, access: Access) -> Self {
        self.entries.push(Permission { domain, access });
        self
    }

    /// Parses the NUL-separated permission strings of a SET_PERMS payload
    /// (each string without its NUL).
    pub fn parse_strings<'a>(strings: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, Error> {
        let entries = strings
            .into_iter()
            .map(Permission::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_entries(entries)
    }

    /// The entries; the first is the owner.
    pub fn entries(&self) -> &[Permission] {
        &self.entries
    }

    /// The owning domain.
    pub fn owner(&self) -> DomainId {
        self.entries
            .first()
            .map_or(DomainId::DOM0, |entry| entry.domain)
    }

    /// The same list with a new owner (keeping the default access).
    pub(crate) fn with_owner(mut self, owner: DomainId) -> Self {
        if let Some(first) = self.entries.first_mut() {
            first.domain = owner;
        }
        self
    }

    /// Drops entries naming `domain`; an owned-by-`domain` list passes to
    /// Dom0. Returns whether anything changed.
    pub(crate) fn forget_domain(&mut self, domain: DomainId) -> bool {
        let before = self.entries.len();
        let mut index = 1;
        self.entries.retain(|entry| {
            let keep = index == 1 || entry.domain != domain;
            index += 1;
            keep
        });
        let mut changed = self.entries.len() != before;
        if let Some(first) = self.entries.first_mut()
            && first.domain == domain
        {
            first.domain = DomainId::DOM0;
            changed = true;
        }
        changed
    }

    /// What `caller` may do (C xenstored's `perm_for_conn`): privileged
    /// callers and owners get everything; otherwise the first later entry
    /// naming the caller (or `DOMID_ANY`) wins; otherwise the default.
    pub fn rights(&self, caller: &Caller) -> Rights {
        let Some((owner, others)) = self.entries.split_first() else {
            return Rights::default();
        };
        if caller.privileged || caller.is(owner.domain) {
            return Rights::ALL;
        }
        let access = others
            .iter()
            .find(|entry| caller.is(entry.domain) || entry.domain == DOMID_ANY)
            .map_or(owner.access, |entry| entry.access);
        Rights {
            read: access.reads(),
            write: access.writes(),
            owner: false,
        }
    }

    /// The GET_PERMS payload: each entry as a string followed by NUL.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut text = String::new();
        for entry in &self.entries {
            // Writing to a String cannot fail.
            let _ = write!(text, "{}{}\0", entry.access.letter(), entry.domain.0);
        }
        text.into_bytes()
    }
}

/// Parses a decimal domain id, 0..=65535 (C xenstored's `parse_domid`).
pub fn parse_domain_id(digits: &[u8]) -> Result<DomainId, Error> {
    let value = parse_decimal(digits, u64::from(u16::MAX))?;
    u16::try_from(value)
        .map(DomainId)
        .map_err(|_| Error::InvalidArgument)
}

/// Parses a non-empty run of ASCII digits no larger than `maximum`.
pub(crate) fn parse_decimal(digits: &[u8], maximum: u64) -> Result<u64, Error> {
    if digits.is_empty() || digits.len() > 20 {
        return Err(Error::InvalidArgument);
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(Error::InvalidArgument);
        }
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or(Error::InvalidArgument)?;
    }
    if value > maximum {
        return Err(Error::InvalidArgument);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: DomainId = DomainId(5);
    const OTHER: DomainId = DomainId(7);

    #[test]
    fn owner_and_default() {
        // The frontend example: "n5", "r0" — owned by dom5, dom0 may read.
        let permissions = Permissions::new(GUEST, Access::None).with(DomainId(0), Access::Read);
        assert_eq!(permissions.rights(&Caller::guest(GUEST)), Rights::ALL);
        assert_eq!(permissions.rights(&Caller::guest(OTHER)), Rights::default());
        assert_eq!(permissions.rights(&Caller::PRIVILEGED), Rights::ALL);
        let reader = Permissions::new(DomainId(0), Access::Read);
        assert!(reader.rights(&Caller::guest(OTHER)).read);
        assert!(!reader.rights(&Caller::guest(OTHER)).write);
    }

    #[test]
    fn explicit_entry_overrides_default() {
        let permissions = Permissions::new(DomainId(0), Access::Read).with(OTHER, Access::None);
        assert!(permissions.rights(&Caller::guest(GUEST)).read);
        assert!(!permissions.rights(&Caller::guest(OTHER)).read);
        let any = Permissions::new(DomainId(0), Access::None).with(DOMID_ANY, Access::Write);
        assert!(any.rights(&Caller::guest(OTHER)).write);
    }

    #[test]
    fn target_acts_as_its_domain() {
        let permissions = Permissions::new(GUEST, Access::None);
        let stubdom = Caller {
            domain: OTHER,
            privileged: false,
            target: Some(GUEST),
        };
        assert_eq!(permissions.rights(&stubdom), Rights::ALL);
    }

    #[test]
    fn parse_and_format() {
        let permissions =
            Permissions::parse_strings([&b"n5"[..], b"r0", b"b65535", b"w12"]).unwrap();
        assert_eq!(permissions.to_wire(), b"n5\0r0\0b65535\0w12\0");
        for bad in [&b""[..], b"x5", b"r", b"r-1", b"r65536", b"r5 ", b"r0x5"] {
            assert_eq!(Permission::parse(bad), Err(Error::InvalidArgument));
        }
        assert!(Permissions::parse_strings([]).is_err());
        assert!(Permissions::parse_strings([&b"r32757"[..]]).is_err());
    }

    #[test]
    fn forgetting_a_domain() {
        let mut permissions = Permissions::new(GUEST, Access::Read).with(OTHER, Access::Both);
        assert!(permissions.forget_domain(OTHER));
        assert_eq!(permissions.entries().len(), 1);
        assert!(permissions.forget_domain(GUEST));
        assert_eq!(permissions.owner(), DomainId::DOM0);
        assert!(!permissions.forget_domain(OTHER));
    }
}
