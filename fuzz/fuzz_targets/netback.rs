//! Fuzzes netback with a hostile front end: random TX slots (valid, stale
//! and bogus grants, random flags, sizes and extra info), RX pages, packets
//! from the bridge with random offload state, ring indices poked at random,
//! grants revoked, time passing; and the front end's xenbus keys. Every
//! TX packet is also finished for the wire as Dom0 does for its NIC
//! (segmented, checksums filled) and each frame's checksum verified.
//!
//! Input: records of `[operation][argument][length][length bytes]`.
//! Operation % 10: 0 queues a raw TX slot (the first 12 bytes; `argument`
//! odd swaps in a live grant), 1 queues a well-formed packet of the record's
//! bytes in `argument`-sized fragments, 2 publishes TX, 3 posts `argument %
//! 20` RX pages (one with a bogus grant if `argument` > 200), 4 delivers the
//! record's bytes as a packet (offload from `argument`), 5 polls with the
//! clock moved `argument` ms, 6 pokes `req_prod` of a ring, 7 revokes a
//! grant, 8 reads responses and re-arms, 9 runs the handshake on keys
//! written as `key=value` lines. After a poke only the back end's
//! operations run.
#![no_main]

use core::time::Duration;
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use netback::fake::{FakeFrontend, FakeGrants};
use netback::wire::{ExtraInfo, Gso, GsoKind, TxFlags, TxRequest};
use netback::{
    BackendFeatures, ChecksumState, FrontendFeatures, FrontendKeys, Handshake, Offload, Packet,
    Vif, VifConfig, XenbusState, checksum,
};
use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::GrantRef;

const GUEST: DomainId = DomainId(3);

struct Keys(BTreeMap<String, String>);

impl FrontendKeys for Keys {
    fn read(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut front, resources) = FakeFrontend::new(GUEST, u32::MAX - 100);
    let tx_memory = resources.tx_ring.clone();
    let rx_memory = resources.rx_ring.clone();
    let features = FrontendFeatures {
        scatter_gather: data.first().is_some_and(|b| b & 1 != 0),
        gso_tcpv4: data.first().is_some_and(|b| b & 2 != 0),
        gso_tcpv6: data.first().is_some_and(|b| b & 4 != 0),
        ipv4_checksum_offload: data.first().is_some_and(|b| b & 8 != 0),
        ipv6_checksum_offload: data.first().is_some_and(|b| b & 16 != 0),
        rx_notify: true,
        multicast_control: false,
    };
    let mut config = VifConfig::new(GUEST);
    config.rx_queue_capacity = 32;
    let Ok(mut vif) = Vif::connect(config, features, vec![resources]) else {
        return;
    };
    let mut grants = FakeGrants::new();
    let mut now = Duration::ZERO;
    let mut live: Vec<GrantRef> = Vec::new();
    // After a poke the fake front end's private indices no longer match
    // the ring (its own arithmetic may then underflow): only the back end
    // keeps running.
    let mut poked = false;
    let mut rest = data.get(1..).unwrap_or(&[]);
    while let [operation, argument, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (bytes, next) = tail.split_at(length);
        rest = next;
        let operation = operation % 10;
        if poked && matches!(operation, 0..=3 | 8) {
            continue;
        }
        match operation {
            0 => {
                let mut slot = [0u8; 12];
                let n = bytes.len().min(12);
                slot[..n].copy_from_slice(&bytes[..n]);
                if argument & 1 == 1 {
                    let gref = front.next_gref();
                    grants.grant(GUEST, gref, true);
                    live.push(gref);
                    slot[..4].copy_from_slice(&gref.0.to_le_bytes());
                }
                front.push_tx_raw(&slot);
            }
            1 => {
                let fragment = usize::from(*argument).max(1) * 16;
                let flags =
                    u16::from(argument >> 6) & (TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED);
                let extras = if argument & 0x20 != 0 {
                    vec![ExtraInfo::Gso(Gso {
                        kind: if argument & 0x10 != 0 {
                            GsoKind::TcpV6
                        } else {
                            GsoKind::TcpV4
                        },
                        segment_size: u16::from(*argument) * 8 + 1,
                    })]
                } else {
                    Vec::new()
                };
                if !bytes.is_empty() {
                    front.queue_packet(&mut grants, bytes, fragment, flags, &extras);
                }
            }
            2 => {
                front.publish_tx();
            }
            3 => {
                front.post_rx(&mut grants, usize::from(argument % 20));
                if *argument > 200 {
                    front.post_rx_raw(GrantRef(u32::from(*argument)));
                }
            }
            4 => {
                let checksum = match argument % 3 {
                    0 => ChecksumState::Unknown,
                    1 => ChecksumState::Partial,
                    _ => ChecksumState::Validated,
                };
                let gso = (argument & 0x80 != 0).then(|| Gso {
                    kind: if argument & 0x40 != 0 {
                        GsoKind::TcpV6
                    } else {
                        GsoKind::TcpV4
                    },
                    segment_size: u16::from(argument & 0x3f) * 24 + 1,
                });
                let _ = vif.deliver(Packet {
                    frame: bytes.to_vec(),
                    offload: Offload { checksum, gso },
                });
            }
            5 => {
                now += Duration::from_millis(u64::from(*argument));
                let was_disconnected = vif.disconnected().is_some();
                let actions = vif.poll(&mut grants, now);
                if was_disconnected {
                    assert!(actions.packets.is_empty());
                    assert!(actions.notify.is_empty());
                }
                for packet in &actions.packets {
                    assert!(packet.frame.len() >= 14);
                    if packet.offload.checksum == ChecksumState::Partial {
                        assert!(checksum::locate(&packet.frame).is_ok());
                    }
                    // What Dom0 does before the NIC: every frame that
                    // comes out of a guest's offloads is finished.
                    let (frames, _) = packet.wire_frames();
                    assert!(frames.len() <= netback::gso::MAX_SEGMENTS);
                    if packet.offload.gso.is_some()
                        || packet.offload.checksum == ChecksumState::Partial
                    {
                        for frame in &frames {
                            assert_eq!(checksum::verify(frame), Ok(true));
                        }
                    }
                }
                assert!(actions.notify.len() <= 2);
            }
            6 => {
                let value = bytes
                    .first_chunk::<4>()
                    .map_or(u32::from(*argument), |word| u32::from_le_bytes(*word));
                let memory = if argument & 1 == 0 {
                    &tx_memory
                } else {
                    &rx_memory
                };
                memory.poke_u32(0, value);
                poked = true;
            }
            7 => {
                if !live.is_empty() {
                    let gref = live.swap_remove(usize::from(*argument) % live.len());
                    grants.revoke(GUEST, gref);
                }
            }
            8 => {
                let _ = front.tx_responses();
                let _ = front.receive(&grants);
                front.arm_responses();
            }
            _ => {
                let text = String::from_utf8_lossy(bytes);
                let keys = Keys(
                    text.lines()
                        .filter_map(|line| line.split_once('='))
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect(),
                );
                let mut handshake = Handshake::new(BackendFeatures::default());
                handshake.probe();
                let state = XenbusState::parse(&format!("{}", argument % 9));
                let _ = handshake.frontend_changed(state, &keys);
                let _ = handshake.frontend_changed(XenbusState::Connected, &keys);
            }
        }
        let _ = TxRequest::parse(bytes);
    }
});
