//! A vif driven by the fake netfront: packets both ways, multi-slot and
//! extra-info packets, checksums and GSO, every class of bad request, ring
//! wrap, notifications, abuse, and the xenbus handshake.

use alloc::collections::BTreeMap;
use core::time::Duration;

use xen_ring::fake::FakeRingMemory;
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

use crate::checksum::tests::{tcp_ipv4_syn, tcp_ipv6, udp_ipv4_dns};
use crate::checksum::{self, verify};
use crate::fake::{FakeFrontend, FakeGrants};
use crate::wire::*;
use crate::*;

const GUEST: DomainId = DomainId(5);
const NOW: Duration = Duration::from_secs(10);

fn all_features() -> FrontendFeatures {
    FrontendFeatures {
        scatter_gather: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        ipv4_checksum_offload: true,
        ipv6_checksum_offload: true,
        rx_notify: true,
        multicast_control: false,
    }
}

struct Setup {
    vif: Vif<FakeRingMemory>,
    front: FakeFrontend,
    grants: FakeGrants,
}

fn setup_with(config: VifConfig, features: FrontendFeatures, start: u32) -> Setup {
    let (front, resources) = FakeFrontend::new(GUEST, start);
    let vif = Vif::connect(config, features, vec![resources]).unwrap();
    Setup {
        vif,
        front,
        grants: FakeGrants::new(),
    }
}

fn setup() -> Setup {
    setup_with(VifConfig::new(GUEST), all_features(), 0)
}

/// A frame of `length` bytes: Ethernet header, then a counting pattern.
fn frame(length: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..length).map(|index| (index * 7 + 3) as u8).collect();
    if length < 14 {
        return bytes;
    }
    bytes[..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x16, 0x3e, 0, 0, 1]);
    bytes[12..14].copy_from_slice(&[0x88, 0xb5]);
    bytes
}

fn okay(responses: &[TxResponse]) -> bool {
    responses
        .iter()
        .all(|response| response.status == ResponseStatus::OKAY)
}

// ---- TX ----

#[test]
fn a_single_slot_packet_reaches_the_bridge() {
    let mut s = setup();
    let packet = frame(60);
    let ids = s.front.queue_packet(&mut s.grants, &packet, 4096, 0, &[]);
    assert!(s.front.publish_tx());
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(actions.packets, vec![Packet::plain(packet)]);
    assert_eq!(actions.notify, vec![Port(1)]);
    assert!(actions.disconnect.is_none() && !actions.more_tx_work);
    let responses = s.front.tx_responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].id, ids[0]);
    assert!(okay(&responses));
    let counters = s.vif.counters();
    assert_eq!((counters.tx_packets, counters.tx_bytes), (1, 60));
    assert_eq!(counters.tx_notifications, 1);
    assert_eq!(s.grants.copies_from_guest, 1);
}

#[test]
fn a_multi_slot_packet_is_reassembled_in_one_copy() {
    let mut s = setup();
    let packet = frame(9000);
    let ids = s.front.queue_packet(&mut s.grants, &packet, 1000, 0, &[]);
    // 1000 bytes at offset 64 in the first page, then 8 pages of 1000.
    assert_eq!(ids.len(), 9);
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(actions.packets.len(), 1);
    assert_eq!(actions.packets[0].frame, packet);
    let responses = s.front.tx_responses();
    assert_eq!(responses.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(okay(&responses));
    assert_eq!((s.grants.copies_from_guest, s.grants.segments), (1, 9));
}

#[test]
fn eighteen_data_slots_pass_and_nineteen_are_dropped() {
    let mut s = setup();
    s.front
        .queue_packet(&mut s.grants, &frame(18 * 100), 100, 0, &[]);
    s.front
        .queue_packet(&mut s.grants, &frame(19 * 100), 100, 0, &[]);
    s.front
        .queue_packet(&mut s.grants, &frame(100), 100, 0, &[]);
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    let lengths: Vec<usize> = actions.packets.iter().map(|p| p.frame.len()).collect();
    assert_eq!(lengths, vec![1800, 100]);
    let responses = s.front.tx_responses();
    assert_eq!(responses.len(), 18 + 19 + 1);
    assert!(okay(&responses[..18]));
    assert!(
        responses[18..37]
            .iter()
            .all(|r| r.status == ResponseStatus::ERROR)
    );
    assert!(okay(&responses[37..]));
    assert_eq!(s.vif.counters().tx_too_many_slots, 1);
}

#[test]
fn extra_info_slots_are_answered_null_and_gso_is_passed_on() {
    let mut s = setup();
    let mut packet = tcp_ipv4_syn();
    packet.extend(core::iter::repeat_n(0xab, 3000));
    let total = (packet.len() - 14) as u16;
    packet[16..18].copy_from_slice(&total.to_be_bytes());
    checksum::complete_ipv4_header(&mut packet, 14);
    let gso = Gso {
        kind: GsoKind::TcpV4,
        segment_size: 1448,
    };
    let hash = ExtraInfo::Hash {
        kind: 1,
        algorithm: 1,
        value: [1, 2, 3, 4],
    };
    s.front.queue_packet(
        &mut s.grants,
        &packet,
        2048,
        TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED,
        &[ExtraInfo::Gso(gso), hash],
    );
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(actions.packets.len(), 1);
    let sent = &actions.packets[0];
    assert_eq!(sent.offload.gso, Some(gso));
    assert_eq!(sent.offload.checksum, ChecksumState::Partial);
    let statuses: Vec<ResponseStatus> = s.front.tx_responses().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![
            ResponseStatus::OKAY,
            ResponseStatus::NULL,
            ResponseStatus::NULL,
            ResponseStatus::OKAY
        ]
    );
    assert_eq!(s.vif.counters().tx_gso_packets, 1);
    // Segmenting what left netback gives valid segments.
    let segments = gso::segment(&sent.frame, gso).unwrap();
    assert_eq!(segments.len(), 3);
    assert!(segments.iter().all(|p| verify(&p.frame) == Ok(true)));
}

#[test]
fn blank_checksums_are_filled_or_passed_on_partial() {
    for complete in [true, false] {
        let mut config = VifConfig::new(GUEST);
        config.complete_tx_checksums = complete;
        let mut s = setup_with(config, all_features(), 0);
        for known in [tcp_ipv4_syn(), udp_ipv4_dns(), tcp_ipv6()] {
            let mut blank = known.clone();
            let field = checksum::locate(&blank).unwrap();
            let at = field.transport_start + field.checksum_offset();
            blank[at..at + 2].copy_from_slice(&[0xde, 0xad]);
            s.front
                .queue_packet(&mut s.grants, &blank, 4096, TxFlags::CSUM_BLANK, &[]);
            s.front.publish_tx();
            let mut actions = s.vif.poll(&mut s.grants, NOW);
            let packet = actions.packets.pop().unwrap();
            if complete {
                assert_eq!(packet.frame, known);
                assert_eq!(packet.offload.checksum, ChecksumState::Validated);
            } else {
                assert_eq!(packet.offload.checksum, ChecksumState::Partial);
                let mut filled = packet.frame.clone();
                checksum::complete(&mut filled).unwrap();
                assert_eq!(filled, known);
            }
        }
        assert_eq!(
            s.vif.counters().tx_checksums_completed,
            if complete { 3 } else { 0 }
        );
    }
}

#[test]
fn data_validated_is_passed_on() {
    let mut s = setup();
    s.front.queue_packet(
        &mut s.grants,
        &udp_ipv4_dns(),
        4096,
        TxFlags::DATA_VALIDATED,
        &[],
    );
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(
        actions.packets[0].offload.checksum,
        ChecksumState::Validated
    );
    assert_eq!(actions.packets[0].frame, udp_ipv4_dns());
}

/// Queues one bad packet, polls, and checks it was answered ERROR and
/// counted by `counter`.
fn assert_bad_packet(
    queue: impl FnOnce(&mut FakeFrontend, &mut FakeGrants),
    counter: fn(&VifCounters) -> u64,
) {
    let mut s = setup();
    queue(&mut s.front, &mut s.grants);
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(actions.packets.is_empty());
    assert!(actions.disconnect.is_none());
    let responses = s.front.tx_responses();
    assert!(!responses.is_empty());
    assert!(
        responses
            .iter()
            .all(|r| r.status == ResponseStatus::ERROR || r.status == ResponseStatus::NULL)
    );
    assert!(responses.iter().any(|r| r.status == ResponseStatus::ERROR));
    assert_eq!(counter(s.vif.counters()), 1);
    assert_eq!(s.vif.counters().tx_dropped(), 1);
    // The ring still works afterwards.
    s.front
        .queue_packet(&mut s.grants, &frame(100), 4096, 0, &[]);
    s.front.publish_tx();
    assert_eq!(s.vif.poll(&mut s.grants, NOW).packets.len(), 1);
}

fn request(gref: u32, offset: u16, flags: u16, size: u16) -> TxRequest {
    TxRequest {
        gref: GrantRef(gref),
        offset,
        flags: TxFlags(flags),
        id: RequestId(77),
        size,
    }
}

#[test]
fn a_bad_grant_ref_is_dropped_and_counted() {
    assert_bad_packet(
        |front, _| {
            front.push_tx(request(9999, 0, 0, 100));
        },
        |c| c.tx_bad_grant_ref,
    );
}

#[test]
fn a_revoked_grant_in_a_later_slot_is_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            front.queue_packet(grants, &frame(3000), 1000, 0, &[]);
            grants.revoke(GUEST, GrantRef(103));
        },
        |c| c.tx_bad_grant_ref,
    );
}

#[test]
fn sizes_that_do_not_add_up_are_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 0, TxFlags::MORE_DATA, 100));
            front.push_tx(request(gref.0, 0, 0, 200));
        },
        |c| c.tx_size_mismatch,
    );
}

#[test]
fn a_runt_is_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 0, 0, 13));
        },
        |c| c.tx_runt,
    );
}

#[test]
fn a_slot_crossing_its_page_is_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 4000, 0, 200));
        },
        |c| c.tx_slot_crosses_page,
    );
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 0, TxFlags::MORE_DATA, 5000));
            front.push_tx(request(gref.0, 4095, 0, 100));
        },
        |c| c.tx_slot_crosses_page,
    );
}

#[test]
fn malformed_extra_info_is_dropped_and_counted() {
    for extra in [
        [0u8, 0, 0, 0, 0, 0, 0, 0],
        [9, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 1, 0, 0, 0],
        [1, 0, 0xa0, 5, 7, 0, 0, 0],
        [2, 0x80, 1, 0, 0x5e, 0, 0, 1],
    ] {
        assert_bad_packet(
            |front, grants| {
                let gref = front.next_gref();
                grants.grant(GUEST, gref, true);
                front.push_tx(request(gref.0, 0, TxFlags::EXTRA_INFO, 100));
                front.push_tx_raw(&extra);
            },
            |c| c.tx_malformed_extra_info,
        );
    }
    // Two of a kind.
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 0, TxFlags::EXTRA_INFO, 100));
            let add = ExtraInfo::MulticastAdd([1, 0, 0x5e, 0, 0, 1]);
            front.push_tx_raw(&add.emit(true));
            front.push_tx_raw(&add.emit(false));
        },
        |c| c.tx_malformed_extra_info,
    );
}

#[test]
fn too_many_extra_info_slots_are_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            let gref = front.next_gref();
            grants.grant(GUEST, gref, true);
            front.push_tx(request(gref.0, 0, TxFlags::EXTRA_INFO, 100));
            for _ in 0..10 {
                front.push_tx_raw(&ExtraInfo::MulticastAdd([1, 0, 0x5e, 0, 0, 1]).emit(true));
            }
            front.push_tx_raw(&ExtraInfo::MulticastAdd([1, 0, 0x5e, 0, 0, 1]).emit(false));
        },
        |c| c.tx_too_many_slots,
    );
}

#[test]
fn a_blank_checksum_on_unreadable_headers_is_dropped_and_counted() {
    assert_bad_packet(
        |front, grants| {
            front.queue_packet(grants, &frame(100), 4096, TxFlags::CSUM_BLANK, &[]);
        },
        |c| c.tx_checksum_headers,
    );
}

#[test]
fn a_packet_published_in_parts_waits_for_the_rest() {
    let packet = frame(3000);
    let mut s = setup();
    let grefs: Vec<GrantRef> = (0..3).map(|_| s.front.next_gref()).collect();
    for (index, gref) in grefs.iter().enumerate() {
        s.grants.grant(GUEST, *gref, true);
        s.grants
            .write(GUEST, *gref, 0, &packet[index * 1000..(index + 1) * 1000]);
    }
    s.front
        .push_tx(request(grefs[0].0, 0, TxFlags::MORE_DATA, 3000));
    s.front
        .push_tx(request(grefs[1].0, 0, TxFlags::MORE_DATA, 1000));
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(actions.packets.is_empty());
    assert!(s.vif.tx_packet_pending(0));
    assert!(s.front.tx_responses().is_empty());
    s.front.push_tx(request(grefs[2].0, 0, 0, 1000));
    assert!(s.front.publish_tx(), "the back end armed req_event");
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(actions.packets[0].frame, packet);
    assert_eq!(s.front.tx_responses().len(), 3);
}

#[test]
fn the_tx_budget_bounds_one_poll() {
    let mut config = VifConfig::new(GUEST);
    config.tx_slot_budget = 10;
    let mut s = setup_with(config, all_features(), 0);
    for _ in 0..25 {
        s.front
            .queue_packet(&mut s.grants, &frame(64), 4096, 0, &[]);
    }
    s.front.publish_tx();
    let first = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(first.packets.len(), 10);
    assert!(first.more_tx_work);
    let second = s.vif.poll(&mut s.grants, NOW);
    let third = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(second.packets.len() + third.packets.len(), 15);
    assert!(!third.more_tx_work);
}

#[test]
fn persistent_abuse_disconnects_but_occasional_faults_do_not() {
    let mut config = VifConfig::new(GUEST);
    config.abuse = AbusePolicy {
        bad_packets: 5,
        window: Duration::from_secs(1),
    };
    let mut s = setup_with(config, all_features(), 0);
    // Five bad packets a second, for ten seconds: tolerated.
    for second in 0..10 {
        for _ in 0..5 {
            s.front.push_tx(request(9999, 0, 0, 100));
        }
        s.front.publish_tx();
        let actions = s.vif.poll(&mut s.grants, Duration::from_secs(second));
        assert!(actions.disconnect.is_none());
    }
    // Six within one: disconnected.
    for _ in 0..6 {
        s.front.push_tx(request(9999, 0, 0, 100));
    }
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, Duration::from_secs(20));
    assert_eq!(
        actions.disconnect,
        Some(DisconnectReason::Abuse { bad_packets: 6 })
    );
    // A disconnected vif does nothing more and refuses packets.
    s.front
        .queue_packet(&mut s.grants, &frame(64), 4096, 0, &[]);
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, Duration::from_secs(21));
    assert!(actions.packets.is_empty());
    assert!(actions.disconnect.is_some());
    assert_eq!(
        s.vif.deliver(Packet::plain(frame(64))),
        Err(RxDrop::Disconnected)
    );
}

#[test]
fn a_bogus_producer_index_disconnects_at_once() {
    let (_, resources) = FakeFrontend::new(GUEST, 0);
    let memory = resources.tx_ring.clone();
    let mut vif = Vif::connect(VifConfig::new(GUEST), all_features(), vec![resources]).unwrap();
    let mut grants = FakeGrants::new();
    vif.deliver(Packet::plain(frame(64))).unwrap();
    // req_prod more than a ring's worth ahead.
    memory.poke_u32(0, 1000);
    let actions = vif.poll(&mut grants, NOW);
    assert!(matches!(
        actions.disconnect,
        Some(DisconnectReason::RingFault { queue: 0, .. })
    ));
    // What waited for the guest is dropped and counted.
    assert_eq!(vif.counters().rx_disconnected, 1);
}

// ---- RX ----

#[test]
fn a_packet_for_the_guest_lands_in_its_posted_page() {
    let mut s = setup();
    s.front.post_rx(&mut s.grants, 8);
    s.vif.deliver(Packet::plain(frame(1514))).unwrap();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert_eq!(actions.notify, vec![Port(2)]);
    let received = s.front.receive(&s.grants);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].frame, frame(1514));
    assert_eq!(received[0].flags, RxFlags(0));
    assert_eq!(received[0].slots, 1);
    assert_eq!(s.vif.counters().rx_packets, 1);
    assert_eq!(s.vif.counters().rx_bytes, 1514);
    assert_eq!(s.front.rx_posted(), 7);
}

#[test]
fn a_large_packet_spans_several_pages_with_more_data() {
    let mut s = setup();
    s.front.post_rx(&mut s.grants, 8);
    let big = frame(10_000);
    s.vif.deliver(Packet::plain(big.clone())).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received[0].frame, big);
    assert_eq!(received[0].slots, 3);
    assert_eq!(s.grants.copies_to_guest, 1);
}

#[test]
fn rx_waits_for_pages_and_resumes_when_posted() {
    let mut s = setup();
    s.front.post_rx(&mut s.grants, 1);
    s.vif.deliver(Packet::plain(frame(10_000))).unwrap();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(actions.rx_waiting);
    assert_eq!(s.vif.counters().rx_stalls, 1);
    assert!(s.front.receive(&s.grants).is_empty());
    // The back end armed req_event, so posting notifies it.
    assert!(s.front.post_rx(&mut s.grants, 2));
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(!actions.rx_waiting);
    assert_eq!(s.front.receive(&s.grants)[0].frame, frame(10_000));
}

#[test]
fn checksum_flags_follow_the_packet_and_the_front_end() {
    let mut s = setup();
    s.front.post_rx(&mut s.grants, 16);
    let mut validated = Packet::plain(udp_ipv4_dns());
    validated.offload.checksum = ChecksumState::Validated;
    let mut partial = Packet::plain(tcp_ipv4_syn());
    partial.offload.checksum = ChecksumState::Partial;
    s.vif.deliver(validated).unwrap();
    s.vif.deliver(partial.clone()).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received[0].flags, RxFlags(RxFlags::DATA_VALIDATED));
    assert_eq!(
        received[1].flags,
        RxFlags(RxFlags::DATA_VALIDATED | RxFlags::CSUM_BLANK)
    );
    // Passed blank: the field holds the pseudo-header sum.
    let mut expected = tcp_ipv4_syn();
    checksum::prepare_partial(&mut expected).unwrap();
    assert_eq!(received[1].frame, expected);

    // A front end without IPv4 checksum offload gets it filled.
    let mut features = all_features();
    features.ipv4_checksum_offload = false;
    let mut s = setup_with(VifConfig::new(GUEST), features, 0);
    s.front.post_rx(&mut s.grants, 4);
    let mut blanked = partial;
    blanked.frame[14 + 20 + 16] = 0;
    s.vif.deliver(blanked).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received[0].frame, tcp_ipv4_syn());
    assert_eq!(received[0].flags, RxFlags(RxFlags::DATA_VALIDATED));
    assert_eq!(s.vif.counters().rx_checksums_completed, 1);
}

fn gso_packet() -> Packet {
    let mut bytes = tcp_ipv6();
    bytes.extend(core::iter::repeat_n(0x42, 6000));
    let payload_length = (bytes.len() - 54) as u16;
    bytes[18..20].copy_from_slice(&payload_length.to_be_bytes());
    Packet {
        frame: bytes,
        offload: Offload {
            checksum: ChecksumState::Partial,
            gso: Some(Gso {
                kind: GsoKind::TcpV6,
                segment_size: 1440,
            }),
        },
    }
}

#[test]
fn gso_goes_whole_to_a_front_end_that_takes_it() {
    let mut s = setup();
    s.front.post_rx(&mut s.grants, 8);
    let packet = gso_packet();
    s.vif.deliver(packet.clone()).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].slots, 3);
    assert_eq!(
        received[0].extra,
        Some(ExtraInfo::Gso(packet.offload.gso.unwrap()))
    );
    assert!(
        received[0]
            .flags
            .has(RxFlags::CSUM_BLANK | RxFlags::EXTRA_INFO)
    );
    assert_eq!(received[0].frame.len(), packet.frame.len());
}

#[test]
fn gso_is_segmented_for_a_front_end_that_does_not() {
    let mut features = all_features();
    features.gso_tcpv6 = false;
    let mut s = setup_with(VifConfig::new(GUEST), features, 0);
    s.front.post_rx(&mut s.grants, 16);
    s.vif.deliver(gso_packet()).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received.len(), 5);
    assert!(
        received
            .iter()
            .all(|p| verify(&p.frame) == Ok(true) && p.extra.is_none())
    );
    assert!(received.iter().all(|p| p.frame.len() <= 74 + 1440));
    assert_eq!(s.vif.counters().rx_gso_segmented, 1);
    assert_eq!(s.vif.counters().rx_packets, 5);
}

#[test]
fn without_scatter_gather_big_frames_are_dropped_and_counted() {
    let mut features = all_features();
    features.scatter_gather = false;
    let mut s = setup_with(VifConfig::new(GUEST), features, 0);
    s.front.post_rx(&mut s.grants, 8);
    assert_eq!(s.vif.deliver(Packet::plain(frame(3000))), Ok(()));
    s.vif.deliver(Packet::plain(frame(1518))).unwrap();
    s.vif.deliver(Packet::plain(frame(10))).unwrap();
    s.vif.poll(&mut s.grants, NOW);
    let received = s.front.receive(&s.grants);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].frame.len(), 1518);
    assert_eq!(s.vif.counters().rx_unsendable, 2);
}

#[test]
fn the_rx_queue_is_bounded() {
    let mut config = VifConfig::new(GUEST);
    config.rx_queue_capacity = 3;
    let mut s = setup_with(config, all_features(), 0);
    for _ in 0..3 {
        s.vif.deliver(Packet::plain(frame(64))).unwrap();
    }
    assert_eq!(
        s.vif.deliver(Packet::plain(frame(64))),
        Err(RxDrop::QueueFull)
    );
    assert_eq!(s.vif.counters().rx_queue_full, 1);
    assert_eq!(s.vif.rx_waiting(), 3);
}

#[test]
fn a_bad_rx_grant_is_reported_on_the_ring_and_counted() {
    let mut s = setup();
    s.front.post_rx_raw(GrantRef(4242));
    s.front.post_rx(&mut s.grants, 1);
    s.vif.deliver(Packet::plain(frame(64))).unwrap();
    s.vif.deliver(Packet::plain(frame(65))).unwrap();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(actions.disconnect.is_none());
    let received = s.front.receive(&s.grants);
    assert_eq!(received.len(), 2);
    assert!(received[0].error);
    assert_eq!(received[1].frame, frame(65));
    assert_eq!(s.vif.counters().rx_bad_grant_ref, 1);
}

// ---- Rings ----

#[test]
fn rings_wrap_around_the_index_space() {
    let mut s = setup_with(VifConfig::new(GUEST), all_features(), u32::MAX - 40);
    let mut sent = 0;
    let mut received = 0;
    for round in 0..20usize {
        for index in 0..7 {
            let length = 60 + round * 100 + index;
            s.front
                .queue_packet(&mut s.grants, &frame(length), 700, 0, &[]);
        }
        s.front.publish_tx();
        s.front.post_rx(&mut s.grants, 12);
        let actions = s.vif.poll(&mut s.grants, NOW);
        for packet in actions.packets {
            sent += 1;
            s.vif.deliver(packet).unwrap();
        }
        s.vif.poll(&mut s.grants, NOW);
        let packets = s.front.receive(&s.grants);
        for packet in &packets {
            let length = packet.frame.len();
            assert_eq!(packet.frame, frame(length));
        }
        received += packets.len();
        assert!(okay(&s.front.tx_responses()));
    }
    assert_eq!(sent, 140);
    assert!(received > 100, "{received}");
    assert_eq!(s.vif.counters().tx_dropped(), 0);
}

#[test]
fn notifications_follow_the_hold_off_rules() {
    let mut s = setup();
    // The front end has not re-armed rsp_event after the first response:
    // later responses are not notified.
    s.front
        .queue_packet(&mut s.grants, &frame(64), 4096, 0, &[]);
    s.front.publish_tx();
    assert_eq!(s.vif.poll(&mut s.grants, NOW).notify, vec![Port(1)]);
    s.front
        .queue_packet(&mut s.grants, &frame(64), 4096, 0, &[]);
    s.front.publish_tx();
    assert!(s.vif.poll(&mut s.grants, NOW).notify.is_empty());
    s.front.tx_responses();
    s.front.arm_responses();
    s.front
        .queue_packet(&mut s.grants, &frame(64), 4096, 0, &[]);
    // The back end re-armed req_event when it ran dry.
    assert!(s.front.publish_tx());
    assert_eq!(s.vif.poll(&mut s.grants, NOW).notify, vec![Port(1)]);
    assert_eq!(s.vif.counters().tx_notifications, 2);
    // A poll with nothing to do notifies nobody.
    assert!(s.vif.poll(&mut s.grants, NOW).notify.is_empty());
}

#[test]
fn a_shared_event_channel_is_notified_once() {
    let (mut front, mut resources) = FakeFrontend::new(GUEST, 0);
    resources.rx_port = resources.tx_port;
    let mut vif = Vif::connect(VifConfig::new(GUEST), all_features(), vec![resources]).unwrap();
    let mut grants = FakeGrants::new();
    front.queue_packet(&mut grants, &frame(64), 4096, 0, &[]);
    front.publish_tx();
    front.post_rx(&mut grants, 1);
    vif.deliver(Packet::plain(frame(64))).unwrap();
    assert_eq!(vif.poll(&mut grants, NOW).notify, vec![Port(1)]);
}

#[test]
fn multi_queue_vifs_spread_flows_and_keep_each_in_one_queue() {
    let mut grants = FakeGrants::new();
    let mut fronts = Vec::new();
    let mut resources = Vec::new();
    for index in 0..4u32 {
        let (front, mut resource) = FakeFrontend::new(GUEST, index * 1000);
        resource.tx_port = Port(10 + index);
        resource.rx_port = Port(20 + index);
        fronts.push(front);
        resources.push(resource);
    }
    let mut vif = Vif::connect(VifConfig::new(GUEST), all_features(), resources).unwrap();
    assert_eq!(vif.queue_count(), 4);
    for front in &mut fronts {
        front.post_rx(&mut grants, 64);
    }
    for port in 0..40u16 {
        let mut packet = tcp_ipv4_syn();
        packet[34..36].copy_from_slice(&(1000 + port).to_be_bytes());
        vif.deliver(Packet::plain(packet.clone())).unwrap();
        vif.deliver(Packet::plain(packet)).unwrap();
    }
    vif.poll(&mut grants, NOW);
    let mut used = 0;
    for front in &mut fronts {
        let packets = front.receive(&grants);
        if !packets.is_empty() {
            used += 1;
        }
        // Both copies of a flow land on the same queue.
        let mut per_flow: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for packet in packets {
            *per_flow.entry(packet.frame).or_default() += 1;
        }
        assert!(per_flow.values().all(|count| *count == 2));
    }
    assert!(used >= 2, "flows spread over {used} queue(s)");
    assert_eq!(vif.counters().rx_packets, 80);
}

#[test]
fn connect_refuses_no_queues_and_broken_rings() {
    assert_eq!(
        Vif::<FakeRingMemory>::connect(VifConfig::new(GUEST), all_features(), vec![]).err(),
        Some(ConnectError::NoQueues)
    );
    let (_, mut resources) = FakeFrontend::new(GUEST, 0);
    resources.rx_ring = FakeRingMemory::with_size(100);
    assert!(matches!(
        Vif::connect(VifConfig::new(GUEST), all_features(), vec![resources]).err(),
        Some(ConnectError::Ring { queue: 0, .. })
    ));
}

// ---- Handshake ----

#[derive(Default)]
struct Keys(BTreeMap<&'static str, &'static str>);

impl FrontendKeys for Keys {
    fn read(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|value| String::from(*value))
    }
}

fn linux_keys() -> Keys {
    Keys(BTreeMap::from([
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel-tx", "5"),
        ("event-channel-rx", "6"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
    ]))
}

#[test]
fn the_handshake_advertises_then_connects() {
    let mut handshake = Handshake::new(BackendFeatures::default());
    let actions = handshake.probe();
    let written: BTreeMap<&str, String> = actions
        .iter()
        .filter_map(|action| match action {
            HandshakeAction::WriteBackendKey { key, value } => Some((*key, value.clone())),
            _ => None,
        })
        .collect();
    for key in [
        "feature-rx-copy",
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
        "feature-split-event-channels",
    ] {
        assert_eq!(written.get(key).map(String::as_str), Some("1"), "{key}");
    }
    assert_eq!(
        written.get("multi-queue-max-queues").map(String::as_str),
        Some("4")
    );
    assert_eq!(
        actions.last(),
        Some(&HandshakeAction::SwitchState(XenbusState::InitWait))
    );
    assert!(
        handshake
            .frontend_changed(XenbusState::Initialising, &linux_keys())
            .is_empty()
    );
    let actions = handshake.frontend_changed(XenbusState::Connected, &linux_keys());
    let HandshakeAction::Connect(config) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        config.queues,
        vec![QueueKeys {
            tx_ring_ref: GrantRef(8),
            rx_ring_ref: GrantRef(9),
            event_channels: EventChannels::Split {
                tx: Port(5),
                rx: Port(6)
            },
        }]
    );
    assert!(config.features.scatter_gather && config.features.gso_tcpv6);
    assert!(config.features.ipv4_checksum_offload && config.features.rx_notify);
    assert_eq!(
        actions[1],
        HandshakeAction::SwitchState(XenbusState::Connected)
    );
    assert!(handshake.is_connected());
    // A repeated Connected changes nothing.
    assert!(
        handshake
            .frontend_changed(XenbusState::Connected, &linux_keys())
            .is_empty()
    );
    // Closing, Closed, then a fresh start.
    assert_eq!(
        handshake.frontend_changed(XenbusState::Closing, &linux_keys()),
        vec![
            HandshakeAction::Disconnect,
            HandshakeAction::SwitchState(XenbusState::Closing)
        ]
    );
    assert_eq!(
        handshake.frontend_changed(XenbusState::Closed, &linux_keys()),
        vec![HandshakeAction::SwitchState(XenbusState::Closed)]
    );
    assert_eq!(
        handshake.frontend_changed(XenbusState::Initialising, &linux_keys()),
        vec![HandshakeAction::SwitchState(XenbusState::InitWait)]
    );
    assert!(matches!(
        handshake.frontend_changed(XenbusState::Connected, &linux_keys())[0],
        HandshakeAction::Connect(_)
    ));
    let actions = handshake.fail("abuse");
    assert_eq!(actions[0], HandshakeAction::Disconnect);
    assert_eq!(
        actions.last(),
        Some(&HandshakeAction::SwitchState(XenbusState::Closing))
    );
}

#[test]
fn bad_front_end_keys_are_refused_with_their_fault() {
    let offered = BackendFeatures::default();
    let read = |edit: &dyn Fn(&mut Keys)| {
        let mut keys = linux_keys();
        edit(&mut keys);
        FrontendConfig::read(&keys, &offered)
    };
    assert_eq!(
        read(&|k| {
            k.0.remove("request-rx-copy");
        }),
        Err(HandshakeError::RxCopyNotRequested)
    );
    assert_eq!(
        read(&|k| {
            k.0.insert("request-rx-copy", "0");
        }),
        Err(HandshakeError::RxCopyNotRequested)
    );
    assert_eq!(
        read(&|k| {
            k.0.remove("tx-ring-ref");
        }),
        Err(HandshakeError::MissingKey(String::from("tx-ring-ref")))
    );
    assert_eq!(
        read(&|k| {
            k.0.insert("rx-ring-ref", "0x10");
        }),
        Err(HandshakeError::InvalidValue {
            key: String::from("rx-ring-ref"),
            value: String::from("0x10")
        })
    );
    assert!(matches!(
        read(&|k| {
            k.0.insert("rx-ring-ref", "99999999999");
        }),
        Err(HandshakeError::InvalidValue { .. })
    ));
    assert_eq!(
        read(&|k| {
            k.0.insert("multi-queue-num-queues", "9");
        }),
        Err(HandshakeError::BadQueueCount(9))
    );
    assert_eq!(
        read(&|k| {
            k.0.insert("multi-queue-num-queues", "0");
        }),
        Err(HandshakeError::BadQueueCount(0))
    );
    let single = BackendFeatures {
        split_event_channels: false,
        ..BackendFeatures::default()
    };
    assert_eq!(
        FrontendConfig::read(&linux_keys(), &single),
        Err(HandshakeError::SplitChannelsNotOffered)
    );
    // A shared channel and feature-no-csum-offload.
    let config = read(&|k| {
        k.0.remove("event-channel-tx");
        k.0.remove("event-channel-rx");
        k.0.insert("event-channel", "7");
        k.0.insert("feature-no-csum-offload", "1");
    })
    .unwrap();
    assert_eq!(
        config.queues[0].event_channels,
        EventChannels::Shared(Port(7))
    );
    assert!(!config.features.ipv4_checksum_offload);

    let mut handshake = Handshake::new(offered);
    handshake.probe();
    let mut keys = linux_keys();
    keys.0.remove("request-rx-copy");
    let actions = handshake.frontend_changed(XenbusState::Connected, &keys);
    assert!(matches!(actions[0], HandshakeAction::ReportError(_)));
    assert_eq!(
        actions[1],
        HandshakeAction::SwitchState(XenbusState::Closing)
    );
    assert!(!handshake.is_connected());
}

#[test]
fn multi_queue_keys_are_read_per_queue() {
    let keys = Keys(BTreeMap::from([
        ("multi-queue-num-queues", "2"),
        ("queue-0/tx-ring-ref", "10"),
        ("queue-0/rx-ring-ref", "11"),
        ("queue-0/event-channel", "3"),
        ("queue-1/tx-ring-ref", "12"),
        ("queue-1/rx-ring-ref", "13"),
        ("queue-1/event-channel-tx", "4"),
        ("queue-1/event-channel-rx", "5"),
        ("request-rx-copy", "1"),
    ]));
    let config = FrontendConfig::read(&keys, &BackendFeatures::default()).unwrap();
    assert_eq!(config.queues.len(), 2);
    assert_eq!(config.queues[1].tx_ring_ref, GrantRef(12));
    assert_eq!(
        config.queues[1].event_channels,
        EventChannels::Split {
            tx: Port(4),
            rx: Port(5)
        }
    );
    assert!(!config.features.scatter_gather);
    assert_eq!(XenbusState::parse("4"), XenbusState::Connected);
    assert_eq!(XenbusState::parse("4\0"), XenbusState::Connected);
    assert_eq!(XenbusState::parse("x"), XenbusState::Unknown);
    assert_eq!(XenbusState::Closed.as_str(), "6");
}

#[test]
fn the_counters_log_line_names_each_drop_reason_that_happened() {
    let mut config = VifConfig::new(GUEST);
    config.abuse.bad_packets = 1000;
    let mut s = setup_with(config, all_features(), 0);
    s.front
        .queue_packet(&mut s.grants, &frame(60), 4096, 0, &[]);
    // Two bad grant references and a runt.
    s.front.push_tx(request(9999, 0, 0, 100));
    s.front.push_tx(request(9999, 0, 0, 100));
    s.front.queue_packet(&mut s.grants, &frame(8), 4096, 0, &[]);
    s.front.publish_tx();
    s.vif.poll(&mut s.grants, NOW);
    let line = format!("{}", s.vif.counters());
    assert_eq!(
        line,
        "tx 1 packets 60 bytes, rx 0 packets 0 bytes, tx dropped 3 (bad grant ref 2, runt 1), \
         rx dropped 0, rings (tx notifications 1)"
    );
    let busy = VifCounters {
        tx_packets: 9,
        tx_bytes: 90_000,
        tx_gso_packets: 3,
        tx_checksums_completed: 5,
        rx_packets: 2,
        rx_bytes: 120,
        rx_gso_segmented: 1,
        rx_queue_full: 4,
        rx_bad_grant_ref: 1,
        rx_stalls: 2,
        rx_notifications: 7,
        ..VifCounters::default()
    };
    assert_eq!(
        format!("{busy}"),
        "tx 9 packets 90000 bytes (gso 3, checksums filled 5), \
         rx 2 packets 120 bytes (segmented 1), tx dropped 0, \
         rx dropped 5 (queue full 4, bad grant ref 1), rings (rx stalls 2, rx notifications 7)"
    );
    let quiet = format!("{}", VifCounters::default());
    assert_eq!(
        quiet,
        "tx 0 packets 0 bytes, rx 0 packets 0 bytes, tx dropped 0, rx dropped 0"
    );
}

#[test]
fn a_packet_that_never_ends_disconnects_but_a_long_one_does_not() {
    let mut s = setup();
    // 30 slots, then the end: dropped and counted, no more.
    for slot in 0..30 {
        let flags = if slot < 29 { TxFlags::MORE_DATA } else { 0 };
        s.front.push_tx(request(9999, 0, flags, 10));
    }
    s.front.publish_tx();
    let actions = s.vif.poll(&mut s.grants, NOW);
    assert!(actions.disconnect.is_none());
    assert_eq!(s.front.tx_responses().len(), 30);
    assert_eq!(s.vif.counters().tx_too_many_slots, 1);
    // A chain that goes on, a ring's worth at a time as responses free
    // room: cut off once it is longer than a ring.
    let mut disconnect = None;
    for _round in 0..4 {
        for _ in 0..200 {
            s.front.push_tx(request(9999, 0, TxFlags::MORE_DATA, 10));
        }
        s.front.publish_tx();
        let actions = s.vif.poll(&mut s.grants, NOW);
        assert!(actions.packets.is_empty());
        s.front.tx_responses();
        if actions.disconnect.is_some() {
            disconnect = actions.disconnect;
            break;
        }
    }
    assert_eq!(
        disconnect,
        Some(DisconnectReason::EndlessPacket {
            queue: 0,
            slots: 257
        })
    );
    assert_eq!(s.vif.counters().tx_too_many_slots, 2);
}
