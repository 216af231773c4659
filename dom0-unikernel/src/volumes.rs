//! Guest disks that are volumes of the Xenolith store on the appliance's
//! first virtio disk. At boot the disk is looked at through its GPT: with
//! a Xenolith store partition, the store is opened (never formatted) and
//! its volumes can back `disk` entries (`target=VOLUME`, `format=raw` or
//! `qcow2`); without one, the whole disk is served as `virtio0`.
//!
//! Two ways to the disk share its queue. The store's own I/O (metadata,
//! and the image formats' I/O when a request changes metadata: a qcow2
//! cluster allocated, a compressed cluster read) is synchronous:
//! [`SyncDisk`] submits one virtio-blk request, rings the doorbell and
//! polls the used ring until the device gives it back, keeping any other
//! completion it sees for the block service. Guest reads and writes whose
//! bytes are already placed on the device (every raw volume request; qcow2
//! reads, and writes to allocated clusters) are turned into device
//! requests by the block service and queued, many in flight, completed by
//! the disk's interrupt (see `block_service`).

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use disk_formats::{
    DiskImage, ImageError, ImageFormat, NamedBacking, OpenOptions, Qcow2, Raw, Storage,
    StorageError, StorageOffset, Vmdk,
};
use dom0::virtio_blk::Operation;
use log::{info, warn};
use storage::gpt::{FindError, Gpt, GptError};
use storage::store::{Store, StoreError, VolumeId, VolumeKind};
use storage::{BlockDevice, BlockError, PartitionDevice, Sector};

use crate::devices::block::{BlockDevice as VirtioDisk, Completion, Request};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT_NS: u64 = 30_000_000_000;
/// The tags [`SyncDisk`] gives its own requests: apart from the block
/// service's queued ones, which count up from zero.
const SYNC_TAGS: u64 = 1 << 63;

/// The virtio disk with one request of its own at a time, waited for.
pub struct SyncDisk {
    disk: VirtioDisk,
    next_tag: u64,
    /// A request that timed out is still the device's: nothing more is
    /// sent once one did.
    wedged: bool,
    /// Completions of queued requests seen while waiting, for the block
    /// service.
    stash: Vec<Completion>,
}

impl SyncDisk {
    /// Takes the disk (nothing may be in flight on it).
    pub fn new(disk: VirtioDisk) -> Self {
        Self {
            disk,
            next_tag: SYNC_TAGS,
            wedged: false,
            stash: Vec::new(),
        }
    }

    /// Gives the disk back for asynchronous use.
    pub fn into_inner(self) -> VirtioDisk {
        self.disk
    }

    /// The disk, for queued requests (tags below [`SYNC_TAGS`]).
    pub fn disk_mut(&mut self) -> &mut VirtioDisk {
        &mut self.disk
    }

    /// Whether nothing more can be sent (a request timed out).
    pub fn wedged(&self) -> bool {
        self.wedged
    }

    /// Whether completions seen while waiting are kept for the block
    /// service (their interrupts came and went: nothing will wake Dom0
    /// for them).
    pub fn has_stashed(&self) -> bool {
        !self.stash.is_empty()
    }

    /// Hands over every finished queued request: those the disk has now
    /// and those seen while waiting for a request of its own.
    pub fn complete(&mut self, mut sink: impl FnMut(Completion)) {
        for completion in self.stash.drain(..) {
            sink(completion);
        }
        self.disk.complete(sink);
    }

    fn run(&mut self, operation: Operation, sector: u64, buffer: Vec<u8>) -> Option<Vec<u8>> {
        if self.wedged {
            return None;
        }
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1) | SYNC_TAGS;
        let mut request = Request {
            tag,
            operation,
            sector,
            buffer,
        };
        let started = crate::block_service::now().0;
        // Queued requests may fill the queue: wait for room.
        loop {
            match self.disk.submit(request) {
                Ok(()) => break,
                Err((back, dom0::virtio_blk::BlockError::QueueFull)) => {
                    request = back;
                    let stash = &mut self.stash;
                    self.disk.complete(|completion| stash.push(completion));
                    if crate::block_service::now().0.saturating_sub(started) > REQUEST_TIMEOUT_NS {
                        warn!("dom0: disk virtio0: the queue stayed full; the store is offline");
                        self.wedged = true;
                        return None;
                    }
                    core::hint::spin_loop();
                }
                Err((_, error)) => {
                    warn!("dom0: disk virtio0: request refused: {error:?}");
                    return None;
                }
            }
        }
        self.disk.kick();
        loop {
            let mut done = None;
            let stash = &mut self.stash;
            self.disk.complete(|completion| {
                if completion.tag == tag {
                    done = Some(completion);
                } else {
                    stash.push(completion);
                }
            });
            if let Some(completion) = done {
                return match completion.result {
                    Ok(()) => Some(completion.buffer),
                    Err(error) => {
                        warn!("dom0: disk virtio0: request failed: {error:?}");
                        None
                    }
                };
            }
            if crate::block_service::now().0.saturating_sub(started) > REQUEST_TIMEOUT_NS {
                warn!("dom0: disk virtio0: a request timed out; the store is offline");
                self.wedged = true;
                return None;
            }
            core::hint::spin_loop();
        }
    }
}

impl BlockDevice for SyncDisk {
    fn sector_count(&self) -> u64 {
        self.disk.capacity()
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        let count = storage::block::sectors_in(buffer.len())?;
        storage::block::check_range(sector, count, self.sector_count())?;
        if buffer.is_empty() {
            return Ok(());
        }
        let data = self
            .run(Operation::Read, sector.0, vec![0; buffer.len()])
            .ok_or(BlockError::ReadFailed(sector))?;
        if data.len() != buffer.len() {
            return Err(BlockError::ReadFailed(sector));
        }
        buffer.copy_from_slice(&data);
        Ok(())
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        let count = storage::block::sectors_in(data.len())?;
        storage::block::check_range(sector, count, self.sector_count())?;
        if data.is_empty() {
            return Ok(());
        }
        self.run(Operation::Write, sector.0, data.to_vec())
            .map(|_| ())
            .ok_or(BlockError::WriteFailed(sector))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if !self.disk.has_flush() {
            // Without a write cache the device writes through.
            return Ok(());
        }
        self.run(Operation::Flush, 0, Vec::new())
            .map(|_| ())
            .ok_or(BlockError::FlushFailed)
    }
}

/// The store on the appliance disk.
pub type ApplianceStore = Store<PartitionDevice<SyncDisk>>;

/// The store, shared by the guest disks on its volumes (Dom0 runs one
/// thread; a borrow lasts one call).
pub type SharedStore = Rc<RefCell<ApplianceStore>>;

/// What the appliance disk holds.
pub enum ApplianceDisk {
    /// No Xenolith store partition: the whole disk is `virtio0`.
    Whole(Box<VirtioDisk>),
    /// A store, opened.
    Store(SharedStore),
    /// A store partition that could not be opened: nothing is served.
    Unusable,
}

/// Looks at the disk's GPT and opens its store if it has one; logs what
/// it found. Never writes.
pub fn open(disk: VirtioDisk) -> ApplianceDisk {
    let mut device = SyncDisk::new(disk);
    let gpt = match Gpt::read(&mut device) {
        Ok((gpt, report)) => {
            if !report.is_healthy() {
                warn!("dom0: disk virtio0: GPT not healthy: {report:?}");
            }
            gpt
        }
        Err(GptError::NoValidCopy { .. } | GptError::DiskTooSmall { .. }) => {
            info!("dom0: disk virtio0: no GPT; served whole as virtio0");
            return ApplianceDisk::Whole(Box::new(device.into_inner()));
        }
        Err(error) => {
            warn!("dom0: disk virtio0: reading the GPT failed ({error}); served whole as virtio0");
            return ApplianceDisk::Whole(Box::new(device.into_inner()));
        }
    };
    let partition = match gpt.find_xenolith_store() {
        Ok(partition) => partition,
        Err(FindError::NotFound) => {
            info!("dom0: disk virtio0: GPT without a Xenolith store; served whole as virtio0");
            return ApplianceDisk::Whole(Box::new(device.into_inner()));
        }
        Err(error) => {
            warn!("dom0: disk virtio0: {error}; not served");
            return ApplianceDisk::Unusable;
        }
    };
    let partition_device =
        match PartitionDevice::new(device, partition.first_sector(), partition.sector_count()) {
            Ok(partition_device) => partition_device,
            Err(error) => {
                warn!("dom0: disk virtio0: the store partition is off the disk ({error})");
                return ApplianceDisk::Unusable;
            }
        };
    match Store::open(partition_device) {
        Ok((store, report)) => {
            info!(
                "dom0: disk virtio0: Xenolith store: {} volumes, generation {} (slot {}, other {:?}), {} of {} MiB free",
                store.volumes().len(),
                report.generation,
                report.slot,
                report.other,
                store.free_bytes() >> 20,
                store.capacity_bytes() >> 20
            );
            for volume in store.volumes() {
                info!(
                    "dom0: volume {}: {:?}, {} bytes",
                    volume.name.as_str(),
                    volume.kind,
                    volume.size
                );
            }
            ApplianceDisk::Store(Rc::new(RefCell::new(store)))
        }
        Err(error) => {
            warn!("dom0: disk virtio0: the Xenolith store cannot be opened: {error}; not served");
            ApplianceDisk::Unusable
        }
    }
}

/// One volume as image storage. Growing it (a qcow2 image allocating past
/// its end) resizes the volume at least [`GROWTH_STEP`] at a time.
pub struct VolumeStorage {
    store: SharedStore,
    id: VolumeId,
}

/// The least a growing volume grows by (each resize rewrites metadata).
pub const GROWTH_STEP: u64 = 8 << 20;

/// How many backing volumes may sit under a qcow2 volume: each one opened
/// holds its own tables and caches in Dom0's memory.
pub const MAX_BACKING_VOLUMES: u32 = 4;

fn storage_error(error: StoreError) -> StorageError {
    match error {
        StoreError::NoSpace { .. } | StoreError::TooFragmented => StorageError::NoSpace,
        StoreError::OutOfBounds { offset, length, .. } => {
            StorageError::OutOfBounds { offset, length }
        }
        _ => StorageError::Device(1),
    }
}

impl Storage for VolumeStorage {
    fn len(&self) -> u64 {
        self.store
            .borrow()
            .volume(self.id)
            .map_or(0, |volume| volume.size)
    }

    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        self.store
            .borrow_mut()
            .read_at(self.id, offset.0, buffer)
            .map_err(storage_error)
    }

    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        self.store
            .borrow_mut()
            .write_at(self.id, offset.0, data)
            .map_err(storage_error)
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.store.borrow_mut().flush().map_err(storage_error)
    }

    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        let current = self.len();
        if length <= current {
            return Ok(());
        }
        let stepped = length
            .max(current.saturating_add(GROWTH_STEP))
            .next_multiple_of(512);
        let result = self.store.borrow_mut().resize(self.id, stepped);
        if result.is_ok() {
            info!("dom0: volume grown to {stepped} bytes");
        }
        result.map_err(storage_error)
    }
}

/// A volume opened as a guest's disk image.
pub struct OpenedImage {
    pub image: Box<dyn DiskImage>,
    pub volume: VolumeId,
    /// The backing volumes under it, outermost first (read-only).
    pub backing: Vec<String>,
}

/// Opens volume `name` as a guest's disk image in `format`.
pub fn open_image(
    store: &SharedStore,
    name: &str,
    format: ImageFormat,
    read_only: bool,
) -> Result<OpenedImage, String> {
    let (id, kind, size) = {
        let store = store.borrow();
        let volume = store
            .lookup(name)
            .map_err(|_| format!("no volume {name:?} in the store"))?;
        (volume.id, volume.kind, volume.size)
    };
    if kind != VolumeKind::DiskImage {
        return Err(format!("volume {name:?} is a {kind:?}, not a disk image"));
    }
    let storage = VolumeStorage {
        store: store.clone(),
        id,
    };
    let mut probe = VolumeStorage {
        store: store.clone(),
        id,
    };
    let probed = disk_formats::probe_format(&mut probe)
        .map_err(|error| format!("volume {name:?}: {error}"))?;
    let mut backing = Vec::new();
    let image: Box<dyn DiskImage> = match format {
        ImageFormat::Raw => {
            if probed != ImageFormat::Raw {
                warn!(
                    "dom0: volume {name:?} starts like {probed:?} but is served raw (format=raw)"
                );
            }
            if size % 512 != 0 {
                return Err(format!(
                    "volume {name:?} is {size} bytes, not whole sectors: not a raw disk"
                ));
            }
            Box::new(Raw::new(storage, read_only))
        }
        ImageFormat::Qcow2 => {
            let options = OpenOptions {
                read_only,
                depth: 0,
            };
            // A backing file name is a volume name, opened read-only in
            // the format the header records.
            let mut resolver = NamedBacking::new(name, MAX_BACKING_VOLUMES, |under: &str| {
                backing.push(String::from(under));
                backing_storage(store, name, under)
            });
            let image = Qcow2::open(storage, options, &mut resolver)
                .map_err(|error| format!("volume {name:?} as qcow2: {error}"))?;
            if image.virtual_size() % 512 != 0 {
                return Err(format!("volume {name:?}: virtual size not whole sectors"));
            }
            Box::new(image)
        }
        ImageFormat::Vmdk => {
            if !read_only {
                return Err(format!(
                    "volume {name:?} is a vmdk: served read-only only, attach it with access=ro \
                     (or import it with `xenolith-img import --convert raw`)"
                ));
            }
            let image =
                Vmdk::open(storage).map_err(|error| format!("volume {name:?} as vmdk: {error}"))?;
            Box::new(image)
        }
    };
    Ok(OpenedImage {
        image,
        volume: id,
        backing,
    })
}

/// The qcow2 volumes of the store whose header names volume `name` as
/// their backing file: writing `name` would change what they read.
pub fn overlays_of(store: &SharedStore, name: &str) -> Vec<String> {
    let volumes: Vec<(VolumeId, String)> = store
        .borrow()
        .volumes()
        .iter()
        .filter(|volume| volume.kind == VolumeKind::DiskImage && volume.name.as_str() != name)
        .map(|volume| (volume.id, String::from(volume.name.as_str())))
        .collect();
    volumes
        .into_iter()
        .filter(|(id, _)| {
            let mut storage = VolumeStorage {
                store: store.clone(),
                id: *id,
            };
            backing_name(&mut storage).as_deref() == Some(name)
        })
        .map(|(_, overlay)| overlay)
        .collect()
}

/// The backing file a qcow2 header names, read through the header parser
/// `Qcow2::open` uses; `None` for anything else (raw, unreadable).
fn backing_name(storage: &mut VolumeStorage) -> Option<String> {
    use disk_formats::qcow2::header::{self, Header, HeaderView};
    let length = storage.len();
    let mut start = vec![0u8; usize::try_from(length.min(header::V2_HEADER_LENGTH as u64)).ok()?];
    storage.read_at(StorageOffset(0), &mut start).ok()?;
    let cluster_bits = header::peek_cluster_bits(&start).ok()?;
    let mut first_cluster = vec![0u8; usize::try_from(length.min(1 << cluster_bits)).ok()?];
    storage.read_at(StorageOffset(0), &mut first_cluster).ok()?;
    let header = Header::parse(&HeaderView::new_checked(&first_cluster).ok()?, length).ok()?;
    header::parse_extensions(&header, &first_cluster)
        .ok()?
        .backing_name
}

/// The storage of volume `backing`, which the chain under volume `top`
/// names; logs why when there is none.
fn backing_storage(
    store: &SharedStore,
    top: &str,
    backing: &str,
) -> Result<VolumeStorage, ImageError> {
    let found = store
        .borrow()
        .lookup(backing)
        .map(|volume| (volume.id, volume.kind));
    match found {
        Ok((id, VolumeKind::DiskImage)) => {
            info!("dom0: volume {top:?}: backing volume {backing:?}, read-only");
            Ok(VolumeStorage {
                store: store.clone(),
                id,
            })
        }
        Ok((_, kind)) => {
            warn!(
                "dom0: volume {top:?}: backing volume {backing:?} is a {kind:?}, not a disk image"
            );
            Err(ImageError::BackingUnavailable)
        }
        Err(_) => {
            warn!("dom0: volume {top:?}: no backing volume {backing:?} in the store");
            Err(ImageError::BackingUnavailable)
        }
    }
}
