//! The TX ring (guest to bridge): slots gathered into packets (first slot,
//! extra-info slots, further data slots), each packet validated once its
//! slots are all copied out, its data grant-copied, its checksum settled,
//! and one response written per slot.

use alloc::vec;
use alloc::vec::Vec;

use xen_ring::{BackRing, RingError, RingMemory};
use xenolith_abi::domain::DomainId;

use crate::checksum::{self, ChecksumError};
use crate::grants::{GrantSegment, Grants};
use crate::packet::{ChecksumState, Offload, Packet};
use crate::wire::{
    ETHERNET_HEADER_LENGTH, EXTRA_FLAG_MORE, EXTRA_INFO_SIZE, ExtraInfo, ExtraInfoError, RequestId,
    ResponseStatus, TxFlags, TxRequest, TxResponse,
};

/// Extra-info slots one packet may carry: one of each of the four types.
pub const MAX_EXTRA_INFO: usize = 4;

/// Why a TX packet was dropped: each names the front end's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFault {
    /// A grant copy failed (bad or revoked grant reference).
    BadGrantRef,
    /// More data slots than allowed, or more extra-info slots than types.
    TooManySlots,
    /// The fragments' sizes add up to more than the packet's size.
    SizeMismatch,
    /// Shorter than an Ethernet header.
    Runt,
    /// A slot's data crosses the end of its page.
    SlotCrossesPage,
    /// An extra-info slot is malformed.
    MalformedExtraInfo(ExtraInfoError),
    /// Two extra-info slots of the same type.
    DuplicateExtraInfo,
    /// A blank checksum or GSO on a packet whose TCP/UDP header cannot be
    /// found.
    ChecksumHeaders(ChecksumError),
}

/// How TX packets are finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPolicy {
    /// Data slots allowed per packet ([`crate::wire::MAX_DATA_SLOTS`]).
    pub max_data_slots: usize,
    /// Fill blank checksums of non-GSO packets here (the packet leaves as
    /// [`ChecksumState::Validated`]); otherwise they leave
    /// [`ChecksumState::Partial`] for a device or receiver that can offload.
    pub complete_checksums: bool,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Data(TxRequest),
    Extra([u8; EXTRA_INFO_SIZE]),
}

/// What one slot did to the packet being gathered.
#[derive(Debug)]
pub(crate) enum Step {
    /// More slots to come.
    Incomplete,
    /// The packet is whole; its responses are written. The flag says
    /// whether netback filled its blank checksum.
    Packet(Result<(Packet, bool), TxFault>),
}

/// One queue's TX ring and the packet being gathered from it.
#[derive(Debug)]
pub(crate) struct TxQueue<M> {
    pub(crate) ring: BackRing<M>,
    slots: Vec<Slot>,
    expect_extra: bool,
    more_data: bool,
    /// The packet is over a limit: its slots are answered as they come and
    /// not kept.
    discarding: Option<(RequestId, TxFault)>,
    /// Slots the packet being discarded has had so far.
    discarded_slots: usize,
}

impl<M: RingMemory> TxQueue<M> {
    pub(crate) fn new(ring: BackRing<M>) -> Self {
        Self {
            ring,
            slots: Vec::new(),
            expect_extra: false,
            more_data: false,
            discarding: None,
            discarded_slots: 0,
        }
    }

    /// Slots of the packet being discarded so far (0 when none is): a
    /// packet that never ends shows here.
    pub(crate) fn discarded_slots(&self) -> usize {
        if self.discarding.is_some() {
            self.discarded_slots
        } else {
            0
        }
    }

    /// Whether a packet has some but not all of its slots.
    pub(crate) fn has_partial_packet(&self) -> bool {
        !self.slots.is_empty() || self.discarding.is_some()
    }

    /// Takes one slot copied out of the ring.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        domain: DomainId,
        grants: &mut impl Grants,
        policy: &TxPolicy,
    ) -> Result<Step, RingError> {
        let starting = !self.has_partial_packet();
        if starting {
            let request = TxRequest::parse(bytes).unwrap_or(TxRequest {
                gref: Default::default(),
                offset: 0,
                flags: TxFlags(0),
                id: RequestId(0),
                size: 0,
            });
            self.expect_extra = request.flags.has(TxFlags::EXTRA_INFO);
            self.more_data = request.flags.has(TxFlags::MORE_DATA);
            self.slots.push(Slot::Data(request));
        } else if self.expect_extra {
            let mut extra = [0; EXTRA_INFO_SIZE];
            if let Some(source) = bytes.get(..EXTRA_INFO_SIZE) {
                extra.copy_from_slice(source);
            }
            self.expect_extra = extra[1] & EXTRA_FLAG_MORE != 0;
            self.keep(Slot::Extra(extra), policy)?;
        } else {
            let request = TxRequest::parse(bytes).unwrap_or(TxRequest {
                gref: Default::default(),
                offset: 0,
                flags: TxFlags(0),
                id: RequestId(0),
                size: 0,
            });
            self.more_data = request.flags.has(TxFlags::MORE_DATA);
            self.keep(Slot::Data(request), policy)?;
        }
        if self.expect_extra || self.more_data {
            return Ok(Step::Incomplete);
        }
        if let Some((_, fault)) = self.discarding.take() {
            return Ok(Step::Packet(Err(fault)));
        }
        let slots = core::mem::take(&mut self.slots);
        let result = build(&slots, domain, grants, policy);
        let status = match result {
            Ok(_) => ResponseStatus::OKAY,
            Err(_) => ResponseStatus::ERROR,
        };
        self.respond(&slots, status)?;
        Ok(Step::Packet(result))
    }

    /// Keeps a non-first slot, or answers it at once if the packet is being
    /// discarded or has just gone over a limit.
    fn keep(&mut self, slot: Slot, policy: &TxPolicy) -> Result<(), RingError> {
        if self.discarding.is_none() {
            let extras = self
                .slots
                .iter()
                .filter(|s| matches!(s, Slot::Extra(_)))
                .count();
            let data = self.slots.len() - extras;
            let over = match slot {
                Slot::Extra(_) => extras + 1 > MAX_EXTRA_INFO,
                Slot::Data(_) => data + 1 > policy.max_data_slots,
            };
            if !over {
                self.slots.push(slot);
                return Ok(());
            }
            let first = match self.slots.first() {
                Some(Slot::Data(request)) => request.id,
                _ => RequestId(0),
            };
            self.discarding = Some((first, TxFault::TooManySlots));
            let kept = core::mem::take(&mut self.slots);
            self.discarded_slots = kept.len();
            self.respond(&kept, ResponseStatus::ERROR)?;
        }
        let first = self.discarding.map_or(RequestId(0), |(id, _)| id);
        self.discarded_slots = self.discarded_slots.saturating_add(1);
        self.respond_one(&slot, first, ResponseStatus::ERROR)
    }

    fn respond(&mut self, slots: &[Slot], status: ResponseStatus) -> Result<(), RingError> {
        let first = match slots.first() {
            Some(Slot::Data(request)) => request.id,
            _ => RequestId(0),
        };
        for slot in slots {
            self.respond_one(slot, first, status)?;
        }
        Ok(())
    }

    fn respond_one(
        &mut self,
        slot: &Slot,
        first: RequestId,
        status: ResponseStatus,
    ) -> Result<(), RingError> {
        let response = match slot {
            Slot::Data(request) => TxResponse {
                id: request.id,
                status,
            },
            // Extra-info slots are answered NULL whatever became of the
            // packet (netif.h).
            Slot::Extra(_) => TxResponse {
                id: first,
                status: ResponseStatus::NULL,
            },
        };
        self.ring.push_response(&response.emit()).map(|_| ())
    }
}

/// Validates a packet's slots, copies its data and settles its checksum.
fn build(
    slots: &[Slot],
    domain: DomainId,
    grants: &mut impl Grants,
    policy: &TxPolicy,
) -> Result<(Packet, bool), TxFault> {
    let mut completed = false;
    let mut offload = Offload::default();
    let mut seen_types = [false; MAX_EXTRA_INFO];
    let mut data = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Data(request) => data.push(*request),
            Slot::Extra(bytes) => {
                let (extra, _) = ExtraInfo::parse(bytes).map_err(TxFault::MalformedExtraInfo)?;
                let kind = usize::from(bytes[0]).saturating_sub(1);
                match seen_types.get_mut(kind) {
                    Some(seen) if !*seen => *seen = true,
                    _ => return Err(TxFault::DuplicateExtraInfo),
                }
                if let ExtraInfo::Gso(gso) = extra {
                    offload.gso = Some(gso);
                }
                // Multicast control and hashes change nothing here: the
                // bridge floods multicast to every port anyway.
            }
        }
    }
    let Some((first, rest)) = data.split_first() else {
        return Err(TxFault::SizeMismatch);
    };
    let total = usize::from(first.size);
    let others: usize = rest.iter().map(|request| usize::from(request.size)).sum();
    let first_length = total.checked_sub(others).ok_or(TxFault::SizeMismatch)?;
    if total < ETHERNET_HEADER_LENGTH {
        return Err(TxFault::Runt);
    }
    let mut segments = Vec::with_capacity(data.len());
    let first_length = u16::try_from(first_length).map_err(|_| TxFault::SizeMismatch)?;
    segments.push(
        GrantSegment::new(first.gref, first.offset, first_length)
            .ok_or(TxFault::SlotCrossesPage)?,
    );
    for request in rest {
        segments.push(
            GrantSegment::new(request.gref, request.offset, request.size)
                .ok_or(TxFault::SlotCrossesPage)?,
        );
    }
    let mut frame = vec![0; total];
    grants
        .copy_from_guest(domain, &segments, &mut frame)
        .map_err(|_| TxFault::BadGrantRef)?;

    offload.checksum = if first.flags.has(TxFlags::CSUM_BLANK) || offload.gso.is_some() {
        // GSO packets stay partial: whoever segments them fills each
        // segment's checksum.
        if policy.complete_checksums && offload.gso.is_none() {
            checksum::complete(&mut frame).map_err(TxFault::ChecksumHeaders)?;
            completed = true;
            ChecksumState::Validated
        } else {
            checksum::prepare_partial(&mut frame).map_err(TxFault::ChecksumHeaders)?;
            ChecksumState::Partial
        }
    } else if first.flags.has(TxFlags::DATA_VALIDATED) {
        ChecksumState::Validated
    } else {
        ChecksumState::Unknown
    };
    Ok((Packet { frame, offload }, completed))
}
