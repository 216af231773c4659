//! Physical memory for the fuzz targets: the fuzzer's bytes placed at a
//! fixed host-physical base; reads outside them fail as on real hardware.

use hypervisor::memory::{HostPhysAddr, OutOfBounds, PhysicalMemory};

/// `bytes` seen at host-physical address `base`.
pub struct FakeMemory<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl PhysicalMemory for FakeMemory<'_> {
    fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
        let fault = OutOfBounds {
            address,
            len: buffer.len(),
        };
        let offset = address.raw().checked_sub(self.base).ok_or(fault)?;
        let offset = usize::try_from(offset).map_err(|_| fault)?;
        let end = offset.checked_add(buffer.len()).ok_or(fault)?;
        buffer.copy_from_slice(self.bytes.get(offset..end).ok_or(fault)?);
        Ok(())
    }
}
