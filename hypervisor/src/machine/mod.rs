//! The running machine: every domain with its nested tables and vCPUs, the
//! run queue, and the loop that runs a vCPU and answers its VM exits —
//! CPUID, MSRs, ports, halts, hypercalls, faults — and Dom0's control
//! requests.

mod console;
mod grants;
mod guest_memory;
mod lapic;
mod services;
mod shared;
mod vcpu;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hypervisor::boot::cmdline::{CrashAction, Options};
use hypervisor::console::input::{InputBuffer, InputPolling};
use hypervisor::console::{LINES_PER_SECOND, LineBuffer, RateLimiter};
use hypervisor::control::{self, Command};
use hypervisor::domain::{
    Domain, DomainFrames, DomainState, DomainTable, GuestKind, GuestRam, Wait,
};
use hypervisor::event_channel::Virq;
use hypervisor::hvm_platform::{HvmPlatform, PortWrite};
use hypervisor::hypercall::{self, Caller, GuestAccess, Outcome};
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::guest_walk::GuestPhysicalMemory;
use hypervisor::memory::paging::{NestedPageTables, PageFlags, PageSize};
use hypervisor::memory::{GuestPhysAddr, GuestVirtAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use hypervisor::scheduler::{Decision, PhysicalCpu, Scheduler, SchedulerConfig};
use hypervisor::svm::exit::{IoAccess, VmExit};
use hypervisor::svm::permissions::{IoPermissionMap, MsrPermissionMap, is_pci_config_address};
use hypervisor::svm::vmcb::{Event, save};
use hypervisor::time::{SystemClock, SystemTime, Wallclock};
use hypervisor::vcpu::cpuid::{CpuidContext, guest_cpuid};
use hypervisor::vcpu::msr::{self, MsrOutcome};
use log::{error, info, warn};
use xenolith_abi::console_io::CONSOLEIO_READ;
use xenolith_abi::control as control_abi;
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::hypercall::{HypercallArgs, HypercallNumber};
use xenolith_abi::sched::ShutdownReason;

use crate::dom0_loader::Dom0;
use crate::hw::memory::{self as physical, ChargedTableFrames, TableFrames};
use crate::hw::power::{self, StopReason};
use crate::logger;
use console::DomainConsole;
use guest_memory::{GuestView, IdentityScrub, RamAccess};
use vcpu::{RunState, SharedMaps, Vcpu, allocate_zeroed};

/// Ports the hypervisor keeps from Dom0: COM1 (its console), the 0xe9
/// debug port (guest console), isa-debug-exit, the reset register, the
/// legacy PIC and PIT (masked and used for calibration).
const HYPERVISOR_PORTS: &[core::ops::RangeInclusive<u16>] = &[
    0x3f8..=0x3ff,
    0xe9..=0xe9,
    0xf4..=0xf7,
    0xcf9..=0xcf9,
    0x20..=0x21,
    0xa0..=0xa1,
    0x40..=0x43,
];

/// Extra pages a guest may hold beyond its RAM (grant and shared frames).
const PAGE_SLACK: u64 = 128;
/// How long a vCPU runs before the scheduler is asked again, when it
/// does not say.
const TIME_SLICE_NS: u64 = 10_000_000;
/// Scheduling weight of every vCPU (Xen's default).
const DEFAULT_WEIGHT: u16 = 256;

/// A domain's hardware side.
struct GuestHardware {
    nested: NestedPageTables,
    vcpus: Vec<Vcpu>,
    console: LineBuffer,
    /// Keeps a guest from flooding the serial console.
    console_limit: RateLimiter,
    /// An HVM guest's emulated platform (PCI configuration, Xen's
    /// platform ports); `None` for PVH guests and Dom0.
    platform: Option<HvmPlatform>,
}

/// Which vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct VcpuRef {
    domain: DomainId,
    index: usize,
}

/// What the loop does after an exit.
enum Next {
    /// Run the same vCPU again.
    Resume,
    /// Give the CPU to the next runnable vCPU.
    Switch,
}

/// The whole machine.
pub struct Machine<'a> {
    frames: FrameAllocator,
    domains: DomainTable,
    hardware: BTreeMap<DomainId, GuestHardware>,
    scheduler: Scheduler<VcpuRef>,
    host_state: HostPhysAddr,
    guest_maps: SharedMaps,
    tsc_khz: u32,
    total_pages: u64,
    /// Xen system time: nanoseconds since hypervisor entry.
    clock: SystemClock,
    /// UTC at system time zero.
    wallclock: Wallclock,
    /// When the running vCPU's time slice ends (TSC).
    slice_end: u64,
    /// Grant tables of destroyed domains that others still map.
    orphan_grant_tables: Vec<hypervisor::grant_table::GrantTable>,
    /// The vCPU whose FPU registers are loaded.
    fpu_owner: Option<VcpuRef>,
    /// The vCPU that last ran under each ASID: a domain's vCPUs share
    /// one (and domains share them beyond 14), so the TLB is flushed when
    /// another vCPU takes an ASID over.
    asid_users: BTreeMap<u32, VcpuRef>,
    crash_action: CrashAction,
    hypervisor_cmdline: &'a str,
    /// Bytes typed on the serial line, waiting for Dom0.
    console_input: InputBuffer,
    /// When the serial receiver is next looked at (while Dom0 listens).
    input_polling: InputPolling,
}

impl<'a> Machine<'a> {
    /// Sets SVM up and makes Dom0 the first runnable vCPU.
    pub fn new(
        mut frames: FrameAllocator,
        dom0: Dom0,
        options: &Options,
        hypervisor_cmdline: &'a str,
    ) -> Self {
        let host_save = allocate_zeroed(&mut frames, PAGE_SIZE);
        let host_state = allocate_zeroed(&mut frames, PAGE_SIZE);
        let dom0_io = allocate_zeroed(&mut frames, 3 * PAGE_SIZE);
        let guest_io = allocate_zeroed(&mut frames, 3 * PAGE_SIZE);
        let msr_frames = allocate_zeroed(&mut frames, 2 * PAGE_SIZE);
        // SAFETY: each range was just allocated and zeroed for this use and
        // is large and aligned enough for its type; SVM gets its own frame.
        unsafe {
            crate::hw::svm::enable(host_save.start);
            let dom0_map = physical::object::<IoPermissionMap>(dom0_io.start);
            *dom0_map = IoPermissionMap::pass_through();
            for ports in HYPERVISOR_PORTS {
                dom0_map.intercept(ports.clone());
            }
            let guest_map = physical::object::<IoPermissionMap>(guest_io.start);
            *guest_map = IoPermissionMap::pass_through();
            guest_map.intercept(0..=0xffff);
            let msr_map = physical::object::<MsrPermissionMap>(msr_frames.start);
            *msr_map = MsrPermissionMap::intercept_all();
            for &index in msr::PASS_THROUGH {
                msr_map.pass_through(index);
            }
        }
        let dom0_maps = SharedMaps {
            io: dom0_io.start,
            msr: msr_frames.start,
        };
        let guest_maps = SharedMaps {
            io: guest_io.start,
            msr: msr_frames.start,
        };

        let tsc_hz = u64::from(logger::tsc_khz()) * 1000;
        let clock = SystemClock::new(tsc_hz, baremetal::entry::boot_tsc()).unwrap_or_else(|_| {
            crate::fatal(format_args!("cannot derive a time scale from the TSC"))
        });
        let utc = crate::hw::rtc::read_unix_seconds().unwrap_or(0);
        let wallclock =
            Wallclock::from_utc(utc, 0, clock.now(baremetal::cpu::rdtsc())).unwrap_or(Wallclock {
                seconds: utc,
                nanoseconds: 0,
            });
        let mut domains = DomainTable::new();
        let shared_info = allocate_zeroed(&mut frames, PAGE_SIZE);
        let dom0_frames = DomainFrames {
            shared_info: shared_info.start,
            grant_table: allocate_zeroed(&mut frames, PAGE_SIZE).start,
        };
        let mut dom0_domain = Domain::new(
            DomainId::DOM0,
            true,
            GuestKind::Pvh,
            1,
            dom0.ram.len() / PAGE_SIZE,
            dom0_frames,
        )
        .unwrap_or_else(|error| crate::fatal(format_args!("Dom0: {error}")));
        dom0_domain.state = DomainState::Running;
        if dom0_domain
            .ram
            .add(dom0.ram.start.0 / PAGE_SIZE, dom0.ram)
            .is_err()
        {
            crate::fatal(format_args!("Dom0's RAM map is invalid"));
        }
        domains.insert_dom0(dom0_domain);
        // Dom0's TSC counts from hypervisor entry, so it can time its boot.
        let tsc_offset = baremetal::entry::boot_tsc().wrapping_neg();
        let mut vcpu = Vcpu::new(&mut frames, dom0.nested.root(), dom0_maps, tsc_offset, 1);
        vcpu.reset_to_pvh_entry(dom0.entry, dom0.start_info.0);
        let mut hardware = BTreeMap::new();
        hardware.insert(
            DomainId::DOM0,
            GuestHardware {
                nested: dom0.nested,
                vcpus: alloc::vec![vcpu],
                console: LineBuffer::new(),
                console_limit: RateLimiter::new(),
                platform: None,
            },
        );
        let total_pages = (frames.free_bytes() + dom0.ram.len()) / PAGE_SIZE;
        let max_vcpus =
            (hypervisor::domain::MAX_DOMAINS + 1) * hypervisor::domain::MAX_VCPUS as usize;
        let mut scheduler = Scheduler::new(1, max_vcpus, SchedulerConfig::default())
            .unwrap_or_else(|_| crate::fatal(format_args!("scheduler configuration refused")));
        let now = clock.now(baremetal::cpu::rdtsc());
        if scheduler
            .add(
                VcpuRef {
                    domain: DomainId::DOM0,
                    index: 0,
                },
                DEFAULT_WEIGHT,
                None,
                now,
            )
            .is_err()
        {
            crate::fatal(format_args!("cannot schedule Dom0"));
        }
        let machine = Self {
            frames,
            domains,
            hardware,
            scheduler,
            host_state: host_state.start,
            guest_maps,
            tsc_khz: logger::tsc_khz(),
            total_pages,
            crash_action: options.dom0_crash,
            hypervisor_cmdline,
            clock,
            wallclock,
            slice_end: 0,
            orphan_grant_tables: Vec::new(),
            fpu_owner: None,
            asid_users: BTreeMap::new(),
            console_input: InputBuffer::new(),
            input_polling: InputPolling::new(),
        };
        machine.publish_wallclock(shared_info.start);
        machine
    }

    /// Free frames right now.
    pub fn frames(&self) -> &FrameAllocator {
        &self.frames
    }

    /// Runs vCPUs for good: the scheduler picks, the vCPU runs until an
    /// exit, its time is accounted, and again.
    pub fn run(mut self) -> ! {
        loop {
            // A device interrupt wakes Dom0 if it sleeps.
            if crate::hw::device_interrupts::any_pending() {
                self.wake(VcpuRef {
                    domain: DomainId::DOM0,
                    index: 0,
                });
            }
            let next_deadline = match (self.run_timers(), self.poll_console_input()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let now = self.now();
            let decision = self
                .scheduler
                .pick(PhysicalCpu(0), now)
                .unwrap_or(Decision {
                    next: None,
                    run_for_ns: None,
                });
            let Some(current) = decision.next else {
                // Nothing runnable: sleep until the next timer, a capped
                // vCPU's new budget, or any interrupt.
                let budget = decision
                    .run_for_ns
                    .map(|ns| SystemTime(now.0.saturating_add(ns)));
                let wake_at = match (next_deadline, budget) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.arm_timer(wake_at, None);
                idle();
                continue;
            };
            let slice_ns = decision.run_for_ns.unwrap_or(TIME_SLICE_NS);
            self.slice_end =
                baremetal::cpu::rdtsc().wrapping_add(self.clock.ticks_for_ns(slice_ns));
            self.arm_timer(next_deadline, Some(self.slice_end));
            self.publish_time(current);
            if self.fpu_owner != Some(current) {
                self.publish_runstate(current);
            }
            self.switch_fpu(current);
            let upcall = self
                .upcall_pending(current)
                .then(|| self.upcall_vector(current))
                .flatten();
            // Dom0 also gets its devices' interrupts, one per entry, after
            // any event-channel upcall.
            let device_vector = match (current.domain, upcall) {
                (DomainId::DOM0, None) => crate::hw::device_interrupts::take_highest(),
                _ => None,
            };
            self.nmi_offer(current);
            // A guest's local-APIC interrupt, when no upcall is offered.
            let lapic_vector = if upcall.is_none() {
                self.lapic_offer(current)
            } else {
                None
            };
            let host_state = self.host_state;
            let Some(vcpu) = self
                .hardware
                .get_mut(&current.domain)
                .and_then(|hardware| hardware.vcpus.get_mut(current.index))
            else {
                let _ = self.scheduler.remove(current, now);
                continue;
            };
            vcpu.set_virtual_interrupt(upcall.or(device_vector).or(lapic_vector));
            let asid = vcpu
                .vmcb
                .read_u32(hypervisor::svm::vmcb::control::GUEST_ASID);
            if self.asid_users.insert(asid, current) != Some(current) {
                vcpu.vmcb.write_u8(
                    hypervisor::svm::vmcb::control::TLB_CONTROL,
                    hypervisor::svm::vmcb::TLB_FLUSH_ALL,
                );
            }
            let started = baremetal::cpu::rdtsc();
            vcpu.run(host_state);
            if let Some(vector) = device_vector
                && vcpu.virtual_interrupt_waiting()
            {
                // Not taken yet (interrupts off): offer it again next time.
                crate::hw::device_interrupts::record(vector);
            }
            let exit = VmExit::decode(
                vcpu.vmcb
                    .read_u64(hypervisor::svm::vmcb::control::EXIT_CODE),
                vcpu.vmcb
                    .read_u64(hypervisor::svm::vmcb::control::EXIT_INFO1),
                vcpu.vmcb
                    .read_u64(hypervisor::svm::vmcb::control::EXIT_INFO2),
            );
            let lapic_taken = lapic_vector.is_some() && !vcpu.virtual_interrupt_waiting();
            let ran = baremetal::cpu::rdtsc().wrapping_sub(started);
            if lapic_taken {
                self.lapic_delivered(current);
            }
            if let Ok(entry) = self.domains.get_mut(current.domain) {
                entry.cpu_ticks = entry.cpu_ticks.wrapping_add(ran);
            }
            log::trace!("d{}v{} exit {exit:?}", current.domain.0, current.index);
            let next = self.handle(current, exit);
            let ran_ns = self
                .clock
                .now(baremetal::cpu::rdtsc())
                .0
                .saturating_sub(now.0);
            let _ = self.scheduler.account(current, ran_ns, self.now());
            // The scheduler is asked again after every exit; a vCPU that
            // gave up the CPU yields to its equals first.
            if let Next::Switch = next {
                self.requeue(current);
            }
        }
    }

    /// Whether none of `domain`'s vCPUs can run again by itself: each
    /// halted with interrupts off or waits for a start-up IPI.
    fn all_vcpus_down(&self, domain: DomainId) -> bool {
        self.hardware
            .get(&domain)
            .is_some_and(|hardware| vcpu::all_down(hardware.vcpus.iter().map(|vcpu| vcpu.state)))
    }

    fn vcpu_mut(&mut self, which: VcpuRef) -> Option<&mut Vcpu> {
        self.hardware
            .get_mut(&which.domain)?
            .vcpus
            .get_mut(which.index)
    }

    /// After a vCPU gave up the CPU: if it can still run, it yields to the
    /// others of equal standing.
    fn requeue(&mut self, current: VcpuRef) {
        let runnable = self
            .vcpu_mut(current)
            .is_some_and(|vcpu| vcpu.state == RunState::Runnable);
        if runnable {
            let _ = self.scheduler.yield_cpu(current);
        }
    }

    /// Lets a vCPU compete for the CPU (new, woken or unpaused).
    fn make_runnable(&mut self, which: VcpuRef) {
        let startable = self
            .vcpu_mut(which)
            .is_some_and(|vcpu| vcpu.state == RunState::Runnable);
        let running = self
            .domains
            .get(which.domain)
            .is_ok_and(|domain| domain.state == DomainState::Running);
        if !startable || !running {
            return;
        }
        let now = self.now();
        if self.scheduler.state(which).is_none() {
            let _ = self.scheduler.add(which, DEFAULT_WEIGHT, None, now);
        } else {
            let _ = self.scheduler.unpause(which, now);
            let _ = self.scheduler.wake(which, now);
        }
    }

    /// Takes every vCPU of `domain` off the CPU for good (shutdown,
    /// destruction).
    fn unschedule_domain(&mut self, domain: DomainId) {
        let now = self.now();
        let count = self
            .hardware
            .get(&domain)
            .map_or(0, |hardware| hardware.vcpus.len());
        for index in 0..count {
            let _ = self.scheduler.remove(VcpuRef { domain, index }, now);
        }
    }

    fn handle(&mut self, current: VcpuRef, exit: VmExit) -> Next {
        let domain = current.domain;
        let Some(vcpu) = self.vcpu_mut(current) else {
            return Next::Switch;
        };
        match exit {
            VmExit::Cpuid => {
                let context = CpuidContext {
                    vcpu_id: current.index as u32,
                    domain_id: domain.0,
                    guest_cr4: vcpu.vmcb.read_u64(save::CR4),
                    tsc_khz: logger::tsc_khz(),
                    x2apic: domain != DomainId::DOM0,
                };
                let leaf = vcpu.vmcb.rax() as u32;
                let subleaf = vcpu.registers.rcx as u32;
                let [eax, ebx, ecx, edx] =
                    guest_cpuid(leaf, subleaf, &context, baremetal::cpu::cpuid);
                vcpu.vmcb.set_rax(u64::from(eax));
                vcpu.registers.rbx = u64::from(ebx);
                vcpu.registers.rcx = u64::from(ecx);
                vcpu.registers.rdx = u64::from(edx);
                vcpu.advance(2);
                Next::Resume
            }
            VmExit::Msr { write } => self.msr(current, write),
            VmExit::Io(access) => self.port(current, access),
            VmExit::Hlt => {
                let interrupts_on = vcpu.vmcb.rflags() & (1 << 9) != 0;
                vcpu.advance(1);
                if interrupts_on {
                    // A halted vCPU sleeps until an event or timer.
                    return self.block(current, Wait::Event);
                }
                vcpu.state = RunState::Down;
                if domain == DomainId::DOM0 {
                    warn!("dom0 halted with interrupts disabled: it can never wake; powering off");
                    power::stop(StopReason::Poweroff);
                }
                // Only INIT and a start-up IPI bring it back.
                let now = self.now();
                let _ = self.scheduler.remove(current, now);
                // As Xen: the domain is off once no vCPU can run any more
                // (all halted with interrupts off, or never started).
                if self.all_vcpus_down(domain) {
                    info!(
                        "domain {} halted all its vCPUs with interrupts off: powering it off",
                        domain.0
                    );
                    self.shut_down(domain, ShutdownReason::Poweroff);
                } else {
                    log::debug!("d{}v{} halted with interrupts off", domain.0, current.index);
                }
                Next::Switch
            }
            VmExit::Iret => {
                vcpu.nmi_handler_returns();
                Next::Resume
            }
            VmExit::Vmmcall => self.hypercall(current),
            VmExit::NestedPageFault { address, error } => {
                if self.first_touch(current.domain, address) {
                    return Next::Resume;
                }
                if address.0 & !0xfff == hypervisor::vlapic::DEFAULT_BASE {
                    // Documented refusal (docs/control-interface.md): the
                    // vLAPIC is reached through x2APIC MSRs only.
                    return self.crash(
                        current,
                        format_args!(
                            "touched the xAPIC page at {address:?} (fault {error:#x}): the \
                             virtual APIC is x2APIC-only, its MMIO page is not emulated"
                        ),
                    );
                }
                self.crash(
                    current,
                    format_args!("touched {address:?} outside its memory (fault {error:#x})"),
                )
            }
            VmExit::Shutdown => self.crash(current, format_args!("triple fault")),
            VmExit::Exception {
                vector, error_code, ..
            } => self.crash(
                current,
                format_args!("exception {vector} (error code {error_code:#x})"),
            ),
            VmExit::Interrupt => {
                // Let the host IDT take the interrupt that caused the exit.
                x86_64::instructions::interrupts::enable();
                x86_64::instructions::nop();
                x86_64::instructions::interrupts::disable();
                Next::Resume
            }
            VmExit::Forbidden { code } => {
                warn!(
                    "domain {} used a virtualization instruction (exit {code:#x}); #UD injected",
                    domain.0
                );
                vcpu.vmcb.inject(Event::INVALID_OPCODE);
                Next::Resume
            }
            VmExit::InvalidState => {
                error!(
                    "VMRUN refused domain {}'s state:\n{}",
                    domain.0,
                    vcpu.report()
                );
                if domain == DomainId::DOM0 {
                    power::stop(StopReason::Fatal);
                }
                self.shut_down(domain, ShutdownReason::Crash);
                Next::Switch
            }
            VmExit::Unexpected { code } => {
                self.crash(current, format_args!("caused unexpected exit {code:#x}"))
            }
        }
    }

    /// A vCPU's domain crashed: Dom0 takes the machine down with it (per
    /// `dom0_crash=`); a guest is stopped and left for Dom0 to destroy.
    fn crash(&mut self, current: VcpuRef, what: core::fmt::Arguments<'_>) -> Next {
        self.flush_console(current.domain);
        if let Some(vcpu) = self.vcpu_mut(current) {
            let report = vcpu.report();
            if current.domain == DomainId::DOM0 {
                error!("dom0 {what}; dom0 crashed:\n{report}");
            } else {
                error!(
                    "domain {} {what}; domain {} crashed:\n{report}",
                    current.domain.0, current.domain.0
                );
            }
        }
        if current.domain == DomainId::DOM0 {
            match self.crash_action {
                CrashAction::Halt => power::stop(StopReason::Dom0Crashed),
                CrashAction::Reboot => power::reboot(),
            }
        }
        self.shut_down(current.domain, ShutdownReason::Crash);
        Next::Switch
    }

    /// Marks a guest stopped: its vCPUs leave the run queue; its memory
    /// stays until Dom0 destroys it.
    fn shut_down(&mut self, domain: DomainId, reason: ShutdownReason) {
        if let Ok(entry) = self.domains.get_mut(domain) {
            entry.state = DomainState::Shutdown(reason);
        }
        self.unschedule_domain(domain);
        // Dom0's toolstack learns of it through VIRQ_DOM_EXC.
        self.raise_virq(DomainId::DOM0, Virq::DOM_EXC, 0);
    }

    fn msr(&mut self, current: VcpuRef, write: bool) -> Next {
        if let Some(next) = self.lapic_msr(current, write) {
            return next;
        }
        let domain = current.domain;
        let Some(vcpu) = self.vcpu_mut(current) else {
            return Next::Switch;
        };
        let index = vcpu.registers.rcx as u32;
        let outcome = if write {
            let value = (vcpu.registers.rdx << 32) | (vcpu.vmcb.rax() & 0xffff_ffff);
            msr::write(index, value, &mut vcpu.msrs)
        } else {
            msr::read(index, vcpu.vmcb.read_u64(save::EFER), &vcpu.msrs)
        };
        match outcome {
            MsrOutcome::Done(value) => {
                if !write {
                    vcpu.vmcb.set_rax(value & 0xffff_ffff);
                    vcpu.registers.rdx = value >> 32;
                }
            }
            MsrOutcome::SetEfer(value) => vcpu.vmcb.write_u64(save::EFER, value),
            MsrOutcome::InstallHypercallPage(address) => {
                let page = msr::hypercall_page();
                let Ok(entry) = self.domains.get(domain) else {
                    return Next::Switch;
                };
                let mut ram = RamAccess { ram: &entry.ram };
                if ram.write(GuestPhysAddr(address), &page).is_err() {
                    if let Some(vcpu) = self.vcpu_mut(current) {
                        vcpu.vmcb.inject(Event::GENERAL_PROTECTION);
                    }
                    return Next::Resume;
                }
            }
            MsrOutcome::Fault => {
                warn!(
                    "domain {} {} unknown MSR {index:#x}; #GP injected",
                    domain.0,
                    if write { "wrote" } else { "read" }
                );
                vcpu.vmcb.inject(Event::GENERAL_PROTECTION);
                return Next::Resume;
            }
        }
        if let Some(vcpu) = self.vcpu_mut(current) {
            vcpu.advance(2);
        }
        Next::Resume
    }

    fn port(&mut self, current: VcpuRef, access: IoAccess) -> Next {
        let Some(vcpu) = self.vcpu_mut(current) else {
            return Next::Switch;
        };
        vcpu.vmcb.set_rip(access.next_rip);
        if current.domain == DomainId::DOM0
            && is_pci_config_address(access.port, access.size, access.string)
        {
            // Dom0 owns PCI: its configuration address reaches the hardware.
            if access.input {
                let rax = vcpu.vmcb.rax();
                vcpu.vmcb
                    .set_rax((rax & !0xffff_ffff) | u64::from(crate::hw::pci::read_address()));
            } else {
                crate::hw::pci::write_address(vcpu.vmcb.rax() as u32);
            }
            return Next::Resume;
        }
        if !access.string
            && let Some(GuestHardware {
                platform: Some(platform),
                vcpus,
                ..
            }) = self.hardware.get_mut(&current.domain)
            && let Some(vcpu) = vcpus.get_mut(current.index)
        {
            // An HVM guest's platform devices.
            let rax = vcpu.vmcb.rax();
            if access.input {
                if let Some(value) = platform.read(access.port, access.size) {
                    // IN AL/AX keeps the rest of RAX; IN EAX zero-extends.
                    let merged = match access.size {
                        1 => (rax & !0xff) | u64::from(value & 0xff),
                        2 => (rax & !0xffff) | u64::from(value & 0xffff),
                        _ => u64::from(value),
                    };
                    vcpu.vmcb.set_rax(merged);
                    return Next::Resume;
                }
            } else {
                let before = platform.unplugged();
                match platform.write(access.port, access.size, rax as u32) {
                    PortWrite::Taken => {
                        if before.is_none()
                            && let Some(mask) = platform.unplugged()
                        {
                            info!(
                                "domain {} found the Xen platform and unplugged emulated \
                                 devices {mask:#x} (it has none): its PV drivers may load",
                                current.domain.0
                            );
                        }
                        return Next::Resume;
                    }
                    PortWrite::Reset => {
                        info!(
                            "domain {} reset itself through the keyboard controller (port {:#x})",
                            current.domain.0, access.port
                        );
                        self.shut_down(current.domain, ShutdownReason::Reboot);
                        return Next::Switch;
                    }
                    PortWrite::Unclaimed => {}
                }
            }
        }
        let Some(vcpu) = self.vcpu_mut(current) else {
            return Next::Switch;
        };
        if access.input && !access.string {
            let ones = match access.size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            // No device answers: all ones, as on a bus with nothing there.
            // Except the PIT's channel 2 counter, which reads 0: Linux's
            // quick TSC calibration then gives up at once instead of
            // polling an all-ones counter 100,000 times (seconds of exits
            // under TCG); PVH guests take the TSC rate from Xen's CPUID.
            let value = if access.port == PIT_CHANNEL_2 {
                0
            } else {
                ones
            };
            let rax = vcpu.vmcb.rax();
            vcpu.vmcb.set_rax((rax & !ones) | value);
            return Next::Resume;
        }
        if access.string {
            return Next::Resume;
        }
        let value = vcpu.vmcb.rax();
        match access.port {
            0xe9 => self.console_output(current.domain, &[value as u8]),
            0xcf9 if value & 0x4 != 0 => {
                if current.domain == DomainId::DOM0 {
                    info!("dom0 reset the machine through port 0xcf9");
                    power::reboot();
                }
                info!(
                    "domain {} reset itself through port 0xcf9",
                    current.domain.0
                );
                self.shut_down(current.domain, ShutdownReason::Reboot);
                return Next::Switch;
            }
            _ => {}
        }
        Next::Resume
    }

    fn console_output(&mut self, domain: DomainId, bytes: &[u8]) {
        let now = self.now().0;
        if let Some(hardware) = self.hardware.get_mut(&domain) {
            console::domain_output(
                domain,
                bytes,
                &mut hardware.console,
                &mut hardware.console_limit,
                now,
            );
        }
    }

    /// Prints a guest's partial last line, and how many lines the rate
    /// limit dropped, when it stops.
    fn flush_console(&mut self, domain: DomainId) {
        if let Some(hardware) = self.hardware.get_mut(&domain) {
            if !hardware.console.is_empty() {
                hardware
                    .console
                    .flush(&mut |line: &str| info!("(d{}) {line}", domain.0));
            }
            let dropped = hardware.console_limit.take_suppressed();
            if dropped > 0 {
                warn!(
                    "(d{}) {dropped} console lines dropped: more than {LINES_PER_SECOND} a second",
                    domain.0
                );
            }
        }
    }

    fn hypercall(&mut self, current: VcpuRef) -> Next {
        let domain = current.domain;
        let Some(vcpu) = self.vcpu_mut(current) else {
            return Next::Switch;
        };
        let number = HypercallNumber(vcpu.vmcb.rax());
        let args = HypercallArgs {
            rdi: vcpu.registers.rdi,
            rsi: vcpu.registers.rsi,
            rdx: vcpu.registers.rdx,
            r10: vcpu.registers.r10,
            r8: vcpu.registers.r8,
        };
        vcpu.advance(3);
        if let Some(next) = self.service_hypercall(current, number, args) {
            return next;
        }
        if number == HypercallNumber::CONSOLE_IO && args.rdi == CONSOLEIO_READ {
            // Dom0 reads what has been typed up to now, not up to the last
            // poll.
            let _ = self.receive_console_input();
        }
        let now = self.now().0;
        let (Some(hardware), Ok(entry)) =
            (self.hardware.get_mut(&domain), self.domains.get(domain))
        else {
            return Next::Switch;
        };
        let Some(vcpu) = hardware.vcpus.get_mut(current.index) else {
            return Next::Switch;
        };
        if number.0 == control_abi::HYPERCALL {
            let result = if entry.privileged && vcpu.vmcb.cpl() == 0 {
                self.control(current, args.rdi)
            } else {
                Err(Errno::EPERM)
            };
            let value = match result {
                Ok(()) => 0,
                Err(errno) => errno.as_return(),
            };
            if let Some(vcpu) = self.vcpu_mut(current) {
                vcpu.vmcb.set_rax(value);
            }
            return Next::Resume;
        }
        let caller = Caller {
            domain,
            privileged: entry.privileged,
            cpl: vcpu.vmcb.cpl(),
            hypervisor_cmdline: self.hypervisor_cmdline,
        };
        let mut guest = GuestView::new(vcpu.vmcb, RamAccess { ram: &entry.ram });
        let mut console = DomainConsole {
            domain,
            lines: &mut hardware.console,
            limit: &mut hardware.console_limit,
            now_ns: now,
            input: &mut self.console_input,
        };
        let outcome = hypercall::dispatch(number, args, &caller, &mut guest, &mut console);
        match outcome {
            Outcome::Return(value) => {
                vcpu.vmcb.set_rax(value);
                Next::Resume
            }
            Outcome::Block | Outcome::Yield => {
                vcpu.vmcb.set_rax(0);
                Next::Switch
            }
            Outcome::Shutdown(reason) => {
                vcpu.vmcb.set_rax(0);
                self.domain_shutdown(domain, reason)
            }
        }
    }

    fn domain_shutdown(&mut self, domain: DomainId, reason: ShutdownReason) -> Next {
        self.flush_console(domain);
        if domain != DomainId::DOM0 {
            info!("domain {} shut down ({reason:?})", domain.0);
            self.shut_down(domain, reason);
            return Next::Switch;
        }
        match reason {
            ShutdownReason::Poweroff => {
                info!("dom0 powered off");
                power::stop(StopReason::Poweroff);
            }
            ShutdownReason::Reboot => {
                info!("dom0 asked for a reboot");
                power::reboot();
            }
            ShutdownReason::Crash | ShutdownReason::Watchdog => self.crash(
                VcpuRef { domain, index: 0 },
                format_args!("reported a crash ({reason:?})"),
            ),
            ShutdownReason::Suspend | ShutdownReason::SoftReset => {
                warn!("dom0 asked for {reason:?}, which Xenolith does not support");
                if let Some(vcpu) = self.vcpu_mut(VcpuRef { domain, index: 0 }) {
                    vcpu.vmcb.set_rax(Errno::EOPNOTSUPP.as_return());
                }
                Next::Resume
            }
        }
    }

    /// A control request from Dom0: read once, decode, act, answer.
    fn control(&mut self, current: VcpuRef, request_address: u64) -> Result<(), Errno> {
        let mut request = [0u8; control_abi::REQUEST_SIZE];
        self.with_guest(current, |guest| {
            guest.read(GuestVirtAddr(request_address), &mut request)
        })
        .ok_or(Errno::EFAULT)?
        .map_err(|_| Errno::EFAULT)?;
        let command = control::decode(&request)?;
        match command {
            Command::Create {
                vcpus,
                memory_pages,
                kind,
            } => {
                let domain = self.create_domain(kind, vcpus, memory_pages)?;
                control::encode_created(&mut request, domain);
            }
            Command::Destroy(domain) => self.destroy_domain(domain)?,
            Command::Pause(domain) => {
                let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
                if entry.state == DomainState::Running {
                    entry.state = DomainState::Paused;
                    let now = self.now();
                    let count = self
                        .hardware
                        .get(&domain)
                        .map_or(0, |hardware| hardware.vcpus.len());
                    for index in 0..count {
                        let _ = self.scheduler.pause(VcpuRef { domain, index }, now);
                    }
                }
            }
            Command::Unpause(domain) => {
                let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
                if entry.state == DomainState::Paused {
                    entry.state = DomainState::Running;
                    let count = self
                        .hardware
                        .get(&domain)
                        .map_or(0, |hardware| hardware.vcpus.len());
                    for index in 0..count {
                        self.make_runnable(VcpuRef { domain, index });
                    }
                }
            }
            Command::GetInfo { from } => {
                let entry = self
                    .domains
                    .iter()
                    .find(|entry| entry.id >= from)
                    .ok_or(Errno::ESRCH)?;
                let states = self
                    .hardware
                    .get(&entry.id)
                    .map_or(&[][..], |hardware| hardware.vcpus.as_slice());
                let info = control_abi::DomainInfo {
                    domain: entry.id,
                    flags: entry
                        .state
                        .info_flags(vcpu::activity(states.iter().map(|vcpu| vcpu.state))),
                    vcpus: entry.vcpu_count,
                    pages: entry.ram.pages(),
                    max_pages: entry.max_pages,
                    cpu_time_ns: entry.cpu_ticks.saturating_mul(1_000_000)
                        / u64::from(self.tsc_khz.max(1)),
                };
                info.encode(&mut request);
            }
            Command::WriteMemory {
                domain,
                address,
                length,
                buffer,
            } => {
                self.write_guest_memory(current, domain, address, length, buffer)?;
            }
            Command::SetVcpuEntry {
                domain,
                vcpu,
                entry,
                start_info,
            } => {
                let found = self.domains.get(domain).map_err(|_| Errno::ESRCH)?;
                let (state, kind) = (found.state, found.kind);
                if state != DomainState::Paused {
                    return Err(Errno::EBUSY);
                }
                let target = self
                    .vcpu_mut(VcpuRef {
                        domain,
                        index: vcpu as usize,
                    })
                    .ok_or(Errno::EINVAL)?;
                match kind {
                    GuestKind::Pvh => target.reset_to_pvh_entry(entry, start_info.0),
                    GuestKind::Hvm => target.reset_to_linux_boot_entry(entry, start_info.0),
                }
            }
            Command::SetHvmParam {
                domain,
                index,
                value,
            } => {
                let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
                let slot = entry
                    .hvm_params
                    .get_mut(index as usize)
                    .ok_or(Errno::EINVAL)?;
                *slot = value;
            }
            Command::MapFrames {
                domain,
                gfn,
                count,
                addresses,
            } => {
                let mapped = self.map_into_dom0(domain, gfn, count)?;
                for (index, address) in mapped.iter().enumerate() {
                    let slot = GuestVirtAddr(addresses.0.wrapping_add(8 * index as u64));
                    self.with_guest(current, |guest| guest.write(slot, &address.0.to_le_bytes()))
                        .ok_or(Errno::EFAULT)?
                        .map_err(|_| Errno::EFAULT)?;
                }
            }
            Command::UnmapFrames { domain, gfn, count } => {
                for frame in gfn..gfn + u64::from(count) {
                    self.unmap_from_dom0(domain, frame);
                }
            }
            Command::PowerOff { status } => {
                self.flush_console(current.domain);
                if status == 0 {
                    info!("dom0 powered off");
                    power::stop(StopReason::Poweroff);
                }
                info!("dom0 powered off, reporting failure (status {status})");
                power::stop(StopReason::PoweroffReportingFailure);
            }
            Command::PhysInfo => {
                let free = self.frames.free_bytes() / PAGE_SIZE;
                control::encode_physinfo(
                    &mut request,
                    self.total_pages,
                    free,
                    self.tsc_khz,
                    self.domains.len() as u32,
                );
            }
        }
        self.with_guest(current, |guest| {
            guest.write(GuestVirtAddr(request_address), &request)
        })
        .ok_or(Errno::EFAULT)?
        .map_err(|_| Errno::EFAULT)
    }

    /// Runs `f` with the vCPU's guest-virtual view of its memory.
    fn with_guest<T>(
        &mut self,
        current: VcpuRef,
        f: impl FnOnce(&mut GuestView<'_>) -> T,
    ) -> Option<T> {
        let entry = self.domains.get(current.domain).ok()?;
        let vcpu = self
            .hardware
            .get(&current.domain)?
            .vcpus
            .get(current.index)?;
        let mut view = GuestView::new(vcpu.vmcb, RamAccess { ram: &entry.ram });
        Some(f(&mut view))
    }

    /// Creates a paused PVH or HVM domain with RAM at guest-physical 0.
    /// The RAM is taken now but zeroed and mapped on first touch
    /// (`first_touch`, and every hypervisor access through the RAM map).
    fn create_domain(
        &mut self,
        kind: GuestKind,
        vcpus: u32,
        memory_pages: u64,
    ) -> Result<DomainId, Errno> {
        let started = baremetal::cpu::rdtsc();
        let bytes = memory_pages * PAGE_SIZE;
        if bytes > self.frames.free_bytes() {
            return Err(Errno::ENOMEM);
        }
        // Its shared_info page and first grant-table frame, zeroed.
        let pair = self
            .frames
            .allocate(2 * PAGE_SIZE, PAGE_SIZE, HostPhysAddr(u64::MAX))
            .map_err(|_| Errno::ENOMEM)?;
        // SAFETY: fresh frames for the new domain.
        unsafe { physical::zero(pair) };
        let shared_info = HostRange {
            start: pair.start,
            end: HostPhysAddr(pair.start.0 + PAGE_SIZE),
        };
        let frames = DomainFrames {
            shared_info: pair.start,
            grant_table: shared_info.end,
        };
        let id = match self
            .domains
            .create(kind, vcpus, memory_pages + PAGE_SLACK, frames)
        {
            Ok(id) => id,
            Err(_) => {
                let _ = self.frames.free(pair);
                return Err(Errno::EAGAIN);
            }
        };
        self.publish_wallclock(shared_info.start);
        match self.populate(id, vcpus, bytes) {
            Ok(()) => {
                let micros = baremetal::cpu::rdtsc().wrapping_sub(started) * 1000
                    / u64::from(self.tsc_khz.max(1));
                info!(
                    "created domain {} ({} MiB, {vcpus} vCPU) in {}.{:03} ms",
                    id.0,
                    bytes >> 20,
                    micros / 1000,
                    micros % 1000
                );
                Ok(id)
            }
            Err(errno) => {
                let _ = self.destroy_domain(id);
                Err(errno)
            }
        }
    }

    /// Gives domain `id` its RAM (2 MiB pieces where possible, not zeroed
    /// yet), the nested tables that RAM will be mapped with, and vCPUs.
    fn populate(&mut self, id: DomainId, vcpus: u32, bytes: u64) -> Result<(), Errno> {
        let mut ram =
            GuestRam::allocate(&mut self.frames, bytes / PAGE_SIZE).map_err(|_| Errno::ENOMEM)?;
        let mut memory = TableFrames {
            frames: &mut self.frames,
        };
        let Ok(nested) = NestedPageTables::new_root(&mut memory) else {
            ram.release(&mut self.frames);
            return Err(Errno::ENOMEM);
        };
        // Every table now, so that a first touch only writes a leaf and
        // never fails for want of memory.
        let prepared = ram.layout().try_for_each(|(gfn, host)| {
            nested.prepare(
                &mut memory,
                GuestPhysAddr(gfn * PAGE_SIZE),
                host.start,
                host.len(),
                PageSize::Large,
            )
        });
        if prepared.is_err() {
            error!("nested tables for domain {}: out of frames", id.0);
            Self::free_tables(&mut self.frames, nested);
            ram.release(&mut self.frames);
            return Err(Errno::ENOMEM);
        }
        let tsc_offset = baremetal::cpu::rdtsc().wrapping_neg();
        let asid = 2 + u32::from(id.0) % 14;
        let vcpus = (0..vcpus)
            .map(|index| {
                let mut vcpu = Vcpu::new(
                    &mut self.frames,
                    nested.root(),
                    self.guest_maps,
                    tsc_offset,
                    asid,
                );
                // Application processors wait for INIT and a start-up IPI
                // from the guest (their APICs say so too).
                if index > 0 {
                    vcpu.wait_for_startup();
                }
                vcpu
            })
            .collect();
        let mut platform = None;
        if let Ok(entry) = self.domains.get_mut(id) {
            entry.ram = ram;
            for (index, state) in entry.vcpus.iter_mut().enumerate() {
                state.lapic = Some(lapic::x2apic_for_vcpu(index));
            }
            if entry.kind == GuestKind::Hvm {
                platform = Some(HvmPlatform::new());
            }
        }
        self.hardware.insert(
            id,
            GuestHardware {
                nested,
                vcpus,
                console: LineBuffer::new(),
                console_limit: RateLimiter::new(),
                platform,
            },
        );
        Ok(())
    }

    /// A guest's first touch of a stretch of its RAM (a nested page fault
    /// at `address`): the stretch is zeroed if nothing zeroed it yet and
    /// mapped. False when `address` is not RAM or is mapped already (a
    /// real fault).
    fn first_touch(&mut self, domain: DomainId, address: GuestPhysAddr) -> bool {
        let Some(nested) = self.hardware.get(&domain).map(|hardware| hardware.nested) else {
            return false;
        };
        let Ok(entry) = self.domains.get_mut(domain) else {
            return false;
        };
        let mut memory = ChargedTableFrames {
            frames: &mut self.frames,
            budget: &mut entry.table_budget,
        };
        if nested.translate(&memory, address).is_some() {
            return false;
        }
        let Some(backing) = entry.ram.backing(address.0 / PAGE_SIZE, &IdentityScrub) else {
            return false;
        };
        // The tables were prepared at creation; only a stretch split since
        // (a page ballooned out) may need a new one, charged to the guest.
        let mapped = nested.map(
            &mut memory,
            GuestPhysAddr(backing.gfn * PAGE_SIZE),
            backing.host.start,
            backing.host.len(),
            PageFlags::WRITABLE,
            PageSize::Large,
        );
        if let Err(error) = mapped {
            error!(
                "domain {}: cannot map its RAM at {address:?}: {error}",
                domain.0
            );
            return false;
        }
        true
    }

    fn free_tables(frames: &mut FrameAllocator, nested: NestedPageTables) {
        let tables = nested.table_frames(&TableFrames { frames });
        for table in tables {
            let _ = frames.free(HostRange {
                start: table,
                end: HostPhysAddr(table.0 + PAGE_SIZE),
            });
        }
    }

    /// Destroys a guest and returns everything it held.
    fn destroy_domain(&mut self, id: DomainId) -> Result<(), Errno> {
        if id == DomainId::DOM0 {
            return Err(Errno::EINVAL);
        }
        // Dom0 must lose its view of the guest's frames before they go.
        let dom0_views: Vec<u64> = self
            .domains
            .get(id)
            .map(|entry| entry.mapped_by_dom0.keys().copied().collect())
            .map_err(|_| Errno::ESRCH)?;
        for gfn in dom0_views {
            self.unmap_from_dom0(id, gfn);
        }
        let mut entry = self.domains.remove(id).map_err(|_| Errno::ESRCH)?;
        log::debug!(
            "destroying domain {}: it touched {} of its {} MiB",
            id.0,
            ((entry.ram.pages() - entry.ram.unscrubbed_pages()) * PAGE_SIZE) >> 20,
            (entry.ram.pages() * PAGE_SIZE) >> 20
        );
        self.unschedule_domain(id);
        self.asid_users.retain(|_, user| user.domain != id);
        if self.fpu_owner.is_some_and(|owner| owner.domain == id) {
            self.fpu_owner = None;
        }
        for peer in entry.events.close_all() {
            if let Ok(other) = self.domains.get_mut(peer.domain) {
                other.events.peer_closed(peer);
            }
        }
        let _ = self.frames.free(HostRange {
            start: entry.shared_info,
            end: HostPhysAddr(entry.shared_info.0 + PAGE_SIZE),
        });
        // Grants it mapped from others end; its own table goes once no one
        // maps its grants (else it waits among the orphans).
        entry.grants.set_dying();
        let mut maptrack = core::mem::replace(
            &mut entry.maptrack,
            hypervisor::grant_table::Maptrack::new(0),
        );
        {
            let mut host = grants::Host {
                domains: &mut self.domains,
                hardware: &mut self.hardware,
                frames: &mut self.frames,
                caller_ram: None,
            };
            hypervisor::grant_table::release_mappings(&mut maptrack, &mut host);
        }
        // Frames others still map through its grants must not be reused.
        for gfn in entry.grants.pinned_frames().collect::<Vec<_>>() {
            if let Ok(Some(frame)) = entry.ram.remove_page(gfn.0) {
                warn!(
                    "domain {}: frame {:#x} is still mapped by another domain; kept out of use",
                    id.0, frame.0
                );
            }
        }
        let table = core::mem::replace(
            &mut entry.grants,
            hypervisor::grant_table::GrantTable::new(&Default::default(), HostPhysAddr(0)),
        );
        match table.into_frames() {
            Ok(frames) => {
                for frame in frames {
                    let _ = self.frames.free(HostRange {
                        start: frame,
                        end: HostPhysAddr(frame.0 + PAGE_SIZE),
                    });
                }
            }
            Err(table) => {
                warn!(
                    "domain {}: grant table still mapped by others; its frames are kept",
                    id.0
                );
                self.orphan_grant_tables.push(table);
            }
        }
        if let Some(hardware) = self.hardware.remove(&id) {
            for vcpu in hardware.vcpus {
                vcpu.release(&mut self.frames);
            }
            Self::free_tables(&mut self.frames, hardware.nested);
        }
        entry.ram.release(&mut self.frames);
        Ok(())
    }

    /// Maps `count` of a guest's frames from `gfn` into Dom0, each at its
    /// host-physical address (Dom0 is identity-mapped), and returns them.
    /// All or nothing: a frame that is not the guest's RAM fails the call.
    fn map_into_dom0(
        &mut self,
        domain: DomainId,
        gfn: u64,
        count: u32,
    ) -> Result<Vec<HostPhysAddr>, Errno> {
        let entry = self.domains.get(domain).map_err(|_| Errno::ESRCH)?;
        let frames: Vec<HostPhysAddr> = (gfn..gfn + u64::from(count))
            .map(|frame| {
                entry
                    .ram
                    .host_frame(frame, &IdentityScrub)
                    .ok_or(Errno::EINVAL)
            })
            .collect::<Result<_, _>>()?;
        let dom0_nested = self
            .hardware
            .get(&DomainId::DOM0)
            .ok_or(Errno::ESRCH)?
            .nested;
        for (offset, host) in frames.iter().enumerate() {
            let frame = gfn + offset as u64;
            let already = self
                .domains
                .get(domain)
                .is_ok_and(|entry| entry.mapped_by_dom0.contains_key(&frame));
            if already {
                continue;
            }
            let mut memory = TableFrames {
                frames: &mut self.frames,
            };
            dom0_nested
                .map(
                    &mut memory,
                    GuestPhysAddr(host.0),
                    *host,
                    PAGE_SIZE,
                    PageFlags::WRITABLE,
                    PageSize::Small,
                )
                .map_err(|_| Errno::ENOMEM)?;
            if let Ok(entry) = self.domains.get_mut(domain) {
                entry.mapped_by_dom0.insert(frame, *host);
            }
        }
        Ok(frames)
    }

    /// Removes a guest frame from Dom0's view, if Dom0 mapped it.
    fn unmap_from_dom0(&mut self, domain: DomainId, gfn: u64) {
        let Some(host) = self
            .domains
            .get_mut(domain)
            .ok()
            .and_then(|entry| entry.mapped_by_dom0.remove(&gfn))
        else {
            return;
        };
        if let Some(hardware) = self.hardware.get(&DomainId::DOM0) {
            let nested = hardware.nested;
            let _ = nested.unmap_page(
                &mut TableFrames {
                    frames: &mut self.frames,
                },
                GuestPhysAddr(host.0),
            );
        }
        self.flush_tlb(DomainId::DOM0);
    }

    /// Gives the FPU registers to `current`, saving the last owner's.
    fn switch_fpu(&mut self, current: VcpuRef) {
        if self.fpu_owner == Some(current) {
            return;
        }
        if let Some(owner) = self.fpu_owner
            && let Some(vcpu) = self.vcpu_mut(owner)
        {
            vcpu.save_fpu();
        }
        if let Some(vcpu) = self.vcpu_mut(current) {
            vcpu.restore_fpu();
            self.fpu_owner = Some(current);
        }
    }

    /// Arms the host timer for the earliest of the next guest timer and
    /// the end of the time slice (a TSC value).
    fn arm_timer(&self, deadline: Option<SystemTime>, slice_end: Option<u64>) {
        let now_tsc = baremetal::cpu::rdtsc();
        let now = self.clock.now(now_tsc);
        let until_deadline = deadline.map(|deadline| deadline.0.saturating_sub(now.0));
        let until_slice = slice_end.map(|end| {
            let ticks = end.saturating_sub(now_tsc);
            (u128::from(ticks) * 1_000_000_000 / u128::from(self.clock.tsc_frequency_hz().max(1)))
                as u64
        });
        match (until_deadline, until_slice) {
            (None, None) => crate::hw::lapic::disarm(),
            (a, b) => {
                crate::hw::lapic::arm(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX)).max(10_000))
            }
        }
    }

    /// Copies `length` bytes from Dom0's `buffer` into a paused guest's RAM.
    fn write_guest_memory(
        &mut self,
        current: VcpuRef,
        domain: DomainId,
        address: GuestPhysAddr,
        length: u32,
        buffer: GuestVirtAddr,
    ) -> Result<(), Errno> {
        let target = self.domains.get(domain).map_err(|_| Errno::ESRCH)?;
        if target.state != DomainState::Paused {
            return Err(Errno::EBUSY);
        }
        let mut page = [0u8; PAGE_SIZE as usize];
        let mut done = 0u64;
        let length = u64::from(length);
        while done < length {
            let chunk = (length - done).min(PAGE_SIZE - (address.0.wrapping_add(done) % PAGE_SIZE));
            let bytes = &mut page[..chunk as usize];
            let source = GuestVirtAddr(buffer.0.checked_add(done).ok_or(Errno::EFAULT)?);
            self.with_guest(current, |guest| guest.read(source, bytes))
                .ok_or(Errno::EFAULT)?
                .map_err(|_| Errno::EFAULT)?;
            let destination = GuestPhysAddr(address.0.checked_add(done).ok_or(Errno::EINVAL)?);
            let target = self.domains.get(domain).map_err(|_| Errno::ESRCH)?;
            RamAccess { ram: &target.ram }
                .write(destination, bytes)
                .map_err(|_| Errno::EINVAL)?;
            done += chunk;
        }
        Ok(())
    }
}

/// The PIT's channel 2 data port.
const PIT_CHANNEL_2: u16 = 0x42;

/// Waits for the next interrupt with the host's interrupts on.
fn idle() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
