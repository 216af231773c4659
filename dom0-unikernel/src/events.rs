//! Dom0's event channels: its shared_info page, the VIRQs through which
//! the hypervisor says a guest stopped (VIRQ_DOM_EXC) and that the
//! operator typed (VIRQ_CONSOLE), and waiting on those and the guests'
//! ring ports in SCHEDOP_poll instead of asking over and over.

use alloc::alloc::{Layout, alloc_zeroed};
use alloc::vec::Vec;
use log::warn;
use xen_guest::event_channel::bind_virq;
use xen_guest::sched::POLL_PORTS_MAX;
use xen_guest::shared::{SharedInfo, map_shared_info};
use xen_guest::types::{GuestFrame, Port, SystemTime, VcpuId, Virq};
use xen_guest::{FrameSlot, sched};

const PAGE: usize = 4096;

/// Where Dom0 hears about domains and the operator.
pub struct EventHub {
    shared: SharedInfo,
    /// VIRQ_DOM_EXC: a domain shut down or crashed.
    pub domain_exception: Port,
    /// VIRQ_CONSOLE: serial input waits.
    pub console_input: Option<Port>,
}

impl EventHub {
    /// Maps shared_info over a fresh heap page and binds the VIRQs.
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
        let domain_exception = match bind_virq(Virq::DOM_EXC, VcpuId(0)) {
            Ok(port) => port,
            Err(error) => {
                warn!("dom0: binding VIRQ_DOM_EXC failed: {error:?}");
                return None;
            }
        };
        let console_input = bind_virq(Virq::CONSOLE, VcpuId(0))
            .inspect_err(|error| warn!("dom0: binding VIRQ_CONSOLE failed: {error:?}"))
            .ok();
        Some(Self {
            shared,
            domain_exception,
            console_input,
        })
    }

    /// Whether `port` fired since the last call (clears it).
    pub fn take(&self, port: Port) -> bool {
        self.shared.clear_pending(port)
    }

    /// Sleeps until a domain stopped since the last call (returns at once
    /// if one did).
    pub fn wait_domain_exception(&self) {
        self.wait(&[self.domain_exception], None);
        self.take(self.domain_exception);
    }

    /// Sleeps until one of `ports`, or a VIRQ, is pending (returns at once
    /// if one is), or `timeout_ns` passed (`None`: no timeout). Returns
    /// whether something is pending; pending bits stay set for
    /// [`EventHub::take`].
    pub fn wait(&self, ports: &[Port], timeout_ns: Option<u64>) -> bool {
        let mut all: Vec<Port> = Vec::with_capacity(ports.len() + 2);
        all.push(self.domain_exception);
        all.extend(self.console_input);
        all.extend_from_slice(ports);
        all.truncate(POLL_PORTS_MAX);
        let pending = || all.iter().any(|&port| self.shared.is_pending(port));
        if pending() {
            return true;
        }
        // A zero deadline waits forever.
        let now = self.shared.vcpu_info(VcpuId(0)).and_then(|vcpu| vcpu.now());
        let deadline = match (timeout_ns, now) {
            (Some(timeout), Some(now)) => {
                SystemTime(now.nanoseconds().saturating_add(timeout).max(1))
            }
            _ => SystemTime(0),
        };
        let _ = sched::poll(&all, deadline);
        pending()
    }
}
