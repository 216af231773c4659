//! The RX ring (bridge to guest): packets wait in a bounded queue until the
//! front end has posted enough pages, are grant-copied into them, and are
//! described by one response per request, in request order (Linux's
//! netfront matches responses to requests by slot index, not id).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use xen_ring::{BackRing, RingError, RingMemory};
use xenolith_abi::domain::DomainId;

use crate::checksum::{self, IpVersion};
use crate::grants::{GrantSegment, Grants};
use crate::gso;
use crate::packet::{ChecksumState, Packet};
use crate::wire::{
    ETHERNET_HEADER_LENGTH, ExtraInfo, GsoKind, MAX_DATA_SLOTS, PAGE_SIZE, ResponseStatus, RxFlags,
    RxRequest, RxResponse,
};
use crate::xenbus::FrontendFeatures;

/// Largest frame for a front end without `feature-sg`: a 1500-byte MTU plus
/// an Ethernet header and a VLAN tag.
pub const MAX_FRAME_WITHOUT_SG: usize = 1500 + ETHERNET_HEADER_LENGTH + 4;

/// Why a packet for the guest was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The queue for the guest is full.
    QueueFull,
    /// The vif is disconnected.
    Disconnected,
    /// Shorter than an Ethernet header.
    Runt,
    /// Larger than the front end can take (18 pages, or one MTU without
    /// scatter-gather) and not segmentable.
    TooLarge,
    /// A GSO packet the front end cannot take whole and that could not be
    /// segmented.
    CannotSegment,
    /// A blank checksum on a packet whose TCP/UDP header cannot be found.
    ChecksumHeaders,
    /// The grant copy into the front end's pages failed (its fault).
    BadGrantRef,
}

/// What one RX pass did.
#[derive(Debug, Default)]
pub(crate) struct RxProgress {
    pub(crate) delivered: u64,
    pub(crate) bytes: u64,
    pub(crate) drops: Vec<RxDrop>,
    pub(crate) checksums_completed: u64,
    pub(crate) segmented: u64,
    /// Packets wait for the front end to post more pages.
    pub(crate) stalled: bool,
}

/// One queue's RX ring, the pages posted to it and the packets waiting.
#[derive(Debug)]
pub(crate) struct RxQueue<M> {
    pub(crate) ring: BackRing<M>,
    posted: VecDeque<RxRequest>,
    pub(crate) waiting: VecDeque<Packet>,
    capacity: usize,
}

struct Plan {
    data_slots: usize,
    gso_extra: Option<ExtraInfo>,
    flags: u16,
}

enum Decision {
    Send(Plan),
    Segment,
    Drop(RxDrop),
}

impl<M: RingMemory> RxQueue<M> {
    pub(crate) fn new(ring: BackRing<M>, capacity: usize) -> Self {
        Self {
            ring,
            posted: VecDeque::new(),
            waiting: VecDeque::new(),
            capacity,
        }
    }

    /// Queues a packet for the guest.
    pub(crate) fn enqueue(&mut self, packet: Packet) -> Result<(), RxDrop> {
        if self.waiting.len() >= self.capacity {
            return Err(RxDrop::QueueFull);
        }
        self.waiting.push_back(packet);
        Ok(())
    }

    /// Moves waiting packets into posted pages while there are enough.
    pub(crate) fn process(
        &mut self,
        domain: DomainId,
        grants: &mut impl Grants,
        features: &FrontendFeatures,
    ) -> Result<RxProgress, RingError> {
        let mut progress = RxProgress::default();
        let mut rechecked = false;
        while let Some(packet) = self.waiting.front_mut() {
            let plan = match decide(packet, features) {
                Decision::Send(plan) => plan,
                Decision::Drop(reason) => {
                    self.waiting.pop_front();
                    progress.drops.push(reason);
                    continue;
                }
                Decision::Segment => {
                    let Some(packet) = self.waiting.pop_front() else {
                        break;
                    };
                    let Some(gso) = packet.offload.gso else {
                        continue;
                    };
                    match gso::segment(&packet.frame, gso) {
                        Ok(segments) => {
                            progress.segmented += 1;
                            for segment in segments.into_iter().rev() {
                                self.waiting.push_front(segment);
                            }
                        }
                        Err(_) => progress.drops.push(RxDrop::CannotSegment),
                    }
                    continue;
                }
            };
            let needed = plan.data_slots + usize::from(plan.gso_extra.is_some());
            while self.posted.len() < needed {
                match self.ring.next_request()? {
                    Some(slot) => {
                        // An 8-byte slot always parses.
                        if let Some(request) = RxRequest::parse(slot.bytes()) {
                            self.posted.push_back(request);
                        }
                    }
                    None => break,
                }
            }
            if self.posted.len() < needed {
                if !rechecked && self.ring.final_check_for_requests() {
                    rechecked = true;
                    continue;
                }
                progress.stalled = true;
                break;
            }
            rechecked = false;
            let Some(mut packet) = self.waiting.pop_front() else {
                break;
            };
            if plan.flags & RxFlags::CSUM_BLANK == 0
                && packet.offload.checksum == ChecksumState::Partial
            {
                // The front end cannot take it blank: fill it here.
                if checksum::complete(&mut packet.frame).is_err() {
                    progress.drops.push(RxDrop::ChecksumHeaders);
                    continue;
                }
                progress.checksums_completed += 1;
            } else if plan.flags & RxFlags::CSUM_BLANK != 0
                && checksum::prepare_partial(&mut packet.frame).is_err()
            {
                progress.drops.push(RxDrop::ChecksumHeaders);
                continue;
            }
            let requests: Vec<RxRequest> = self.posted.drain(..needed).collect();
            let copied = self.deliver(&packet, &plan, &requests, domain, grants)?;
            if copied {
                progress.delivered += 1;
                progress.bytes += u64::try_from(packet.frame.len()).unwrap_or(u64::MAX);
            } else {
                progress.drops.push(RxDrop::BadGrantRef);
            }
        }
        Ok(progress)
    }

    /// Copies one packet into its requests' pages and writes their
    /// responses. False if the copy failed (the responses then say so).
    fn deliver(
        &mut self,
        packet: &Packet,
        plan: &Plan,
        requests: &[RxRequest],
        domain: DomainId,
        grants: &mut impl Grants,
    ) -> Result<bool, RingError> {
        // Requests in order: the first data slot, the GSO extra if any, the
        // other data slots.
        let extra_slots = usize::from(plan.gso_extra.is_some());
        let data_requests: Vec<RxRequest> = requests
            .iter()
            .enumerate()
            .filter(|(index, _)| *index == 0 || *index > extra_slots)
            .map(|(_, request)| *request)
            .collect();
        let chunks: Vec<&[u8]> = packet.frame.chunks(PAGE_SIZE).collect();
        let mut segments = Vec::with_capacity(chunks.len());
        for (chunk, request) in chunks.iter().zip(&data_requests) {
            let length = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            if let Some(segment) = GrantSegment::new(request.gref, 0, length) {
                segments.push(segment);
            }
        }
        let copied = grants
            .copy_to_guest(domain, &packet.frame, &segments)
            .is_ok();
        for (index, (chunk, request)) in chunks.iter().zip(&data_requests).enumerate() {
            let mut flags = 0;
            if index == 0 {
                flags |= plan.flags;
                if plan.gso_extra.is_some() {
                    flags |= RxFlags::EXTRA_INFO;
                }
            }
            if index + 1 < chunks.len() {
                flags |= RxFlags::MORE_DATA;
            }
            let status = if copied {
                ResponseStatus(i16::try_from(chunk.len()).unwrap_or(i16::MAX))
            } else {
                ResponseStatus::ERROR
            };
            let response = RxResponse {
                id: request.id,
                offset: 0,
                flags: RxFlags(flags),
                status,
            };
            self.ring.push_response(&response.emit())?;
            if index == 0
                && let Some(extra) = plan.gso_extra
            {
                self.ring.push_response(&extra.emit(false))?;
            }
        }
        Ok(copied)
    }

    /// Pages posted and not yet used.
    pub(crate) fn posted(&self) -> usize {
        self.posted.len()
    }
}

fn decide(packet: &Packet, features: &FrontendFeatures) -> Decision {
    let length = packet.frame.len();
    if length < ETHERNET_HEADER_LENGTH {
        return Decision::Drop(RxDrop::Runt);
    }
    let mut gso_extra = None;
    if let Some(gso) = packet.offload.gso {
        let taken = features.scatter_gather
            && match gso.kind {
                GsoKind::TcpV4 => features.gso_tcpv4,
                GsoKind::TcpV6 => features.gso_tcpv6,
            };
        if !taken {
            return Decision::Segment;
        }
        gso_extra = Some(ExtraInfo::Gso(gso));
    }
    let data_slots = length.div_ceil(PAGE_SIZE);
    if data_slots > MAX_DATA_SLOTS
        || (!features.scatter_gather && (data_slots > 1 || length > MAX_FRAME_WITHOUT_SG))
    {
        return Decision::Drop(RxDrop::TooLarge);
    }
    let flags = match packet.offload.checksum {
        ChecksumState::Partial => {
            let offloaded = match checksum::locate(&packet.frame).map(|l| l.version) {
                Ok(IpVersion::V4) => features.ipv4_checksum_offload,
                Ok(IpVersion::V6) => features.ipv6_checksum_offload,
                Err(_) => return Decision::Drop(RxDrop::ChecksumHeaders),
            };
            // GSO packets always go blank (netfront forces them partial).
            if offloaded || gso_extra.is_some() {
                RxFlags::CSUM_BLANK | RxFlags::DATA_VALIDATED
            } else {
                RxFlags::DATA_VALIDATED
            }
        }
        ChecksumState::Validated => RxFlags::DATA_VALIDATED,
        ChecksumState::Unknown => 0,
    };
    Decision::Send(Plan {
        data_slots,
        gso_extra,
        flags,
    })
}

/// A flow's queue among `queues`: a hash of its addresses and ports, so
/// one flow keeps its order.
pub(crate) fn flow_queue(frame: &[u8], queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    let Ok(location) = checksum::locate(frame) else {
        return 0;
    };
    let addresses = match location.version {
        IpVersion::V4 => location.ip_start + 12..location.ip_start + 20,
        IpVersion::V6 => location.ip_start + 8..location.ip_start + 40,
    };
    let ports = location.transport_start..location.transport_start + 4;
    let mut hash: u32 = 0x811c_9dc5;
    for byte in frame
        .get(addresses)
        .unwrap_or(&[])
        .iter()
        .chain(frame.get(ports).unwrap_or(&[]))
    {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    usize::try_from(hash).unwrap_or(0) % queues
}
