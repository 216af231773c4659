//! The decompressed kernel as it is written: a buffer allocated once for
//! the size the payload declares (plus the one byte that shows a stream
//! runs past it), whose allocation fails with an error instead of
//! aborting, and which never grows.

use super::BzImageError;
use alloc::vec::Vec;

/// What streaming decoders ask for at once: large enough that calls are
/// few, small enough that zeroing the space ahead of them stays cheap.
pub(super) const STEP: usize = 4 * 1024 * 1024;

/// Where a decoder's output goes.
pub(super) struct Output {
    bytes: Vec<u8>,
    limit: usize,
    /// The error a stream longer than `limit` gets.
    overrun: BzImageError,
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
        })
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
        let size = want.max(1).min(room);
        if size == 0 {
            return Err(self.overrun);
        }
        // Within the capacity reserved in `new`: no reallocation.
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
            return Err(self.overrun);
        }
        Ok((written.min(size), value))
    }

    /// The finished output.
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
