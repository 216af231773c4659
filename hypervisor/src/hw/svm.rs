//! Turning SVM on and entering a guest with VMRUN.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use hypervisor::memory::HostPhysAddr;
use hypervisor::svm::GuestRegisters;
use x86_64::registers::model_specific::Msr;

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const EFER_SVME: u64 = 1 << 12;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// Why this CPU cannot run guests.
#[derive(Clone, Copy, Debug)]
pub enum Unavailable {
    /// An Intel CPU: VT-x is not supported yet.
    Intel,
    /// Neither AMD nor Intel.
    UnknownVendor([u8; 12]),
    /// An AMD CPU without SVM.
    NoSvm,
    /// SVM exists but the firmware locked it off.
    DisabledByFirmware,
    /// SVM without nested paging.
    NoNestedPaging,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Intel => write!(
                f,
                "this is an Intel CPU and Intel VT-x is not supported yet"
            ),
            Self::UnknownVendor(vendor) => write!(
                f,
                "CPU vendor {:?} is neither AMD nor Intel",
                core::str::from_utf8(vendor).unwrap_or("?")
            ),
            Self::NoSvm => write!(f, "the CPU lacks AMD SVM"),
            Self::DisabledByFirmware => write!(f, "SVM is disabled by the firmware (VM_CR.SVMDIS)"),
            Self::NoNestedPaging => write!(f, "the CPU has SVM but no nested paging"),
        }
    }
}

/// What the CPU's SVM offers.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub address_space_ids: u32,
    pub next_rip_save: bool,
}

/// Checks that SVM with nested paging can be used.
pub fn check() -> Result<Features, Unavailable> {
    let [_, ebx, ecx, edx] = baremetal::cpu::cpuid(0, 0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&edx.to_le_bytes());
    vendor[8..].copy_from_slice(&ecx.to_le_bytes());
    match &vendor {
        b"AuthenticAMD" | b"HygonGenuine" => {}
        b"GenuineIntel" => return Err(Unavailable::Intel),
        _ => return Err(Unavailable::UnknownVendor(vendor)),
    }
    let [max_extended, ..] = baremetal::cpu::cpuid(0x8000_0000, 0);
    if max_extended < 0x8000_000a || baremetal::cpu::cpuid(0x8000_0001, 0)[2] & (1 << 2) == 0 {
        return Err(Unavailable::NoSvm);
    }
    // SAFETY: VM_CR exists on every CPU with SVM; reading it is harmless.
    if unsafe { Msr::new(MSR_VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Err(Unavailable::DisabledByFirmware);
    }
    let [_, asids, _, features] = baremetal::cpu::cpuid(0x8000_000a, 0);
    if features & 1 == 0 {
        return Err(Unavailable::NoNestedPaging);
    }
    Ok(Features {
        address_space_ids: asids,
        next_rip_save: features & (1 << 3) != 0,
    })
}

/// Turns SVM on: EFER.SVME and the host save area VMRUN uses.
///
/// # Safety
/// `host_save_area` must be a 4 KiB frame owned by the hypervisor for as
/// long as SVM stays on.
pub unsafe fn enable(host_save_area: HostPhysAddr) {
    // SAFETY: `check` passed, so EFER.SVME may be set; the save area is
    // ours by the caller's promise.
    unsafe {
        let mut efer = Msr::new(MSR_EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(MSR_VM_HSAVE_PA).write(host_save_area.0);
    }
}

/// The TSC_AUX value loaded in the CPU (`NOT_LOADED` before the first).
static LOADED_TSC_AUX: AtomicU64 = AtomicU64::new(NOT_LOADED);
const NOT_LOADED: u64 = u64::MAX;
/// Whether the CPU has TSC_AUX: 0 not yet asked, 1 no, 2 yes.
static TSC_AUX_PRESENT: AtomicU8 = AtomicU8::new(0);

/// Loads a vCPU's TSC_AUX into the CPU before it runs, so that its RDTSCP
/// and RDPID (which do not exit) return its own value. The hypervisor
/// never reads TSC_AUX itself, so there is no host value to put back after
/// VMRUN (Xen restores one because it uses RDTSCP); the MSR is written
/// only when the value changes. CPUs without RDTSCP or RDPID have no
/// TSC_AUX: nothing to load.
pub fn load_tsc_aux(value: u32) {
    let present = match TSC_AUX_PRESENT.load(Ordering::Relaxed) {
        0 => {
            let [.., extended_edx] = baremetal::cpu::cpuid(0x8000_0001, 0);
            let [_, _, leaf7_ecx, _] = baremetal::cpu::cpuid(7, 0);
            let present = extended_edx & (1 << 27) != 0 || leaf7_ecx & (1 << 22) != 0;
            TSC_AUX_PRESENT.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
        known => known == 2,
    };
    if !present || LOADED_TSC_AUX.swap(u64::from(value), Ordering::Relaxed) == u64::from(value) {
        return;
    }
    // SAFETY: TSC_AUX exists (RDTSCP or RDPID is present) and its upper
    // half is written as zero; the hypervisor does not depend on its value.
    unsafe { Msr::new(MSR_TSC_AUX).write(u64::from(value)) };
}

unsafe extern "C" {
    fn xenolith_svm_run(registers: *mut GuestRegisters, vmcb: u64, host_state: u64);
}

/// Runs the guest until its next VM exit.
///
/// # Safety
/// `vmcb` must be a fully set-up VMCB frame and `host_state` a frame for
/// VMSAVE/VMLOAD of the host's hidden state, both hypervisor-owned.
pub unsafe fn run(registers: &mut GuestRegisters, vmcb: HostPhysAddr, host_state: HostPhysAddr) {
    // SAFETY: guaranteed by the caller; the stub saves and restores every
    // callee-saved register and the host's segment state.
    unsafe { xenolith_svm_run(registers, vmcb.0, host_state.0) }
}

// VMRUN with the guest's general-purpose registers loaded from and saved
// to `GuestRegisters` (offsets: rbx 0, rcx 8, rdx 16, rsi 24, rdi 32,
// rbp 40, r8..r15 48..104). The host's FS/GS/TR/LDTR and syscall MSRs are
// saved with VMSAVE before and restored with VMLOAD after. GIF is cleared
// around the switch so no interrupt lands in between; host interrupts are
// enabled across VMRUN (held back by GIF = 0 until the guest runs), because
// with V_INTR_MASKING the host's IF decides whether a physical interrupt —
// the scheduler's timer — may stop the guest.
core::arch::global_asm!(
    r#"
    .text
    .global xenolith_svm_run
xenolith_svm_run:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushq %rdi
    pushq %rdx
    clgi
    sti
    movq %rdx, %rax
    vmsave
    movq %rsi, %rax
    movq 0(%rdi), %rbx
    movq 8(%rdi), %rcx
    movq 16(%rdi), %rdx
    movq 24(%rdi), %rsi
    movq 40(%rdi), %rbp
    movq 48(%rdi), %r8
    movq 56(%rdi), %r9
    movq 64(%rdi), %r10
    movq 72(%rdi), %r11
    movq 80(%rdi), %r12
    movq 88(%rdi), %r13
    movq 96(%rdi), %r14
    movq 104(%rdi), %r15
    movq 32(%rdi), %rdi
    vmload
    vmrun
    vmsave
    pushq %rdi
    movq 16(%rsp), %rdi
    movq %rbx, 0(%rdi)
    movq %rcx, 8(%rdi)
    movq %rdx, 16(%rdi)
    movq %rsi, 24(%rdi)
    movq %rbp, 40(%rdi)
    movq %r8, 48(%rdi)
    movq %r9, 56(%rdi)
    movq %r10, 64(%rdi)
    movq %r11, 72(%rdi)
    movq %r12, 80(%rdi)
    movq %r13, 88(%rdi)
    movq %r14, 96(%rdi)
    movq %r15, 104(%rdi)
    popq %rax
    movq %rax, 32(%rdi)
    popq %rax
    vmload
    cli
    stgi
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    "#,
    options(att_syntax)
);
