//! Device interrupts for Dom0. Dom0 owns the devices and programs their
//! interrupts itself (IOAPIC entries, MSI/MSI-X) to the physical local
//! APIC with vectors in [`DOM0_VECTORS`]; the hypervisor takes each one,
//! ends it at the local APIC, and keeps it pending here until it is
//! injected into Dom0, which handles it through its own IDT (and needs no
//! end-of-interrupt of its own).

use core::sync::atomic::{AtomicU64, Ordering};

/// Vectors Dom0 may give its devices; the rest belong to the hypervisor
/// (0x20–0x2f reserved, 0xf0 and up: its timer and spurious vectors).
pub const DOM0_VECTORS: core::ops::RangeInclusive<u8> = 0x30..=0xef;

static PENDING: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Notes that `vector` fired (called from the host IDT handler).
pub fn record(vector: u8) {
    PENDING[usize::from(vector / 64)].fetch_or(1 << (vector % 64), Ordering::AcqRel);
}

/// Whether any device interrupt waits for Dom0.
pub fn any_pending() -> bool {
    PENDING.iter().any(|word| word.load(Ordering::Acquire) != 0)
}

/// Takes the highest pending vector (x86 delivers higher vectors first).
pub fn take_highest() -> Option<u8> {
    for (index, word) in PENDING.iter().enumerate().rev() {
        let mut current = word.load(Ordering::Acquire);
        while current != 0 {
            let bit = 63 - current.leading_zeros() as u8;
            match word.compare_exchange(
                current,
                current & !(1 << bit),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(index as u8 * 64 + bit),
                Err(now) => current = now,
            }
        }
    }
    None
}
