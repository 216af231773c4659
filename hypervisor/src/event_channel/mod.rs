//! Event channels, 2-level ABI: each domain's port table
//! ([`EventChannels`]), delivery into the guest's `shared_info` and
//! `vcpu_info` through [`EventMemory`], and the `event_channel_op`
//! hypercall. Pure logic: guest memory and other domains come in through
//! traits, and whom to kick comes out as a [`Delivery`] or an [`Effect`].
//! Behaviour follows Xen's `xen/common/event_channel.c` and `event_2l.c`.
//!
//! Where Xen's port validity differs: Xen only knows ports in the buckets
//! it has allocated (64 at a time), so a never-used high port may give
//! `EINVAL` there where it is simply free (status "closed") here. Linux
//! ignores both when it scans with `EVTCHNOP_status`.

mod delivery;
mod hypercall;
mod table;

pub use delivery::{Delivery, EventMemory};
pub use hypercall::{
    Domains, Effect, MAX_ARGUMENT_SIZE, NoOtherDomains, Reply, Request, Response, argument_size,
    event_channel_op, execute, read_poll_ports,
};
pub use table::{ChannelStatus, EventChannels, Limits, Notify, PeerClosed, PortState, Status};
pub use xenolith_abi::event_channel::{Port, VcpuId, Virq, VirqClass};

#[cfg(test)]
mod tests;
