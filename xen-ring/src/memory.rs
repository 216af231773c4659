//! The granted pages of a ring as one byte range, and the barriers the
//! ring protocol needs between accesses to it.

/// Which ordering a [`RingMemory::barrier`] call must enforce.
///
/// On x86 (TSO) `Read` and `Write` need only stop the compiler reordering
/// (`core::sync::atomic::compiler_fence`), while `Full` must order a store
/// before a later load (`core::sync::atomic::fence(SeqCst)`, an `mfence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// Earlier reads complete before later reads (`virt_rmb`): after reading
    /// a producer index, before reading the slots it covers.
    Read,
    /// Earlier writes are visible before later writes (`virt_wmb`): after
    /// writing slots, before publishing the producer index that covers them.
    Write,
    /// Earlier writes are visible before later reads (`virt_mb`): after
    /// publishing an index or an event threshold, before reading the peer's.
    Full,
}

/// The ring's granted pages, contiguous from offset 0 to
/// [`RingMemory::size`].
///
/// The memory is shared with a guest that may change it at any time: an
/// implementation copies bytes in and out (volatile accesses in Dom0) and
/// never hands out references into it. Each call performs its accesses in
/// program order with respect to other calls (volatile accesses give this);
/// anything stronger is asked for through [`RingMemory::barrier`].
///
/// [`crate::BackRing`] only calls `read` and `write` with ranges inside
/// `0..size()`; an implementation may still treat an out-of-range call as a
/// bug and ignore it (reads then fill zeroes), but must not panic on it in
/// production.
pub trait RingMemory {
    /// Length of the range in bytes (`pages * 4096`).
    fn size(&self) -> usize;

    /// Copies `buffer.len()` bytes starting at `offset` into `buffer`.
    fn read(&self, offset: usize, buffer: &mut [u8]);

    /// Copies `data` into the range starting at `offset`.
    fn write(&mut self, offset: usize, data: &[u8]);

    /// Enforces the ordering `kind` between the accesses made before and
    /// after this call.
    fn barrier(&mut self, kind: Barrier);

    /// Writes each of `writes` in order with [`Barrier::Write`] between
    /// them, then [`Barrier::Full`], then reads `buffer.len()` bytes at
    /// `read_offset`: publishing an index (or an event threshold) and
    /// reading the peer's. One call, so that memory whose every access is
    /// a hypercall (Dom0's grant copies, tens of microseconds each under
    /// TCG) can make it one hypercall whose elements run in order.
    fn write_then_read(
        &mut self,
        writes: &[(usize, &[u8])],
        read_offset: usize,
        buffer: &mut [u8],
    ) {
        for (index, (offset, data)) in writes.iter().enumerate() {
            if index > 0 {
                self.barrier(Barrier::Write);
            }
            self.write(*offset, data);
        }
        self.barrier(Barrier::Full);
        self.read(read_offset, buffer);
    }
}
