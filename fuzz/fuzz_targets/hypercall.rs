//! Fuzzes hypercall dispatch: a hostile guest chooses the number, the
//! arguments and the contents of its memory.
#![no_main]

use hypervisor::hypercall::{self, Caller, GuestAccess, GuestFault};
use hypervisor::memory::GuestVirtAddr;
use libfuzzer_sys::fuzz_target;
use xenolith_abi::domain::DomainId;
use xenolith_abi::hypercall::{HypercallArgs, HypercallNumber};

/// Guest memory: the input's tail at guest-virtual 0x1000.
struct Guest<'a> {
    bytes: &'a mut [u8],
}

impl Guest<'_> {
    fn range(
        &self,
        address: GuestVirtAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestFault> {
        let start = address
            .0
            .checked_sub(0x1000)
            .ok_or(GuestFault { address })? as usize;
        let end = start.checked_add(len).ok_or(GuestFault { address })?;
        (end <= self.bytes.len())
            .then_some(start..end)
            .ok_or(GuestFault { address })
    }
}

impl GuestAccess for Guest<'_> {
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

fn word(data: &[u8], index: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(chunk) = data.get(index * 8..index * 8 + 8) {
        bytes.copy_from_slice(chunk);
    }
    // Keep pointers near the guest buffer often enough to matter.
    let value = u64::from_le_bytes(bytes);
    if value & 1 == 0 {
        0x1000 + (value >> 1) % 0x2000
    } else {
        value >> 1
    }
}

/// Counts console output and offers a few bytes of input.
struct FakeConsole {
    written: usize,
    input: Vec<u8>,
}

impl hypercall::Console for FakeConsole {
    fn write(&mut self, bytes: &[u8]) {
        self.written += bytes.len();
    }

    fn peek_input(&self, skip: usize, into: &mut [u8]) -> usize {
        let waiting = self.input.get(skip..).unwrap_or(&[]);
        let count = waiting.len().min(into.len());
        into[..count].copy_from_slice(&waiting[..count]);
        count
    }

    fn consume_input(&mut self, count: usize) {
        let count = count.min(self.input.len());
        self.input.drain(..count);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 48 {
        return;
    }
    let number = HypercallNumber(u64::from(data[0]) % 64);
    let args = HypercallArgs {
        rdi: u64::from(data[1]) % 16,
        rsi: word(data, 1),
        rdx: word(data, 2),
        r10: word(data, 3),
        r8: word(data, 4),
    };
    let caller = Caller {
        domain: DomainId(u16::from(data[2] & 1)),
        privileged: data[2] & 1 == 0,
        cpl: data[3] % 4,
        hypervisor_cmdline: "dom0_mem=64M -- poweroff",
    };
    let mut memory = data[48..].to_vec();
    let mut guest = Guest { bytes: &mut memory };
    // Console input: the fuzzer's first bytes, taken from the front.
    let mut console = FakeConsole {
        written: 0,
        input: data[..8].to_vec(),
    };
    let _ = hypercall::dispatch(number, args, &caller, &mut guest, &mut console);
    assert!(console.written as u64 <= hypercall::CONSOLE_WRITE_MAX);
});
