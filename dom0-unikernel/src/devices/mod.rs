//! Dom0's physical devices: PCI enumeration, virtio-blk and virtio-net
//! over virtio-drivers' PCI transport, their MSI-X interrupts, and waiting
//! for those interrupts without spinning.
//!
//! Interrupt path: each virtqueue has an MSI-X table entry whose message
//! targets APIC id 0 with one of Dom0's vectors ([`VECTORS`]). The device
//! writes it; the physical local APIC interrupts the hypervisor, which ends
//! the interrupt there, keeps the vector pending for Dom0 and wakes Dom0
//! whatever it sleeps in (HLT, SCHEDOP_block or SCHEDOP_poll). Dom0 runs
//! with interrupts off, so it takes pending vectors in [`take_interrupts`]
//! (a one-instruction window with interrupts on); the handler only counts.

pub mod block;
mod check;
mod config;
mod hal;
mod msix;
pub mod net;

use core::sync::atomic::{AtomicU32, Ordering};

pub use check::{first_disk, first_nic, run as check};

/// The vectors Dom0 gives its virtqueues: 0x50 the disk's queue, 0x52 and
/// 0x53 the NIC's receive and transmit queues (interrupt_check has 0x40).
/// Not 0x51: baremetal's interrupt stubs take vectors 0x48, 0x4a–0x4e,
/// 0x51, 0x55, 0x5d, 0x5e (and the same residues mod 64 higher up) for
/// exceptions with an error code, so their frames come out misaligned —
/// in the hypervisor, which takes the interrupt first, too.
pub const VECTORS: core::ops::Range<u8> = 0x50..0x58;
pub const BLOCK_VECTOR: u8 = 0x50;
pub const NET_RECEIVE_VECTOR: u8 = 0x52;
pub const NET_TRANSMIT_VECTOR: u8 = 0x53;

static COUNTS: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];

/// Called from Dom0's interrupt handler: counts a device vector and says
/// whether it was one.
pub fn on_interrupt(vector: u64) -> bool {
    let Some(slot) = u8::try_from(vector)
        .ok()
        .filter(|vector| VECTORS.contains(vector))
        .and_then(|vector| COUNTS.get(usize::from(vector - VECTORS.start)))
    else {
        return false;
    };
    slot.fetch_add(1, Ordering::Relaxed);
    true
}

/// Interrupts seen on `vector` so far.
pub fn interrupts(vector: u8) -> u32 {
    vector
        .checked_sub(VECTORS.start)
        .and_then(|index| COUNTS.get(usize::from(index)))
        .map_or(0, |count| count.load(Ordering::Relaxed))
}

/// Lets in the device interrupts the hypervisor holds for Dom0: interrupts
/// on for one instruction (STI's shadow covers the NOP), then off again.
pub fn take_interrupts() {
    // SAFETY: Dom0's IDT is loaded and its handler returns for device
    // vectors; interrupts are off again before this returns.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// The TSC frequency in kHz (Xen CPUID leaf base+3).
fn tsc_khz() -> u64 {
    u64::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1))
}

/// A TSC value `milliseconds` from now.
pub fn deadline_after(milliseconds: u64) -> u64 {
    baremetal::cpu::rdtsc().saturating_add(milliseconds.saturating_mul(tsc_khz()))
}

/// Sleeps in SCHEDOP_poll (no ports) until a device interrupt is pending
/// for Dom0 or about `deadline` (a TSC value) has passed, then takes the
/// pending interrupts. The hypervisor's system time counts from its own
/// start, after the TSC's zero, so the TSC in nanoseconds is an upper bound
/// of it: the poll never ends early, only up to the boot time late, and
/// the caller checks the TSC deadline itself.
pub fn sleep_until_interrupt(deadline: u64) {
    let nanoseconds = u128::from(deadline) * 1_000_000 / u128::from(tsc_khz());
    let timeout = xen_guest::types::SystemTime(u64::try_from(nanoseconds).unwrap_or(u64::MAX));
    let _ = xen_guest::sched::poll(&[], timeout);
    take_interrupts();
}

/// Runs `step` until it reports done, sleeping for interrupts in between;
/// false when `milliseconds` pass first. Pending interrupts are taken
/// before each step (the hypervisor offers one per entry into Dom0, so the
/// counts can lag; the work never does, as each step drains everything).
pub fn wait_until(milliseconds: u64, mut step: impl FnMut() -> bool) -> bool {
    let deadline = deadline_after(milliseconds);
    loop {
        take_interrupts();
        if step() {
            return true;
        }
        if baremetal::cpu::rdtsc() >= deadline {
            return false;
        }
        sleep_until_interrupt(deadline);
    }
}
