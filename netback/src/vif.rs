//! One connected vif: its queues' TX and RX rings, per-vif counters, and
//! the abuse policy that disconnects a front end that keeps sending bad
//! requests.

use alloc::vec::Vec;
use core::time::Duration;

use xen_ring::{BackRing, RingError, RingLayout, RingMemory};
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;

use crate::grants::Grants;
use crate::packet::Packet;
use crate::rx::{self, RxDrop, RxQueue};
use crate::tx::{Step, TxFault, TxPolicy, TxQueue};
use crate::wire::{
    MAX_DATA_SLOTS, RX_REQUEST_SIZE, RX_RESPONSE_SIZE, TX_REQUEST_SIZE, TX_RESPONSE_SIZE,
};
use crate::xenbus::FrontendFeatures;

/// Slots one TX packet may run to before it counts as endless: more than
/// a ring holds. A packet is at most 18 data and 4 extra-info slots; the
/// slots of one over the limit are answered as they come, which frees
/// ring room, so only a front end building a chain that never ends gets
/// here.
const ENDLESS_PACKET_SLOTS: usize = 256;

/// When bad requests amount to abuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbusePolicy {
    /// More bad packets than this within one window disconnects the vif.
    pub bad_packets: u32,
    /// The window.
    pub window: Duration,
}

/// A vif's limits and choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VifConfig {
    /// The front end's domain (for grant copies).
    pub domain: DomainId,
    /// TX slots taken per queue per [`Vif::poll`]: keeps one busy guest
    /// from starving the others.
    pub tx_slot_budget: usize,
    /// Packets waiting for RX pages, per queue.
    pub rx_queue_capacity: usize,
    /// Data slots per TX packet.
    pub max_data_slots: usize,
    /// Fill blank TX checksums here rather than passing them on partial.
    pub complete_tx_checksums: bool,
    /// When to give up on the front end.
    pub abuse: AbusePolicy,
}

impl VifConfig {
    /// Defaults for `domain`: a ring's worth of TX slots and of queued RX
    /// packets per round, Linux's 18 data slots, checksums filled here,
    /// more than 64 bad packets within a second disconnects.
    pub fn new(domain: DomainId) -> Self {
        Self {
            domain,
            tx_slot_budget: 256,
            rx_queue_capacity: 256,
            max_data_slots: MAX_DATA_SLOTS,
            complete_tx_checksums: true,
            abuse: AbusePolicy {
                bad_packets: 64,
                window: Duration::from_secs(1),
            },
        }
    }
}

/// What Dom0 mapped and bound for one queue.
#[derive(Debug)]
pub struct QueueResources<M> {
    /// The TX ring's page, mapped.
    pub tx_ring: M,
    /// The RX ring's page, mapped.
    pub rx_ring: M,
    /// Dom0's local port bound to the front end's TX (or only) channel.
    pub tx_port: Port,
    /// Dom0's local port for RX (the same as `tx_port` without split
    /// channels).
    pub rx_port: Port,
}

/// Why the vif must be disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// A ring's indices are out of range: potential malicious front end.
    RingFault {
        /// The queue.
        queue: usize,
        /// What the ring saw.
        error: RingError,
    },
    /// Too many bad packets within the abuse window.
    Abuse {
        /// Bad packets counted in the window.
        bad_packets: u32,
    },
    /// One packet went on for more slots than the ring holds: no front end
    /// that waits for its responses can send that (Linux disconnects
    /// beyond 20 slots).
    EndlessPacket {
        /// The queue.
        queue: usize,
        /// Its slots so far.
        slots: usize,
    },
}

/// Why [`Vif::connect`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// No queues given.
    NoQueues,
    /// Attaching a ring failed (too little memory, or its indices are
    /// already out of range).
    Ring {
        /// The queue.
        queue: usize,
        /// The fault.
        error: RingError,
    },
}

/// Per-vif counters. TX is guest to bridge, RX bridge to guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VifCounters {
    /// Packets taken from the guest.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Blank checksums filled on TX.
    pub tx_checksums_completed: u64,
    /// GSO packets taken from the guest.
    pub tx_gso_packets: u64,
    /// TX packets dropped: bad grant reference.
    pub tx_bad_grant_ref: u64,
    /// TX packets dropped: too many slots.
    pub tx_too_many_slots: u64,
    /// TX packets dropped: sizes that do not add up.
    pub tx_size_mismatch: u64,
    /// TX packets dropped: shorter than an Ethernet header.
    pub tx_runt: u64,
    /// TX packets dropped: a slot crossing its page.
    pub tx_slot_crosses_page: u64,
    /// TX packets dropped: malformed or duplicate extra info.
    pub tx_malformed_extra_info: u64,
    /// TX packets dropped: checksum or GSO on unreadable headers.
    pub tx_checksum_headers: u64,
    /// Packets delivered to the guest.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Blank checksums filled on RX for a front end without the offload.
    pub rx_checksums_completed: u64,
    /// GSO packets segmented for a front end that cannot take them.
    pub rx_gso_segmented: u64,
    /// RX drops: the queue was full.
    pub rx_queue_full: u64,
    /// RX drops: the vif was disconnected.
    pub rx_disconnected: u64,
    /// RX drops: runt, too large, or unsegmentable.
    pub rx_unsendable: u64,
    /// RX drops: a blank checksum on unreadable headers.
    pub rx_checksum_headers: u64,
    /// RX drops: the copy into the guest's page failed.
    pub rx_bad_grant_ref: u64,
    /// Times RX waited for the front end to post pages.
    pub rx_stalls: u64,
    /// Event-channel notifications asked for on TX.
    pub tx_notifications: u64,
    /// Event-channel notifications asked for on RX.
    pub rx_notifications: u64,
}

impl VifCounters {
    /// All TX packets dropped for the front end's faults.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_bad_grant_ref
            + self.tx_too_many_slots
            + self.tx_size_mismatch
            + self.tx_runt
            + self.tx_slot_crosses_page
            + self.tx_malformed_extra_info
            + self.tx_checksum_headers
    }

    /// All RX packets dropped.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_queue_full
            + self.rx_disconnected
            + self.rx_unsendable
            + self.rx_checksum_headers
            + self.rx_bad_grant_ref
    }

    fn count_tx_fault(&mut self, fault: TxFault) {
        let counter = match fault {
            TxFault::BadGrantRef => &mut self.tx_bad_grant_ref,
            TxFault::TooManySlots => &mut self.tx_too_many_slots,
            TxFault::SizeMismatch => &mut self.tx_size_mismatch,
            TxFault::Runt => &mut self.tx_runt,
            TxFault::SlotCrossesPage => &mut self.tx_slot_crosses_page,
            TxFault::MalformedExtraInfo(_) | TxFault::DuplicateExtraInfo => {
                &mut self.tx_malformed_extra_info
            }
            TxFault::ChecksumHeaders(_) => &mut self.tx_checksum_headers,
        };
        *counter += 1;
    }

    fn count_rx_drop(&mut self, drop: RxDrop) {
        let counter = match drop {
            RxDrop::QueueFull => &mut self.rx_queue_full,
            RxDrop::Disconnected => &mut self.rx_disconnected,
            RxDrop::Runt | RxDrop::TooLarge | RxDrop::CannotSegment => &mut self.rx_unsendable,
            RxDrop::ChecksumHeaders => &mut self.rx_checksum_headers,
            RxDrop::BadGrantRef => &mut self.rx_bad_grant_ref,
        };
        *counter += 1;
    }
}

/// One log line's worth: traffic with the offloads done for it, then
/// drops by reason (only the counts that are not zero), e.g. `tx 3 packets
/// 9180 bytes (gso 1), rx 0 packets 0 bytes, tx dropped 203 (bad grant ref
/// 201, runt 2), rx dropped 0`.
impl core::fmt::Display for VifCounters {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "tx {} packets {} bytes",
            self.tx_packets, self.tx_bytes
        )?;
        let offloads = [
            ("gso", self.tx_gso_packets),
            ("checksums filled", self.tx_checksums_completed),
        ];
        write_reasons(formatter, &offloads)?;
        write!(
            formatter,
            ", rx {} packets {} bytes",
            self.rx_packets, self.rx_bytes
        )?;
        let offloads = [
            ("segmented", self.rx_gso_segmented),
            ("checksums filled", self.rx_checksums_completed),
        ];
        write_reasons(formatter, &offloads)?;
        write!(formatter, ", tx dropped {}", self.tx_dropped())?;
        let tx = [
            ("bad grant ref", self.tx_bad_grant_ref),
            ("too many slots", self.tx_too_many_slots),
            ("size mismatch", self.tx_size_mismatch),
            ("runt", self.tx_runt),
            ("slot crosses page", self.tx_slot_crosses_page),
            ("malformed extra info", self.tx_malformed_extra_info),
            ("checksum headers", self.tx_checksum_headers),
        ];
        write_reasons(formatter, &tx)?;
        write!(formatter, ", rx dropped {}", self.rx_dropped())?;
        let rx = [
            ("queue full", self.rx_queue_full),
            ("disconnected", self.rx_disconnected),
            ("unsendable", self.rx_unsendable),
            ("checksum headers", self.rx_checksum_headers),
            ("bad grant ref", self.rx_bad_grant_ref),
        ];
        write_reasons(formatter, &rx)?;
        // How the rings paced the traffic: RX passes that found too few
        // posted pages, and notifications sent each way.
        let pacing = [
            ("rx stalls", self.rx_stalls),
            ("tx notifications", self.tx_notifications),
            ("rx notifications", self.rx_notifications),
        ];
        if pacing.iter().any(|(_, count)| *count > 0) {
            formatter.write_str(", rings")?;
            write_reasons(formatter, &pacing)?;
        }
        Ok(())
    }
}

/// ` (reason count, ...)` for the non-zero counts, or nothing.
fn write_reasons(
    formatter: &mut core::fmt::Formatter<'_>,
    reasons: &[(&str, u64)],
) -> core::fmt::Result {
    let mut first = true;
    for (reason, count) in reasons.iter().filter(|(_, count)| *count > 0) {
        formatter.write_str(if first { " (" } else { ", " })?;
        write!(formatter, "{reason} {count}")?;
        first = false;
    }
    if !first {
        formatter.write_str(")")?;
    }
    Ok(())
}

/// What a [`Vif::poll`] asks of Dom0.
#[derive(Debug, Default)]
pub struct VifActions {
    /// Packets from the guest, for the bridge, in ring order.
    pub packets: Vec<Packet>,
    /// Local event-channel ports to notify (each once).
    pub notify: Vec<Port>,
    /// TX work remains (the budget ran out): poll again soon.
    pub more_tx_work: bool,
    /// Packets wait for RX pages; without `feature-rx-notify` the front end
    /// will not say when it posts them, so poll again later.
    pub rx_waiting: bool,
    /// Tear the vif down ([`crate::Handshake::fail`]).
    pub disconnect: Option<DisconnectReason>,
}

impl VifActions {
    fn notify(&mut self, port: Port) {
        if !self.notify.contains(&port) {
            self.notify.push(port);
        }
    }
}

#[derive(Debug)]
struct Queue<M> {
    tx: TxQueue<M>,
    rx: RxQueue<M>,
    tx_port: Port,
    rx_port: Port,
}

/// One connected vif.
#[derive(Debug)]
pub struct Vif<M> {
    config: VifConfig,
    features: FrontendFeatures,
    queues: Vec<Queue<M>>,
    counters: VifCounters,
    window_start: Duration,
    bad_in_window: u32,
    disconnected: Option<DisconnectReason>,
}

impl<M: RingMemory> Vif<M> {
    /// Attaches to each queue's rings (single-page netif rings) once Dom0
    /// has mapped them and bound the event channels.
    pub fn connect(
        config: VifConfig,
        features: FrontendFeatures,
        resources: Vec<QueueResources<M>>,
    ) -> Result<Self, ConnectError> {
        if resources.is_empty() {
            return Err(ConnectError::NoQueues);
        }
        let tx_layout = RingLayout::new(1, TX_REQUEST_SIZE, TX_RESPONSE_SIZE);
        let rx_layout = RingLayout::new(1, RX_REQUEST_SIZE, RX_RESPONSE_SIZE);
        let mut queues = Vec::with_capacity(resources.len());
        for (index, resource) in resources.into_iter().enumerate() {
            let error = |error| ConnectError::Ring {
                queue: index,
                error,
            };
            let tx =
                BackRing::attach(resource.tx_ring, tx_layout.map_err(error)?).map_err(error)?;
            let rx =
                BackRing::attach(resource.rx_ring, rx_layout.map_err(error)?).map_err(error)?;
            queues.push(Queue {
                tx: TxQueue::new(tx),
                rx: RxQueue::new(rx, config.rx_queue_capacity),
                tx_port: resource.tx_port,
                rx_port: resource.rx_port,
            });
        }
        Ok(Self {
            config,
            features,
            queues,
            counters: VifCounters::default(),
            window_start: Duration::ZERO,
            bad_in_window: 0,
            disconnected: None,
        })
    }

    /// The counters.
    pub fn counters(&self) -> &VifCounters {
        &self.counters
    }

    /// What the front end can take.
    pub fn features(&self) -> &FrontendFeatures {
        &self.features
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Why the vif stopped, if it did. A stopped vif does nothing more.
    pub fn disconnected(&self) -> Option<DisconnectReason> {
        self.disconnected
    }

    /// Packets waiting for RX pages, over all queues.
    pub fn rx_waiting(&self) -> usize {
        self.queues.iter().map(|queue| queue.rx.waiting.len()).sum()
    }

    /// Takes a packet from the bridge for the guest. It waits (bounded per
    /// queue) until the next [`Vif::poll`]; a drop is counted here and
    /// returned so the bridge can count it on its port too.
    pub fn deliver(&mut self, packet: Packet) -> Result<(), RxDrop> {
        if self.disconnected.is_some() {
            self.counters.count_rx_drop(RxDrop::Disconnected);
            return Err(RxDrop::Disconnected);
        }
        let index = rx::flow_queue(&packet.frame, self.queues.len());
        let result = match self.queues.get_mut(index) {
            Some(queue) => queue.rx.enqueue(packet),
            None => Err(RxDrop::Disconnected),
        };
        if let Err(drop) = result {
            self.counters.count_rx_drop(drop);
        }
        result
    }

    /// Runs every queue: TX (up to the budget), then RX. Call on any of the
    /// vif's event channels, after [`Vif::deliver`], and when
    /// [`VifActions::more_tx_work`] or [`VifActions::rx_waiting`] asks.
    pub fn poll(&mut self, grants: &mut impl Grants, now: Duration) -> VifActions {
        let mut actions = VifActions::default();
        for index in 0..self.queues.len() {
            self.process_tx(index, grants, now, &mut actions);
            self.process_rx(index, grants, now, &mut actions);
        }
        actions.disconnect = self.disconnected;
        actions
    }

    /// Runs one queue's TX ring.
    pub fn process_tx(
        &mut self,
        index: usize,
        grants: &mut impl Grants,
        now: Duration,
        actions: &mut VifActions,
    ) {
        if self.disconnected.is_some() {
            actions.disconnect = self.disconnected;
            return;
        }
        let policy = TxPolicy {
            max_data_slots: self.config.max_data_slots,
            complete_checksums: self.config.complete_tx_checksums,
        };
        let domain = self.config.domain;
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        let mut faults = Vec::new();
        let mut endless = None;
        let mut taken = 0;
        let mut rechecked = false;
        let outcome: Result<(), RingError> = loop {
            if taken >= self.config.tx_slot_budget {
                actions.more_tx_work = true;
                break Ok(());
            }
            let slot = match queue.tx.ring.next_request() {
                Ok(Some(slot)) => slot,
                Ok(None) => {
                    if !rechecked && queue.tx.ring.final_check_for_requests() {
                        rechecked = true;
                        continue;
                    }
                    break Ok(());
                }
                Err(error) => break Err(error),
            };
            rechecked = false;
            taken += 1;
            match queue.tx.feed(slot.bytes(), domain, grants, &policy) {
                Ok(Step::Incomplete) => {}
                Ok(Step::Packet(Ok((packet, completed)))) => {
                    self.counters.tx_packets += 1;
                    self.counters.tx_bytes += u64::try_from(packet.frame.len()).unwrap_or(0);
                    if packet.offload.gso.is_some() {
                        self.counters.tx_gso_packets += 1;
                    }
                    if completed {
                        self.counters.tx_checksums_completed += 1;
                    }
                    actions.packets.push(packet);
                }
                Ok(Step::Packet(Err(fault))) => faults.push(fault),
                Err(error) => break Err(error),
            }
            if queue.tx.discarded_slots() > ENDLESS_PACKET_SLOTS {
                endless = Some(queue.tx.discarded_slots());
                break Ok(());
            }
        };
        if queue.tx.ring.publish_responses() {
            self.counters.tx_notifications += 1;
            actions.notify(queue.tx_port);
        }
        if let Err(error) = outcome {
            self.stop(
                DisconnectReason::RingFault {
                    queue: index,
                    error,
                },
                actions,
            );
        }
        for fault in faults {
            self.counters.count_tx_fault(fault);
            self.note_bad_packet(now, actions);
        }
        if let Some(slots) = endless {
            self.counters.count_tx_fault(TxFault::TooManySlots);
            self.stop(
                DisconnectReason::EndlessPacket {
                    queue: index,
                    slots,
                },
                actions,
            );
        }
    }

    /// Runs one queue's RX ring.
    pub fn process_rx(
        &mut self,
        index: usize,
        grants: &mut impl Grants,
        now: Duration,
        actions: &mut VifActions,
    ) {
        if self.disconnected.is_some() {
            actions.disconnect = self.disconnected;
            return;
        }
        let domain = self.config.domain;
        let features = self.features;
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        let result = queue.rx.process(domain, grants, &features);
        if queue.rx.ring.publish_responses() {
            self.counters.rx_notifications += 1;
            actions.notify(queue.rx_port);
        }
        let waiting = !queue.rx.waiting.is_empty();
        match result {
            Ok(progress) => {
                self.counters.rx_packets += progress.delivered;
                self.counters.rx_bytes += progress.bytes;
                self.counters.rx_checksums_completed += progress.checksums_completed;
                self.counters.rx_gso_segmented += progress.segmented;
                if progress.stalled {
                    self.counters.rx_stalls += 1;
                    actions.rx_waiting |= waiting;
                }
                for drop in progress.drops {
                    self.counters.count_rx_drop(drop);
                    if drop == RxDrop::BadGrantRef {
                        self.note_bad_packet(now, actions);
                    }
                }
            }
            Err(error) => self.stop(
                DisconnectReason::RingFault {
                    queue: index,
                    error,
                },
                actions,
            ),
        }
    }

    /// Counts a bad packet against the abuse window.
    fn note_bad_packet(&mut self, now: Duration, actions: &mut VifActions) {
        if now.saturating_sub(self.window_start) >= self.config.abuse.window {
            self.window_start = now;
            self.bad_in_window = 0;
        }
        self.bad_in_window = self.bad_in_window.saturating_add(1);
        if self.bad_in_window > self.config.abuse.bad_packets {
            let bad_packets = self.bad_in_window;
            self.stop(DisconnectReason::Abuse { bad_packets }, actions);
        }
    }

    fn stop(&mut self, reason: DisconnectReason, actions: &mut VifActions) {
        if self.disconnected.is_none() {
            self.disconnected = Some(reason);
            // Whatever waited for the guest is lost with it.
            for queue in &mut self.queues {
                let lost = queue.rx.waiting.len() as u64;
                queue.rx.waiting.clear();
                self.counters.rx_disconnected += lost;
            }
        }
        actions.disconnect = self.disconnected;
    }

    /// Every queue's TX and RX ring memory (for the owner's statistics).
    pub fn ring_memories(&self) -> impl Iterator<Item = &M> {
        self.queues
            .iter()
            .flat_map(|queue| [queue.tx.ring.memory(), queue.rx.ring.memory()])
    }

    /// Pages the front end posted that wait for packets, per queue (for
    /// tests and statistics).
    pub fn rx_pages_posted(&self, index: usize) -> usize {
        self.queues.get(index).map_or(0, |queue| queue.rx.posted())
    }

    /// Whether queue `index` holds part of a TX packet whose remaining
    /// slots the front end has not published yet.
    pub fn tx_packet_pending(&self, index: usize) -> bool {
        self.queues
            .get(index)
            .is_some_and(|queue| queue.tx.has_partial_packet())
    }
}
