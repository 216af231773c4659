//! What the back end needs from Dom0: grant copies and ring mappings, event
//! channel binding, a block device with asynchronous completion, and
//! xenstore. Dom0 implements them; `fake` (feature `test-utils`) fakes them.

use alloc::string::String;
use alloc::vec::Vec;

use xen_ring::RingMemory;
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

/// A grant operation failed (Dom0 maps the GNTST code to this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantError {
    /// The grant that failed.
    pub grant: GrantRef,
}

/// One piece of a guest page: `length` bytes at `offset` of the page
/// granted as `grant`. Always within the 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPiece {
    pub grant: GrantRef,
    pub offset: u16,
    pub length: u16,
}

/// Access to the front end's granted pages.
pub trait Grants {
    /// The mapped ring (Dom0: volatile accessors over the mapped pages).
    type RingMemory: RingMemory;

    /// Maps `grants` (in order, read-write) of `domain` as one ring.
    fn map_ring(
        &mut self,
        domain: DomainId,
        grants: &[GrantRef],
    ) -> Result<Self::RingMemory, GrantError>;

    /// Unmaps a ring mapped by [`Grants::map_ring`].
    fn unmap_ring(&mut self, memory: Self::RingMemory);

    /// Copies the pieces, in order, into `buffer` (whose length is their
    /// total): one `GNTTABOP_copy` batch in Dom0.
    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        pieces: &[GuestPiece],
        buffer: &mut [u8],
    ) -> Result<(), GrantError>;

    /// Copies `data` out to the pieces, in order.
    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        pieces: &[GuestPiece],
        data: &[u8],
    ) -> Result<(), GrantError>;
}

/// Event-channel set-up. Notifications themselves are returned as
/// [`crate::Action::Notify`].
pub trait Events {
    /// `EVTCHNOP_bind_interdomain` to `domain`'s `remote` port; returns the
    /// local port.
    fn bind(&mut self, domain: DomainId, remote: Port) -> Option<Port>;
    /// `EVTCHNOP_close`.
    fn unbind(&mut self, local: Port);
}

/// A 512-byte sector number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sector(pub u64);

/// Identifies a submission; handed back in its [`Completion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceTag(pub u64);

/// One device operation. Buffers are owned and come back in the
/// [`Completion`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceOperation {
    /// Read `length` bytes from `sector` into a new buffer.
    Read { sector: Sector, length: usize },
    /// Write `data` at `sector`.
    Write { sector: Sector, data: Vec<u8> },
    /// Make every write completed before this submission durable.
    Flush,
    /// Discard `sectors` sectors from `sector` (`secure`: erase them).
    Discard {
        sector: Sector,
        sectors: u64,
        secure: bool,
    },
}

/// The device failed an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError;

/// A finished device operation, delivered with
/// [`crate::Input::Completed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The submission's tag.
    pub tag: DeviceTag,
    /// For a read: the bytes (exactly the requested length). For a write:
    /// the buffer handed back (may be empty). Otherwise empty.
    pub result: Result<Vec<u8>, DeviceError>,
}

/// A block device with asynchronous submission: many operations may be in
/// flight, completing in any order. The device must report a completion
/// only once the data is on it (for writes, as durable as its cache allows;
/// [`DeviceOperation::Flush`] makes it durable).
pub trait BlockDevice {
    /// Starts an operation. `Err` means it was never started (no
    /// completion will follow).
    fn submit(&mut self, tag: DeviceTag, operation: DeviceOperation) -> Result<(), DeviceError>;
}

/// A xenstore failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenstoreError;

/// The store, with absolute paths, as Dom0's own connection sees it.
pub trait Xenstore {
    /// READ; `None` if missing.
    fn read(&mut self, path: &str) -> Option<String>;
    /// WRITE.
    fn write(&mut self, path: &str, value: &str) -> Result<(), XenstoreError>;
}
