//! Backing images: how a qcow2 image names the image under it, and the
//! caller's resolver that opens it (Dom0 looks volume names up; the host
//! tool opens files).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{DiskImage, ImageError, OpenOptions, Qcow2, Raw, Storage};

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

/// Opens backing images by name through `lookup` (Dom0: a store volume of
/// that name), read-only, in the format the naming image records (never
/// guessed: a guest can write a qcow2 header into a raw volume). Refuses a
/// name already in the chain (a loop) and a chain deeper than `max_depth`.
pub struct NamedBacking<F> {
    lookup: F,
    /// The names of the images being opened, outermost first.
    chain: Vec<String>,
    max_depth: u32,
}

impl<F> NamedBacking<F> {
    /// A resolver for the image named `top` (so a backing image naming it
    /// is a loop), allowing at most `max_depth` backing images under it.
    pub fn new(top: &str, max_depth: u32, lookup: F) -> Self {
        Self {
            lookup,
            chain: alloc::vec![top.to_string()],
            max_depth: max_depth.min(MAX_BACKING_DEPTH),
        }
    }
}

impl<F, S> BackingResolver for NamedBacking<F>
where
    F: FnMut(&str) -> Result<S, ImageError>,
    S: Storage + 'static,
{
    fn open_backing(
        &mut self,
        reference: &BackingReference<'_>,
    ) -> Result<Box<dyn DiskImage>, ImageError> {
        if reference.depth > self.max_depth {
            return Err(ImageError::BackingChainTooDeep);
        }
        if self.chain.iter().any(|name| name == reference.name) {
            return Err(ImageError::BackingLoop);
        }
        let format = match reference.format {
            Some(BackingFormat::Raw) => BackingFormat::Raw,
            Some(BackingFormat::Qcow2) => BackingFormat::Qcow2,
            Some(BackingFormat::Other) | None => return Err(ImageError::BackingFormatUnknown),
        };
        let storage = (self.lookup)(reference.name)?;
        if format == BackingFormat::Raw {
            return Ok(Box::new(Raw::new(storage, true)));
        }
        let options = OpenOptions {
            read_only: true,
            depth: reference.depth,
        };
        self.chain.push(reference.name.to_string());
        let result = Qcow2::open(storage, options, self);
        self.chain.pop();
        Ok(Box::new(result?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::vec::Vec;

    use super::*;
    use crate::fake::MemoryStorage;
    use crate::{CreateOptions, DiskOffset};

    const SIZE: u64 = 1 << 20;

    fn overlay(backing: (&str, BackingFormat)) -> Vec<u8> {
        let options = CreateOptions {
            backing: Some(backing),
            ..CreateOptions::new(SIZE)
        };
        Qcow2::create(MemoryStorage::new(1 << 30), &options)
            .unwrap()
            .into_bytes()
    }

    /// A store of named volumes, as Dom0 looks them up.
    fn lookup<'a>(
        volumes: &'a HashMap<&'static str, Vec<u8>>,
    ) -> impl FnMut(&str) -> Result<MemoryStorage, ImageError> + 'a {
        |name| {
            volumes
                .get(name)
                .map(|bytes| MemoryStorage::from_bytes(bytes.clone(), 0))
                .ok_or(ImageError::BackingUnavailable)
        }
    }

    fn open_top(
        volumes: &HashMap<&'static str, Vec<u8>>,
        top: &'static str,
        max_depth: u32,
    ) -> Result<Qcow2<MemoryStorage>, ImageError> {
        let storage = MemoryStorage::from_bytes(volumes[top].clone(), 1 << 30);
        let mut resolver = NamedBacking::new(top, max_depth, lookup(volumes));
        Qcow2::open(storage, OpenOptions::default(), &mut resolver)
    }

    #[test]
    fn an_overlay_reads_its_raw_base_and_keeps_its_writes() {
        let base: Vec<u8> = (0..SIZE).map(|at| (at % 251) as u8).collect();
        let volumes = HashMap::from([
            ("base", base.clone()),
            ("overlay", overlay(("base", BackingFormat::Raw))),
        ]);
        let mut image = open_top(&volumes, "overlay", 4).unwrap();
        let mut read = vec![0u8; SIZE as usize];
        image.read(DiskOffset(0), &mut read).unwrap();
        assert_eq!(read, base);

        image.write(DiskOffset(4096), &[0xee; 512]).unwrap();
        image.read(DiskOffset(0), &mut read).unwrap();
        assert_eq!(&read[4096..4608], &[0xee; 512]);
        assert_eq!(&read[..4096], &base[..4096]);
        assert_eq!(&read[4608..], &base[4608..]);
        // The write landed in the overlay: reopened, it is still there.
        let mut volumes = volumes;
        volumes.insert("overlay", image.into_storage().into_bytes());
        let mut image = open_top(&volumes, "overlay", 4).unwrap();
        image.read(DiskOffset(4096), &mut read[..512]).unwrap();
        assert_eq!(&read[..512], &[0xee; 512]);
        assert_eq!(volumes["base"], base);
    }

    #[test]
    fn qcow2_chains_open_up_to_the_limit() {
        let base = vec![0x5au8; SIZE as usize];
        let volumes = HashMap::from([
            ("base", base.clone()),
            ("middle", overlay(("base", BackingFormat::Raw))),
            ("top", overlay(("middle", BackingFormat::Qcow2))),
        ]);
        let mut image = open_top(&volumes, "top", 2).unwrap();
        let mut read = vec![0u8; SIZE as usize];
        image.read(DiskOffset(0), &mut read).unwrap();
        assert_eq!(read, base);
        assert_eq!(
            open_top(&volumes, "top", 1).err(),
            Some(ImageError::BackingChainTooDeep)
        );
    }

    #[test]
    fn loops_are_refused() {
        let volumes = HashMap::from([
            ("myself", overlay(("myself", BackingFormat::Qcow2))),
            ("a", overlay(("b", BackingFormat::Qcow2))),
            ("b", overlay(("a", BackingFormat::Qcow2))),
        ]);
        assert_eq!(
            open_top(&volumes, "myself", 8).err(),
            Some(ImageError::BackingLoop)
        );
        assert_eq!(
            open_top(&volumes, "a", 8).err(),
            Some(ImageError::BackingLoop)
        );
    }

    #[test]
    fn unknown_formats_and_missing_volumes_are_refused() {
        let volumes = HashMap::from([
            ("base", vec![0u8; SIZE as usize]),
            ("unrecorded", overlay(("base", BackingFormat::Other))),
            ("orphan", overlay(("gone", BackingFormat::Raw))),
        ]);
        assert_eq!(
            open_top(&volumes, "unrecorded", 4).err(),
            Some(ImageError::BackingFormatUnknown)
        );
        assert_eq!(
            open_top(&volumes, "orphan", 4).err(),
            Some(ImageError::BackingUnavailable)
        );
    }
}
