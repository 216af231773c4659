//! Guests' disks: a blkif back end (`blkback`) per `disk` entry, served
//! from the appliance's first virtio disk: the whole disk (target
//! `virtio0`) when it holds no Xenolith store, else a volume of the store
//! (target `VOLUME`, `format=raw` or `qcow2`; see `volumes`). Dom0's side
//! of blkback's traits: grant copies (`grants`), inter-domain event
//! channels, xenstore through Dom0's own local connection, and a device
//! that queues submissions. Each pass takes the disk's completions, the
//! front ends' state changes and ring requests, and hands new requests to
//! the whole disk (asynchronously) or to the volume's image, which does
//! them synchronously and completes them at once.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use blkback::{
    Action, Blkback, Completion, Config, DeviceError, DeviceOperation, DeviceTag, DiskInfo, Events,
    Input, Time, XenbusState,
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
        if !matches!(disk.format, DiskFormat::Raw | DiskFormat::Qcow2) {
            return Err(format!(
                "disk {}: format {} is not supported; give raw or qcow2",
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
}

impl blkback::BlockDevice for QueuedDevice {
    fn submit(&mut self, tag: DeviceTag, operation: DeviceOperation) -> Result<(), DeviceError> {
        if matches!(operation, DeviceOperation::Discard { .. }) {
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
    /// A volume's image, served synchronously; `None` for the whole disk.
    image: Option<Box<dyn DiskImage>>,
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
}

/// Dom0's monotonic time from the TSC.
pub fn now() -> Time {
    let khz =
        u128::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1));
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

    /// The volume store on the appliance disk, if it has one.
    pub fn store(&self) -> Option<SharedStore> {
        self.store.clone()
    }

    /// The local ports of every connected ring.
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.disks.values().flat_map(|disk| disk.backend.ports())
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
                _ => ImageFormat::Raw,
            };
            let read_only = entry.access == DiskAccess::ReadOnly;
            let image = volumes::open_image(store, &entry.target, format, read_only)?;
            let info = DiskInfo {
                sectors: image.virtual_size() / 512,
                sector_size: 512,
                physical_sector_size: 512,
                read_only,
                removable: false,
                flush: true,
                discard: None,
            };
            info!(
                "dom0: domain {}: {} is volume {} ({}, {} MiB, synchronous I/O)",
                domain.0,
                entry.vdev,
                entry.target,
                entry.format.name(),
                image.virtual_size() >> 20
            );
            (info, Some(image))
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
        let backend = Blkback::new(
            config,
            CopyGrants,
            BackendEvents::default(),
            QueuedDevice::default(),
        )
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
            if let Some(image) = &mut disk.image
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
            let tags = &mut self.tags;
            self.waiting.retain(|request| {
                let mine = tags
                    .get(&request.tag)
                    .is_none_or(|&(owner, _)| owner == serial);
                if mine {
                    tags.remove(&request.tag);
                }
                !mine
            });
            let statistics = disk.backend.statistics();
            info!(
                "dom0: domain {}: {} detached ({} reads, {} writes, {} flushes, {} errors)",
                domain.0,
                disk.vdev,
                statistics.reads,
                statistics.writes,
                statistics.flushes,
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
        if self.disks.is_empty() && self.tags.is_empty() {
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
        for completion in finished {
            busy = true;
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
            let input = Input::Completed(Completion { tag, result });
            self.process(serial, input, now, &mut access);
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

        // Dom0's loop takes every pending port before the services run, so
        // every ring is looked at on every pass (a look costs two copies).
        let serials: Vec<u64> = self.disks.keys().copied().collect();
        for serial in serials {
            let ports = self
                .disks
                .get(&serial)
                .map(|disk| disk.backend.ports())
                .unwrap_or_default();
            for port in ports {
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
        if let Some(image) = &mut disk.image {
            for (tag, operation) in submissions {
                let result = run_on_image(image.as_mut(), operation);
                inputs.push_back(Input::Completed(Completion { tag, result }));
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
            let Some(device) = &mut self.disk else {
                return progress;
            };
            let mut refused = Vec::new();
            while let Some(request) = self.waiting.pop_front() {
                match device.submit(request) {
                    Ok(()) => progress = true,
                    Err((request, dom0::virtio_blk::BlockError::QueueFull)) => {
                        self.waiting.push_front(request);
                        break;
                    }
                    Err((request, error)) => {
                        warn!("dom0: disk {DISK_TARGET}: request refused: {error:?}");
                        refused.push(request.tag);
                    }
                }
            }
            device.kick();
            if refused.is_empty() {
                break;
            }
            progress = true;
            for disk_tag in refused {
                if let Some((serial, tag)) = self.tags.remove(&disk_tag) {
                    let input = Input::Completed(Completion {
                        tag,
                        result: Err(DeviceError),
                    });
                    self.process(serial, input, now, access);
                }
            }
        }
        progress
    }
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
        // Not offered to the front end.
        DeviceOperation::Discard { .. } => return Err(DeviceError),
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
