//! Dom0's event channels: its shared_info page and the VIRQ_DOM_EXC port
//! through which the hypervisor says a guest stopped, so Dom0 sleeps in
//! SCHEDOP_poll instead of asking over and over.

use alloc::alloc::{Layout, alloc_zeroed};
use log::warn;
use xen_guest::event_channel::bind_virq;
use xen_guest::shared::{SharedInfo, map_shared_info};
use xen_guest::types::{GuestFrame, Port, SystemTime, VcpuId, Virq};
use xen_guest::{FrameSlot, sched};

const PAGE: usize = 4096;

/// Where Dom0 hears that domains stopped.
pub struct DomainEvents {
    shared: SharedInfo,
    port: Port,
}

impl DomainEvents {
    /// Maps shared_info over a fresh heap page and binds VIRQ_DOM_EXC.
    pub fn new() -> Option<Self> {
        let layout = Layout::from_size_align(PAGE, PAGE).ok()?;
        // SAFETY: a non-zero-sized layout; the page is leaked on purpose:
        // from now on it is the shared_info frame, owned by the hypervisor.
        let page = unsafe { alloc_zeroed(layout) } as usize;
        if page == 0 {
            return None;
        }
        // Dom0 is identity-mapped: the page's address is its frame.
        // SAFETY: the page was just allocated, never referenced, and is
        // handed to the hypervisor for good (Dom0 maps guest-physical =
        // virtual in its first 4 GiB).
        let slot = unsafe { FrameSlot::new(GuestFrame(page as u64 / PAGE as u64), page) }?;
        let shared = match map_shared_info(slot) {
            Ok(shared) => shared,
            Err(error) => {
                warn!("dom0: mapping shared_info failed: {error:?}");
                return None;
            }
        };
        let port = match bind_virq(Virq::DOM_EXC, VcpuId(0)) {
            Ok(port) => port,
            Err(error) => {
                warn!("dom0: binding VIRQ_DOM_EXC failed: {error:?}");
                return None;
            }
        };
        Some(Self { shared, port })
    }

    /// Sleeps until a domain stopped since the last call (returns at once
    /// if one did).
    pub fn wait(&self) {
        if !self.shared.clear_pending(self.port) {
            let _ = sched::poll(&[self.port], SystemTime(0));
            self.shared.clear_pending(self.port);
        }
    }
}
