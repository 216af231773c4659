//! What xenstored knows about each introduced domain: where its ring is,
//! which connection serves it, its quotas, and whether `@releaseDomain`
//! has fired for its shutdown.

use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;

use crate::config::Quotas;
use crate::connection::ConnectionId;

/// A guest frame number (the `<gfn>` of INTRODUCE): the domain's ring page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestFrame(pub u64);

/// Whether a domain id names a real, non-privileged domain that can be
/// introduced: not Dom0, not `DOMID_FIRST_RESERVED` and above.
pub fn is_introducible(domain: DomainId) -> bool {
    domain != DomainId::DOM0 && domain < DomainId::FIRST_RESERVED
}

/// One introduced domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain.
    pub domain: DomainId,
    /// The connection serving its ring.
    pub connection: ConnectionId,
    /// Its ring page.
    pub frame: GuestFrame,
    /// Its xenstore event channel (in the guest).
    pub port: Port,
    /// Its quotas.
    pub quotas: Quotas,
    /// `@releaseDomain` fired for its shutdown and RESUME has not re-armed it.
    pub shut_down: bool,
}
