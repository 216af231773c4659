//! Test doubles (feature `test-utils`): grant copies over pages held in a
//! map, and a front end that drives the TX and RX rings the way Linux's
//! netfront does.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use xen_ring::fake::{FakeFrontRing, FakeRingMemory};
use xen_ring::{RingIndex, RingLayout};
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

use crate::grants::{GrantCopyError, GrantSegment, GrantStatus, Grants};
use crate::vif::QueueResources;
use crate::wire::{
    ExtraInfo, PAGE_SIZE, RX_REQUEST_SIZE, RX_RESPONSE_SIZE, RequestId, RxFlags, RxRequest,
    RxResponse, TX_REQUEST_SIZE, TX_RESPONSE_SIZE, TxFlags, TxRequest, TxResponse,
};

#[derive(Debug)]
struct FakeGrant {
    bytes: Vec<u8>,
    readonly: bool,
}

/// Granted pages of any number of domains, and the copies made of them.
#[derive(Debug, Default)]
pub struct FakeGrants {
    pages: BTreeMap<(DomainId, GrantRef), FakeGrant>,
    /// `copy_from_guest` calls (one hypercall batch each in Dom0).
    pub copies_from_guest: u64,
    /// `copy_to_guest` calls.
    pub copies_to_guest: u64,
    /// Segments copied either way.
    pub segments: u64,
}

impl FakeGrants {
    /// No grants.
    pub fn new() -> Self {
        Self::default()
    }

    /// `domain` grants a zeroed page as `reference`.
    pub fn grant(&mut self, domain: DomainId, reference: GrantRef, readonly: bool) {
        self.pages.insert(
            (domain, reference),
            FakeGrant {
                bytes: vec![0; PAGE_SIZE],
                readonly,
            },
        );
    }

    /// `domain` revokes `reference`.
    pub fn revoke(&mut self, domain: DomainId, reference: GrantRef) {
        self.pages.remove(&(domain, reference));
    }

    /// Writes into a granted page (the granting guest's own access).
    pub fn write(&mut self, domain: DomainId, reference: GrantRef, offset: usize, data: &[u8]) {
        if let Some(page) = self.pages.get_mut(&(domain, reference)) {
            page.bytes[offset..offset + data.len()].copy_from_slice(data);
        }
    }

    /// Reads a granted page.
    pub fn read(&self, domain: DomainId, reference: GrantRef) -> Option<&[u8]> {
        self.pages
            .get(&(domain, reference))
            .map(|page| page.bytes.as_slice())
    }

    fn check_total(segments: &[GrantSegment], length: usize) -> Result<(), GrantCopyError> {
        let total: usize = segments.iter().map(|s| usize::from(s.length())).sum();
        if total == length {
            Ok(())
        } else {
            Err(GrantCopyError {
                segment: 0,
                status: GrantStatus::BAD_COPY_ARGUMENT,
            })
        }
    }
}

impl Grants for FakeGrants {
    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        segments: &[GrantSegment],
        destination: &mut [u8],
    ) -> Result<(), GrantCopyError> {
        self.copies_from_guest += 1;
        Self::check_total(segments, destination.len())?;
        let mut at = 0;
        for (index, segment) in segments.iter().enumerate() {
            let page = self
                .pages
                .get(&(domain, segment.reference()))
                .ok_or(GrantCopyError {
                    segment: index,
                    status: GrantStatus::BAD_GRANT_REF,
                })?;
            let start = usize::from(segment.offset());
            let length = usize::from(segment.length());
            destination[at..at + length].copy_from_slice(&page.bytes[start..start + length]);
            at += length;
            self.segments += 1;
        }
        Ok(())
    }

    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        source: &[u8],
        segments: &[GrantSegment],
    ) -> Result<(), GrantCopyError> {
        self.copies_to_guest += 1;
        Self::check_total(segments, source.len())?;
        let mut at = 0;
        for (index, segment) in segments.iter().enumerate() {
            let page =
                self.pages
                    .get_mut(&(domain, segment.reference()))
                    .ok_or(GrantCopyError {
                        segment: index,
                        status: GrantStatus::BAD_GRANT_REF,
                    })?;
            if page.readonly {
                return Err(GrantCopyError {
                    segment: index,
                    status: GrantStatus::PERMISSION_DENIED,
                });
            }
            let start = usize::from(segment.offset());
            let length = usize::from(segment.length());
            page.bytes[start..start + length].copy_from_slice(&source[at..at + length]);
            at += length;
            self.segments += 1;
        }
        Ok(())
    }
}

/// A packet as the fake front end received it from the RX ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// The bytes (empty if a slot reported an error).
    pub frame: Vec<u8>,
    /// The first slot's `NETRXF_*` flags.
    pub flags: RxFlags,
    /// The extra-info slot, if any.
    pub extra: Option<ExtraInfo>,
    /// Slots used (data and extra).
    pub slots: usize,
    /// A slot reported an error.
    pub error: bool,
}

/// One queue of a front end, driven the way Linux's netfront drives it.
#[derive(Debug)]
pub struct FakeFrontend {
    /// The front end's domain.
    pub domain: DomainId,
    tx: FakeFrontRing,
    rx: FakeFrontRing,
    next_gref: u32,
    next_id: u16,
    posted: VecDeque<RxRequest>,
    partial: Option<ReceivedPacket>,
    expect_extra: bool,
}

impl FakeFrontend {
    /// Rings initialised with every index at `start` (to exercise the
    /// wrap), and the resources a [`crate::Vif`] connects to: TX port 1, RX
    /// port 2 (split channels).
    pub fn new(domain: DomainId, start: u32) -> (Self, QueueResources<FakeRingMemory>) {
        let tx_memory = FakeRingMemory::new(1);
        let rx_memory = FakeRingMemory::new(1);
        let tx_layout = RingLayout::new(1, TX_REQUEST_SIZE, TX_RESPONSE_SIZE).expect("netif TX");
        let rx_layout = RingLayout::new(1, RX_REQUEST_SIZE, RX_RESPONSE_SIZE).expect("netif RX");
        let tx = FakeFrontRing::init(&tx_memory, tx_layout, RingIndex(start));
        let rx = FakeFrontRing::init(&rx_memory, rx_layout, RingIndex(start));
        let frontend = Self {
            domain,
            tx,
            rx,
            next_gref: 100,
            next_id: 0,
            posted: VecDeque::new(),
            partial: None,
            expect_extra: false,
        };
        let resources = QueueResources {
            tx_ring: tx_memory,
            rx_ring: rx_memory,
            tx_port: Port(1),
            rx_port: Port(2),
        };
        (frontend, resources)
    }

    /// A fresh grant reference.
    pub fn next_gref(&mut self) -> GrantRef {
        self.next_gref += 1;
        GrantRef(self.next_gref)
    }

    fn next_id(&mut self) -> RequestId {
        self.next_id = self.next_id.wrapping_add(1);
        RequestId(self.next_id)
    }

    /// Queues a packet on TX (not published): its bytes in pages of at
    /// most `fragment` bytes each (the first at offset 64, to exercise
    /// offsets), `flags` on the first slot, and the extra-info slots.
    /// Returns the ids used, slot by slot (data ones).
    pub fn queue_packet(
        &mut self,
        grants: &mut FakeGrants,
        frame: &[u8],
        fragment: usize,
        flags: u16,
        extras: &[ExtraInfo],
    ) -> Vec<RequestId> {
        let first_offset = 64usize;
        let first_length = frame.len().min(fragment).min(PAGE_SIZE - first_offset);
        let mut pieces = vec![(first_offset, &frame[..first_length])];
        for chunk in frame[first_length..].chunks(fragment.clamp(1, PAGE_SIZE)) {
            pieces.push((0, chunk));
        }
        let mut ids = Vec::new();
        for (index, (offset, piece)) in pieces.iter().enumerate() {
            let gref = self.next_gref();
            grants.grant(self.domain, gref, true);
            grants.write(self.domain, gref, *offset, piece);
            let mut slot_flags = if index == 0 { flags } else { 0 };
            if index + 1 < pieces.len() {
                slot_flags |= TxFlags::MORE_DATA;
            }
            if index == 0 && !extras.is_empty() {
                slot_flags |= TxFlags::EXTRA_INFO;
            }
            let id = self.next_id();
            ids.push(id);
            let size = if index == 0 { frame.len() } else { piece.len() };
            self.push_tx(TxRequest {
                gref,
                offset: *offset as u16,
                flags: TxFlags(slot_flags),
                id,
                size: size as u16,
            });
            if index == 0 {
                for (position, extra) in extras.iter().enumerate() {
                    self.push_tx_raw(&extra.emit(position + 1 < extras.len()));
                }
            }
        }
        ids
    }

    /// Queues one TX request as given (a hostile front end).
    pub fn push_tx(&mut self, request: TxRequest) -> bool {
        self.tx.push_request(&request.emit())
    }

    /// Queues raw slot bytes on TX.
    pub fn push_tx_raw(&mut self, bytes: &[u8]) -> bool {
        self.tx.push_request(bytes)
    }

    /// Publishes TX requests; true if the back end asked to be notified.
    pub fn publish_tx(&mut self) -> bool {
        self.tx.publish_requests()
    }

    /// TX responses published so far and not yet read.
    pub fn tx_responses(&mut self) -> Vec<TxResponse> {
        let mut responses = Vec::new();
        while let Some(bytes) = self.tx.next_response() {
            responses.extend(TxResponse::parse(&bytes));
        }
        responses
    }

    /// Grants `count` fresh writable pages, posts them on RX and publishes;
    /// true if the back end asked to be notified.
    pub fn post_rx(&mut self, grants: &mut FakeGrants, count: usize) -> bool {
        for _ in 0..count {
            let gref = self.next_gref();
            grants.grant(self.domain, gref, false);
            let request = RxRequest {
                id: self.next_id(),
                gref,
            };
            if !self.rx.push_request(&request.emit()) {
                break;
            }
            self.posted.push_back(request);
        }
        self.rx.publish_requests()
    }

    /// Posts a request naming `gref` as is (a hostile front end).
    pub fn post_rx_raw(&mut self, gref: GrantRef) -> bool {
        let request = RxRequest {
            id: self.next_id(),
            gref,
        };
        self.posted.push_back(request);
        self.rx.push_request(&request.emit());
        self.rx.publish_requests()
    }

    /// RX requests posted and not yet answered.
    pub fn rx_posted(&self) -> usize {
        self.posted.len()
    }

    /// Reads RX responses like netfront: each answers the request in the
    /// same slot; a packet runs until a data slot without `more_data`.
    pub fn receive(&mut self, grants: &FakeGrants) -> Vec<ReceivedPacket> {
        let mut packets = Vec::new();
        while let Some(bytes) = self.rx.next_response() {
            let Some(request) = self.posted.pop_front() else {
                break;
            };
            if self.expect_extra {
                self.expect_extra = false;
                if let Some(packet) = self.partial.as_mut() {
                    packet.slots += 1;
                    match ExtraInfo::parse(&bytes) {
                        Ok((extra, _)) => packet.extra = Some(extra),
                        Err(_) => packet.error = true,
                    }
                }
                continue;
            }
            let Some(response) = RxResponse::parse(&bytes) else {
                continue;
            };
            let packet = self.partial.get_or_insert_with(|| ReceivedPacket {
                frame: Vec::new(),
                flags: response.flags,
                extra: None,
                slots: 0,
                error: false,
            });
            packet.slots += 1;
            if response.status.0 < 0 {
                packet.error = true;
            } else if let Some(page) = grants.read(self.domain, request.gref) {
                let start = usize::from(response.offset);
                let length = response.status.0 as usize;
                packet.frame.extend_from_slice(&page[start..start + length]);
            }
            if response.flags.has(RxFlags::EXTRA_INFO) {
                self.expect_extra = true;
            }
            if !response.flags.has(RxFlags::MORE_DATA) && !self.expect_extra {
                packets.extend(self.partial.take());
            }
        }
        packets
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES` on both rings (arms `rsp_event`).
    pub fn arm_responses(&mut self) {
        self.tx.final_check_for_responses();
        self.rx.final_check_for_responses();
    }
}
