//! Fuzzes the L2 bridge: a sequence of frames from hostile ports, with time
//! passing and ports coming and going, checking the forwarding invariants.
//!
//! Input: records of `[operation][argument][length][length bytes]`.
//! Operation % 8: 0-4 a frame into port `argument % ports` with the clock
//! advanced by `argument` milliseconds; 5 removes that port; 6 adds a port
//! (guarded by the record's first six bytes when `argument` is odd); 7 lets
//! `argument` seconds pass and expires the table.
#![no_main]

use bridge::{Bridge, BridgeConfig, Decision, Instant, MacAddress, PortConfig, PortId};
use core::time::Duration;
use libfuzzer_sys::fuzz_target;

const CAPACITY: usize = 32;

fuzz_target!(|data: &[u8]| {
    let mut bridge = Bridge::new(BridgeConfig {
        mac_capacity: CAPACITY,
        aging: Duration::from_secs(5),
        max_ports: 8,
    });
    let mut now = 0u64;
    let start = Instant::ZERO;
    let _ = bridge.add_port(PortConfig::open(), start);
    let _ = bridge.add_port(
        PortConfig::guarded(MacAddress([0x00, 0x16, 0x3e, 0, 0, 1])),
        start,
    );
    let _ = bridge.add_port(
        PortConfig::guarded(MacAddress([0x00, 0x16, 0x3e, 0, 0, 2])),
        start,
    );
    let mut rest = data;
    while let [operation, argument, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (bytes, next) = tail.split_at(length);
        rest = next;
        let ports: Vec<PortId> = bridge.ports().collect();
        let chosen = ports
            .get(usize::from(*argument) % ports.len().max(1))
            .copied();
        match operation % 8 {
            0..=4 => {
                now += u64::from(*argument);
                let ingress = chosen.unwrap_or(PortId(u32::MAX));
                let Ok(decision) = bridge.receive(ingress, bytes, Instant::from_millis(now)) else {
                    assert!(chosen.is_none());
                    continue;
                };
                assert!(!decision.ports().contains(&ingress));
                if let Decision::Flood(targets) = &decision {
                    assert!(!targets.is_empty());
                    assert!(targets.windows(2).all(|pair| pair[0] < pair[1]));
                }
                for port in decision.ports() {
                    assert!(bridge.port_counters(*port).is_some());
                }
            }
            5 => {
                if let Some(port) = chosen {
                    bridge.remove_port(port).expect("listed port");
                    assert!(bridge.mac_table().entries().all(|entry| entry.port != port));
                }
            }
            6 => {
                let config = match bytes.first_chunk::<6>() {
                    Some(mac) if argument & 1 == 1 => PortConfig::guarded(MacAddress(*mac)),
                    _ => PortConfig::open(),
                };
                let _ = bridge.add_port(config, Instant::from_millis(now));
            }
            _ => {
                now += u64::from(*argument) * 1000;
                bridge.expire(Instant::from_millis(now));
            }
        }
        assert!(bridge.mac_table().len() <= CAPACITY + 8);
    }
});
