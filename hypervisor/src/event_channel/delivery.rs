//! Delivering events the 2-level way (Xen's `xen/common/event_2l.c`): the
//! pending and mask bitmaps in `shared_info`, the selector and upcall flag
//! in the notify vCPU's `vcpu_info`. Guest memory is reached only through
//! [`EventMemory`], so the rules run on the host against a fake.

use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::{POLL_MAX_PORTS, Port, VcpuId, Virq};

use super::table::EventChannels;

/// The bits of one domain's shared memory that event delivery reads and
/// writes. The hypervisor implements it with locked bit operations on the
/// guest's `shared_info` page and on each vCPU's `vcpu_info` (the slot in
/// `shared_info` for vCPUs below 32, or the one registered with
/// `VCPUOP_register_vcpu_info`); offsets are in
/// [`xenolith_abi::event_channel::layout`]. Each method is one atomic
/// operation: the order in which they are called is the protocol with the
/// guest, which changes these bits concurrently.
pub trait EventMemory {
    /// Sets bit `port` of `evtchn_pending`; returns whether it was set.
    fn test_and_set_pending(&mut self, port: Port) -> bool;
    /// Clears bit `port` of `evtchn_pending`.
    fn clear_pending(&mut self, port: Port);
    /// Bit `port` of `evtchn_pending`.
    fn is_pending(&self, port: Port) -> bool;
    /// Bit `port` of `evtchn_mask`.
    fn is_masked(&self, port: Port) -> bool;
    /// Clears bit `port` of `evtchn_mask`; returns whether it was set.
    fn test_and_clear_mask(&mut self, port: Port) -> bool;
    /// Sets bit `word` of `vcpu`'s `evtchn_pending_sel`; returns whether it
    /// was set.
    fn test_and_set_selector(&mut self, vcpu: VcpuId, word: u32) -> bool;
    /// Sets `vcpu`'s `evtchn_upcall_pending` to 1; returns whether it was
    /// already non-zero.
    fn test_and_set_upcall_pending(&mut self, vcpu: VcpuId) -> bool;
}

/// What the hypervisor must do after an event was raised or unmasked.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Delivery {
    /// The port whose pending bit went from clear to set, masked or not:
    /// wake this domain's vCPUs blocked in `SCHEDOP_poll` on it or on
    /// several ports (Xen's `evtchn_check_pollers`).
    pub newly_pending: Option<Port>,
    /// The vCPU whose `evtchn_upcall_pending` went from 0 to 1: inject the
    /// callback vector (or its per-vCPU upcall vector) and wake it if it is
    /// halted or blocked. A vCPU whose flag was already set has an upcall
    /// outstanding and needs nothing more.
    pub upcall: Option<VcpuId>,
}

impl Delivery {
    /// Nothing to do.
    pub const NONE: Self = Self {
        newly_pending: None,
        upcall: None,
    };

    /// Whether there is nothing to do.
    pub const fn is_none(&self) -> bool {
        self.newly_pending.is_none() && self.upcall.is_none()
    }
}

/// Marks `port` pending and notifies `vcpu` (Xen's `evtchn_2l_set_pending`).
fn set_pending(memory: &mut impl EventMemory, port: Port, vcpu: VcpuId) -> Delivery {
    if memory.test_and_set_pending(port) {
        return Delivery::NONE;
    }
    let upcall = (!memory.is_masked(port)
        && !memory.test_and_set_selector(vcpu, port.word())
        && !memory.test_and_set_upcall_pending(vcpu))
    .then_some(vcpu);
    Delivery {
        newly_pending: Some(port),
        upcall,
    }
}

impl EventChannels {
    /// Raises `port` on its notify vCPU. A port that is out of range, free
    /// or reserved is ignored, as Xen ignores channels that are not usable;
    /// so a raise that lost a race with `close` is harmless.
    pub fn raise(&self, port: Port, memory: &mut impl EventMemory) -> Delivery {
        match self.channel(port) {
            Ok(channel) if channel.state.is_bound() => set_pending(memory, port, channel.notify),
            _ => Delivery::NONE,
        }
    }

    /// Raises `virq` for `vcpu` if the domain bound it (Xen's
    /// `send_guest_vcpu_virq`; for global and domain VIRQs `vcpu` is
    /// ignored and the port's notify vCPU is used, as in
    /// `send_guest_domain_virq`). Unbound VIRQs are dropped.
    pub fn raise_virq(&self, virq: Virq, vcpu: VcpuId, memory: &mut impl EventMemory) -> Delivery {
        match self.virq_port(virq, vcpu) {
            Some(port) => self.raise(port, memory),
            None => Delivery::NONE,
        }
    }

    /// EVTCHNOP_unmask (Xen's `evtchn_2l_unmask`): clears the mask bit and,
    /// if that unmasked a pending event, notifies the port's vCPU. `EINVAL`
    /// only past `max_ports`; free and reserved ports succeed untouched.
    pub fn unmask(&self, port: Port, memory: &mut impl EventMemory) -> Result<Delivery, Errno> {
        let channel = self.channel(port)?;
        if !channel.state.is_bound() {
            return Ok(Delivery::NONE);
        }
        let vcpu = channel.notify;
        let upcall = (memory.test_and_clear_mask(port)
            && memory.is_pending(port)
            && !memory.test_and_set_selector(vcpu, port.word())
            && !memory.test_and_set_upcall_pending(vcpu))
        .then_some(vcpu);
        Ok(Delivery {
            newly_pending: None,
            upcall,
        })
    }

    /// The check `SCHEDOP_poll` makes before blocking (Xen's `do_poll`
    /// loop): whether any of `ports` is pending, masked or not. `EINVAL` for
    /// more than 128 ports, or on reaching a port that is out of range or
    /// not bound before a pending one. The hypervisor also returns at once
    /// when the vCPU's own `evtchn_upcall_pending` is set, and otherwise
    /// blocks until a [`Delivery::newly_pending`] names one of the ports.
    pub fn poll(&self, ports: &[Port], memory: &impl EventMemory) -> Result<bool, Errno> {
        if ports.len() > POLL_MAX_PORTS as usize {
            return Err(Errno::EINVAL);
        }
        for &port in ports {
            if !self.channel(port)?.state.is_bound() {
                return Err(Errno::EINVAL);
            }
            if memory.is_pending(port) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
