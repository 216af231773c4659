//! Hypercalls to the Xenolith hypervisor (the Xen ABI: VMMCALL on AMD).

use core::sync::atomic::{AtomicU64, Ordering};

use xenolith_abi::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use xenolith_abi::hypercall::HypercallNumber;
use xenolith_abi::sched::{SCHEDOP_SHUTDOWN, ShutdownReason};

/// Hypercalls made through [`call`] (xen_guest counts its own).
static OWN_HYPERCALLS: AtomicU64 = AtomicU64::new(0);

/// Every hypercall Dom0 made so far: each is an exit to the hypervisor.
pub fn count() -> u64 {
    OWN_HYPERCALLS
        .load(Ordering::Relaxed)
        .saturating_add(xen_guest::raw::hypercalls())
}

/// A two-argument hypercall (the rest are zero).
///
/// # Safety
/// The arguments must be valid for hypercall `number` (pointers to memory
/// the hypervisor may read or write).
unsafe fn call(number: HypercallNumber, first: u64, second: u64, third: u64) -> i64 {
    OWN_HYPERCALLS.fetch_add(1, Ordering::Relaxed);
    let result: u64;
    // SAFETY: VMMCALL traps to the hypervisor, which only touches what the
    // arguments name; it clobbers nothing but RAX.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inlateout("rax") number.0 => result,
            in("rdi") first,
            in("rsi") second,
            in("rdx") third,
            options(nostack)
        );
    }
    result as i64
}

/// Writes bytes to the hypervisor's console.
pub fn console_write(bytes: &[u8]) {
    // SAFETY: the buffer is valid for `bytes.len()` bytes of reading.
    unsafe {
        call(
            HypercallNumber::CONSOLE_IO,
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    };
}

/// Reads bytes typed on the serial line (none waiting: 0).
pub fn console_read(buffer: &mut [u8]) -> usize {
    // SAFETY: the buffer is valid for `buffer.len()` bytes of writing.
    let result = unsafe {
        call(
            HypercallNumber::CONSOLE_IO,
            CONSOLEIO_READ,
            buffer.len() as u64,
            buffer.as_mut_ptr() as u64,
        )
    };
    usize::try_from(result).map_or(0, |count| count.min(buffer.len()))
}

/// Asks the hypervisor to stop Dom0 (and with it the machine).
pub fn shutdown(reason: ShutdownReason) -> ! {
    let argument = reason.as_raw();
    // SAFETY: the argument is a `struct sched_shutdown` on our stack.
    unsafe {
        call(
            HypercallNumber::SCHED_OP,
            SCHEDOP_SHUTDOWN,
            &raw const argument as u64,
            0,
        )
    };
    baremetal::cpu::halt_forever()
}

/// A control-interface request (hypercall 36); the answer is written back
/// into `request`.
pub fn control(request: &mut [u8; xenolith_abi::control::REQUEST_SIZE]) -> Result<(), i64> {
    // SAFETY: the request buffer is valid for reading and writing.
    let result = unsafe {
        call(
            HypercallNumber(xenolith_abi::control::HYPERCALL),
            request.as_mut_ptr() as u64,
            0,
            0,
        )
    };
    if result < 0 { Err(result) } else { Ok(()) }
}

/// Gives the CPU to another vCPU.
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no pointer.
    unsafe {
        call(
            HypercallNumber::SCHED_OP,
            xenolith_abi::sched::SCHEDOP_YIELD,
            0,
            0,
        )
    };
}

/// EVTCHNOP_alloc_unbound on behalf of `domain` (Dom0 may do this for
/// others): a port of `domain` that `remote` may bind. Returns the port.
pub fn alloc_unbound(domain: u16, remote: u16) -> Result<u32, i64> {
    let mut argument = [0u8; 8];
    argument[0..2].copy_from_slice(&domain.to_le_bytes());
    argument[2..4].copy_from_slice(&remote.to_le_bytes());
    // SAFETY: the argument is an `evtchn_alloc_unbound` on our stack.
    let result = unsafe {
        call(
            HypercallNumber::EVENT_CHANNEL_OP,
            xenolith_abi::event_channel::EVTCHNOP_ALLOC_UNBOUND.into(),
            argument.as_mut_ptr() as u64,
            0,
        )
    };
    if result < 0 {
        return Err(result);
    }
    Ok(u32::from_le_bytes([
        argument[4],
        argument[5],
        argument[6],
        argument[7],
    ]))
}
