//! Guests' disks: a blkif back end (`blkback`) per `disk` entry, served
//! from the appliance's first virtio disk: the whole disk (target
//! `virtio0`) when it holds no Xenolith store, else a volume of the store
//! (target `VOLUME`, `format=raw` or `qcow2`; see `volumes`). Dom0's side
//! of blkback's traits: grant copies (`grants`), inter-domain event
//! channels, xenstore through Dom0's own local connection, and a device
//! that queues submissions. Each pass takes the disk's completions, the
//! front ends' state changes and ring requests, and hands new requests to
//! the disk, many in flight, completed by its interrupt: the whole disk's
//! as they are; a volume's once its image has placed them on the device
//! (`DiskImage::place`, then the store's extents), split where the bytes
//! are not contiguous and put together again when every piece is done.
//! A volume request that changes image metadata (a qcow2 cluster to
//! allocate) or cannot be placed goes through the image synchronously
//! and completes at once.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use blkback::{
    Action, Blkback, Completion, Config, DeviceError, DeviceOperation, DeviceTag, DiscardInfo,
    DiskInfo, Events, Input, Time, XenbusState,
};
use config::{Disk, DiskAccess, DiskFormat};
use disk_formats::{DiskImage, ImageFormat};
use dom0::domain_nodes::{self, VirtualDisk};
use dom0::virtio_blk::Operation;
use log::{info, warn};
use xen_guest::event_channel;
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenstore::{ConnectionId, Xenstored};

use crate::devices;
use crate::devices::block::{BlockDevice as VirtioDisk, Request};
use crate::grants::CopyGrants;
use crate::volumes::{self, ApplianceDisk, SharedStore};
use crate::xenstore_service::XenstoreService;
use storage::store::VolumeId;

/// The appliance's first virtio disk as a whole (when it holds no store).
pub const DISK_TARGET: &str = "virtio0";

/// Checks a config's `disk` entry: what can be served (whether the volume
/// exists is checked when the disk is attached).
pub fn check_disk(disk: &Disk) -> Result<(), String> {
    if disk.target == DISK_TARGET {
        if disk.format != DiskFormat::Raw {
            return Err(format!(
                "disk {DISK_TARGET}: format {} is not supported; the whole disk is raw",
                disk.format.name()
            ));
        }
    } else {
        if let Err(error) = storage::store::VolumeName::new(&disk.target) {
            return Err(format!(
                "disk target {:?}: neither {DISK_TARGET:?} (the appliance's first virtio disk, whole) nor a volume name ({error})",
                disk.target
            ));
        }
        if !matches!(
            disk.format,
            DiskFormat::Raw | DiskFormat::Qcow2 | DiskFormat::Vmdk
        ) {
            return Err(format!(
                "disk {}: format {} is not supported; give raw, qcow2 or vmdk",
                disk.target,
                disk.format.name()
            ));
        }
    }
    if disk.cdrom {
        return Err("CD-ROM drives are not supported yet".into());
    }
    if domain_nodes::vbd_device_id(&disk.vdev).is_none() {
        return Err(format!(
            "disk vdev {:?}: give an xvd or sd name such as xvda",
            disk.vdev
        ));
    }
    Ok(())
}

/// Submissions blkback made, waiting to go to the disk after its call.
#[derive(Debug, Default)]
pub struct QueuedDevice {
    submissions: Vec<(DeviceTag, DeviceOperation)>,
    /// Discard was offered (a writable qcow2 volume).
    discard: bool,
}

impl blkback::BlockDevice for QueuedDevice {
    fn submit(&mut self, tag: DeviceTag, operation: DeviceOperation) -> Result<(), DeviceError> {
        if matches!(operation, DeviceOperation::Discard { .. }) && !self.discard {
            // Not offered to the front end.
            return Err(DeviceError);
        }
        self.submissions.push((tag, operation));
        Ok(())
    }
}

/// The ports a back end bound; closed when it goes.
#[derive(Debug, Default)]
pub struct BackendEvents {
    bound: Vec<Port>,
}

impl Events for BackendEvents {
    fn bind(&mut self, domain: DomainId, remote: Port) -> Option<Port> {
        let port = event_channel::bind_interdomain(domain, remote).ok()?;
        self.bound.push(port);
        Some(port)
    }

    fn unbind(&mut self, local: Port) {
        let _ = event_channel::close(local);
        self.bound.retain(|&port| port != local);
    }
}

impl Drop for BackendEvents {
    fn drop(&mut self) {
        for &port in &self.bound {
            let _ = event_channel::close(port);
        }
    }
}

/// The store through Dom0's block-service connection.
struct StoreAccess<'a> {
    store: &'a mut Xenstored,
    connection: ConnectionId,
}

impl blkback::Xenstore for StoreAccess<'_> {
    fn read(&mut self, path: &str) -> Option<String> {
        let value = self.store.session(self.connection, None).read(path).ok()?;
        String::from_utf8(value).ok()
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), blkback::XenstoreError> {
        self.store
            .session(self.connection, None)
            .write(path, value.as_bytes())
            .map_err(|_| blkback::XenstoreError)
    }
}

type Backend = Blkback<CopyGrants, BackendEvents, QueuedDevice>;

/// One guest disk.
struct GuestDisk {
    domain: DomainId,
    device_id: u32,
    vdev: String,
    /// The watch on `<frontend>/state`: path and token.
    watch: (String, Vec<u8>),
    backend: Backend,
    /// What the disk entry named: `virtio0` or a volume.
    target: String,
    /// A volume's image and the volume; `None` for the whole disk.
    image: Option<(Box<dyn DiskImage>, VolumeId)>,
    /// Writes are refused.
    read_only: bool,
}

/// A volume request split into device requests ("pieces").
struct Parent {
    serial: u64,
    tag: DeviceTag,
    /// A read's bytes, filled in as pieces complete (zeros where the image
    /// reads zeros); empty for writes and flushes.
    buffer: Vec<u8>,
    /// Pieces not completed yet.
    remaining: usize,
    failed: bool,
}

/// Guests' disks and the appliance disk behind them.
#[derive(Default)]
pub struct BlockService {
    /// The whole disk, when it holds no store.
    disk: Option<VirtioDisk>,
    /// The store on the disk, when it holds one.
    store: Option<SharedStore>,
    /// Dom0's xenstore connection for the back ends (their watches).
    connection: Option<ConnectionId>,
    /// By serial number (never reused, so a late completion cannot reach a
    /// newer disk).
    disks: BTreeMap<u64, GuestDisk>,
    next_serial: u64,
    /// Disk request tag → the guest disk's serial and blkback's tag.
    tags: BTreeMap<u64, (u64, DeviceTag)>,
    next_tag: u64,
    /// Requests the disk's queue had no room for yet.
    waiting: VecDeque<Request>,
    /// Volume requests in pieces, by id.
    parents: BTreeMap<u64, Parent>,
    next_parent: u64,
    /// Disk request tag → its volume request and where its bytes go in
    /// the parent's buffer.
    pieces: BTreeMap<u64, (u64, usize)>,
    /// Discards waiting for a detached disk's pieces still on the device
    /// (they may write to clusters the discard would free): guest disk
    /// serial, blkback's tag, the operation.
    deferred: Vec<(u64, DeviceTag, DeviceOperation)>,
    /// Ring ports whose event arrived since the last pass (`None`: Dom0
    /// has no event hub to tell, so every ring is looked at every pass).
    notified: Option<Vec<Port>>,
}

/// The TSC rate in kHz, read once: CPUID leaves Dom0 for the hypervisor.
static TSC_KHZ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Dom0's monotonic time from the TSC.
pub fn now() -> Time {
    use core::sync::atomic::Ordering::Relaxed;
    let mut khz = TSC_KHZ.load(Relaxed);
    if khz == 0 {
        khz =
            u64::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1));
        TSC_KHZ.store(khz, Relaxed);
    }
    let khz = u128::from(khz);
    let nanoseconds = u128::from(baremetal::cpu::rdtsc()) * 1_000_000 / khz;
    Time(u64::try_from(nanoseconds).unwrap_or(u64::MAX))
}

impl BlockService {
    /// Takes the appliance disk brought up at boot (if any).
    pub fn set_disk(&mut self, disk: Option<VirtioDisk>) {
        if let Some(disk) = &disk {
            info!(
                "dom0: disk {DISK_TARGET}: {} sectors ({} MiB), {}{}",
                disk.capacity(),
                disk.capacity() / 2048,
                if disk.read_only() {
                    "read-only"
                } else {
                    "read/write"
                },
                if disk.has_flush() {
                    ", write cache"
                } else {
                    ""
                }
            );
        }
        self.disk = None;
        self.store = None;
        match disk.map(volumes::open) {
            Some(ApplianceDisk::Whole(disk)) => self.disk = Some(*disk),
            Some(ApplianceDisk::Store(store)) => self.store = Some(store),
            Some(ApplianceDisk::Unusable) | None => {}
        }
    }

    /// Whether work is waiting that no interrupt will announce: queued
    /// requests' completions the store's synchronous I/O took off the
    /// disk. Dom0's loop must not sleep then.
    pub fn has_pending(&self) -> bool {
        self.store
            .as_ref()
            .is_some_and(|store| store.borrow().device().inner().has_stashed())
    }

    /// The volume store on the appliance disk, if it has one.
    pub fn store(&self) -> Option<SharedStore> {
        self.store.clone()
    }

    /// The local ports of every connected ring.
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.disks.values().flat_map(|disk| disk.backend.ports())
    }

    /// From now on Dom0's loop reports ring events with
    /// [`BlockService::notified`], and a pass reads only those rings (a
    /// look is a few grant copies, each a hypercall): a front end
    /// notifies whenever it publishes past the `req_event` the back end
    /// armed, and blkback reads a ring it left unread (too many requests
    /// in flight) again as requests complete.
    pub fn expect_events(&mut self) {
        self.notified.get_or_insert_with(Vec::new);
    }

    /// `port`'s event arrived (see [`BlockService::expect_events`]).
    pub fn notified(&mut self, port: Port) {
        let ports = self.notified.get_or_insert_with(Vec::new);
        if !ports.contains(&port) {
            ports.push(port);
        }
    }

    /// Writes a disk's xenstore nodes and starts its back end (the guest
    /// is not running yet).
    pub fn attach(
        &mut self,
        xenstore: &mut XenstoreService,
        domain: DomainId,
        entry: &Disk,
    ) -> Result<(), String> {
        check_disk(entry)?;
        // One guest disk per target: two would overwrite each other.
        if let Some(user) = self.disks.values().find(|disk| disk.target == entry.target) {
            return Err(format!(
                "disk {} is in use already (domain {}'s {})",
                entry.target, user.domain.0, user.vdev
            ));
        }
        let device_id = domain_nodes::vbd_device_id(&entry.vdev).ok_or("bad vdev")?;
        let (disk_info, image) = if entry.target == DISK_TARGET {
            let Some(device) = &self.disk else {
                return Err(match self.store {
                    Some(_) => format!(
                        "disk {DISK_TARGET} holds the Xenolith store; give a volume as the target"
                    ),
                    None => format!("disk {DISK_TARGET}: the appliance has no usable virtio disk"),
                });
            };
            let read_only = entry.access == DiskAccess::ReadOnly || device.read_only();
            let info = DiskInfo {
                sectors: device.capacity(),
                sector_size: 512,
                physical_sector_size: 512,
                read_only,
                removable: false,
                flush: device.has_flush(),
                discard: None,
            };
            (info, None)
        } else {
            let Some(store) = &self.store else {
                return Err(format!(
                    "disk target {:?}: the appliance disk holds no Xenolith store",
                    entry.target
                ));
            };
            let format = match entry.format {
                DiskFormat::Qcow2 => ImageFormat::Qcow2,
                DiskFormat::Vmdk => ImageFormat::Vmdk,
                _ => ImageFormat::Raw,
            };
            let read_only = entry.access == DiskAccess::ReadOnly;
            if !read_only {
                // A write under a qcow2 overlay changes what it reads: its
                // backing volume is only ever attached read-only.
                let overlays = volumes::overlays_of(store, &entry.target);
                if !overlays.is_empty() {
                    return Err(format!(
                        "volume {} is the backing volume of {}: it can only be attached read-only (access=ro)",
                        entry.target,
                        overlays.join(", ")
                    ));
                }
            }
            let volumes::OpenedImage {
                image,
                volume,
                backing,
            } = volumes::open_image(store, &entry.target, format, read_only)?;
            let writer = self
                .disks
                .values()
                .find(|disk| !disk.read_only && backing.contains(&disk.target));
            if let Some(writer) = writer {
                return Err(format!(
                    "volume {}'s backing volume {} is attached writable (domain {}'s {})",
                    entry.target, writer.target, writer.domain.0, writer.vdev
                ));
            }
            // Writable qcow2 volumes free whole clusters; a raw volume's
            // extents stay allocated (the store does not punch holes).
            // `no-discard` in the entry turns it off, as in xl.
            let discard = image
                .discard_granularity()
                .and_then(|granularity| u32::try_from(granularity).ok())
                .filter(|_| !read_only && entry.discard != Some(false))
                .map(|granularity| DiscardInfo {
                    granularity,
                    alignment: 0,
                    secure: false,
                });
            let info = DiskInfo {
                sectors: image.virtual_size() / 512,
                sector_size: 512,
                physical_sector_size: 512,
                read_only,
                removable: false,
                flush: true,
                discard,
            };
            info!(
                "dom0: domain {}: {} is volume {} ({}, {} MiB)",
                domain.0,
                entry.vdev,
                entry.target,
                entry.format.name(),
                image.virtual_size() >> 20
            );
            (info, Some((image, volume)))
        };
        let read_only = disk_info.read_only;
        let (store, _) = xenstore.store();
        let connection = *self.connection.get_or_insert_with(|| store.open_local());
        let nodes = VirtualDisk {
            domain,
            device_id,
            vdev: &entry.vdev,
            target: &entry.target,
            read_only,
        };
        domain_nodes::add_vbd(store, connection, &nodes)
            .map_err(|error| format!("writing the vbd nodes failed: {error:?}"))?;
        let config = Config::new(
            domain,
            nodes.frontend_path(),
            nodes.backend_path(),
            disk_info,
        );
        let device = QueuedDevice {
            submissions: Vec::new(),
            discard: config.disk.offered_discard().is_some(),
        };
        let backend = Blkback::new(config, CopyGrants, BackendEvents::default(), device)
            .map_err(|error| format!("the back end refused its configuration: {error}"))?;
        let serial = self.next_serial;
        self.next_serial += 1;
        let watch_path = format!("{}/state", nodes.frontend_path());
        let token = format!("vbd/{serial}").into_bytes();
        store
            .session(connection, None)
            .watch(&watch_path, &token)
            .map_err(|error| format!("watching the front end failed: {error:?}"))?;
        self.disks.insert(
            serial,
            GuestDisk {
                domain,
                device_id,
                vdev: entry.vdev.clone(),
                watch: (watch_path, token),
                backend,
                target: entry.target.clone(),
                image,
                read_only,
            },
        );
        let mut access = StoreAccess { store, connection };
        self.process(serial, Input::Start, now(), &mut access);
        Ok(())
    }

    /// Stops serving `domain`'s disks (before it is destroyed): closes
    /// their event channels, forgets their queued requests and removes
    /// their xenstore nodes. Requests the disk already has complete into
    /// nothing. Nothing of the guest is mapped (grant copies only).
    pub fn detach(&mut self, xenstore: &mut XenstoreService, domain: DomainId) {
        let serials: Vec<u64> = self
            .disks
            .iter()
            .filter(|(_, disk)| disk.domain == domain)
            .map(|(&serial, _)| serial)
            .collect();
        if serials.is_empty() {
            return;
        }
        let (store, _) = xenstore.store();
        for serial in serials {
            let Some(mut disk) = self.disks.remove(&serial) else {
                continue;
            };
            if let Some((image, _)) = &mut disk.image
                && let Err(error) = image.flush()
            {
                warn!(
                    "dom0: domain {}: {}: flush at detach failed: {error}",
                    domain.0, disk.vdev
                );
            }
            if let Some(connection) = self.connection {
                let mut session = store.session(connection, None);
                let _ = session.unwatch(&disk.watch.0, &disk.watch.1);
                let nodes = VirtualDisk {
                    domain,
                    device_id: disk.device_id,
                    vdev: &disk.vdev,
                    target: &disk.target,
                    read_only: false,
                };
                let _ = domain_nodes::remove_vbd(store, connection, &nodes);
            }
            let (tags, pieces, parents) = (&mut self.tags, &mut self.pieces, &self.parents);
            self.waiting.retain(|request| {
                let owner = match (tags.get(&request.tag), pieces.get(&request.tag)) {
                    (Some(&(owner, _)), _) => Some(owner),
                    (None, Some(&(parent, _))) => parents.get(&parent).map(|parent| parent.serial),
                    (None, None) => None,
                };
                let mine = owner.is_none_or(|owner| owner == serial);
                if mine {
                    tags.remove(&request.tag);
                    pieces.remove(&request.tag);
                }
                !mine
            });
            // Pieces the disk already has complete into nothing.
            self.parents.retain(|_, parent| parent.serial != serial);
            self.deferred.retain(|(owner, _, _)| *owner != serial);
            let statistics = disk.backend.statistics();
            let most = with_disk(&mut self.disk, self.store.as_ref(), |device| {
                device.in_flight().1
            })
            .unwrap_or(0);
            let ring_copies: u64 = disk
                .backend
                .ring_memories()
                .map(crate::grants::GrantedRing::copies)
                .sum();
            info!(
                "dom0: domain {}: {} detached ({} reads, {} writes, {} flushes, {} discards, {} errors, {ring_copies} ring copies; at most {most} disk requests were in flight)",
                domain.0,
                disk.vdev,
                statistics.reads,
                statistics.writes,
                statistics.flushes,
                statistics.discards,
                statistics.errors + statistics.device_errors
            );
            // Dropping the back end closes its ports.
        }
    }

    /// One pass: disk completions, front-end state changes, ring requests,
    /// then new requests to the disk. True if anything was done (the
    /// caller flushes xenstore output then).
    pub fn service(&mut self, xenstore: &mut XenstoreService) -> bool {
        let Some(connection) = self.connection else {
            return false;
        };
        if self.disks.is_empty() && self.tags.is_empty() && self.pieces.is_empty() {
            return false;
        }
        devices::take_interrupts();
        let now = now();
        let (store, _) = xenstore.store();
        let mut access = StoreAccess { store, connection };
        let mut busy = false;

        let mut finished = Vec::new();
        if let Some(device) = &mut self.disk {
            device.complete(|completion| finished.push(completion));
        }
        if let Some(store) = &self.store {
            store
                .borrow_mut()
                .device_mut()
                .inner_mut()
                .complete(|completion| finished.push(completion));
        }
        // A guest disk's completions go to its back end together: their
        // responses are published once, with at most one event.
        let mut answered: BTreeMap<u64, Vec<Completion>> = BTreeMap::new();
        for completion in finished {
            busy = true;
            if let Some((parent, at)) = self.pieces.remove(&completion.tag) {
                self.finish_piece(
                    parent,
                    at,
                    completion.result,
                    &completion.buffer,
                    now,
                    &mut access,
                );
                continue;
            }
            let Some((serial, tag)) = self.tags.remove(&completion.tag) else {
                continue;
            };
            let result = match (completion.result, completion.operation) {
                (Ok(()), Operation::Read) => Ok(completion.buffer),
                (Ok(()), _) => Ok(Vec::new()),
                (Err(error), _) => {
                    warn!("dom0: disk {DISK_TARGET}: request failed: {error:?}");
                    Err(DeviceError)
                }
            };
            answered
                .entry(serial)
                .or_default()
                .push(Completion { tag, result });
        }
        for (serial, completions) in answered {
            self.process(serial, Input::CompletedMany(completions), now, &mut access);
        }

        if !self.deferred.is_empty() && !self.has_orphan_pieces() {
            busy = true;
            for (serial, tag, operation) in core::mem::take(&mut self.deferred) {
                if let Some(result) = self.queue_on_volume(serial, tag, operation) {
                    let input = Input::Completed(Completion { tag, result });
                    self.process(serial, input, now, &mut access);
                }
            }
        }

        for event in access.store.take_watch_events(connection) {
            let serial = self
                .disks
                .iter()
                .find(|(_, disk)| disk.watch.1 == event.token)
                .map(|(&serial, _)| serial);
            if let Some(serial) = serial {
                busy = true;
                self.process(serial, Input::FrontendChanged, now, &mut access);
            }
        }

        // Dom0's loop takes every pending port before the services run and
        // reports the rings' ones through `notified`; each is served once
        // (the toolstack's later passes see an empty list).
        let notified = self.notified.as_mut().map(core::mem::take);
        let serials: Vec<u64> = self.disks.keys().copied().collect();
        for serial in serials {
            let ports = self
                .disks
                .get(&serial)
                .map(|disk| disk.backend.ports())
                .unwrap_or_default();
            for port in ports {
                if notified
                    .as_ref()
                    .is_some_and(|ports| !ports.contains(&port))
                {
                    continue;
                }
                self.process(serial, Input::Notified(port), now, &mut access);
            }
        }

        busy | self.submit_waiting(now, &mut access)
    }

    /// Feeds one input to a disk's back end, carries out its actions and
    /// queues its submissions for the disk.
    fn process(&mut self, serial: u64, input: Input, now: Time, access: &mut StoreAccess<'_>) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            self.process_one(serial, input, now, access, &mut inputs);
        }
    }

    /// One input; a volume's submissions are done here and their
    /// completions queued on `inputs`.
    fn process_one(
        &mut self,
        serial: u64,
        input: Input,
        now: Time,
        access: &mut StoreAccess<'_>,
        inputs: &mut VecDeque<Input>,
    ) {
        let Some(disk) = self.disks.get_mut(&serial) else {
            return;
        };
        let actions = disk.backend.process(input, now, access);
        for action in actions {
            match action {
                Action::Notify(port) => {
                    let _ = event_channel::send(port);
                }
                Action::StateChanged(state) => {
                    if matches!(state, XenbusState::Connected | XenbusState::Closed) {
                        info!(
                            "dom0: domain {}: {} {}",
                            disk.domain.0,
                            disk.vdev,
                            if state == XenbusState::Connected {
                                "connected"
                            } else {
                                "closed"
                            }
                        );
                    }
                }
                // blkback rate-limits these.
                Action::Refused { queue, error } => warn!(
                    "dom0: domain {}: {} queue {queue}: refused a request: {error}",
                    disk.domain.0, disk.vdev
                ),
                Action::Failed(error) => {
                    warn!("dom0: domain {}: {}: {error}", disk.domain.0, disk.vdev)
                }
            }
        }
        let submissions = core::mem::take(&mut disk.backend.device_mut().submissions);
        if disk.image.is_some() {
            for (tag, operation) in submissions {
                if let Some(result) = self.queue_on_volume(serial, tag, operation) {
                    inputs.push_back(Input::Completed(Completion { tag, result }));
                }
            }
            return;
        }
        for (tag, operation) in submissions {
            let disk_tag = self.next_tag;
            self.next_tag += 1;
            let (operation, sector, buffer) = match operation {
                DeviceOperation::Read { sector, length } => {
                    (Operation::Read, sector.0, vec![0; length])
                }
                DeviceOperation::Write { sector, data } => (Operation::Write, sector.0, data),
                DeviceOperation::Flush => (Operation::Flush, 0, Vec::new()),
                // Refused in QueuedDevice::submit.
                DeviceOperation::Discard { .. } => continue,
            };
            self.tags.insert(disk_tag, (serial, tag));
            self.waiting.push_back(Request {
                tag: disk_tag,
                operation,
                sector,
                buffer,
            });
        }
    }

    /// Hands waiting requests to the disk until its queue is full; fails
    /// the ones it refuses outright back to their back ends.
    fn submit_waiting(&mut self, now: Time, access: &mut StoreAccess<'_>) -> bool {
        let mut progress = false;
        // Refusals are rare (blkback checks ranges first); a few rounds
        // bound the work a stream of them can cause in one pass.
        for _ in 0..4 {
            if self.waiting.is_empty() {
                return progress;
            }
            let mut refused = Vec::new();
            let waiting = &mut self.waiting;
            let submitted = with_disk(&mut self.disk, self.store.as_ref(), |device| {
                let mut submitted = false;
                while let Some(request) = waiting.pop_front() {
                    match device.submit(request) {
                        Ok(()) => submitted = true,
                        Err((request, dom0::virtio_blk::BlockError::QueueFull)) => {
                            waiting.push_front(request);
                            break;
                        }
                        Err((request, error)) => {
                            warn!("dom0: disk {DISK_TARGET}: request refused: {error:?}");
                            refused.push(request.tag);
                        }
                    }
                }
                device.kick();
                submitted
            });
            let Some(submitted) = submitted else {
                // No disk takes requests (the store's timed out): fail
                // them rather than let the guests wait for good.
                let failed: Vec<u64> = self.waiting.drain(..).map(|request| request.tag).collect();
                for disk_tag in failed {
                    self.fail_request(disk_tag, now, access);
                }
                return true;
            };
            progress |= submitted;
            if refused.is_empty() {
                break;
            }
            progress = true;
            for disk_tag in refused {
                self.fail_request(disk_tag, now, access);
            }
        }
        progress
    }
}

impl BlockService {
    /// Queues a volume disk's request as device requests when its image
    /// places it; otherwise does it on the image at once. Returns the
    /// result when it is done already.
    fn queue_on_volume(
        &mut self,
        serial: u64,
        tag: DeviceTag,
        operation: DeviceOperation,
    ) -> Option<Result<Vec<u8>, DeviceError>> {
        let (Some(store), Some(disk)) = (self.store.clone(), self.disks.get_mut(&serial)) else {
            return Some(Err(DeviceError));
        };
        let Some((image, volume)) = disk.image.as_mut() else {
            return Some(Err(DeviceError));
        };
        let volume = *volume;
        let plan = match &operation {
            DeviceOperation::Read { sector, length } => {
                plan(image.as_mut(), &store, volume, sector.0, *length, false)
            }
            DeviceOperation::Write { sector, data } => {
                plan(image.as_mut(), &store, volume, sector.0, data.len(), true)
            }
            DeviceOperation::Flush => {
                let has_flush = store
                    .borrow_mut()
                    .device_mut()
                    .inner_mut()
                    .disk_mut()
                    .has_flush();
                // Without a write cache every completed write is durable.
                Some(if has_flush {
                    vec![(0, 0, 0)]
                } else {
                    Vec::new()
                })
            }
            DeviceOperation::Discard { .. } => None,
        };
        if matches!(operation, DeviceOperation::Discard { .. }) && self.has_orphan_pieces() {
            // blkback sends a discard only when this disk has nothing in
            // flight; a detached disk's writes may still be on the device.
            self.deferred.push((serial, tag, operation));
            return None;
        }
        let Some((image, _)) = self
            .disks
            .get_mut(&serial)
            .and_then(|disk| disk.image.as_mut())
        else {
            return Some(Err(DeviceError));
        };
        let Some(plan) = plan else {
            return Some(run_on_image(image.as_mut(), operation));
        };
        let (kind, buffer, data) = match operation {
            DeviceOperation::Read { length, .. } => (Operation::Read, vec![0; length], Vec::new()),
            DeviceOperation::Write { data, .. } => (Operation::Write, Vec::new(), data),
            _ => (Operation::Flush, Vec::new(), Vec::new()),
        };
        if plan.is_empty() {
            // A read of zeros only, or a flush with nothing to flush.
            return Some(Ok(buffer));
        }
        let parent = self.next_parent;
        self.next_parent += 1;
        for &(sector, at, length) in &plan {
            let disk_tag = self.next_tag;
            self.next_tag += 1;
            let piece = match kind {
                Operation::Read => vec![0; length],
                Operation::Write => data[at..at + length].to_vec(),
                Operation::Flush => Vec::new(),
            };
            self.pieces.insert(disk_tag, (parent, at));
            self.waiting.push_back(Request {
                tag: disk_tag,
                operation: kind,
                sector,
                buffer: piece,
            });
        }
        self.parents.insert(
            parent,
            Parent {
                serial,
                tag,
                buffer,
                remaining: plan.len(),
                failed: false,
            },
        );
        None
    }

    /// Whether a detached disk's pieces are still on the device (their
    /// volume request is gone).
    fn has_orphan_pieces(&self) -> bool {
        self.pieces
            .values()
            .any(|(parent, _)| !self.parents.contains_key(parent))
    }

    /// Fails a disk request that will not reach the disk: its volume
    /// request, or its whole-disk blkback request.
    fn fail_request(&mut self, disk_tag: u64, now: Time, access: &mut StoreAccess<'_>) {
        if let Some((parent, at)) = self.pieces.remove(&disk_tag) {
            let result = Err(dom0::virtio_blk::BlockError::DeviceIo);
            self.finish_piece(parent, at, result, &[], now, access);
        } else if let Some((serial, tag)) = self.tags.remove(&disk_tag) {
            let input = Input::Completed(Completion {
                tag,
                result: Err(DeviceError),
            });
            self.process(serial, input, now, access);
        }
    }

    /// One piece of a volume request is done; the last one completes it.
    fn finish_piece(
        &mut self,
        parent: u64,
        at: usize,
        result: Result<(), dom0::virtio_blk::BlockError>,
        bytes: &[u8],
        now: Time,
        access: &mut StoreAccess<'_>,
    ) {
        let Some(entry) = self.parents.get_mut(&parent) else {
            // Its disk was detached.
            return;
        };
        match result {
            Ok(()) => {
                if let Some(target) = entry.buffer.get_mut(at..at + bytes.len()) {
                    target.copy_from_slice(bytes);
                }
            }
            Err(error) => {
                warn!("dom0: disk {DISK_TARGET}: volume request failed: {error:?}");
                entry.failed = true;
            }
        }
        entry.remaining = entry.remaining.saturating_sub(1);
        if entry.remaining > 0 {
            return;
        }
        let Some(done) = self.parents.remove(&parent) else {
            return;
        };
        let result = if done.failed {
            Err(DeviceError)
        } else {
            Ok(done.buffer)
        };
        let input = Input::Completed(Completion {
            tag: done.tag,
            result,
        });
        self.process(done.serial, input, now, access);
    }
}

/// Runs `work` on the disk that takes queued requests: the whole disk, or
/// the one under the store (unless a request of the store's timed out).
fn with_disk<R>(
    disk: &mut Option<VirtioDisk>,
    store: Option<&SharedStore>,
    work: impl FnOnce(&mut VirtioDisk) -> R,
) -> Option<R> {
    if let Some(device) = disk {
        return Some(work(device));
    }
    let mut store = store?.borrow_mut();
    let sync = store.device_mut().inner_mut();
    if sync.wedged() {
        return None;
    }
    Some(work(sync.disk_mut()))
}

/// Where a volume request's bytes are on the disk: (sector, offset in the
/// request's buffer, length) for each device request, or `None` when the
/// image must do it itself. Zeros the image reads need no request.
fn plan(
    image: &mut dyn DiskImage,
    store: &SharedStore,
    volume: VolumeId,
    sector: u64,
    length: usize,
    write: bool,
) -> Option<Vec<(u64, usize, usize)>> {
    let offset = disk_formats::Sector(sector).byte_offset()?;
    let pieces = image.place(offset, length as u64, write).ok()??;
    let store = store.borrow();
    let partition = store.device().first_sector().0.checked_mul(512)?;
    let mut plan = Vec::new();
    let mut at = 0usize;
    for piece in pieces {
        match piece {
            disk_formats::Placement::Zeros { length } => at += usize::try_from(length).ok()?,
            disk_formats::Placement::Stored { offset, length } => {
                let length = usize::try_from(length).ok()?;
                for range in store.device_ranges(volume, offset.0, length).ok()? {
                    let byte = partition.checked_add(range.byte)?;
                    if byte % 512 != 0 || range.length % 512 != 0 {
                        return None;
                    }
                    plan.push((byte / 512, at, range.length));
                    at += range.length;
                }
            }
        }
    }
    (at == length).then_some(plan)
}

/// Does one blkback operation on a volume's image, synchronously.
fn run_on_image(
    image: &mut dyn DiskImage,
    operation: DeviceOperation,
) -> Result<Vec<u8>, DeviceError> {
    let result = match operation {
        DeviceOperation::Read { sector, length } => {
            let mut buffer = vec![0; length];
            image
                .read_sectors(disk_formats::Sector(sector.0), &mut buffer)
                .map(|()| buffer)
        }
        DeviceOperation::Write { sector, data } => image
            .write_sectors(disk_formats::Sector(sector.0), &data)
            .map(|()| Vec::new()),
        DeviceOperation::Flush => image.flush().map(|()| Vec::new()),
        // Only whole clusters are released; the rest of the range keeps
        // its data, as QEMU does (blkback checked the range).
        DeviceOperation::Discard {
            sector, sectors, ..
        } => match disk_formats::Sector(sector.0).byte_offset() {
            Some(offset) => image
                .discard(offset, sectors.saturating_mul(512))
                .map(|()| Vec::new()),
            None => return Err(DeviceError),
        },
    };
    result.map_err(|error| {
        warn!("dom0: volume request failed: {error}");
        DeviceError
    })
}

impl core::fmt::Debug for BlockService {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("BlockService")
            .field("disk", &self.disk.is_some())
            .field("store", &self.store.is_some())
            .field("guest_disks", &self.disks.len())
            .field("in_flight", &self.tags.len())
            .finish()
    }
}
