//! Backing images: how a qcow2 image names the image under it, and the
//! caller's resolver that opens it (Dom0 looks volume names up; the host
//! tool opens files).

use alloc::boxed::Box;

use crate::{DiskImage, ImageError};

/// How deep a backing chain may go; deeper chains (or loops) are refused.
pub const MAX_BACKING_DEPTH: u32 = 16;

/// The format a qcow2 header extension records for its backing image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingFormat {
    /// `raw`.
    Raw,
    /// `qcow2`.
    Qcow2,
    /// Any other name: the resolver decides (usually by refusing).
    Other,
}

impl BackingFormat {
    /// The format for a header extension's name.
    pub fn from_name(name: &[u8]) -> Self {
        match name {
            b"raw" => Self::Raw,
            b"qcow2" => Self::Qcow2,
            _ => Self::Other,
        }
    }

    /// The name qcow2 records for the format.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Raw => Some("raw"),
            Self::Qcow2 => Some("qcow2"),
            Self::Other => None,
        }
    }
}

/// A backing image as an image names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackingReference<'a> {
    /// The name in the image (a volume name in Xenolith, a path for QEMU).
    pub name: &'a str,
    /// The recorded format, if the image records one.
    pub format: Option<BackingFormat>,
    /// The depth the backing image sits at: 1 under the image blkback serves.
    /// Pass it on as [`crate::OpenOptions::depth`] when opening a qcow2
    /// backing image, so chains stay bounded.
    pub depth: u32,
}

/// Opens backing images by name. Backing images are opened read-only.
pub trait BackingResolver {
    /// Opens the image `reference` names.
    fn open_backing(
        &mut self,
        reference: &BackingReference<'_>,
    ) -> Result<Box<dyn DiskImage>, ImageError>;
}

/// A resolver for images that must not have a backing image.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBacking;

impl BackingResolver for NoBacking {
    fn open_backing(
        &mut self,
        _reference: &BackingReference<'_>,
    ) -> Result<Box<dyn DiskImage>, ImageError> {
        Err(ImageError::BackingUnavailable)
    }
}

impl<F> BackingResolver for F
where
    F: FnMut(&BackingReference<'_>) -> Result<Box<dyn DiskImage>, ImageError>,
{
    fn open_backing(
        &mut self,
        reference: &BackingReference<'_>,
    ) -> Result<Box<dyn DiskImage>, ImageError> {
        self(reference)
    }
}
