//! Dom0's virtual CPU: its VMCB set up for PVH entry, and the loop that
//! runs it and answers every VM exit.

use hypervisor::boot::cmdline::{CrashAction, Options};
use hypervisor::console::LineBuffer;
use hypervisor::hypercall::{self, Caller, GuestAccess, GuestFault, Outcome};
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::guest_walk::{self, Access, PagingMode};
use hypervisor::memory::{GuestVirtAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use hypervisor::svm::exit::{IoAccess, VmExit};
use hypervisor::svm::permissions::{IoPermissionMap, MsrPermissionMap};
use hypervisor::svm::vmcb::{self, Event, Segment, Vmcb, control, misc1, misc2, save};
use hypervisor::svm::{GuestRegisters, GuestReport};
use hypervisor::vcpu::cpuid::{CpuidContext, guest_cpuid};
use hypervisor::vcpu::msr::{self, MsrOutcome};
use log::{error, info, warn};
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::hypercall::{HypercallArgs, HypercallNumber};
use xenolith_abi::sched::ShutdownReason;

use crate::dom0_loader::Dom0;
use crate::hw::memory::{self as physical, Dom0Ram};
use crate::hw::power::{self, StopReason};
use crate::hw::svm;
use crate::{fatal, logger};

/// Ports the hypervisor keeps: COM1 (its console), the 0xe9 debug port
/// (guest console), isa-debug-exit, the reset register, the legacy PIC and
/// PIT (masked and used for calibration by the hypervisor).
const HYPERVISOR_PORTS: &[core::ops::RangeInclusive<u16>] = &[
    0x3f8..=0x3ff,
    0xe9..=0xe9,
    0xf4..=0xf7,
    0xcf9..=0xcf9,
    0x20..=0x21,
    0xa0..=0xa1,
    0x40..=0x43,
];

/// Guest physical page attribute table at reset.
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

struct Vcpu {
    vmcb: &'static mut Vmcb,
    vmcb_address: HostPhysAddr,
    host_state: HostPhysAddr,
    registers: GuestRegisters,
    ram: Dom0Ram,
    console: LineBuffer,
    cpuid: CpuidContext,
    crash_action: CrashAction,
}

fn allocate(frames: &mut FrameAllocator, bytes: u64) -> HostRange {
    let range = frames
        .allocate(bytes, PAGE_SIZE, HostPhysAddr(u64::MAX))
        .unwrap_or_else(|error| fatal(format_args!("no memory for SVM structures: {error}")));
    // SAFETY: freshly allocated to the hypervisor and identity-mapped.
    unsafe { physical::zero(range) };
    range
}

/// Sets Dom0's vCPU up at its PVH entry and runs it for good.
pub fn run_dom0(
    dom0: Dom0,
    options: &Options,
    hypervisor_cmdline: &str,
    frames: &mut FrameAllocator,
) -> ! {
    let host_save = allocate(frames, PAGE_SIZE);
    let host_state = allocate(frames, PAGE_SIZE);
    let vmcb_frame = allocate(frames, PAGE_SIZE);
    let io_frame = allocate(frames, 3 * PAGE_SIZE);
    let msr_frame = allocate(frames, 2 * PAGE_SIZE);
    // SAFETY: each frame range was just allocated, zeroed, and is large
    // and aligned enough for its type; all-zero bytes are valid for each.
    let (vmcb, io_map, msr_map) = unsafe {
        svm::enable(host_save.start);
        (
            physical::object::<Vmcb>(vmcb_frame.start),
            physical::object::<IoPermissionMap>(io_frame.start),
            physical::object::<MsrPermissionMap>(msr_frame.start),
        )
    };
    *io_map = IoPermissionMap::pass_through();
    for ports in HYPERVISOR_PORTS {
        io_map.intercept(ports.clone());
    }
    *msr_map = MsrPermissionMap::intercept_all();
    for &index in msr::PASS_THROUGH {
        msr_map.pass_through(index);
    }

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
    vmcb.write_u64(control::IOPM_BASE, io_frame.start.0);
    vmcb.write_u64(control::MSRPM_BASE, msr_frame.start.0);
    vmcb.write_u32(control::GUEST_ASID, 1);
    vmcb.write_u8(control::TLB_CONTROL, vmcb::TLB_FLUSH_ALL);
    vmcb.write_u64(control::VIRTUAL_INTERRUPT, 1 << 24); // V_INTR_MASKING
    vmcb.write_u64(control::NESTED_CONTROL, vmcb::NESTED_PAGING);
    vmcb.write_u64(control::NESTED_CR3, dom0.nested.root().0);
    // Dom0's TSC counts from hypervisor entry, so it can time its boot.
    vmcb.write_u64(
        control::TSC_OFFSET,
        baremetal::entry::boot_tsc().wrapping_neg(),
    );

    // The PVH entry state: 32-bit protected mode, flat segments, no paging.
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
    vmcb.write_u64(save::EFER, msr::EFER_SVME);
    vmcb.write_u64(save::RFLAGS, 0x2);
    vmcb.write_u64(save::DR6, 0xffff_0ff0);
    vmcb.write_u64(save::DR7, 0x400);
    vmcb.write_u64(save::GUEST_PAT, DEFAULT_PAT);
    vmcb.set_rip(u64::from(dom0.entry));

    let tsc_khz = logger::tsc_khz();
    let mut vcpu = Vcpu {
        vmcb,
        vmcb_address: vmcb_frame.start,
        host_state: host_state.start,
        registers: GuestRegisters {
            rbx: dom0.start_info.0,
            ..GuestRegisters::default()
        },
        ram: Dom0Ram { ram: dom0.ram },
        console: LineBuffer::new(),
        cpuid: CpuidContext {
            vcpu_id: 0,
            domain_id: 0,
            guest_cr4: 0,
            tsc_khz,
        },
        crash_action: options.dom0_crash,
    };
    let micros = logger::micros_since_entry();
    info!(
        "hypervisor entry -> dom0 entry: {}.{:03} ms; hypervisor uses {} KiB, dom0 has {} MiB",
        micros / 1000,
        micros % 1000,
        crate::host_memory::hypervisor_footprint(frames, dom0.ram) / 1024,
        dom0.ram.len() >> 20
    );
    loop {
        // SAFETY: the VMCB, host state frame and the maps it points to are
        // set up above and owned by this vCPU.
        unsafe { svm::run(&mut vcpu.registers, vcpu.vmcb_address, vcpu.host_state) };
        vcpu.vmcb.write_u8(control::TLB_CONTROL, 0);
        let exit = VmExit::decode(
            vcpu.vmcb.read_u64(control::EXIT_CODE),
            vcpu.vmcb.read_u64(control::EXIT_INFO1),
            vcpu.vmcb.read_u64(control::EXIT_INFO2),
        );
        vcpu.handle(exit, hypervisor_cmdline);
    }
}

impl Vcpu {
    fn advance(&mut self, bytes: u64) {
        let rip = self.vmcb.rip().wrapping_add(bytes);
        self.vmcb.set_rip(rip);
    }

    fn handle(&mut self, exit: VmExit, hypervisor_cmdline: &str) {
        match exit {
            VmExit::Cpuid => {
                self.cpuid.guest_cr4 = self.vmcb.read_u64(save::CR4);
                let leaf = self.vmcb.rax() as u32;
                let subleaf = self.registers.rcx as u32;
                let [eax, ebx, ecx, edx] =
                    guest_cpuid(leaf, subleaf, &self.cpuid, baremetal::cpu::cpuid);
                self.vmcb.set_rax(u64::from(eax));
                self.registers.rbx = u64::from(ebx);
                self.registers.rcx = u64::from(ecx);
                self.registers.rdx = u64::from(edx);
                self.advance(2);
            }
            VmExit::Msr { write } => self.msr(write),
            VmExit::Io(access) => self.port(access),
            VmExit::Hlt => {
                if self.vmcb.rflags() & (1 << 9) == 0 {
                    warn!("dom0 halted with interrupts disabled: it can never wake; powering off");
                    power::stop(StopReason::Poweroff);
                }
                self.advance(1);
                idle();
            }
            VmExit::Vmmcall => self.hypercall(hypervisor_cmdline),
            VmExit::NestedPageFault { address, error } => self.crash(format_args!(
                "dom0 touched {address:?} outside its memory (fault {error:#x})"
            )),
            VmExit::Shutdown => self.crash(format_args!("dom0 triple fault")),
            VmExit::Exception {
                vector, error_code, ..
            } => self.crash(format_args!(
                "dom0 exception {vector} (error code {error_code:#x})"
            )),
            VmExit::Interrupt => {
                // Let the host IDT take the interrupt that caused the exit.
                x86_64::instructions::interrupts::enable();
                x86_64::instructions::nop();
                x86_64::instructions::interrupts::disable();
            }
            VmExit::Forbidden { code } => {
                warn!("dom0 used a virtualization instruction (exit {code:#x}); #UD injected");
                self.vmcb.inject(Event::INVALID_OPCODE);
            }
            VmExit::InvalidState => {
                error!("VMRUN refused Dom0's state:\n{}", self.report());
                power::stop(StopReason::Fatal);
            }
            VmExit::Unexpected { code } => {
                self.crash(format_args!("dom0 caused unexpected exit {code:#x}"))
            }
        }
    }

    fn report(&self) -> GuestReport<'_> {
        GuestReport {
            vmcb: self.vmcb,
            registers: &self.registers,
        }
    }

    fn crash(&mut self, what: core::fmt::Arguments<'_>) -> ! {
        self.flush_console();
        error!("{what}; dom0 crashed:\n{}", self.report());
        match self.crash_action {
            CrashAction::Halt => power::stop(StopReason::Dom0Crashed),
            CrashAction::Reboot => power::reboot(),
        }
    }

    fn msr(&mut self, write: bool) {
        let index = self.registers.rcx as u32;
        let outcome = if write {
            let value = (self.registers.rdx << 32) | (self.vmcb.rax() & 0xffff_ffff);
            msr::write(index, value)
        } else {
            msr::read(index, self.vmcb.read_u64(save::EFER))
        };
        match outcome {
            MsrOutcome::Done(value) => {
                if !write {
                    self.vmcb.set_rax(value & 0xffff_ffff);
                    self.registers.rdx = value >> 32;
                }
            }
            MsrOutcome::SetEfer(value) => self.vmcb.write_u64(save::EFER, value),
            MsrOutcome::InstallHypercallPage(address) => {
                let page = msr::hypercall_page();
                let target = hypervisor::memory::GuestPhysAddr(address);
                if guest_walk::GuestPhysicalMemory::write(&mut self.ram, target, &page).is_err() {
                    self.vmcb.inject(Event::GENERAL_PROTECTION);
                    return;
                }
            }
            MsrOutcome::Fault => {
                warn!(
                    "dom0 {} unknown MSR {index:#x}; #GP injected",
                    if write { "wrote" } else { "read" }
                );
                self.vmcb.inject(Event::GENERAL_PROTECTION);
                return;
            }
        }
        self.advance(2);
    }

    fn port(&mut self, access: IoAccess) {
        if access.input && !access.string {
            let ones = match access.size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            self.vmcb.set_rax((self.vmcb.rax() & !ones) | ones);
        } else if !access.input && !access.string {
            let value = self.vmcb.rax();
            match access.port {
                0xe9 => self.console_output(&[value as u8]),
                0xcf9 if value & 0x4 != 0 => {
                    info!("dom0 reset the machine through port 0xcf9");
                    power::reboot();
                }
                _ => {}
            }
        }
        self.vmcb.set_rip(access.next_rip);
    }

    fn hypercall(&mut self, hypervisor_cmdline: &str) {
        let number = HypercallNumber(self.vmcb.rax());
        let args = HypercallArgs {
            rdi: self.registers.rdi,
            rsi: self.registers.rsi,
            rdx: self.registers.rdx,
            r10: self.registers.r10,
            r8: self.registers.r8,
        };
        let caller = Caller {
            domain: DomainId::DOM0,
            privileged: true,
            cpl: self.vmcb.cpl(),
            hypervisor_cmdline,
        };
        let mut guest = GuestView {
            vmcb: self.vmcb,
            ram: &mut self.ram,
        };
        let console = &mut self.console;
        let outcome =
            hypercall::dispatch(number, args, &caller, &mut guest, &mut |bytes: &[u8]| {
                console.push(bytes, |line| info!("(d0) {line}"));
            });
        match outcome {
            Outcome::Return(value) => self.vmcb.set_rax(value),
            Outcome::Block => {
                self.vmcb.set_rax(0);
                idle();
            }
            Outcome::Shutdown(reason) => self.shutdown(reason),
        }
        self.advance(3);
    }

    fn shutdown(&mut self, reason: ShutdownReason) {
        self.flush_console();
        match reason {
            ShutdownReason::Poweroff => {
                info!("dom0 powered off");
                power::stop(StopReason::Poweroff);
            }
            ShutdownReason::Reboot => {
                info!("dom0 asked for a reboot");
                power::reboot();
            }
            ShutdownReason::Crash | ShutdownReason::Watchdog => {
                self.crash(format_args!("dom0 reported a crash ({reason:?})"))
            }
            ShutdownReason::Suspend | ShutdownReason::SoftReset => {
                warn!("dom0 asked for {reason:?}, which Xenolith does not support");
                self.vmcb.set_rax(Errno::EOPNOTSUPP.as_return());
            }
        }
    }

    fn console_output(&mut self, bytes: &[u8]) {
        self.console.push(bytes, |line| info!("(d0) {line}"));
    }

    fn flush_console(&mut self) {
        if !self.console.is_empty() {
            self.console.flush(&mut |line: &str| info!("(d0) {line}"));
        }
    }
}

/// Waits for the next event. Nothing raises one yet (no timers or device
/// interrupts are routed), so an idle Dom0 sleeps until the machine stops.
fn idle() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}

/// Dom0's memory as its current page tables show it.
struct GuestView<'a> {
    vmcb: &'a Vmcb,
    ram: &'a mut Dom0Ram,
}

impl GuestView<'_> {
    fn paging(&self) -> (PagingMode, u64, bool) {
        let efer = self.vmcb.read_u64(save::EFER);
        let mode = PagingMode::from_registers(
            self.vmcb.read_u64(save::CR0),
            self.vmcb.read_u64(save::CR4),
            efer,
        );
        (mode, self.vmcb.read_u64(save::CR3), efer & (1 << 11) != 0)
    }
}

impl GuestAccess for GuestView<'_> {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let (mode, cr3, nxe) = self.paging();
        guest_walk::read_virtual(
            mode,
            cr3,
            address,
            Access::SUPERVISOR_READ,
            nxe,
            &*self.ram,
            buffer,
        )
        .map_err(|error| GuestFault {
            address: error.address,
        })
    }

    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault> {
        let (mode, cr3, nxe) = self.paging();
        guest_walk::write_virtual(
            mode,
            cr3,
            address,
            Access::SUPERVISOR_WRITE,
            nxe,
            self.ram,
            data,
        )
        .map_err(|error| GuestFault {
            address: error.address,
        })
    }
}
