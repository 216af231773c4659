//! The appliance disk: GPT (CRC-checked, backup fallback) and the Xenolith
//! volume store (named volumes of extents, crash-safe metadata).
//!
//! Everything here is pure `no_std` logic over the [`BlockDevice`] trait:
//! Dom0 implements it on virtio-blk, the host tool on an image file, and
//! tests use [`fake::FakeDisk`] (feature `test-utils`), which can lose or
//! tear unflushed writes to check crash safety.
//!
//! - [`gpt`]: read a GPT (header and entry-array CRC32 checked, the backup
//!   used when the primary is damaged), write a new one with a Xenolith
//!   partition ([`guid::XENOLITH_STORE_TYPE`]), find that partition.
//! - [`store`]: the volume store inside that partition: named volumes of
//!   extents, metadata in two alternating CRC32-checked copies, free-space
//!   management, and byte-offset I/O through a volume's extents.
//!
//! The on-disk formats are described in `storage/README.md`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod block;
mod bytes;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
pub mod gpt;
pub mod guid;
pub mod store;

pub use block::{BlockDevice, BlockError, PartitionDevice, SECTOR_SIZE, Sector};
