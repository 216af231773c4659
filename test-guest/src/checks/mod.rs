//! The table of checks and the state they share: what earlier checks set
//! up (shared_info, the registered vcpu_info, the grant frame, the timer
//! port) and bounded ways to wait for an event. The ring and console-input
//! checks run last, and only when the command line asks for them.

mod cpu;
mod events;
mod frontend;
mod grants;
mod hostile;
mod hostile_blk;
mod hostile_net;
mod hvm;
mod peer;
mod physmap;
mod platform;
mod rings;
mod vcpu;

pub use cpu::on_nmi;
use xen_guest::grant_table::GrantTableFrame;
use xen_guest::shared::{SharedInfo, VcpuInfo};
use xen_guest::{DomainId, FrameSlot, Port, SystemTime, event_channel, sched};

use crate::memory::{self, Pages};
use crate::options::{Options, RingAbuse, Role};
use crate::report::{Detail, Outcome, detail};
use crate::start_info::StartInfo;

/// One millisecond in system-time units.
pub const MILLISECOND: u64 = 1_000_000;
/// How long one poll of a wait loop may sleep.
const POLL_SLICE: u64 = 10 * MILLISECOND;
/// Rounds any wait loop gives up after, even if the clock is stuck.
const WAIT_ROUNDS_MAX: u32 = 200_000;
/// Yields a pause makes at most when it has no port to poll.
const PAUSE_YIELDS_MAX: u32 = 10_000;
/// Holes (unpopulated guest-physical pages) the checks map grants at.
pub const HOLES: usize = 4;
/// The hole the peer's grant is mapped at.
pub const HOLE_PEER: usize = 0;
/// The hole our own grant is mapped at.
pub const HOLE_SELF: usize = 1;
/// The hole hostile requests name (nothing should ever appear there).
pub const HOLE_HOSTILE: usize = 2;
/// Where the holes start unless RAM is there: 2 GiB, above any small
/// guest's RAM and below the 4 GiB identity map.
const HOLE_BASE: u64 = 0x8000_0000;
/// The highest hole window start tried (stays clear of the special pages
/// at 0xFEFF8000 and of the 4 GiB end).
const HOLE_LIMIT: u64 = 0xF000_0000;

/// When a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    Role(Role),
    /// With `rings=` of either kind.
    AnyRingAbuse,
    /// With `rings=` of this kind.
    RingAbuse(RingAbuse),
    /// With `await-input`.
    AwaitInput,
    /// With `hostile-vbd`.
    HostileVbd,
    /// With `hostile-vif`.
    HostileVif,
}

/// A named check.
pub struct Check {
    pub name: &'static str,
    pub run: fn(&mut Context) -> Outcome,
    pub when: When,
}

const fn always(name: &'static str, run: fn(&mut Context) -> Outcome) -> Check {
    Check {
        name,
        run,
        when: When::Always,
    }
}

/// Every check, in the order they run: later ones use what earlier ones
/// set up, and the hostile ones come last.
pub const CHECKS: &[Check] = &[
    always("cmdline", platform::command_line),
    always("start-info", platform::start_info),
    always("cpuid-signature", platform::cpuid_signature),
    always("cpuid-version", platform::cpuid_version),
    always("cpuid-vcpu-domain", platform::cpuid_vcpu_and_domain),
    always("xen-version", platform::xen_version),
    always("xen-extraversion", platform::xen_extraversion),
    always("xen-features", platform::xen_features),
    always("unknown-hypercall", platform::unknown_hypercall),
    always("vm-assist-refused", platform::vm_assist_refused),
    always("memory-map", physmap::memory_map),
    always("shared-info-map", physmap::shared_info_map),
    always("shared-info-wallclock", physmap::shared_info_wallclock),
    always("shared-info-time", physmap::shared_info_time),
    always("grant-table-map", physmap::grant_table_map),
    always("reservation", physmap::reservation),
    always("balloon", physmap::balloon),
    always("runstate-area", vcpu::runstate_area),
    always("time-area", vcpu::time_area),
    always("vcpu-info-register", vcpu::register_vcpu_info),
    always("sched-yield", vcpu::sched_yield),
    always("timer-singleshot", vcpu::timer_singleshot),
    always("timer-stop-singleshot", vcpu::timer_stop_singleshot),
    always("timer-periodic", vcpu::timer_periodic),
    always("timer-future-flag", vcpu::timer_future_flag),
    always("sched-poll-timeout", vcpu::sched_poll_timeout),
    always("evtchn-init-control", events::init_control),
    always("evtchn-unbound", events::unbound),
    always("evtchn-loopback", events::loopback),
    always("evtchn-ipi", events::ipi),
    always("evtchn-virq", events::virq),
    always("evtchn-unmask", events::unmask),
    always("evtchn-close", events::close),
    always("gnttab-query-size", grants::query_size),
    always("gnttab-version", grants::version),
    always("gnttab-setup-table", grants::setup_table),
    always("gnttab-copy", grants::copy_local),
    always("gnttab-self-map", grants::self_map),
    always("gnttab-copy-gref", grants::copy_from_grant),
    Check {
        name: "peer-offer",
        run: peer::offer,
        when: When::Role(Role::Offer),
    },
    Check {
        name: "peer-accept",
        run: peer::accept,
        when: When::Role(Role::Accept),
    },
    always("hvm-callback-irq", hvm::callback_irq),
    always("tsc-aux", cpu::tsc_aux),
    always("nmi-self", cpu::nmi_self),
    always("hvm-store-pfn", hvm::store_pfn),
    always("hvm-param-range", hvm::param_range),
    always("hvm-upcall-vector", hvm::upcall_vector),
    always("hostile-ports", hostile::ports),
    always("hostile-bind", hostile::bind),
    always("hostile-grant-ref", hostile::grant_ref),
    always("hostile-grant-domain", hostile::grant_domain),
    always("hostile-grant-copy", hostile::grant_copy),
    always("hostile-grant-handle", hostile::grant_handle),
    always("hostile-grant-flags", hostile::grant_flags),
    always("hostile-physmap", hostile::physmap),
    always("hostile-physmap-scatter", hostile::physmap_scatter),
    always("hostile-bad-pointers", hostile::bad_pointers),
    always("unaligned-pointers", hostile::unaligned_pointers),
    always("hostile-time-area", hostile::bad_time_area),
    always("hostile-console-count", hostile::console_count),
    always("hostile-populate-huge", hostile::populate_huge),
    always("hostile-foreign-domain", hostile::foreign_domain),
    always("hostile-vcpu", hostile::vcpu),
    always("hostile-sched-command", hostile::sched_command),
    always("hostile-shutdown-reason", hostile::shutdown_reason),
    Check {
        name: "hostile-vbd-handshake",
        run: hostile_blk::handshake,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-connect",
        run: hostile_blk::connect,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-valid-before",
        run: hostile_blk::valid_before,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-malformed",
        run: hostile_blk::malformed,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-malformed-indirect",
        run: hostile_blk::malformed_indirect,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-valid-after",
        run: hostile_blk::valid_after,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vbd-ring-cut-off",
        run: hostile_blk::ring_cut_off,
        when: When::HostileVbd,
    },
    Check {
        name: "hostile-vif-handshake",
        run: hostile_net::handshake,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-connect",
        run: hostile_net::connect,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-valid-before",
        run: hostile_net::valid_before,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-malformed",
        run: hostile_net::malformed,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-valid-after",
        run: hostile_net::valid_after,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-rx-bad-page",
        run: hostile_net::rx_bad_page,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-flood-cut-off",
        run: hostile_net::flood_cut_off,
        when: When::HostileVif,
    },
    Check {
        name: "hostile-vif-reconnect",
        run: hostile_net::reconnect,
        when: When::HostileVif,
    },
    Check {
        name: "rings-store-read",
        run: rings::store_read,
        when: When::AnyRingAbuse,
    },
    Check {
        name: "rings-console-line",
        run: rings::console_line,
        when: When::AnyRingAbuse,
    },
    Check {
        name: "rings-console-indices",
        run: rings::console_indices,
        when: When::AnyRingAbuse,
    },
    Check {
        name: "rings-store-indices",
        run: rings::store_indices,
        when: When::RingAbuse(RingAbuse::Indices),
    },
    Check {
        name: "rings-store-flood",
        run: rings::store_flood,
        when: When::RingAbuse(RingAbuse::Protocol),
    },
    Check {
        name: "rings-store-oversized",
        run: rings::store_oversized,
        when: When::RingAbuse(RingAbuse::Protocol),
    },
    Check {
        name: "rings-store-not-served",
        run: rings::store_not_served,
        when: When::AnyRingAbuse,
    },
    Check {
        name: "console-input",
        run: rings::console_input,
        when: When::AwaitInput,
    },
];

impl Check {
    /// Whether this check runs with these options.
    pub fn applies(&self, options: &Options) -> bool {
        match self.when {
            When::Always => true,
            When::Role(role) => options.role == Some(role),
            When::AnyRingAbuse => options.rings.is_some(),
            When::RingAbuse(abuse) => options.rings == Some(abuse),
            When::AwaitInput => options.await_input,
            When::HostileVbd => options.hostile_vbd,
            When::HostileVif => options.hostile_vif,
        }
    }
}

/// What the checks share.
pub struct Context {
    pub start: StartInfo,
    pub options: Options,
    pub pages: Option<Pages>,
    pub holes: Option<[FrameSlot; HOLES]>,
    pub leaves: Option<xen_guest::cpuid::XenLeaves>,
    /// Our domain id, from CPUID base+4.
    pub domain: Option<DomainId>,
    pub shared: Option<SharedInfo>,
    /// Where our events and clock are: the registered vcpu_info, or
    /// shared_info's slot 0 before registration.
    pub vcpu_info: Option<VcpuInfo>,
    pub grants: Option<GrantTableFrame>,
    pub timer_port: Option<Port>,
    pub ipi_port: Option<Port>,
    /// The vbd `hostile-vbd` connected.
    pub block: Option<hostile_blk::BlockFront>,
    /// The vif `hostile-vif` connected.
    pub net: Option<hostile_net::NetFront>,
}

impl Context {
    pub fn new(start: StartInfo, options: Options) -> Self {
        let holes = hole_window(&start).and_then(|base| {
            let slot = |index: u64| memory::hole_slot(base + index * 4096);
            Some([slot(0)?, slot(1)?, slot(2)?, slot(3)?])
        });
        Self {
            start,
            options,
            pages: memory::pages(),
            holes,
            leaves: None,
            domain: None,
            shared: None,
            vcpu_info: None,
            grants: None,
            timer_port: None,
            ipi_port: None,
            block: None,
            net: None,
        }
    }

    pub fn pages(&self) -> Result<Pages, Detail> {
        self.pages
            .ok_or_else(|| detail(format_args!("image pages are not page-aligned")))
    }

    pub fn hole(&self, index: usize) -> Result<FrameSlot, Detail> {
        self.holes
            .and_then(|holes| holes.get(index).copied())
            .ok_or_else(|| detail(format_args!("no free guest-physical window below 4 GiB")))
    }

    pub fn domain(&self) -> Result<DomainId, Detail> {
        self.domain
            .ok_or_else(|| detail(format_args!("own domain id unknown (CPUID base+4)")))
    }

    pub fn shared(&self) -> Result<SharedInfo, Detail> {
        self.shared
            .ok_or_else(|| detail(format_args!("shared_info is not mapped")))
    }

    pub fn vcpu_info(&self) -> Result<VcpuInfo, Detail> {
        self.vcpu_info
            .ok_or_else(|| detail(format_args!("no vcpu_info (shared_info is not mapped)")))
    }

    pub fn grants(&self) -> Result<GrantTableFrame, Detail> {
        self.grants
            .ok_or_else(|| detail(format_args!("grant-table frame 0 is not mapped")))
    }

    /// System time now, from our vcpu_info's pvclock.
    pub fn now(&self) -> Option<SystemTime> {
        self.vcpu_info?.now()
    }

    pub fn clock(&self) -> Result<SystemTime, Detail> {
        self.now()
            .ok_or_else(|| detail(format_args!("no consistent pvclock record")))
    }

    /// The VIRQ_TIMER port of vCPU 0, bound on first use.
    pub fn timer_port(&mut self) -> Result<Port, Detail> {
        if let Some(port) = self.timer_port {
            return Ok(port);
        }
        let port = crate::report::ok(
            "bind_virq(TIMER, vcpu 0)",
            event_channel::bind_virq(xen_guest::Virq::TIMER, xen_guest::VcpuId::BOOT),
        )?;
        self.timer_port = Some(port);
        Ok(port)
    }

    /// Waits until `port` is pending, at most `timeout` ns (and at most
    /// [`WAIT_ROUNDS_MAX`] polls); returns whether it is pending.
    pub fn wait_for_pending(&self, port: Port, timeout: u64) -> bool {
        let Some(shared) = self.shared else {
            return false;
        };
        let start = self.now();
        for _ in 0..WAIT_ROUNDS_MAX {
            if shared.is_pending(port) {
                return true;
            }
            match (start, self.now()) {
                (Some(start), Some(now)) => {
                    if now.since(start) >= timeout {
                        break;
                    }
                    let until = now.after(POLL_SLICE).min(start.after(timeout));
                    if sched::poll(&[port], until).is_err() {
                        let _ = sched::yield_now();
                    }
                }
                _ => {
                    let _ = sched::yield_now();
                }
            }
        }
        shared.is_pending(port)
    }

    /// Sleeps about `nanoseconds` (polling `port`, which may wake it
    /// early, or yielding), bounded in rounds if the clock is stuck.
    pub fn pause(&self, port: Option<Port>, nanoseconds: u64) {
        let Some(start) = self.now() else {
            let _ = sched::yield_now();
            return;
        };
        let until = start.after(nanoseconds);
        if let Some(port) = port
            && sched::poll(&[port], until).is_ok()
        {
            return;
        }
        for _ in 0..PAUSE_YIELDS_MAX {
            let _ = sched::yield_now();
            if self.now().is_none_or(|now| now >= until) {
                break;
            }
        }
    }

    /// Tries `attempt` until it succeeds or `timeout` ns pass (bounded in
    /// rounds too), pausing on `port` between tries; the last result.
    pub fn retry<T, E>(
        &self,
        timeout: u64,
        port: Option<Port>,
        mut attempt: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let start = self.now();
        let mut rounds = 0;
        loop {
            let result = attempt();
            rounds += 1;
            let out_of_time = match (start, self.now()) {
                (Some(start), Some(now)) => now.since(start) >= timeout,
                _ => false,
            };
            if result.is_ok() || out_of_time || rounds >= WAIT_ROUNDS_MAX {
                return result;
            }
            self.pause(port, POLL_SLICE);
        }
    }
}

/// The first 16 KiB window at or above [`HOLE_BASE`] that no memory-map
/// entry touches.
fn hole_window(start: &StartInfo) -> Option<u64> {
    let size = HOLES as u64 * 4096;
    let mut base = HOLE_BASE;
    while base <= HOLE_LIMIT {
        if !start.overlaps(base, base + size) {
            return Some(base);
        }
        base += 0x1000_0000;
    }
    None
}
