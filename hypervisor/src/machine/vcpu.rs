//! A virtual CPU in hardware terms: its VMCB, the registers VMRUN does not
//! switch, and the PVH entry state it starts in.

use hypervisor::domain::VcpuActivity;
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::{HostPhysAddr, HostRange, PAGE_SIZE};
use hypervisor::svm::vmcb::{self, Event, Segment, Vmcb, control, misc1, misc2, save};
use hypervisor::svm::{GuestRegisters, GuestReport, startup};
use hypervisor::vcpu::msr;
use hypervisor::vlapic::RealModeEntry;

use crate::fatal;
use crate::hw::memory as physical;
use crate::hw::svm;

/// Guest page attribute table at reset.
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

/// Whether a vCPU may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No entry point yet (created, not built).
    NotStarted,
    Runnable,
    /// Halted or blocked until an event.
    Blocked,
    /// Halted with interrupts off: it can never wake.
    Down,
}

/// Whether a domain whose vCPUs are in `states` is off: none runs or can
/// be woken by an event (Xen's rule for HLT with interrupts off: the
/// domain powers off once all its vCPUs are down).
pub fn all_down(states: impl IntoIterator<Item = RunState>) -> bool {
    states
        .into_iter()
        .all(|state| matches!(state, RunState::Down | RunState::NotStarted))
}

/// What a domain whose vCPUs are in `states` is doing, for GET_INFO:
/// vCPUs not started or down are offline, as in Xen.
pub fn activity(states: impl IntoIterator<Item = RunState>) -> VcpuActivity {
    let mut activity = VcpuActivity::Offline;
    for state in states {
        match state {
            RunState::Runnable => return VcpuActivity::Busy,
            RunState::Blocked => activity = VcpuActivity::Idle,
            RunState::NotStarted | RunState::Down => {}
        }
    }
    activity
}

/// One vCPU.
pub struct Vcpu {
    pub vmcb: &'static mut Vmcb,
    pub vmcb_frame: HostRange,
    pub registers: GuestRegisters,
    pub state: RunState,
    /// Its FPU/SSE/AVX registers while another vCPU has the CPU.
    pub fpu_area: HostRange,
    /// Its XCR0 while another vCPU has the CPU.
    pub xcr0: u64,
    /// How many start-up IPIs have started it.
    pub startups: u64,
    /// Its TSC_AUX (loaded into the CPU before it runs).
    pub msrs: msr::GuestMsrs,
    /// An NMI was injected and its handler has not yet finished its IRET:
    /// further NMIs wait (the IRET intercept is on until the IRET).
    pub nmi_blocked: bool,
    /// The RIP of the NMI handler's IRET, once it was intercepted: NMIs
    /// stay blocked until the vCPU is seen elsewhere (the IRET ran).
    pub nmi_iret_rip: Option<u64>,
}

/// The frames every vCPU's VMCB points at.
#[derive(Clone, Copy)]
pub struct SharedMaps {
    pub io: HostPhysAddr,
    pub msr: HostPhysAddr,
}

/// Allocates `bytes` of zeroed hypervisor frames.
pub fn allocate_zeroed(frames: &mut FrameAllocator, bytes: u64) -> HostRange {
    let range = frames
        .allocate(bytes, PAGE_SIZE, HostPhysAddr(u64::MAX))
        .unwrap_or_else(|error| {
            fatal(format_args!("no memory for hypervisor structures: {error}"))
        });
    // SAFETY: freshly allocated to the hypervisor and identity-mapped.
    unsafe { physical::zero(range) };
    range
}

impl Vcpu {
    /// A vCPU in the PVH entry state, not yet runnable.
    pub fn new(
        frames: &mut FrameAllocator,
        nested_root: HostPhysAddr,
        maps: SharedMaps,
        tsc_offset: u64,
        asid: u32,
    ) -> Self {
        let vmcb_frame = allocate_zeroed(frames, PAGE_SIZE);
        // SAFETY: a fresh zeroed frame, page-aligned, owned by this vCPU.
        let vmcb = unsafe { physical::object::<Vmcb>(vmcb_frame.start) };
        vmcb.intercept(
            control::INTERCEPT_MISC1,
            misc1::INTR
                | misc1::NMI
                | misc1::SMI
                | misc1::INIT
                | misc1::CPUID
                | misc1::INVD
                | misc1::HLT
                | misc1::IOIO_PROT
                | misc1::MSR_PROT
                | misc1::SHUTDOWN,
        );
        vmcb.intercept(
            control::INTERCEPT_MISC2,
            misc2::VMRUN
                | misc2::VMMCALL
                | misc2::VMLOAD
                | misc2::VMSAVE
                | misc2::STGI
                | misc2::CLGI
                | misc2::SKINIT
                | misc2::ICEBP
                | misc2::MONITOR
                | misc2::MWAIT,
        );
        vmcb.write_u64(control::IOPM_BASE, maps.io.0);
        vmcb.write_u64(control::MSRPM_BASE, maps.msr.0);
        vmcb.write_u32(control::GUEST_ASID, asid);
        vmcb.write_u8(control::TLB_CONTROL, vmcb::TLB_FLUSH_ALL);
        vmcb.write_u64(control::VIRTUAL_INTERRUPT, 1 << 24); // V_INTR_MASKING
        vmcb.write_u64(control::NESTED_CONTROL, vmcb::NESTED_PAGING);
        vmcb.write_u64(control::NESTED_CR3, nested_root.0);
        vmcb.write_u64(control::TSC_OFFSET, tsc_offset);
        let fpu_area = allocate_zeroed(
            frames,
            crate::hw::fpu::area_size().div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE,
        );
        let mut vcpu = Self {
            vmcb,
            vmcb_frame,
            registers: GuestRegisters::default(),
            state: RunState::NotStarted,
            fpu_area,
            xcr0: crate::hw::fpu::RESET_XCR0,
            startups: 0,
            msrs: msr::GuestMsrs::default(),
            nmi_blocked: false,
            nmi_iret_rip: None,
        };
        vcpu.reset_to_pvh_entry(0, 0);
        vcpu
    }

    /// The PVH entry state: 32-bit protected mode, flat segments, paging
    /// off, EBX = start info; runnable.
    pub fn reset_to_pvh_entry(&mut self, entry: u32, start_info: u64) {
        let vmcb = &mut *self.vmcb;
        let flat = |selector, attributes| Segment {
            selector,
            attributes,
            limit: 0xffff_ffff,
            base: 0,
        };
        vmcb.set_segment(save::CS, flat(0x08, 0xc9b));
        for data in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            vmcb.set_segment(data, flat(0x10, 0xc93));
        }
        vmcb.set_segment(
            save::TR,
            Segment {
                selector: 0,
                attributes: 0x8b,
                limit: 0x67,
                base: 0,
            },
        );
        vmcb.set_segment(
            save::LDTR,
            Segment {
                selector: 0,
                attributes: 0x82,
                limit: 0xffff,
                base: 0,
            },
        );
        vmcb.set_segment(
            save::GDTR,
            Segment {
                selector: 0,
                attributes: 0,
                limit: 0xffff,
                base: 0,
            },
        );
        vmcb.set_segment(
            save::IDTR,
            Segment {
                selector: 0,
                attributes: 0,
                limit: 0xffff,
                base: 0,
            },
        );
        vmcb.write_u64(save::CR0, 0x11); // PE | ET
        vmcb.write_u64(save::CR3, 0);
        vmcb.write_u64(save::CR4, 0);
        vmcb.write_u64(save::EFER, msr::EFER_SVME);
        vmcb.write_u64(save::RFLAGS, 0x2);
        vmcb.write_u64(save::DR6, 0xffff_0ff0);
        vmcb.write_u64(save::DR7, 0x400);
        vmcb.write_u64(save::GUEST_PAT, DEFAULT_PAT);
        vmcb.set_rip(u64::from(entry));
        vmcb.set_rax(0);
        self.registers = GuestRegisters {
            rbx: start_info,
            ..GuestRegisters::default()
        };
        self.state = RunState::Runnable;
    }

    /// The Linux boot protocol's 32-bit entry (`boot.rst`, "32-bit boot
    /// protocol"), as a PC's firmware or QEMU's `-kernel` leave it: the
    /// PVH entry state, but with selectors __BOOT_CS (0x10) and __BOOT_DS
    /// (0x18), ESI = the zero page, EBX, EBP and EDI zero; runnable.
    pub fn reset_to_linux_boot_entry(&mut self, entry: u32, zero_page: u64) {
        self.reset_to_pvh_entry(entry, 0);
        let vmcb = &mut *self.vmcb;
        let mut code = vmcb.segment(save::CS);
        code.selector = 0x10;
        vmcb.set_segment(save::CS, code);
        for data in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            let mut segment = vmcb.segment(data);
            segment.selector = 0x18;
            vmcb.set_segment(data, segment);
        }
        self.registers.rsi = zero_page;
    }

    /// INIT: the vCPU stops and waits for a start-up IPI.
    pub fn wait_for_startup(&mut self) {
        self.state = RunState::NotStarted;
        self.nmi_blocked = false;
        self.nmi_iret_rip = None;
        self.vmcb
            .stop_intercepting(control::INTERCEPT_MISC1, misc1::IRET);
    }

    /// Whether an NMI may be injected at this entry: no NMI handler is
    /// running (its IRET has run), no other event is queued, no interrupt
    /// shadow.
    pub fn can_take_nmi(&mut self) -> bool {
        if self
            .nmi_iret_rip
            .is_some_and(|iret| iret != self.vmcb.rip())
        {
            self.nmi_iret_rip = None;
            self.nmi_blocked = false;
        }
        !self.nmi_blocked && !self.vmcb.event_queued() && !self.vmcb.in_interrupt_shadow()
    }

    /// Injects an NMI and blocks further ones until the handler's IRET,
    /// which SVM cannot see without intercepting IRET (as Xen does).
    pub fn inject_nmi(&mut self) {
        self.vmcb.inject(Event::Nmi);
        self.nmi_blocked = true;
        self.nmi_iret_rip = None;
        self.vmcb.intercept(control::INTERCEPT_MISC1, misc1::IRET);
    }

    /// The NMI handler reached IRET. The exit comes before the IRET runs,
    /// so NMIs stay blocked until a later exit finds the vCPU past it
    /// (KVM's way). Xen's way, an interrupt shadow over the IRET, was not
    /// enough under QEMU's TCG: the test guest's nmi-self check hung now
    /// and then, as when an NMI lands on the IRET and reuses the
    /// handler's IST frame. A pending NMI arrives at the next exit after
    /// the IRET.
    pub fn nmi_handler_returns(&mut self) {
        self.nmi_iret_rip = Some(self.vmcb.rip());
        self.vmcb
            .stop_intercepting(control::INTERCEPT_MISC1, misc1::IRET);
    }

    /// A start-up IPI: the vCPU starts in real mode at the trampoline the
    /// IPI names, with a flushed TLB; runnable.
    pub fn start_in_real_mode(&mut self, entry: &RealModeEntry) {
        let signature = baremetal::cpu::cpuid(1, 0)[0];
        startup::load_startup_state(self.vmcb, &mut self.registers, entry, signature);
        self.vmcb
            .write_u8(control::TLB_CONTROL, vmcb::TLB_FLUSH_ALL);
        self.state = RunState::Runnable;
    }

    /// Asks for an interrupt with `vector` to be delivered as soon as the
    /// guest accepts interrupts (the VMCB's virtual interrupt), or cancels
    /// the request. Event-channel upcalls use it: level-like, re-asked
    /// before every entry while the guest's upcall flag is set.
    pub fn set_virtual_interrupt(&mut self, vector: Option<u8>) {
        const V_IRQ: u64 = 1 << 8;
        const V_INTR_PRIORITY: u64 = 0xf << 16;
        const V_INTR_MASKING: u64 = 1 << 24;
        let value = match vector {
            Some(vector) => V_INTR_MASKING | V_IRQ | V_INTR_PRIORITY | (u64::from(vector) << 32),
            None => V_INTR_MASKING,
        };
        self.vmcb.write_u64(control::VIRTUAL_INTERRUPT, value);
    }

    /// Whether the interrupt asked for with `set_virtual_interrupt` is
    /// still waiting (the guest has not taken it).
    pub fn virtual_interrupt_waiting(&self) -> bool {
        self.vmcb.read_u64(control::VIRTUAL_INTERRUPT) & (1 << 8) != 0
    }

    /// Runs the vCPU until its next VM exit.
    pub fn run(&mut self, host_state: HostPhysAddr) {
        crate::hw::svm::load_tsc_aux(self.msrs.tsc_aux);
        // SAFETY: the VMCB and what it points at (nested tables, permission
        // maps) are owned by this vCPU's domain and the hypervisor.
        unsafe { svm::run(&mut self.registers, self.vmcb_frame.start, host_state) };
        self.vmcb.write_u8(control::TLB_CONTROL, 0);
        self.vmcb.requeue_interrupted_event();
    }

    /// Moves RIP past an instruction of `bytes` bytes.
    pub fn advance(&mut self, bytes: u64) {
        let rip = self.vmcb.rip().wrapping_add(bytes);
        self.vmcb.set_rip(rip);
    }

    pub fn report(&self) -> GuestReport<'_> {
        GuestReport {
            vmcb: self.vmcb,
            registers: &self.registers,
        }
    }

    /// Returns the VMCB frame to the allocator.
    pub fn release(self, frames: &mut FrameAllocator) {
        let _ = frames.free(self.vmcb_frame);
        let _ = frames.free(self.fpu_area);
    }

    /// Saves the FPU registers of this vCPU (the one that ran last).
    pub fn save_fpu(&mut self) {
        // SAFETY: the area is this vCPU's own, sized by `fpu::area_size`
        // and page-aligned; it ran last, so the registers are its.
        self.xcr0 = unsafe { crate::hw::fpu::save(self.fpu_area.start.0) };
    }

    /// Loads this vCPU's FPU registers before it runs.
    pub fn restore_fpu(&mut self) {
        // SAFETY: the area is zeroed (initial state) or holds what
        // `save_fpu` wrote for this vCPU.
        unsafe { crate::hw::fpu::restore(self.fpu_area.start.0, self.xcr0) };
    }
}
