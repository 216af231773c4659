//! Guest FPU, SSE and AVX state: each vCPU has an XSAVE area, and the
//! registers are switched (with XCR0, which guests set directly) whenever
//! a different vCPU gets the CPU. The hypervisor itself never uses them:
//! it is compiled without SSE.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::control::{Cr4, Cr4Flags};

/// Bytes of an XSAVE area for every component the CPU has (0 until
/// `init` found XSAVE).
static AREA_SIZE: AtomicU64 = AtomicU64::new(0);

/// XCR0 at reset: x87 only.
pub const RESET_XCR0: u64 = 1;

/// Turns XSAVE on for the host so guest state can be saved. Returns the
/// area size, or `None` when the CPU has no XSAVE (then guests must not
/// be offered it either; the caller stops).
pub fn init() -> Option<u64> {
    if baremetal::cpu::cpuid(1, 0)[2] & (1 << 26) == 0 {
        return None;
    }
    // SAFETY: the CPU has XSAVE (checked above); FXSR, XMM exceptions and
    // XSAVE only become usable, nothing changes for code that avoids them.
    unsafe {
        Cr4::update(|flags| {
            flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE | Cr4Flags::OSXSAVE);
        });
    }
    let size = u64::from(baremetal::cpu::cpuid(0xd, 0)[2]);
    AREA_SIZE.store(size, Ordering::Relaxed);
    Some(size)
}

/// Size of one vCPU's area.
pub fn area_size() -> u64 {
    AREA_SIZE.load(Ordering::Relaxed)
}

fn xgetbv() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: XGETBV of XCR0 is allowed once CR4.OSXSAVE is set (init).
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack))
    };
    (u64::from(high) << 32) | u64::from(low)
}

fn xsetbv(value: u64) {
    // SAFETY: `value` was XCR0 of a guest that set it with its own XSETBV
    // (so the CPU accepted it) or the reset value; the hypervisor does not
    // depend on XCR0.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

/// Saves the running guest's registers into `area` and returns its XCR0.
///
/// # Safety
/// `area` must be a hypervisor-owned, 64-byte-aligned buffer of at least
/// [`area_size`] bytes belonging to the vCPU that ran last.
pub unsafe fn save(area: u64) -> u64 {
    let xcr0 = xgetbv();
    // SAFETY: guaranteed by the caller; the mask saves every component
    // enabled in XCR0.
    unsafe {
        core::arch::asm!("xsave64 [{}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
    };
    xcr0
}

/// Loads a guest's registers from `area` under its `xcr0`.
///
/// # Safety
/// `area` must be that vCPU's area: zeroed (initial state) or written by
/// [`save`].
pub unsafe fn restore(area: u64, xcr0: u64) {
    xsetbv(xcr0);
    // SAFETY: guaranteed by the caller; a zeroed header restores the
    // initial state.
    unsafe {
        core::arch::asm!("xrstor64 [{}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
    };
}
