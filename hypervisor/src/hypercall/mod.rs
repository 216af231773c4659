//! Hypercalls: decoding a guest's request, checking its arguments, and
//! answering it. Pure logic: guest memory and the console come in through
//! traits, and what the machine must do (stop a domain, block a vCPU)
//! comes out as an [`Outcome`].

use xenolith_abi::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::hypercall::{HypercallArgs, HypercallNumber};
use xenolith_abi::sched::{self, ShutdownReason};
use xenolith_abi::version::{self, feature};

use crate::memory::GuestVirtAddr;

/// A guest address the hypervisor could not read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    pub address: GuestVirtAddr,
}

/// The calling vCPU's view of its own memory (guest-virtual addresses).
pub trait GuestAccess {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault>;
    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault>;
}

/// The console as `console_io` sees it: where the caller's output goes,
/// and the input typed on the serial line (which only Dom0 reads).
pub trait Console {
    /// Takes console output from the caller.
    fn write(&mut self, bytes: &[u8]);
    /// Copies waiting input, from the `skip`th oldest byte on, into `into`
    /// without taking it; returns how many bytes were copied.
    fn peek_input(&self, skip: usize, into: &mut [u8]) -> usize;
    /// Takes the `count` oldest input bytes: the caller has them now.
    fn consume_input(&mut self, count: usize);
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub domain: DomainId,
    /// Dom0: the control domain.
    pub privileged: bool,
    /// The vCPU's privilege level; hypercalls from user mode are refused.
    pub cpl: u8,
    /// The hypervisor's command line (XENVER_commandline, Dom0 only).
    pub hypervisor_cmdline: &'a str,
}

/// What the hypervisor must do after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Put this in RAX and resume the guest.
    Return(u64),
    /// The domain asked to stop.
    Shutdown(ShutdownReason),
    /// The vCPU waits for an event (SCHEDOP_block); RAX = 0 when it wakes.
    Block,
    /// The vCPU gives up the CPU for now (SCHEDOP_yield); RAX = 0.
    Yield,
}

impl Outcome {
    fn error(errno: Errno) -> Self {
        Self::Return(errno.as_return())
    }
}

/// The most a single `console_io` write may carry. Linux writes a printk
/// line at a time; this bounds the work one call can cause.
pub const CONSOLE_WRITE_MAX: u64 = 64 * 1024;

/// Runs hypercall `number` for `caller`.
pub fn dispatch(
    number: HypercallNumber,
    args: HypercallArgs,
    caller: &Caller<'_>,
    guest: &mut impl GuestAccess,
    console: &mut impl Console,
) -> Outcome {
    if caller.cpl != 0 {
        return Outcome::error(Errno::EPERM);
    }
    match number {
        HypercallNumber::CONSOLE_IO => console_io(args, caller, guest, console),
        HypercallNumber::XEN_VERSION => xen_version(args, caller, guest),
        HypercallNumber::SCHED_OP => sched_op(args, guest),
        _ => Outcome::error(Errno::ENOSYS),
    }
}

fn console_io(
    args: HypercallArgs,
    caller: &Caller<'_>,
    guest: &mut impl GuestAccess,
    console: &mut impl Console,
) -> Outcome {
    match args.rdi {
        CONSOLEIO_WRITE => console_write(args, guest, console),
        // As Xen without an XSM policy granting it: input is Dom0's alone.
        CONSOLEIO_READ if caller.privileged => console_read(args, guest, console),
        CONSOLEIO_READ => Outcome::error(Errno::EPERM),
        _ => Outcome::error(Errno::ENOSYS),
    }
}

/// CONSOLEIO_write: `count` bytes from the guest's `buffer` to the console.
fn console_write(
    args: HypercallArgs,
    guest: &impl GuestAccess,
    console: &mut impl Console,
) -> Outcome {
    let count = args.rsi;
    if count > CONSOLE_WRITE_MAX {
        return Outcome::error(Errno::EINVAL);
    }
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < count {
        let length = (count - done).min(chunk.len() as u64) as usize;
        let Some(address) = args.rdx.checked_add(done) else {
            return Outcome::error(Errno::EFAULT);
        };
        let buffer = &mut chunk[..length];
        if guest.read(GuestVirtAddr(address), buffer).is_err() {
            return Outcome::error(Errno::EFAULT);
        }
        console.write(buffer);
        done += length as u64;
    }
    Outcome::Return(0)
}

/// CONSOLEIO_read: copies up to `count` bytes of typed input into the
/// guest's `buffer` and returns how many (0 when none waits). The input is
/// taken only once all of it reached the guest: a bad buffer is -EFAULT
/// and the bytes stay for the next read.
fn console_read(
    args: HypercallArgs,
    guest: &mut impl GuestAccess,
    console: &mut impl Console,
) -> Outcome {
    // Xen's `count` is an unsigned int: only the low 32 bits count.
    let wanted = (args.rsi as u32) as usize;
    let mut chunk = [0u8; 256];
    let mut done = 0usize;
    while done < wanted {
        let length = (wanted - done).min(chunk.len());
        let copied = console.peek_input(done, &mut chunk[..length]);
        if copied == 0 {
            break;
        }
        let Some(address) = args.rdx.checked_add(done as u64) else {
            return Outcome::error(Errno::EFAULT);
        };
        if guest
            .write(GuestVirtAddr(address), &chunk[..copied])
            .is_err()
        {
            return Outcome::error(Errno::EFAULT);
        }
        done += copied;
    }
    console.consume_input(done);
    Outcome::Return(done as u64)
}

fn xen_version(args: HypercallArgs, caller: &Caller<'_>, guest: &mut impl GuestAccess) -> Outcome {
    let buffer = GuestVirtAddr(args.rsi);
    let written = |result: Result<(), GuestFault>| match result {
        Ok(()) => Outcome::Return(0),
        Err(_) => Outcome::error(Errno::EFAULT),
    };
    match args.rdi {
        version::XENVER_VERSION => Outcome::Return(version::packed_version()),
        version::XENVER_EXTRAVERSION => written(guest.write(buffer, version::EXTRAVERSION)),
        version::XENVER_CAPABILITIES => written(write_string(
            guest,
            buffer,
            version::CAPABILITIES,
            version::LONG_STRING_SIZE,
        )),
        version::XENVER_CHANGESET => written(write_string(
            guest,
            buffer,
            b"xenolith",
            version::CHANGESET_SIZE,
        )),
        version::XENVER_PAGESIZE => Outcome::Return(4096),
        version::XENVER_GET_FEATURES => {
            let mut request = [0u8; 8];
            if guest.read(buffer, &mut request).is_err() {
                return Outcome::error(Errno::EFAULT);
            }
            let submap_index = u32::from_le_bytes([request[0], request[1], request[2], request[3]]);
            if submap_index != 0 {
                return Outcome::error(Errno::EINVAL);
            }
            let submap = features(caller.privileged);
            let address = GuestVirtAddr(args.rsi.wrapping_add(4));
            written(guest.write(address, &submap.to_le_bytes()))
        }
        version::XENVER_COMMANDLINE if caller.privileged => written(write_string(
            guest,
            buffer,
            caller.hypervisor_cmdline.as_bytes(),
            version::LONG_STRING_SIZE,
        )),
        version::XENVER_COMMANDLINE => Outcome::error(Errno::EPERM),
        _ => Outcome::error(Errno::ENOSYS),
    }
}

/// XENFEAT submap 0 for a PVH domain.
pub fn features(privileged: bool) -> u32 {
    let mut bits = (1 << feature::WRITABLE_PAGE_TABLES)
        | (1 << feature::AUTO_TRANSLATED_PHYSMAP)
        | (1 << feature::HVM_CALLBACK_VECTOR)
        | (1 << feature::HVM_SAFE_PVCLOCK);
    if privileged {
        bits |= 1 << feature::DOM0;
    }
    bits
}

/// Writes `text` NUL-terminated into a guest buffer of `size` bytes,
/// truncating to fit.
fn write_string(
    guest: &mut impl GuestAccess,
    address: GuestVirtAddr,
    text: &[u8],
    size: usize,
) -> Result<(), GuestFault> {
    let length = text.len().min(size.saturating_sub(1));
    guest.write(address, &text[..length])?;
    guest.write(GuestVirtAddr(address.0.wrapping_add(length as u64)), &[0])
}

fn sched_op(args: HypercallArgs, guest: &impl GuestAccess) -> Outcome {
    match args.rdi {
        sched::SCHEDOP_YIELD => Outcome::Yield,
        sched::SCHEDOP_BLOCK => Outcome::Block,
        sched::SCHEDOP_SHUTDOWN => {
            let mut raw = [0u8; 4];
            if guest.read(GuestVirtAddr(args.rsi), &mut raw).is_err() {
                return Outcome::error(Errno::EFAULT);
            }
            match ShutdownReason::from_raw(u32::from_le_bytes(raw)) {
                Some(reason) => Outcome::Shutdown(reason),
                None => Outcome::error(Errno::EINVAL),
            }
        }
        _ => Outcome::error(Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests;
