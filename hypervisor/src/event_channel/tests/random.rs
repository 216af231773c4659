//! A fixed-seed pseudo-random run of hypercalls over three domains, with
//! the tables' and the shared memory's invariants checked after each step.

use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::{self as abi, NR_VIRQS};

use super::args;
use super::{Call, World};
use crate::event_channel::*;

const DOM0: DomainId = DomainId::DOM0;
const GUEST: DomainId = DomainId(1);
const SMALL: DomainId = DomainId(2);
const DOMAINS: [DomainId; 3] = [DOM0, GUEST, SMALL];

/// xorshift64*: small, deterministic, good enough to pick operations.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn world() -> World {
    World::new(&[
        (
            DOM0,
            Limits {
                max_ports: 48,
                vcpu_count: 2,
                global_virq_handler: true,
            },
        ),
        (
            GUEST,
            Limits {
                max_ports: 32,
                ..Limits::new(3)
            },
        ),
        (
            SMALL,
            Limits {
                max_ports: 12,
                ..Limits::new(1)
            },
        ),
    ])
}

/// A port of `domain` worth aiming at: usually a bound one.
fn some_port(world: &World, domain: DomainId, random: &mut Random) -> u32 {
    let bound: Vec<Port> = world
        .table(domain)
        .bound_ports()
        .map(|(port, _, _)| port)
        .collect();
    if !bound.is_empty() && random.chance(80) {
        random.pick(&bound).0
    } else {
        random.below(52) as u32
    }
}

fn some_domain(random: &mut Random) -> u16 {
    random.pick(&[DOM0.0, GUEST.0, SMALL.0, DomainId::SELF.0, 9])
}

/// Outcomes worth counting, to show the run reached the interesting cases.
#[derive(Default, Debug)]
struct Tally {
    connected: u32,
    remote_deliveries: u32,
    local_upcalls: u32,
    peers_reverted: u32,
    dropped_sends: u32,
    full: u32,
    duplicate_virqs: u32,
    wrong_offers: u32,
}

fn check(world: &World) {
    for &domain in &DOMAINS {
        let table = world.table(domain);
        let memory = &world.memories[&domain];
        let vcpus = table.vcpu_count();
        assert_eq!(table.state(Port(0)), Some(PortState::Reserved));
        for (port, state, notify) in table.bound_ports() {
            assert!(notify.0 < vcpus, "{domain:?} {port:?} notifies {notify:?}");
            match state {
                PortState::Interdomain {
                    remote,
                    remote_port,
                } => {
                    let other = world.table(remote).state(remote_port);
                    assert_eq!(
                        other,
                        Some(PortState::Interdomain {
                            remote: domain,
                            remote_port: port
                        }),
                        "{domain:?} {port:?} is connected to {remote:?} {remote_port:?}"
                    );
                }
                PortState::Virq { virq, vcpu } => {
                    assert_eq!(table.virq_port(virq, vcpu), Some(port));
                    if virq.class() == Some(VirqClass::PerVcpu) {
                        assert_eq!(notify, vcpu);
                    } else {
                        assert_eq!(vcpu, VcpuId(0));
                    }
                }
                PortState::Ipi { vcpu } => assert_eq!(notify, vcpu),
                PortState::Unbound { .. } | PortState::Free | PortState::Reserved => {}
            }
        }
        for vcpu in 0..vcpus {
            for virq in 0..NR_VIRQS {
                if let Some(port) = table.virq_port(Virq(virq), VcpuId(vcpu)) {
                    assert!(
                        matches!(table.state(port), Some(PortState::Virq { virq: bound, .. }) if bound == Virq(virq))
                    );
                }
            }
            // The guest only clears the selector together with the flag.
            if memory.selector(VcpuId(vcpu)) != 0 {
                assert!(memory.upcall_pending(VcpuId(vcpu)));
            }
        }
        for raw in 1..table.max_ports() {
            let port = Port(raw);
            if !memory.is_pending(port) {
                continue;
            }
            // Closing clears the pending bit, and nothing raises a free port.
            assert!(table.state(port).is_some_and(PortState::is_bound));
            if memory.is_masked(port) {
                continue;
            }
            // An unmasked pending port is always announced somewhere.
            let announced = (0..vcpus).any(|vcpu| {
                memory.selector(VcpuId(vcpu)) & (1 << port.word()) != 0
                    && memory.upcall_pending(VcpuId(vcpu))
            });
            assert!(announced, "{domain:?} {port:?} is pending unannounced");
        }
    }
}

fn record(world: &World, caller: DomainId, call: &Call, tally: &mut Tally) {
    match call.response.effect {
        Effect::Local(delivery) => {
            if let Some(vcpu) = delivery.upcall {
                assert!(world.memories[&caller].upcall_pending(vcpu));
                tally.local_upcalls += 1;
            }
        }
        Effect::Remote(_) => tally.remote_deliveries += 1,
        Effect::None => {}
    }
    if let Some((domain, delivery)) = call.remote
        && let Some(vcpu) = delivery.upcall
    {
        assert!(world.memories[&domain].upcall_pending(vcpu));
    }
    match call.response.result {
        Err(Errno::ENOSPC) => tally.full += 1,
        Err(Errno::EEXIST) => tally.duplicate_virqs += 1,
        _ => {}
    }
}

#[test]
fn random_operations_keep_the_tables_consistent() {
    let mut world = world();
    let mut random = Random(0x5eed_0fe7_c4a1_1d00);
    let mut tally = Tally::default();
    for _ in 0..20_000 {
        let caller = random.pick(&DOMAINS);
        let privileged = caller == DOM0;
        let vcpu = random.below(4) as u32;
        let operation = random.below(100);
        let call = match operation {
            0..=14 => {
                let dom = if random.chance(85) {
                    DomainId::SELF.0
                } else {
                    some_domain(&mut random)
                };
                let remote = some_domain(&mut random);
                world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_ALLOC_UNBOUND),
                    &args::alloc_unbound(dom, remote),
                )
            }
            15..=29 => {
                let remote = random.pick(&DOMAINS);
                let offered: Vec<Port> = world
                    .table(remote)
                    .bound_ports()
                    .filter(|&(_, state, _)| state == PortState::Unbound { remote: caller })
                    .map(|(port, _, _)| port)
                    .collect();
                let port = if !offered.is_empty() && random.chance(75) {
                    random.pick(&offered).0
                } else {
                    some_port(&world, remote, &mut random)
                };
                let call = world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_BIND_INTERDOMAIN),
                    &args::bind_interdomain(remote.0, port),
                );
                match call.response.result {
                    Ok(()) => tally.connected += 1,
                    Err(Errno::EINVAL) => tally.wrong_offers += 1,
                    Err(_) => {}
                }
                call
            }
            30..=36 => {
                let virq = random.pick(&[0, 0, 1, 2, 3, 11, 13, 23, 24, 99]);
                world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_BIND_VIRQ),
                    &args::bind_virq(virq, vcpu),
                )
            }
            37..=42 => world.call(
                caller,
                privileged,
                u64::from(abi::EVTCHNOP_BIND_IPI),
                &args::bind_ipi(vcpu),
            ),
            43..=54 => {
                let port = some_port(&world, caller, &mut random);
                let peer = match world.table(caller).state(Port(port)) {
                    Some(PortState::Interdomain {
                        remote,
                        remote_port,
                    }) => Some((remote, remote_port)),
                    _ => None,
                };
                let call = world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_CLOSE),
                    &args::port(port),
                );
                if let Some((remote, remote_port)) = peer {
                    assert_eq!(call.response.result, Ok(()));
                    assert_eq!(
                        world.table(remote).state(remote_port),
                        Some(PortState::Unbound { remote: caller })
                    );
                    tally.peers_reverted += 1;
                }
                call
            }
            55..=74 => {
                let port = some_port(&world, caller, &mut random);
                let unbound = matches!(
                    world.table(caller).state(Port(port)),
                    Some(PortState::Unbound { .. })
                );
                let call = world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_SEND),
                    &args::port(port),
                );
                if unbound {
                    assert_eq!(call.response.result, Ok(()));
                    assert_eq!(call.response.effect, Effect::None);
                    tally.dropped_sends += 1;
                }
                call
            }
            75..=79 => {
                let port = some_port(&world, caller, &mut random);
                world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_BIND_VCPU),
                    &args::bind_vcpu(port, vcpu),
                )
            }
            80..=85 => {
                let port = some_port(&world, caller, &mut random);
                world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_UNMASK),
                    &args::port(port),
                )
            }
            86..=88 => {
                let port = some_port(&world, caller, &mut random);
                let dom = if random.chance(70) {
                    DomainId::SELF.0
                } else {
                    some_domain(&mut random)
                };
                world.call(
                    caller,
                    privileged,
                    u64::from(abi::EVTCHNOP_STATUS),
                    &args::status(dom, port),
                )
            }
            89..=93 => {
                // The guest masks a port in shared memory.
                let port = some_port(&world, caller, &mut random);
                if port < world.table(caller).max_ports() {
                    world.memory(caller).set_masked(Port(port), true);
                }
                check(&world);
                continue;
            }
            94..=98 => {
                // The guest takes an upcall.
                let vcpus = world.table(caller).vcpu_count();
                let vcpu = VcpuId(random.below(u64::from(vcpus)) as u32);
                world.memory(caller).guest_handle_upcall(vcpu);
                check(&world);
                continue;
            }
            _ => world.call(
                caller,
                privileged,
                u64::from(abi::EVTCHNOP_RESET),
                &args::reset(DomainId::SELF.0),
            ),
        };
        record(&world, caller, &call, &mut tally);
        check(&world);
    }
    // The run must have reached the cases it exists for.
    assert!(tally.connected > 100, "{tally:?}");
    assert!(tally.remote_deliveries > 100, "{tally:?}");
    assert!(tally.local_upcalls > 100, "{tally:?}");
    assert!(tally.peers_reverted > 50, "{tally:?}");
    assert!(tally.dropped_sends > 50, "{tally:?}");
    assert!(tally.full > 10, "{tally:?}");
    assert!(tally.duplicate_virqs > 10, "{tally:?}");
    assert!(tally.wrong_offers > 10, "{tally:?}");
}
