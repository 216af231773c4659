//! What the hypervisor keeps per vCPU in the CPU itself: TSC_AUX (read by
//! RDTSCP without an exit), and NMIs from the virtual APIC, delivered
//! once each and never nested inside a running NMI handler.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::Context;
use crate::cpu::{self, TSC_AUX, X2APIC_ICR};
use crate::report::{Outcome, ensure};

/// A value no one else would store: node 0x2a, CPU 0x5c (Linux's layout).
const TSC_AUX_VALUE: u64 = (0x2a << 12) | 0x5c;

pub fn tsc_aux(_context: &mut Context) -> Outcome {
    let before = cpu::read_msr(TSC_AUX);
    ensure!(before == 0, "TSC_AUX reads {before:#x} at start, not 0");
    cpu::write_msr(TSC_AUX, TSC_AUX_VALUE);
    let read = cpu::read_msr(TSC_AUX);
    ensure!(
        read == TSC_AUX_VALUE,
        "TSC_AUX reads {read:#x} after writing {TSC_AUX_VALUE:#x}"
    );
    let rdtscp = baremetal::cpu::cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0;
    if rdtscp {
        // A hypercall first: the hypervisor runs (and other vCPUs may run)
        // in between, and the value must still be ours afterwards.
        let _ = xen_guest::sched::yield_now();
        let aux = cpu::rdtscp_aux();
        ensure!(
            u64::from(aux) == TSC_AUX_VALUE,
            "RDTSCP gives {aux:#x}, TSC_AUX is {TSC_AUX_VALUE:#x}"
        );
    }
    cpu::write_msr(TSC_AUX, 0);
    Ok(())
}

/// NMIs taken so far.
static NMIS: AtomicU32 = AtomicU32::new(0);
/// Whether the first NMI's handler sends itself a second one.
static SEND_FROM_HANDLER: AtomicBool = AtomicBool::new(false);
/// NMIs counted in the first handler right after it sent the second.
static SEEN_IN_HANDLER: AtomicU32 = AtomicU32::new(0);

/// ICR: delivery mode NMI (0b100), destination shorthand self.
const SELF_NMI: u64 = (0b100 << 8) | (0b01 << 18);

/// Called by the exception handler for vector 2.
pub fn on_nmi() {
    let count = NMIS.fetch_add(1, Ordering::SeqCst) + 1;
    if count == 1 && SEND_FROM_HANDLER.swap(false, Ordering::SeqCst) {
        cpu::write_msr(X2APIC_ICR, SELF_NMI);
        // Several exits happen here; none may deliver the second NMI yet.
        let _ = baremetal::cpu::cpuid(0, 0);
        SEEN_IN_HANDLER.store(NMIS.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

pub fn nmi_self(_context: &mut Context) -> Outcome {
    NMIS.store(0, Ordering::SeqCst);
    SEND_FROM_HANDLER.store(true, Ordering::SeqCst);
    cpu::write_msr(X2APIC_ICR, SELF_NMI);
    // Interrupts are off: only an NMI can have run the handler by now.
    let _ = baremetal::cpu::cpuid(0, 0);
    let first = NMIS.load(Ordering::SeqCst);
    ensure!(first >= 1, "a self-NMI through the ICR was not delivered");
    let inside = SEEN_IN_HANDLER.load(Ordering::SeqCst);
    ensure!(
        inside == 1,
        "a second NMI ran inside the first handler (count {inside} before its IRET)"
    );
    // The second waits for the first handler's IRET, then comes at the
    // next entry.
    let _ = baremetal::cpu::cpuid(0, 0);
    let total = NMIS.load(Ordering::SeqCst);
    ensure!(total == 2, "{total} NMIs taken for 2 sent");
    Ok(())
}
