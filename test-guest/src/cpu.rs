//! The test guest's MSR and RDTSCP instructions, for the checks of what
//! the hypervisor keeps per vCPU (TSC_AUX) and of its virtual APIC (NMIs
//! sent through the x2APIC's ICR).

/// TSC_AUX: what RDTSCP returns in ECX.
pub const TSC_AUX: u32 = 0xc000_0103;
/// The x2APIC interrupt command register.
pub const X2APIC_ICR: u32 = 0x830;

/// Reads `msr`.
pub fn read_msr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the checks read only MSRs the hypervisor emulates (TSC_AUX,
    // the x2APIC's); an unknown one raises #GP, which the exception
    // handler reports as a failed check.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes `value` to `msr`.
pub fn write_msr(msr: u32, value: u64) {
    // SAFETY: as for `read_msr`; the values written (a TSC_AUX, a self-NMI
    // ICR command) change nothing the guest's own memory safety rests on.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags));
    }
}

/// RDTSCP's processor id (TSC_AUX).
pub fn rdtscp_aux() -> u32 {
    let mut aux = 0;
    // SAFETY: RDTSCP reads the TSC and TSC_AUX; callers check CPUID first.
    unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    aux
}
