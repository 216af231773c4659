//! Small CPU instructions used everywhere.

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is never set by us.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPUID `leaf`/`subleaf` as (EAX, EBX, ECX, EDX).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [result.eax, result.ebx, result.ecx, result.edx]
}

/// Stops this CPU for good: interrupts off, halt in a loop.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Resets the CPU the hard way: an empty IDT and a trap triple-fault it.
/// The last resort of every x86 reboot path (and a test of crash reports).
pub fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: with no IDT the trap cannot be delivered, so the CPU shuts
    // down; that is the purpose, and nothing runs after it.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    halt_forever()
}
