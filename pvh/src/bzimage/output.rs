//! The decompressed kernel as it is written: a buffer allocated once for
//! the size the payload declares (plus the one byte that shows a stream
//! runs past it), whose allocation fails with an error instead of
//! aborting, and which never grows. A prefix output (the first bytes
//! only, for reading the ELF headers) stops at its limit instead.

use super::BzImageError;
use alloc::vec::Vec;

/// Where a decoder's output goes.
pub(super) struct Output {
    bytes: Vec<u8>,
    limit: usize,
    /// The error a stream longer than `limit` gets.
    overrun: BzImageError,
    /// A prefix: output past `limit` is dropped, not an error.
    prefix: bool,
}

impl Output {
    /// An empty output for at most `limit` bytes, allocated now.
    pub(super) fn new(limit: usize, overrun: BzImageError) -> Result<Self, BzImageError> {
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(limit.saturating_add(1))
            .map_err(|_| BzImageError::OutOfMemory)?;
        Ok(Self {
            bytes,
            limit,
            overrun,
            prefix: false,
        })
    }

    /// An output that keeps the first `limit` bytes and drops the rest.
    pub(super) fn prefix(limit: usize, overrun: BzImageError) -> Result<Self, BzImageError> {
        let mut output = Self::new(limit, overrun)?;
        output.prefix = true;
        Ok(output)
    }

    /// For a prefix output, the bytes it still keeps (at least 1).
    pub(super) fn prefix_room(&self) -> Option<usize> {
        self.prefix
            .then(|| self.limit.saturating_sub(self.bytes.len()).max(1))
    }

    /// Whether this is a prefix output that is full.
    pub(super) fn prefix_full(&self) -> bool {
        self.prefix && self.bytes.len() >= self.limit
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes written so far.
    pub(super) fn written(&self) -> &[u8] {
        &self.bytes
    }

    /// Lends `decode` up to `want` zeroed bytes past the end (at least one,
    /// and never reaching more than one byte past the limit); `decode`
    /// returns how many it wrote and a value passed back. Fails when the
    /// output passes the limit.
    pub(super) fn fill_with<R>(
        &mut self,
        want: usize,
        decode: impl FnOnce(&mut [u8]) -> Result<(usize, R), BzImageError>,
    ) -> Result<(usize, R), BzImageError> {
        let start = self.bytes.len();
        let room = self.limit.saturating_add(1).saturating_sub(start);
        // A prefix lends all that was asked for (an LZ4 block decodes
        // only whole) and keeps what fits.
        let size = if self.prefix {
            self.bytes
                .try_reserve(want.max(1))
                .map_err(|_| BzImageError::OutOfMemory)?;
            want.max(1)
        } else {
            want.max(1).min(room)
        };
        if size == 0 {
            return Err(self.overrun);
        }
        // Within the capacity reserved in `new` (or just above, for a
        // prefix): no reallocation.
        self.bytes.resize(start + size, 0);
        let result = match self.bytes.get_mut(start..) {
            Some(space) => decode(space),
            None => Err(BzImageError::OutOfMemory),
        };
        let (written, value) = match result {
            Ok(ok) => ok,
            Err(error) => {
                self.bytes.truncate(start);
                return Err(error);
            }
        };
        self.bytes.truncate(start + written.min(size));
        if self.bytes.len() > self.limit {
            if !self.prefix {
                return Err(self.overrun);
            }
            self.bytes.truncate(self.limit);
        }
        Ok((written.min(size), value))
    }

    /// The finished output.
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
