//! Hypercall tests against a fake guest memory.

use super::*;
use crate::console::input::{INPUT_CAPACITY, InputBuffer};

/// Guest memory: `len` bytes at guest-virtual `base`; anything else faults.
struct FakeGuest {
    base: u64,
    bytes: Vec<u8>,
}

impl FakeGuest {
    fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(
        &self,
        address: GuestVirtAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestFault> {
        let start = address
            .0
            .checked_sub(self.base)
            .ok_or(GuestFault { address })? as usize;
        let end = start.checked_add(len).ok_or(GuestFault { address })?;
        if end > self.bytes.len() {
            return Err(GuestFault { address });
        }
        Ok(start..end)
    }
}

impl GuestAccess for FakeGuest {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let range = self.range(address, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault> {
        let range = self.range(address, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

/// A console that keeps what guests write and serves typed input from a
/// real [`InputBuffer`].
#[derive(Default)]
struct FakeConsole {
    output: Vec<u8>,
    input: InputBuffer,
}

impl Console for FakeConsole {
    fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    fn peek_input(&self, skip: usize, into: &mut [u8]) -> usize {
        self.input.peek(skip, into)
    }

    fn consume_input(&mut self, count: usize) {
        self.input.consume(count);
    }
}

const DOM0: Caller<'static> = Caller {
    domain: DomainId::DOM0,
    privileged: true,
    cpl: 0,
    hypervisor_cmdline: "dom0_mem=64M",
};

fn call(number: HypercallNumber, args: HypercallArgs, guest: &mut FakeGuest) -> (Outcome, Vec<u8>) {
    let mut console = FakeConsole::default();
    let outcome = dispatch(number, args, &DOM0, guest, &mut console);
    (outcome, console.output)
}

fn args(rdi: u64, rsi: u64, rdx: u64) -> HypercallArgs {
    HypercallArgs {
        rdi,
        rsi,
        rdx,
        ..HypercallArgs::default()
    }
}

#[test]
fn console_write_copies_the_guest_buffer_out() {
    let mut guest = FakeGuest::new(0x1000, 1024);
    let text = vec![b'x'; 700];
    guest.bytes[16..716].copy_from_slice(&text);
    let (outcome, output) = call(
        HypercallNumber::CONSOLE_IO,
        args(0, 700, 0x1010),
        &mut guest,
    );
    assert_eq!(outcome, Outcome::Return(0));
    assert_eq!(output, text);
}

#[test]
fn console_write_from_unmapped_memory_is_efault() {
    let mut guest = FakeGuest::new(0x1000, 64);
    let (outcome, _) = call(
        HypercallNumber::CONSOLE_IO,
        args(0, 100, 0x1000),
        &mut guest,
    );
    assert_eq!(outcome, Outcome::Return(Errno::EFAULT.as_return()));
    let (outcome, _) = call(
        HypercallNumber::CONSOLE_IO,
        args(0, 8, u64::MAX - 2),
        &mut guest,
    );
    assert_eq!(outcome, Outcome::Return(Errno::EFAULT.as_return()));
}

#[test]
fn console_write_of_a_huge_count_is_refused_without_work() {
    let mut guest = FakeGuest::new(0, 16);
    let (outcome, output) = call(
        HypercallNumber::CONSOLE_IO,
        args(0, u64::MAX, 0),
        &mut guest,
    );
    assert_eq!(outcome, Outcome::Return(Errno::EINVAL.as_return()));
    assert!(output.is_empty());
}

#[test]
fn version_and_features_answer_as_xen() {
    let mut guest = FakeGuest::new(0x2000, 2048);
    let (outcome, _) = call(HypercallNumber::XEN_VERSION, args(0, 0, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return((4 << 16) | 17));

    let (outcome, _) = call(HypercallNumber::XEN_VERSION, args(6, 0x2000, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(0));
    let submap = u32::from_le_bytes(guest.bytes[4..8].try_into().unwrap_or_default());
    assert_ne!(submap & (1 << feature::AUTO_TRANSLATED_PHYSMAP), 0);
    assert_ne!(submap & (1 << feature::DOM0), 0);
    assert_eq!(submap & (1 << feature::HVM_PIRQS), 0);

    guest.bytes[0] = 1; // submap 1 does not exist
    let (outcome, _) = call(HypercallNumber::XEN_VERSION, args(6, 0x2000, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(Errno::EINVAL.as_return()));

    let (outcome, _) = call(HypercallNumber::XEN_VERSION, args(1, 0x2100, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(0));
    assert_eq!(&guest.bytes[0x100..0x10a], b"-xenolith\0");

    let (outcome, _) = call(HypercallNumber::XEN_VERSION, args(9, 0x2200, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(0));
    assert_eq!(&guest.bytes[0x200..0x20d], b"dom0_mem=64M\0");
}

#[test]
fn shutdown_reads_the_reason_and_rejects_unknown_ones() {
    let mut guest = FakeGuest::new(0x3000, 16);
    guest.bytes[0] = 3;
    let (outcome, _) = call(HypercallNumber::SCHED_OP, args(2, 0x3000, 0), &mut guest);
    assert_eq!(outcome, Outcome::Shutdown(ShutdownReason::Crash));
    guest.bytes[0] = 99;
    let (outcome, _) = call(HypercallNumber::SCHED_OP, args(2, 0x3000, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(Errno::EINVAL.as_return()));
    let (outcome, _) = call(HypercallNumber::SCHED_OP, args(2, 0x9000, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(Errno::EFAULT.as_return()));
}

#[test]
fn unknown_hypercalls_are_enosys_and_user_mode_is_eperm() {
    let mut guest = FakeGuest::new(0, 16);
    let (outcome, _) = call(HypercallNumber(999), args(0, 0, 0), &mut guest);
    assert_eq!(outcome, Outcome::Return(Errno::ENOSYS.as_return()));
    let user = Caller { cpl: 3, ..DOM0 };
    let outcome = dispatch(
        HypercallNumber::XEN_VERSION,
        args(0, 0, 0),
        &user,
        &mut guest,
        &mut FakeConsole::default(),
    );
    assert_eq!(outcome, Outcome::Return(Errno::EPERM.as_return()));
}

const GUEST: Caller<'static> = Caller {
    domain: DomainId(1),
    privileged: false,
    ..DOM0
};

fn read(
    caller: &Caller<'_>,
    count: u64,
    buffer: u64,
    guest: &mut FakeGuest,
    console: &mut FakeConsole,
) -> Outcome {
    dispatch(
        HypercallNumber::CONSOLE_IO,
        args(CONSOLEIO_READ, count, buffer),
        caller,
        guest,
        console,
    )
}

#[test]
fn console_read_copies_up_to_count_and_takes_what_it_copied() {
    let mut guest = FakeGuest::new(0x4000, 4096);
    let mut console = FakeConsole::default();
    assert_eq!(
        read(&DOM0, 16, 0x4000, &mut guest, &mut console),
        Outcome::Return(0),
        "nothing typed yet"
    );
    console.input.push(b"ls\r\x1b[A\x7f");
    assert_eq!(
        read(&DOM0, 3, 0x4000, &mut guest, &mut console),
        Outcome::Return(3)
    );
    assert_eq!(&guest.bytes[..3], b"ls\r");
    assert_eq!(
        read(&DOM0, 100, 0x4010, &mut guest, &mut console),
        Outcome::Return(4)
    );
    assert_eq!(&guest.bytes[0x10..0x14], b"\x1b[A\x7f");
    assert!(console.input.is_empty());
    assert_eq!(
        read(&DOM0, 100, 0x4010, &mut guest, &mut console),
        Outcome::Return(0)
    );
}

#[test]
fn console_read_of_a_full_buffer_crosses_chunks_in_order() {
    let mut guest = FakeGuest::new(0x10000, 8192);
    let mut console = FakeConsole::default();
    let typed: Vec<u8> = (0..INPUT_CAPACITY + 50).map(|index| index as u8).collect();
    console.input.push(&typed);
    // Only the low 32 bits of the count matter, as in Xen.
    let outcome = read(&DOM0, (1 << 32) | 8192, 0x10000, &mut guest, &mut console);
    assert_eq!(outcome, Outcome::Return(INPUT_CAPACITY as u64));
    assert_eq!(&guest.bytes[..INPUT_CAPACITY], &typed[..INPUT_CAPACITY]);
    assert_eq!(console.input.dropped(), 50);
}

#[test]
fn console_read_into_a_bad_buffer_is_efault_and_loses_nothing() {
    let mut guest = FakeGuest::new(0x4000, 300);
    let mut console = FakeConsole::default();
    let typed = vec![b'k'; 600];
    console.input.push(&typed);
    // The first chunk fits, the second runs off the end of the memory.
    assert_eq!(
        read(&DOM0, 600, 0x4000, &mut guest, &mut console),
        Outcome::Return(Errno::EFAULT.as_return())
    );
    assert_eq!(
        read(&DOM0, 600, u64::MAX - 10, &mut guest, &mut console),
        Outcome::Return(Errno::EFAULT.as_return())
    );
    assert_eq!(console.input.len(), 600, "no input lost");
    assert_eq!(
        read(&DOM0, 300, 0x4000, &mut guest, &mut console),
        Outcome::Return(300)
    );
    assert_eq!(console.input.len(), 300);
}

#[test]
fn only_dom0_reads_console_input() {
    let mut guest = FakeGuest::new(0x4000, 64);
    let mut console = FakeConsole::default();
    console.input.push(b"secret");
    assert_eq!(
        read(&GUEST, 64, 0x4000, &mut guest, &mut console),
        Outcome::Return(Errno::EPERM.as_return())
    );
    assert_eq!(console.input.len(), 6);
    assert!(guest.bytes.iter().all(|&byte| byte == 0));
    // Guests still write.
    guest.bytes[..2].copy_from_slice(b"hi");
    let outcome = dispatch(
        HypercallNumber::CONSOLE_IO,
        args(CONSOLEIO_WRITE, 2, 0x4000),
        &GUEST,
        &mut guest,
        &mut console,
    );
    assert_eq!(outcome, Outcome::Return(0));
    assert_eq!(console.output, b"hi");
    // Other commands are unknown.
    let outcome = dispatch(
        HypercallNumber::CONSOLE_IO,
        args(2, 0, 0x4000),
        &DOM0,
        &mut guest,
        &mut console,
    );
    assert_eq!(outcome, Outcome::Return(Errno::ENOSYS.as_return()));
}
