//! Hypercall tests against a fake guest memory.

use super::*;

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

const DOM0: Caller<'static> = Caller {
    domain: DomainId::DOM0,
    privileged: true,
    cpl: 0,
    hypervisor_cmdline: "dom0_mem=64M",
};

fn call(number: HypercallNumber, args: HypercallArgs, guest: &mut FakeGuest) -> (Outcome, Vec<u8>) {
    let mut output = Vec::new();
    let outcome = dispatch(number, args, &DOM0, guest, &mut |bytes: &[u8]| {
        output.extend_from_slice(bytes)
    });
    (outcome, output)
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
        &mut |_: &[u8]| {},
    );
    assert_eq!(outcome, Outcome::Return(Errno::EPERM.as_return()));
}
