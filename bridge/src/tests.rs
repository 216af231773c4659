//! Behaviour of the whole bridge: forwarding, flooding, learning, aging,
//! the spoofing guard and the counters.

use core::time::Duration;

use crate::*;

const NIC_HOST: MacAddress = MacAddress([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]);
const GUEST_A: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x00, 0x00, 0x0a]);
const GUEST_B: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x00, 0x00, 0x0b]);
const DOM0: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x00, 0x00, 0x00]);
const STRANGER: MacAddress = MacAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

fn frame(destination: MacAddress, source: MacAddress, payload: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; ethernet::HEADER_LENGTH + payload];
    EthernetHeader {
        destination,
        source,
        ether_type: EtherType::IPV4,
    }
    .emit(&mut bytes)
    .unwrap();
    bytes
}

struct Setup {
    bridge: Bridge,
    nic: PortId,
    vif_a: PortId,
    vif_b: PortId,
    local: PortId,
}

fn setup() -> Setup {
    setup_with(BridgeConfig::default())
}

fn setup_with(config: BridgeConfig) -> Setup {
    let mut bridge = Bridge::new(config);
    let now = Instant::ZERO;
    let nic = bridge.add_port(PortConfig::open(), now).unwrap();
    let vif_a = bridge.add_port(PortConfig::guarded(GUEST_A), now).unwrap();
    let vif_b = bridge.add_port(PortConfig::guarded(GUEST_B), now).unwrap();
    let local = bridge.add_port(PortConfig::guarded(DOM0), now).unwrap();
    Setup {
        bridge,
        nic,
        vif_a,
        vif_b,
        local,
    }
}

#[test]
fn broadcast_floods_every_other_port() {
    let mut s = setup();
    let decision = s
        .bridge
        .receive(
            s.vif_a,
            &frame(MacAddress::BROADCAST, GUEST_A, 28),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(decision, Decision::Flood(vec![s.nic, s.vif_b, s.local]));
    for port in [s.nic, s.vif_b, s.local] {
        let counters = s.bridge.port_counters(port).unwrap();
        assert_eq!(counters.transmitted_frames, 1);
        assert_eq!(counters.transmitted_bytes, 42);
    }
    let counters = s.bridge.port_counters(s.vif_a).unwrap();
    assert_eq!(counters.received_frames, 1);
    assert_eq!(counters.received_bytes, 42);
    assert_eq!(counters.transmitted_frames, 0);
}

#[test]
fn multicast_floods_like_broadcast() {
    let mut s = setup();
    let ipv6_all_nodes = MacAddress([0x33, 0x33, 0, 0, 0, 1]);
    let decision = s
        .bridge
        .receive(s.nic, &frame(ipv6_all_nodes, NIC_HOST, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Flood(vec![s.vif_a, s.vif_b, s.local]));
}

#[test]
fn pinned_addresses_are_reachable_before_they_speak() {
    let mut s = setup();
    let decision = s
        .bridge
        .receive(s.nic, &frame(GUEST_B, NIC_HOST, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Unicast(s.vif_b));
    assert_eq!(decision.ports(), &[s.vif_b]);
}

#[test]
fn unknown_unicast_floods_only_to_open_ports() {
    let mut s = setup();
    let decision = s
        .bridge
        .receive(s.vif_a, &frame(STRANGER, GUEST_A, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Flood(vec![s.nic]));
    assert_eq!(
        s.bridge.port_counters(s.vif_b).unwrap().transmitted_frames,
        0
    );
}

#[test]
fn learned_source_turns_flooding_into_unicast() {
    let mut s = setup();
    s.bridge
        .receive(s.nic, &frame(GUEST_A, STRANGER, 0), Instant::ZERO)
        .unwrap();
    let decision = s
        .bridge
        .receive(s.vif_a, &frame(STRANGER, GUEST_A, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Unicast(s.nic));
    assert_eq!(s.bridge.lookup(STRANGER, Instant::ZERO), Some(s.nic));
}

#[test]
fn learned_entries_age_out_and_flooding_resumes() {
    let mut s = setup_with(BridgeConfig {
        aging: Duration::from_secs(10),
        ..BridgeConfig::default()
    });
    s.bridge
        .receive(s.nic, &frame(GUEST_A, STRANGER, 0), Instant::ZERO)
        .unwrap();
    let to_stranger = frame(STRANGER, GUEST_A, 0);
    let decision = s
        .bridge
        .receive(s.vif_a, &to_stranger, Instant::from_millis(9_999))
        .unwrap();
    assert_eq!(decision, Decision::Unicast(s.nic));
    let decision = s
        .bridge
        .receive(s.vif_a, &to_stranger, Instant::from_millis(10_000))
        .unwrap();
    assert_eq!(decision, Decision::Flood(vec![s.nic]));
    assert_eq!(s.bridge.table_counters().aged_out, 1);
    // Pinned entries do not age.
    assert_eq!(
        s.bridge.lookup(GUEST_A, Instant::from_millis(1_000_000)),
        Some(s.vif_a)
    );
}

#[test]
fn the_mac_table_is_bounded_and_evicts_the_oldest() {
    let mut s = setup_with(BridgeConfig {
        mac_capacity: 4,
        ..BridgeConfig::default()
    });
    for index in 0..100u8 {
        let source = MacAddress([0x02, 0, 0, 0, 0, index]);
        s.bridge
            .receive(
                s.nic,
                &frame(GUEST_A, source, 0),
                Instant::from_millis(u64::from(index)),
            )
            .unwrap();
    }
    // Four learned entries plus the three pinned ones.
    assert_eq!(s.bridge.mac_table().len(), 7);
    assert_eq!(s.bridge.table_counters().evicted, 96);
    let now = Instant::from_millis(100);
    assert_eq!(
        s.bridge.lookup(MacAddress([0x02, 0, 0, 0, 0, 95]), now),
        None
    );
    assert_eq!(
        s.bridge.lookup(MacAddress([0x02, 0, 0, 0, 0, 96]), now),
        Some(s.nic)
    );
    for guest in [GUEST_A, GUEST_B, DOM0] {
        assert!(s.bridge.lookup(guest, now).is_some());
    }
}

#[test]
fn nothing_goes_back_out_of_its_ingress_port() {
    let mut s = setup();
    // Two hosts behind the NIC talking to each other.
    s.bridge
        .receive(
            s.nic,
            &frame(MacAddress::BROADCAST, STRANGER, 0),
            Instant::ZERO,
        )
        .unwrap();
    let decision = s
        .bridge
        .receive(s.nic, &frame(STRANGER, NIC_HOST, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Drop(DropReason::NoDestination));
    assert_eq!(decision.ports(), &[] as &[PortId]);
    assert_eq!(
        s.bridge
            .port_counters(s.nic)
            .unwrap()
            .dropped_no_destination,
        1
    );
}

#[test]
fn a_lone_port_has_nowhere_to_flood() {
    let mut bridge = Bridge::new(BridgeConfig::default());
    let nic = bridge.add_port(PortConfig::open(), Instant::ZERO).unwrap();
    let decision = bridge
        .receive(
            nic,
            &frame(MacAddress::BROADCAST, NIC_HOST, 0),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(decision, Decision::Drop(DropReason::NoDestination));
}

#[test]
fn runts_are_dropped_and_counted() {
    let mut s = setup();
    for length in [0usize, 1, 6, 12, 13] {
        let decision = s
            .bridge
            .receive(s.vif_a, &vec![0xff; length], Instant::ZERO)
            .unwrap();
        assert_eq!(decision, Decision::Drop(DropReason::Runt { length }));
    }
    let counters = s.bridge.port_counters(s.vif_a).unwrap();
    assert_eq!(counters.dropped_runt, 5);
    assert_eq!(counters.received_frames, 5);
    assert_eq!(counters.received_bytes, 32);
    assert_eq!(counters.dropped_on_receive(), 5);
}

#[test]
fn invalid_sources_are_dropped_and_never_learned() {
    let mut s = setup();
    for source in [
        MacAddress::BROADCAST,
        MacAddress([0x01, 0, 0x5e, 0, 0, 1]),
        MacAddress::ZERO,
    ] {
        let decision = s
            .bridge
            .receive(s.nic, &frame(GUEST_A, source, 0), Instant::ZERO)
            .unwrap();
        assert_eq!(decision, Decision::Drop(DropReason::InvalidSource(source)));
    }
    assert_eq!(
        s.bridge
            .port_counters(s.nic)
            .unwrap()
            .dropped_invalid_source,
        3
    );
    assert_eq!(s.bridge.table_counters().learned, 0);
}

#[test]
fn a_guarded_port_may_send_only_from_its_address() {
    let mut s = setup();
    let decision = s
        .bridge
        .receive(
            s.vif_a,
            &frame(MacAddress::BROADCAST, GUEST_B, 0),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(
        decision,
        Decision::Drop(DropReason::Spoofed { source: GUEST_B })
    );
    let decision = s
        .bridge
        .receive(
            s.vif_a,
            &frame(MacAddress::BROADCAST, STRANGER, 0),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(
        decision,
        Decision::Drop(DropReason::Spoofed { source: STRANGER })
    );
    assert_eq!(s.bridge.port_counters(s.vif_a).unwrap().dropped_spoofed, 2);
    // Spoofed sources were not learned, and B is still B's.
    assert_eq!(s.bridge.lookup(STRANGER, Instant::ZERO), None);
    assert_eq!(s.bridge.lookup(GUEST_B, Instant::ZERO), Some(s.vif_b));
    assert_eq!(s.bridge.port_counters(s.nic).unwrap().transmitted_frames, 0);
}

#[test]
fn the_outside_cannot_steal_a_guarded_address() {
    let mut s = setup();
    let decision = s
        .bridge
        .receive(
            s.nic,
            &frame(MacAddress::BROADCAST, GUEST_A, 0),
            Instant::ZERO,
        )
        .unwrap();
    // Forwarded (it may be a loop or a legitimate duplicate), not learned.
    assert!(matches!(decision, Decision::Flood(_)));
    assert_eq!(s.bridge.lookup(GUEST_A, Instant::ZERO), Some(s.vif_a));
    assert_eq!(s.bridge.table_counters().refused_pinned, 1);
}

#[test]
fn link_local_frames_are_not_bridged() {
    let mut s = setup();
    let pause = MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x01]);
    let decision = s
        .bridge
        .receive(s.nic, &frame(pause, NIC_HOST, 46), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Drop(DropReason::LinkLocal));
    assert_eq!(s.bridge.port_counters(s.nic).unwrap().dropped_link_local, 1);
}

#[test]
fn removing_a_port_forgets_its_addresses() {
    let mut s = setup();
    s.bridge
        .receive(s.nic, &frame(GUEST_A, STRANGER, 0), Instant::ZERO)
        .unwrap();
    let counters = s.bridge.remove_port(s.nic).unwrap();
    assert_eq!(counters.received_frames, 1);
    assert_eq!(s.bridge.lookup(STRANGER, Instant::ZERO), None);
    let removed_a = s.bridge.remove_port(s.vif_a).unwrap();
    assert_eq!(removed_a.transmitted_frames, 1);
    assert_eq!(s.bridge.lookup(GUEST_A, Instant::ZERO), None);
    assert_eq!(
        s.bridge.remove_port(s.vif_a),
        Err(BridgeError::UnknownPort(s.vif_a))
    );
    assert_eq!(
        s.bridge
            .receive(s.nic, &frame(GUEST_B, STRANGER, 0), Instant::ZERO),
        Err(BridgeError::UnknownPort(s.nic))
    );
    assert_eq!(s.bridge.ports().collect::<Vec<_>>(), vec![s.vif_b, s.local]);
    // A fresh port never reuses an old id, and may take the freed address.
    let again = s
        .bridge
        .add_port(PortConfig::guarded(GUEST_A), Instant::ZERO)
        .unwrap();
    assert!(again > s.local);
    assert_eq!(s.bridge.lookup(GUEST_A, Instant::ZERO), Some(again));
    assert_eq!(
        s.bridge.port_counters(again),
        Some(&PortCounters::default())
    );
}

#[test]
fn port_configuration_errors_name_the_fault() {
    let mut s = setup();
    assert_eq!(
        s.bridge
            .add_port(PortConfig::guarded(GUEST_A), Instant::ZERO),
        Err(BridgeError::MacPinnedElsewhere {
            mac: GUEST_A,
            port: s.vif_a
        })
    );
    assert_eq!(
        s.bridge
            .add_port(PortConfig::guarded(MacAddress::BROADCAST), Instant::ZERO),
        Err(BridgeError::InvalidGuardedMac(MacAddress::BROADCAST))
    );
    assert_eq!(
        s.bridge.port_config(s.vif_a),
        Some(&PortConfig::guarded(GUEST_A))
    );

    let mut small = Bridge::new(BridgeConfig {
        max_ports: 1,
        ..BridgeConfig::default()
    });
    small.add_port(PortConfig::open(), Instant::ZERO).unwrap();
    assert_eq!(
        small.add_port(PortConfig::open(), Instant::ZERO),
        Err(BridgeError::TooManyPorts { limit: 1 })
    );
}

#[test]
fn a_guarded_address_learned_earlier_is_taken_over_by_its_port() {
    let mut bridge = Bridge::new(BridgeConfig::default());
    let nic = bridge.add_port(PortConfig::open(), Instant::ZERO).unwrap();
    bridge
        .receive(
            nic,
            &frame(MacAddress::BROADCAST, GUEST_A, 0),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(bridge.lookup(GUEST_A, Instant::ZERO), Some(nic));
    let vif = bridge
        .add_port(PortConfig::guarded(GUEST_A), Instant::ZERO)
        .unwrap();
    assert_eq!(bridge.lookup(GUEST_A, Instant::ZERO), Some(vif));
}

#[test]
fn egress_drops_are_counted_on_the_egress_port() {
    let mut s = setup();
    s.bridge.note_egress_drop(s.vif_b).unwrap();
    assert_eq!(s.bridge.port_counters(s.vif_b).unwrap().dropped_egress, 1);
    assert_eq!(
        s.bridge.note_egress_drop(PortId(999)),
        Err(BridgeError::UnknownPort(PortId(999)))
    );
}

#[test]
fn an_open_vif_learns_like_the_nic() {
    let mut bridge = Bridge::new(BridgeConfig::default());
    let nic = bridge.add_port(PortConfig::open(), Instant::ZERO).unwrap();
    let vif = bridge.add_port(PortConfig::open(), Instant::ZERO).unwrap();
    bridge
        .receive(
            vif,
            &frame(MacAddress::BROADCAST, GUEST_A, 0),
            Instant::ZERO,
        )
        .unwrap();
    let decision = bridge
        .receive(nic, &frame(GUEST_A, NIC_HOST, 0), Instant::ZERO)
        .unwrap();
    assert_eq!(decision, Decision::Unicast(vif));
}

/// A small deterministic generator, so the property test needs no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn random_traffic_keeps_the_invariants() {
    let mut random = Lcg(7);
    let mut s = setup_with(BridgeConfig {
        mac_capacity: 16,
        aging: Duration::from_millis(500),
        max_ports: 8,
    });
    let mut now = 0u64;
    for _ in 0..20_000 {
        now += random.next() % 20;
        let ports: Vec<PortId> = s.bridge.ports().collect();
        let ingress = ports[(random.next() as usize) % ports.len()];
        let pick = |random: &mut Lcg| match random.next() % 5 {
            0 => MacAddress::BROADCAST,
            1 => GUEST_A,
            2 => GUEST_B,
            3 => DOM0,
            _ => MacAddress([0x02, 0, 0, 0, 0, (random.next() % 40) as u8]),
        };
        let destination = pick(&mut random);
        let source = pick(&mut random);
        let length = (random.next() % 40) as usize;
        let mut bytes = frame(destination, source, 0);
        bytes.resize(length, 0);
        let decision = s
            .bridge
            .receive(ingress, &bytes, Instant::from_millis(now))
            .unwrap();
        assert!(!decision.ports().contains(&ingress));
        if let Decision::Flood(ports) = &decision {
            assert!(!ports.is_empty());
        }
        assert!(s.bridge.mac_table().len() <= 16 + 3);
        if random.next().is_multiple_of(500) {
            let victim = ports[(random.next() as usize) % ports.len()];
            s.bridge.remove_port(victim).unwrap();
            assert!(
                s.bridge
                    .mac_table()
                    .entries()
                    .all(|entry| entry.port != victim)
            );
            let config = match s.bridge.lookup(GUEST_A, Instant::from_millis(now)) {
                None => PortConfig::guarded(GUEST_A),
                Some(_) => PortConfig::open(),
            };
            s.bridge
                .add_port(config, Instant::from_millis(now))
                .unwrap();
        }
    }
    let _ = (s.nic, s.vif_a, s.vif_b, s.local);
}
