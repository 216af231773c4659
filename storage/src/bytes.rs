//! Little-endian field access that cannot panic: readers give zero past the
//! end (views check lengths first, so that never happens in practice) and
//! writers ignore what does not fit; [`Reader`] is a cursor that reports
//! truncation instead.

/// The little-endian `u16` at `offset`.
pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(read_array(bytes, offset))
}

/// The little-endian `u32` at `offset`.
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(read_array(bytes, offset))
}

/// The little-endian `u64` at `offset`.
pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(read_array(bytes, offset))
}

/// `N` bytes at `offset`, zero-filled where the slice ends early.
pub(crate) fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut raw = [0u8; N];
    if let Some(source) = offset.checked_add(N).and_then(|end| bytes.get(offset..end)) {
        raw.copy_from_slice(source);
    }
    raw
}

/// Copies `value` to `offset` when it fits.
pub(crate) fn write_bytes(bytes: &mut [u8], offset: usize, value: &[u8]) {
    if let Some(target) = offset
        .checked_add(value.len())
        .and_then(|end| bytes.get_mut(offset..end))
    {
        target.copy_from_slice(value);
    }
}

/// Writes a little-endian `u32` at `offset`.
pub(crate) fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    write_bytes(bytes, offset, &value.to_le_bytes());
}

/// Writes a little-endian `u64` at `offset`.
pub(crate) fn write_u64(bytes: &mut [u8], offset: usize, value: u64) {
    write_bytes(bytes, offset, &value.to_le_bytes());
}
/// A forward cursor over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    /// The next `count` bytes, or `None` if fewer remain.
    pub(crate) fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(count)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| read_array::<1>(bytes, 0)[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|bytes| read_u16(bytes, 0))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|bytes| read_u32(bytes, 0))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|bytes| read_u64(bytes, 0))
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }
}
