//! Test doubles (feature `test-utils`): grants backed by pages in memory,
//! event channels, a block device with a volatile cache and manual
//! completion, a xenstore map, and a blkfront that does Linux's side of the
//! handshake and ring.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use xen_ring::fake::{FakeFrontRing, FakeRingMemory};
use xen_ring::{RingIndex, RingLayout};
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

use crate::interfaces::{
    BlockDevice, Completion, DeviceError, DeviceOperation, DeviceTag, Events, GrantError, Grants,
    GuestPiece, Xenstore, XenstoreError,
};
use crate::wire::{PAGE_SIZE, REQUEST_SIZE, RESPONSE_SIZE, RequestBuilder, Response, SECTOR_SIZE};
use crate::xenbus::XenbusState;

/// Granted pages and rings of one front-end domain.
#[derive(Debug, Default)]
pub struct FakeGrants {
    pages: BTreeMap<GrantRef, Vec<u8>>,
    rings: Vec<(Vec<GrantRef>, FakeRingMemory)>,
    /// Rings currently mapped.
    pub mapped_rings: usize,
    /// Grant copies performed (pieces).
    pub copies: usize,
}

impl FakeGrants {
    /// Grants a zeroed page as `grant`.
    pub fn grant_page(&mut self, grant: GrantRef) {
        self.pages.insert(grant, vec![0; PAGE_SIZE]);
    }

    /// Revokes a page grant.
    pub fn revoke(&mut self, grant: GrantRef) {
        self.pages.remove(&grant);
    }

    /// The page granted as `grant`.
    pub fn page(&self, grant: GrantRef) -> Option<&[u8]> {
        self.pages.get(&grant).map(Vec::as_slice)
    }

    /// Mutable page.
    pub fn page_mut(&mut self, grant: GrantRef) -> Option<&mut [u8]> {
        self.pages.get_mut(&grant).map(Vec::as_mut_slice)
    }

    /// Makes `grants` (in order) map to `memory`.
    pub fn grant_ring(&mut self, grants: Vec<GrantRef>, memory: FakeRingMemory) {
        self.rings.push((grants, memory));
    }
}

impl Grants for FakeGrants {
    type RingMemory = FakeRingMemory;

    fn map_ring(
        &mut self,
        _domain: DomainId,
        grants: &[GrantRef],
    ) -> Result<FakeRingMemory, GrantError> {
        let found = self
            .rings
            .iter()
            .find(|(ring_grants, _)| ring_grants.as_slice() == grants)
            .map(|(_, memory)| memory.clone());
        match found {
            Some(memory) => {
                self.mapped_rings += 1;
                Ok(memory)
            }
            None => Err(GrantError {
                grant: grants.first().copied().unwrap_or_default(),
            }),
        }
    }

    fn unmap_ring(&mut self, _memory: FakeRingMemory) {
        self.mapped_rings -= 1;
    }

    fn copy_from_guest(
        &mut self,
        _domain: DomainId,
        pieces: &[GuestPiece],
        buffer: &mut [u8],
    ) -> Result<(), GrantError> {
        let mut at = 0;
        for piece in pieces {
            let page = self
                .pages
                .get(&piece.grant)
                .ok_or(GrantError { grant: piece.grant })?;
            let (offset, length) = (usize::from(piece.offset), usize::from(piece.length));
            assert!(offset + length <= PAGE_SIZE, "piece beyond its page");
            buffer[at..at + length].copy_from_slice(&page[offset..offset + length]);
            at += length;
            self.copies += 1;
        }
        assert_eq!(at, buffer.len(), "pieces and buffer disagree");
        Ok(())
    }

    fn copy_to_guest(
        &mut self,
        _domain: DomainId,
        pieces: &[GuestPiece],
        data: &[u8],
    ) -> Result<(), GrantError> {
        if let Some(piece) = pieces
            .iter()
            .find(|piece| !self.pages.contains_key(&piece.grant))
        {
            return Err(GrantError { grant: piece.grant });
        }
        let mut at = 0;
        for piece in pieces {
            let (offset, length) = (usize::from(piece.offset), usize::from(piece.length));
            assert!(offset + length <= PAGE_SIZE, "piece beyond its page");
            if let Some(page) = self.pages.get_mut(&piece.grant) {
                page[offset..offset + length].copy_from_slice(&data[at..at + length]);
            }
            at += length;
            self.copies += 1;
        }
        assert_eq!(at, data.len(), "pieces and data disagree");
        Ok(())
    }
}

/// Event channels: bind hands out ports from 100 up.
#[derive(Debug, Default)]
pub struct FakeEvents {
    /// Ports currently bound, with the remote port.
    pub bound: BTreeMap<Port, Port>,
    /// Refuse every bind.
    pub refuse: bool,
    next: u32,
}

impl Events for FakeEvents {
    fn bind(&mut self, _domain: DomainId, remote: Port) -> Option<Port> {
        if self.refuse {
            return None;
        }
        let local = Port(100 + self.next);
        self.next += 1;
        self.bound.insert(local, remote);
        Some(local)
    }

    fn unbind(&mut self, local: Port) {
        self.bound.remove(&local);
    }
}

/// What the fake device saw, in submission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceEvent {
    Submitted(DeviceTag, OperationKind),
    Completed(DeviceTag, OperationKind),
}

/// The kind of a device operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Read,
    Write,
    Flush,
    Discard,
}

/// A disk with a volatile cache: writes land in `contents` when they
/// complete, and reach `durable` only with a completed flush. Operations
/// complete when the test says so, in any order.
#[derive(Debug)]
pub struct FakeBlockDevice {
    /// What reads see.
    pub contents: Vec<u8>,
    /// What would survive a power cut.
    pub durable: Vec<u8>,
    queued: VecDeque<(DeviceTag, DeviceOperation)>,
    /// Every submission and completion.
    pub events: Vec<DeviceEvent>,
    /// Tags whose completion should fail.
    pub fail: BTreeSet<u64>,
    /// Refuse submissions (the device is gone).
    pub refuse: bool,
    /// Most operations queued at once.
    pub most_in_flight: usize,
}

fn kind(operation: &DeviceOperation) -> OperationKind {
    match operation {
        DeviceOperation::Read { .. } => OperationKind::Read,
        DeviceOperation::Write { .. } => OperationKind::Write,
        DeviceOperation::Flush => OperationKind::Flush,
        DeviceOperation::Discard { .. } => OperationKind::Discard,
    }
}

impl FakeBlockDevice {
    /// A zeroed disk of `sectors` 512-byte sectors.
    pub fn new(sectors: u64) -> Self {
        let size = (sectors * SECTOR_SIZE) as usize;
        Self {
            contents: vec![0; size],
            durable: vec![0; size],
            queued: VecDeque::new(),
            events: Vec::new(),
            fail: BTreeSet::new(),
            refuse: false,
            most_in_flight: 0,
        }
    }

    /// Operations submitted and not completed.
    pub fn in_flight(&self) -> usize {
        self.queued.len()
    }

    /// Tags of the queued operations, oldest first.
    pub fn queued_tags(&self) -> Vec<DeviceTag> {
        self.queued.iter().map(|(tag, _)| *tag).collect()
    }

    /// Kinds of the queued operations, oldest first.
    pub fn queued_kinds(&self) -> Vec<OperationKind> {
        self.queued
            .iter()
            .map(|(_, operation)| kind(operation))
            .collect()
    }

    /// Carries out the queued operation at `position` and returns its
    /// completion for the back end.
    pub fn complete_at(&mut self, position: usize) -> Option<Completion> {
        let (tag, operation) = self.queued.remove(position)?;
        self.events
            .push(DeviceEvent::Completed(tag, kind(&operation)));
        if self.fail.contains(&tag.0) {
            return Some(Completion {
                tag,
                result: Err(DeviceError),
            });
        }
        let result = match operation {
            DeviceOperation::Read { sector, length } => {
                let start = (sector.0 * SECTOR_SIZE) as usize;
                Ok(self.contents[start..start + length].to_vec())
            }
            DeviceOperation::Write { sector, data } => {
                let start = (sector.0 * SECTOR_SIZE) as usize;
                self.contents[start..start + data.len()].copy_from_slice(&data);
                Ok(data)
            }
            DeviceOperation::Flush => {
                self.durable.copy_from_slice(&self.contents);
                Ok(Vec::new())
            }
            DeviceOperation::Discard {
                sector, sectors, ..
            } => {
                let start = (sector.0 * SECTOR_SIZE) as usize;
                let end = start + (sectors * SECTOR_SIZE) as usize;
                self.contents[start..end].fill(0);
                Ok(Vec::new())
            }
        };
        Some(Completion { tag, result })
    }

    /// Completes the oldest queued operation.
    pub fn complete_next(&mut self) -> Option<Completion> {
        self.complete_at(0)
    }
}

impl BlockDevice for FakeBlockDevice {
    fn submit(&mut self, tag: DeviceTag, operation: DeviceOperation) -> Result<(), DeviceError> {
        if self.refuse {
            return Err(DeviceError);
        }
        self.events
            .push(DeviceEvent::Submitted(tag, kind(&operation)));
        self.queued.push_back((tag, operation));
        self.most_in_flight = self.most_in_flight.max(self.queued.len());
        Ok(())
    }
}

/// The store as a map of absolute paths.
#[derive(Debug, Default, Clone)]
pub struct FakeXenstore {
    pub nodes: BTreeMap<String, String>,
}

impl FakeXenstore {
    /// A value, if present.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).map(String::as_str)
    }

    /// Sets a value.
    pub fn set(&mut self, path: &str, value: &str) {
        self.nodes.insert(path.to_string(), value.to_string());
    }
}

impl Xenstore for FakeXenstore {
    fn read(&mut self, path: &str) -> Option<String> {
        self.nodes.get(path).cloned()
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), XenstoreError> {
        self.set(path, value);
        Ok(())
    }
}

/// One ring of a [`FakeBlkfront`].
#[derive(Debug)]
pub struct FrontQueue {
    /// The front end's ring.
    pub ring: FakeFrontRing,
    /// The ring's grants.
    pub grants: Vec<GrantRef>,
    /// The front end's event-channel port.
    pub port: Port,
}

/// Linux blkfront's side: ring pages granted, keys written as blkfront
/// writes them, requests pushed and responses taken.
#[derive(Debug)]
pub struct FakeBlkfront {
    /// The frontend directory.
    pub path: String,
    /// The rings.
    pub queues: Vec<FrontQueue>,
    next_grant: u32,
}

impl FakeBlkfront {
    /// Grants `queues` rings of `2^order` pages, with indices starting at
    /// `start`, and writes the keys (`ring-ref` alone for order 0 with one
    /// queue, as Linux does; otherwise `ring-page-order`, `ring-ref%u`,
    /// and `queue-%u/...` for several queues). Does not change `state`.
    pub fn new(
        store: &mut FakeXenstore,
        grants: &mut FakeGrants,
        path: &str,
        order: u32,
        queue_count: u32,
        start: u32,
    ) -> Self {
        let mut front = Self {
            path: path.to_string(),
            queues: Vec::new(),
            next_grant: 1000,
        };
        let layout = RingLayout::with_order(order.min(4), REQUEST_SIZE, RESPONSE_SIZE)
            .expect("blkif layouts exist for orders 0-4");
        if queue_count > 1 {
            store.set(
                &format!("{path}/multi-queue-num-queues"),
                &queue_count.to_string(),
            );
        }
        if order > 0 || queue_count > 1 {
            store.set(&format!("{path}/ring-page-order"), &order.to_string());
        }
        for queue in 0..queue_count {
            let memory = FakeRingMemory::new(1 << order);
            let ring = FakeFrontRing::init(&memory, layout, RingIndex(start));
            let ring_grants: Vec<GrantRef> = (0..(1u32 << order))
                .map(|_| front.allocate_grant())
                .collect();
            grants.grant_ring(ring_grants.clone(), memory);
            let base = if queue_count > 1 {
                format!("{path}/queue-{queue}")
            } else {
                path.to_string()
            };
            if order == 0 && queue_count == 1 {
                store.set(&format!("{base}/ring-ref"), &ring_grants[0].0.to_string());
            } else {
                for (index, grant) in ring_grants.iter().enumerate() {
                    store.set(&format!("{base}/ring-ref{index}"), &grant.0.to_string());
                }
            }
            let port = Port(10 + queue);
            store.set(&format!("{base}/event-channel"), &port.0.to_string());
            front.queues.push(FrontQueue {
                ring,
                grants: ring_grants,
                port,
            });
        }
        store.set(&format!("{path}/protocol"), "x86_64-abi");
        store.set(&format!("{path}/feature-persistent"), "1");
        front
    }

    /// A fresh grant number.
    pub fn allocate_grant(&mut self) -> GrantRef {
        self.next_grant += 1;
        GrantRef(self.next_grant)
    }

    /// Writes the front end's `state`.
    pub fn set_state(&self, store: &mut FakeXenstore, state: XenbusState) {
        store.set(&format!("{}/state", self.path), &state.as_raw().to_string());
    }

    /// Queues a request on ring `queue`; false if full.
    pub fn push(&mut self, queue: usize, request: &RequestBuilder) -> bool {
        self.queues[queue].ring.push_request(request.bytes())
    }

    /// Publishes ring `queue`'s requests; true if the back end wants an event.
    pub fn publish(&mut self, queue: usize) -> bool {
        self.queues[queue].ring.publish_requests()
    }

    /// Takes every published response of ring `queue`.
    pub fn responses(&mut self, queue: usize) -> Vec<Response> {
        let mut responses = Vec::new();
        while let Some(bytes) = self.queues[queue].ring.next_response() {
            if let Some(response) = Response::decode(&bytes) {
                responses.push(response);
            }
        }
        responses
    }
}
