//! Seeded random operation sequences over three well-behaved guests, with
//! the bookkeeping invariants checked after every step: pin counts equal
//! live mappings, in-use flags follow the pins, every mapping sits in its
//! mapper's physmap, and pinned frames are exactly the mapped ones.

use std::collections::BTreeMap;
use std::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::{
    self as abi, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE,
    GNTTABOP_UNMAP_GRANT_REF, GTF_ACCEPT_TRANSFER, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_SUB_PAGE, GTF_WRITING, GrantStatus,
};
use xenolith_abi::hypercall::HypercallArgs;

use super::fake::{FakeGuest, FakeHost, Slot, try_revoke};
use super::*;

const DOMAINS: [DomainId; 3] = [DomainId(1), DomainId(2), DomainId(3)];
const RAM: [u64; 6] = [0x100, 0x101, 0x102, 0x103, 0x104, 0x105];
const BASE: u64 = 0x0040_0000;

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// A map the guest believes it holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    mapper: DomainId,
    handle: u32,
    host_addr: u64,
}

struct Simulation {
    rng: Rng,
    host: FakeHost,
    maptracks: BTreeMap<DomainId, Maptrack>,
    guest: FakeGuest,
    held: Vec<Held>,
    successes: BTreeMap<&'static str, usize>,
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let mut host = FakeHost::new();
        let mut maptracks = BTreeMap::new();
        for domain in DOMAINS {
            host.add_domain(domain, 2, &RAM);
            maptracks.insert(domain, Maptrack::new(12));
        }
        Self {
            rng: Rng(seed),
            host,
            maptracks,
            guest: FakeGuest::new(BASE, 0x2000),
            held: Vec::new(),
            successes: BTreeMap::new(),
        }
    }

    fn call(&mut self, caller: DomainId, command: u32, count: u64) -> GrantOutcome {
        let args = HypercallArgs {
            rdi: u64::from(command),
            rsi: BASE,
            rdx: count,
            ..HypercallArgs::default()
        };
        let caller = GrantCaller {
            domain: caller,
            privileged: caller == DOMAINS[0],
        };
        let maptrack = self.maptracks.get_mut(&caller.domain).expect("domain");
        grant_table_op(args, &caller, &mut self.guest, maptrack, &mut self.host)
    }

    fn succeeded(&mut self, what: &'static str) {
        *self.successes.entry(what).or_insert(0) += 1;
    }

    fn gref(&mut self) -> u32 {
        if self.rng.chance(20) {
            600 + self.rng.below(600) as u32
        } else {
            8 + self.rng.below(20) as u32
        }
    }

    fn step(&mut self) {
        match self.rng.below(16) {
            0..=3 => self.grant(),
            4 => self.revoke(),
            5..=8 => self.map(),
            9..=11 => self.unmap(),
            12..=13 => self.copy(),
            14 => self.resize(),
            _ => {
                if self.rng.chance(8) {
                    self.destroy_mappings();
                } else {
                    self.unmap();
                }
            }
        }
    }

    /// A guest fills a free entry, as Linux does (never one in use).
    fn grant(&mut self) {
        let granter = self.rng.pick(&DOMAINS);
        let gref = 8 + self.rng.below(20) as u32;
        let current = self.host.header(granter, gref);
        if current.flags & (GTF_READING | GTF_WRITING) != 0 {
            return;
        }
        let grantee = self.rng.pick(&DOMAINS);
        let frame = if self.rng.chance(10) {
            0x999
        } else {
            self.rng.pick(&RAM)
        };
        let mut flags = match self.rng.below(12) {
            0 => GTF_ACCEPT_TRANSFER,
            1 => GTF_PERMIT_ACCESS | GTF_SUB_PAGE,
            2 => 0,
            _ => GTF_PERMIT_ACCESS,
        };
        if self.rng.chance(3) {
            flags |= GTF_READONLY;
        }
        self.host.grant(granter, gref, flags, grantee, frame as u32);
    }

    fn revoke(&mut self) {
        let granter = self.rng.pick(&DOMAINS);
        let gref = GrantRef(8 + self.rng.below(20) as u32);
        let table = &self.host.tables[&granter];
        if try_revoke(&mut self.host.memory, table, gref) {
            assert_eq!(
                self.host.table(granter).pin_counts(gref),
                None,
                "revoked an entry in use"
            );
            self.succeeded("revoke");
        }
    }

    fn map(&mut self) {
        let mapper = self.rng.pick(&DOMAINS);
        let granter = self.rng.pick(&DOMAINS);
        let gref = self.gref();
        let host_addr = (0x800 + self.rng.below(16)) << 12 | self.rng.below(4096);
        let mut flags = GNTMAP_HOST_MAP;
        if self.rng.chance(2) {
            flags |= GNTMAP_READONLY;
        }
        let mut op = [0u8; 32];
        op[..8].copy_from_slice(&host_addr.to_le_bytes());
        op[8..12].copy_from_slice(&flags.to_le_bytes());
        op[12..16].copy_from_slice(&gref.to_le_bytes());
        op[16..18].copy_from_slice(&granter.0.to_le_bytes());
        self.guest.put(BASE, &op);
        assert_eq!(
            self.call(mapper, GNTTABOP_MAP_GRANT_REF, 1),
            GrantOutcome::Return(0)
        );
        let status = self.guest.i16_at(BASE + abi::map_grant_ref::STATUS as u64);
        if status == GrantStatus::Okay.as_raw() {
            let handle = self.guest.u32_at(BASE + abi::map_grant_ref::HANDLE as u64);
            self.held.push(Held {
                mapper,
                handle,
                host_addr,
            });
            self.succeeded("map");
        } else {
            assert!(GrantStatus::from_raw(status).is_some(), "status {status}");
        }
    }

    fn unmap(&mut self) {
        let (mapper, handle, host_addr, index) = if !self.held.is_empty() && !self.rng.chance(6) {
            let index = self.rng.below(self.held.len() as u64) as usize;
            let held = self.held[index];
            let host_addr = if self.rng.chance(10) {
                held.host_addr ^ 0x1000
            } else {
                held.host_addr
            };
            (held.mapper, held.handle, host_addr, Some(index))
        } else {
            let mapper = self.rng.pick(&DOMAINS);
            (mapper, self.rng.below(16) as u32, 0x800 << 12, None)
        };
        let mut op = [0u8; 24];
        op[..8].copy_from_slice(&host_addr.to_le_bytes());
        op[16..20].copy_from_slice(&handle.to_le_bytes());
        self.guest.put(BASE, &op);
        assert_eq!(
            self.call(mapper, GNTTABOP_UNMAP_GRANT_REF, 1),
            GrantOutcome::Return(0)
        );
        let status = self
            .guest
            .i16_at(BASE + abi::unmap_grant_ref::STATUS as u64);
        match index {
            Some(index) => {
                let held = self.held[index];
                if host_addr == held.host_addr {
                    assert_eq!(status, 0, "unmap of a held mapping failed");
                    self.held.swap_remove(index);
                    self.succeeded("unmap");
                } else {
                    assert_eq!(status, GrantStatus::GeneralError.as_raw());
                }
            }
            None => {
                let live = self
                    .held
                    .iter()
                    .position(|held| held.mapper == mapper && held.handle == handle);
                match live {
                    // A guessed handle that happens to be live, at the wrong address.
                    Some(_) => assert_eq!(status, GrantStatus::GeneralError.as_raw()),
                    None => assert_eq!(status, GrantStatus::BadHandle.as_raw()),
                }
            }
        }
    }

    fn copy(&mut self) {
        let caller = self.rng.pick(&DOMAINS);
        let mut flags = 0;
        let mut side = |rng: &mut Rng, gref_flag: u16| -> (u64, u16, u16) {
            let offset = if rng.chance(10) {
                4000 + rng.below(200) as u16
            } else {
                rng.below(2048) as u16
            };
            if rng.chance(2) {
                flags |= gref_flag;
                let gref = 8 + rng.below(20);
                (gref, rng.pick(&DOMAINS).0, offset)
            } else {
                let domid = if rng.chance(10) {
                    rng.pick(&DOMAINS).0
                } else {
                    DomainId::SELF.0
                };
                (rng.pick(&RAM), domid, offset)
            }
        };
        let source = side(&mut self.rng, GNTCOPY_SOURCE_GREF);
        let dest = side(&mut self.rng, GNTCOPY_DEST_GREF);
        let len = self.rng.below(2048) as u16;
        let mut op = [0u8; 40];
        for (base, (value, domid, offset)) in [(0, source), (16, dest)] {
            op[base..base + 8].copy_from_slice(&value.to_le_bytes());
            op[base + 8..base + 10].copy_from_slice(&domid.to_le_bytes());
            op[base + 10..base + 12].copy_from_slice(&offset.to_le_bytes());
        }
        op[32..34].copy_from_slice(&len.to_le_bytes());
        op[34..36].copy_from_slice(&flags.to_le_bytes());
        self.guest.put(BASE, &op);
        assert_eq!(self.call(caller, GNTTABOP_COPY, 1), GrantOutcome::Return(0));
        let status = self.guest.i16_at(BASE + abi::copy::STATUS as u64);
        assert!(GrantStatus::from_raw(status).is_some());
        if status == 0 && len > 0 {
            self.succeeded("copy");
        }
    }

    /// Table growth through setup_table and a size query, by a privileged
    /// or ordinary caller.
    fn resize(&mut self) {
        let caller = self.rng.pick(&DOMAINS);
        let target = self.rng.pick(&DOMAINS);
        let frames = self.rng.below(4) as u32;
        let mut op = [0u8; 24];
        op[..2].copy_from_slice(&target.0.to_le_bytes());
        op[4..8].copy_from_slice(&frames.to_le_bytes());
        op[16..24].copy_from_slice(&(BASE + 0x1000).to_le_bytes());
        self.guest.put(BASE, &op);
        assert_eq!(
            self.call(caller, GNTTABOP_SETUP_TABLE, 1),
            GrantOutcome::Return(0)
        );
        self.guest.put(BASE, &[0u8; 16]);
        self.guest.put(BASE, &DomainId::SELF.0.to_le_bytes());
        assert_eq!(
            self.call(caller, GNTTABOP_QUERY_SIZE, 1),
            GrantOutcome::Return(0)
        );
        let frames_now = self.guest.u32_at(BASE + 4);
        assert_eq!(frames_now, self.host.table(caller).frame_count());
        assert!(frames_now <= 2);
    }

    /// A mapper dies (its nested page tables go with it) and comes back.
    fn destroy_mappings(&mut self) {
        let mapper = self.rng.pick(&DOMAINS);
        self.destroy_mapper(mapper);
        self.succeeded("destroy");
    }

    fn destroy_mapper(&mut self, mapper: DomainId) {
        let mut maptrack = self.maptracks.remove(&mapper).expect("domain");
        let expected = maptrack.len();
        assert_eq!(release_mappings(&mut maptrack, &mut self.host), expected);
        self.maptracks.insert(mapper, maptrack);
        self.host
            .physmaps
            .retain(|(domain, _), slot| *domain != mapper || !matches!(slot, Slot::Grant { .. }));
        self.held.retain(|held| held.mapper != mapper);
    }

    /// Checks every invariant; `all_entries` also scans entries no guest
    /// ever grants (slow, so not every step).
    fn check(&self, all_entries: bool) {
        // Uses each mapping implies, per (granter, gref): (read-only, writable).
        let mut expected: BTreeMap<(DomainId, GrantRef), (u8, u8, DomainId)> = BTreeMap::new();
        let mut mapped_frames: BTreeMap<DomainId, Vec<GuestFrame>> = BTreeMap::new();
        let mut total = 0;
        for (&mapper, maptrack) in &self.maptracks {
            for (_, mapping) in maptrack.iter() {
                total += 1;
                let uses = expected
                    .entry((mapping.granter, mapping.gref))
                    .or_insert((0, 0, mapper));
                assert_eq!(uses.2, mapper, "one entry used by two domains");
                match mapping.access {
                    Access::ReadOnly => uses.0 += 1,
                    Access::Writable => uses.1 += 1,
                }
                mapped_frames
                    .entry(mapping.granter)
                    .or_default()
                    .push(mapping.granter_frame);
                assert_eq!(
                    self.host.physmaps.get(&(mapper, mapping.mapper_frame)),
                    Some(&Slot::Grant {
                        granter: mapping.granter,
                        frame: mapping.granter_frame,
                        access: mapping.access,
                    }),
                    "mapping missing from the physmap"
                );
            }
        }
        let grant_slots = self
            .host
            .physmaps
            .values()
            .filter(|slot| matches!(slot, Slot::Grant { .. }))
            .count();
        assert_eq!(grant_slots, total, "physmap holds unknown grant mappings");
        assert_eq!(
            self.held.len(),
            total,
            "guest and hypervisor disagree on the mappings"
        );

        for (&granter, table) in &self.host.tables {
            let scanned = if all_entries { table.entry_count() } else { 32 };
            for gref in (0..scanned).map(GrantRef) {
                let pins = table.pin_counts(gref);
                let want = expected.get(&(granter, gref));
                assert_eq!(
                    pins,
                    want.map(|&(read, write, _)| (read, write)),
                    "pins of {granter:?} {gref:?}"
                );
                if let Some(&(_, _, user)) = want {
                    assert_eq!(table.user_of(gref), Some(user));
                }
                let flags = self.host.header(granter, gref.0).flags;
                assert_eq!(flags & GTF_READING != 0, pins.is_some(), "reading flag");
                assert_eq!(
                    flags & GTF_WRITING != 0,
                    pins.is_some_and(|(_, write)| write > 0),
                    "writing flag"
                );
            }
            let frames = mapped_frames.get(&granter).cloned().unwrap_or_default();
            for frame in table.pinned_frames() {
                assert!(frames.contains(&frame), "pinned frame not mapped");
            }
            for frame in frames {
                assert!(table.is_frame_pinned(frame));
            }
        }
    }
}

fn run(seed: u64, steps: usize) -> BTreeMap<&'static str, usize> {
    let mut simulation = Simulation::new(seed);
    for step in 0..steps {
        simulation.step();
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            simulation.check(step % 1000 == 0);
        })) {
            std::eprintln!("seed {seed:#x}, step {step}");
            std::panic::resume_unwind(panic);
        }
    }
    // Release everything at the end: no pins may be left over.
    for mapper in DOMAINS {
        simulation.destroy_mapper(mapper);
    }
    simulation.check(true);
    assert_eq!(simulation.host.total_pinned(), 0);
    simulation.successes
}

#[test]
fn random_operations_keep_the_books_straight() {
    for seed in [0x5eed_0001, 0xdead_beef_cafe, 0x1234_5678_9abc_def1] {
        let successes = run(seed, 6000);
        std::println!("seed {seed:#x}: {successes:?}");
        // The sequence must actually exercise the interesting paths.
        for what in ["map", "unmap", "copy", "revoke", "destroy"] {
            assert!(
                successes.get(what).copied().unwrap_or(0) > 10,
                "seed {seed:#x}: too few successful {what}: {successes:?}"
            );
        }
    }
}
