//! Tests of `grant_table_op` through guest memory: decoding, statuses,
//! physmap actions, flush ordering and continuations.

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::grant_table::{
    self as abi, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_APPLICATION_MAP,
    GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTTABOP_COPY,
    GNTTABOP_GET_VERSION, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION,
    GNTTABOP_SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_WRITING, GrantStatus,
};
use xenolith_abi::hypercall::HypercallArgs;

use super::fake::{Event, FakeGuest, FakeHost, Slot};
use super::*;

const GRANTER: DomainId = DomainId(1);
const MAPPER: DomainId = DomainId(2);
const OTHER: DomainId = DomainId(3);
const MISSING: DomainId = DomainId(99);
const BASE: u64 = 0x0010_0000;
const GRANTER_RAM: [u64; 4] = [0x50, 0x51, 0x52, 0x53];
const MAPPER_RAM: [u64; 4] = [0x70, 0x71, 0x72, 0x73];

struct World {
    host: FakeHost,
    guest: FakeGuest,
    maptrack: Maptrack,
    caller: GrantCaller,
}

impl World {
    fn new() -> Self {
        let mut host = FakeHost::new();
        host.add_domain(GRANTER, 4, &GRANTER_RAM);
        host.add_domain(MAPPER, 4, &MAPPER_RAM);
        host.add_domain(OTHER, 4, &[]);
        Self {
            host,
            guest: FakeGuest::new(BASE, 0x10000),
            maptrack: Maptrack::new(64),
            caller: GrantCaller {
                domain: MAPPER,
                privileged: false,
            },
        }
    }

    fn call(&mut self, command: u32, pointer: u64, count: u64) -> GrantOutcome {
        let args = HypercallArgs {
            rdi: u64::from(command),
            rsi: pointer,
            rdx: count,
            ..HypercallArgs::default()
        };
        grant_table_op(
            args,
            &self.caller,
            &mut self.guest,
            &mut self.maptrack,
            &mut self.host,
        )
    }

    /// Grants `GRANTER`'s RAM frame `frame` to `MAPPER` as `gref`.
    fn grant(&mut self, gref: u32, flags: u16, frame: u64) {
        self.host.grant(GRANTER, gref, flags, MAPPER, frame as u32);
    }

    fn map(
        &mut self,
        at: u64,
        host_addr: u64,
        flags: u32,
        gref: u32,
        dom: DomainId,
    ) -> GrantOutcome {
        self.guest.put(at, &map_op(host_addr, flags, gref, dom));
        self.call(GNTTABOP_MAP_GRANT_REF, at, 1)
    }

    fn map_status(&self, at: u64) -> i16 {
        self.guest.i16_at(at + abi::map_grant_ref::STATUS as u64)
    }

    fn map_handle(&self, at: u64) -> u32 {
        self.guest.u32_at(at + abi::map_grant_ref::HANDLE as u64)
    }

    fn unmap(&mut self, at: u64, host_addr: u64, handle: u32) -> i16 {
        self.guest.put(at, &unmap_op(host_addr, handle));
        assert_eq!(
            self.call(GNTTABOP_UNMAP_GRANT_REF, at, 1),
            GrantOutcome::Return(0)
        );
        self.guest.i16_at(at + abi::unmap_grant_ref::STATUS as u64)
    }

    fn copy(&mut self, at: u64, op: [u8; 40]) -> i16 {
        self.guest.put(at, &op);
        assert_eq!(self.call(GNTTABOP_COPY, at, 1), GrantOutcome::Return(0));
        self.guest.i16_at(at + abi::copy::STATUS as u64)
    }
}

fn errno(errno: Errno) -> GrantOutcome {
    GrantOutcome::Return(errno.as_return())
}

const OK: i16 = 0;

fn raw(status: GrantStatus) -> i16 {
    status.as_raw()
}

fn map_op(host_addr: u64, flags: u32, gref: u32, dom: DomainId) -> [u8; 32] {
    use abi::map_grant_ref as layout;
    let mut op = [0xaa; 32];
    op[layout::HOST_ADDR..][..8].copy_from_slice(&host_addr.to_le_bytes());
    op[layout::FLAGS..][..4].copy_from_slice(&flags.to_le_bytes());
    op[layout::REF..][..4].copy_from_slice(&gref.to_le_bytes());
    op[layout::DOM..][..2].copy_from_slice(&dom.0.to_le_bytes());
    op
}

fn unmap_op(host_addr: u64, handle: u32) -> [u8; 24] {
    use abi::unmap_grant_ref as layout;
    let mut op = [0xaa; 24];
    op[layout::HOST_ADDR..][..8].copy_from_slice(&host_addr.to_le_bytes());
    op[layout::DEV_BUS_ADDR..][..8].copy_from_slice(&0u64.to_le_bytes());
    op[layout::HANDLE..][..4].copy_from_slice(&handle.to_le_bytes());
    op
}

/// One side of a copy: `ref` or `gmfn`, domid, offset.
type Pointer = (u64, DomainId, u16);

fn copy_op(source: Pointer, dest: Pointer, len: u16, flags: u16) -> [u8; 40] {
    use abi::copy as layout;
    let mut op = [0xaa; 40];
    for (base, (value, domid, offset)) in [(layout::SOURCE, source), (layout::DEST, dest)] {
        op[base..][..8].copy_from_slice(&value.to_le_bytes());
        op[base + layout::pointer::DOMID..][..2].copy_from_slice(&domid.0.to_le_bytes());
        op[base + layout::pointer::OFFSET..][..2].copy_from_slice(&offset.to_le_bytes());
    }
    op[layout::LEN..][..2].copy_from_slice(&len.to_le_bytes());
    op[layout::FLAGS..][..2].copy_from_slice(&flags.to_le_bytes());
    op
}

#[test]
fn only_the_hvm_subset_of_commands_is_accepted() {
    let mut world = World::new();
    for command in [3, 4, 7, 9, 11, 12, 13, 0x1000, u32::MAX] {
        assert_eq!(
            world.call(command, BASE, 1),
            errno(Errno::ENOSYS),
            "command {command}"
        );
    }
}

#[test]
fn a_negative_count_is_einval_and_zero_does_nothing() {
    let mut world = World::new();
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, BASE, 0x8000_0000),
        errno(Errno::EINVAL)
    );
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, 0, 0),
        GrantOutcome::Return(0)
    );
    assert_eq!(world.call(GNTTABOP_COPY, 0, 0), GrantOutcome::Return(0));
}

#[test]
fn map_inserts_the_frame_and_answers_a_handle() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    assert_eq!(
        world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER),
        GrantOutcome::Return(0)
    );
    assert_eq!(world.map_status(BASE), OK);
    let handle = world.map_handle(BASE);
    assert_eq!(
        world
            .guest
            .u64_at(BASE + abi::map_grant_ref::DEV_BUS_ADDR as u64),
        0
    );
    // Input fields are left alone.
    assert_eq!(world.guest.u64_at(BASE), 0x0900_0000);
    assert_eq!(
        world.host.physmaps.get(&(MAPPER, GuestFrame(0x9000))),
        Some(&Slot::Grant {
            granter: GRANTER,
            frame: GuestFrame(0x51),
            access: Access::Writable
        })
    );
    assert_eq!(
        world.host.header(GRANTER, 8).flags,
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    assert_eq!(
        world
            .maptrack
            .get(GrantHandle(handle))
            .map(|m| m.granter_frame),
        Some(GuestFrame(0x51))
    );
}

#[test]
fn readonly_map_inserts_a_readonly_frame() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS | GTF_READONLY, 0x51);
    world.map(
        BASE,
        0x0900_0000,
        GNTMAP_HOST_MAP | GNTMAP_READONLY,
        8,
        GRANTER,
    );
    assert_eq!(world.map_status(BASE), OK);
    assert!(matches!(
        world.host.physmaps.get(&(MAPPER, GuestFrame(0x9000))),
        Some(Slot::Grant {
            access: Access::ReadOnly,
            ..
        })
    ));
    world.map(BASE, 0x0900_1000, GNTMAP_HOST_MAP, 8, GRANTER);
    assert_eq!(world.map_status(BASE), raw(GrantStatus::GeneralError));
}

#[test]
fn map_flags_other_than_host_map_are_refused() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    let cases = [
        (0, GrantStatus::BadGntref),
        (GNTMAP_READONLY, GrantStatus::BadGntref),
        (GNTMAP_DEVICE_MAP, GrantStatus::GeneralError),
        (
            GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP,
            GrantStatus::GeneralError,
        ),
        (
            GNTMAP_HOST_MAP | GNTMAP_APPLICATION_MAP,
            GrantStatus::GeneralError,
        ),
        (
            GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE,
            GrantStatus::GeneralError,
        ),
        (GNTMAP_HOST_MAP | 1 << 5, GrantStatus::GeneralError),
    ];
    for (flags, status) in cases {
        world.map(BASE, 0x0900_0000, flags, 8, GRANTER);
        assert_eq!(world.map_status(BASE), raw(status), "flags {flags:#x}");
    }
    assert!(world.maptrack.is_empty());
    assert_eq!(world.host.total_pinned(), 0);
}

#[test]
fn map_of_a_missing_or_self_named_domain_is_bad_domain() {
    let mut world = World::new();
    for dom in [MISSING, DomainId::SELF, DomainId(0x7ff1)] {
        world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, dom);
        assert_eq!(world.map_status(BASE), raw(GrantStatus::BadDomain));
    }
}

#[test]
fn a_domain_may_map_its_own_grant_by_its_id() {
    let mut world = World::new();
    world.host.grant(MAPPER, 8, GTF_PERMIT_ACCESS, MAPPER, 0x70);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, MAPPER);
    assert_eq!(world.map_status(BASE), OK);
    assert_eq!(
        world.host.table(MAPPER).pin_counts(GrantRef(8)),
        Some((0, 1))
    );
}

#[test]
fn map_checks_gref_domain_and_type() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    world.host.grant(GRANTER, 9, GTF_PERMIT_ACCESS, OTHER, 0x51);
    world.host.grant(GRANTER, 10, 0, MAPPER, 0x51);
    for (gref, status) in [
        (512, GrantStatus::BadGntref),
        (9, GrantStatus::GeneralError),
        (10, GrantStatus::GeneralError),
    ] {
        world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, gref, GRANTER);
        assert_eq!(world.map_status(BASE), raw(status), "gref {gref}");
    }
}

#[test]
fn a_failed_physmap_insertion_undoes_the_map() {
    let mut world = World::new();
    // Frame 0x99 is not the granter's RAM.
    world.grant(8, GTF_PERMIT_ACCESS, 0x99);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER);
    assert_eq!(world.map_status(BASE), raw(GrantStatus::BadPage));
    assert!(world.maptrack.is_empty());
    assert_eq!(world.host.total_pinned(), 0);
    assert_eq!(world.host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);

    // A slot already holding a grant mapping cannot take another.
    world.grant(9, GTF_PERMIT_ACCESS, 0x52);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 9, GRANTER);
    assert_eq!(world.map_status(BASE), OK);
    world.grant(10, GTF_PERMIT_ACCESS, 0x53);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 10, GRANTER);
    assert_eq!(world.map_status(BASE), raw(GrantStatus::GeneralError));
    assert_eq!(world.maptrack.len(), 1);
    assert_eq!(world.host.header(GRANTER, 10).flags, GTF_PERMIT_ACCESS);
}

#[test]
fn a_batch_reports_each_element() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x50);
    world.grant(9, GTF_PERMIT_ACCESS, 0x51);
    let size = abi::map_grant_ref::SIZE as u64;
    world
        .guest
        .put(BASE, &map_op(0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER));
    world.guest.put(
        BASE + size,
        &map_op(0x0900_1000, GNTMAP_HOST_MAP, 700, GRANTER),
    );
    world.guest.put(
        BASE + 2 * size,
        &map_op(0x0900_2000, GNTMAP_HOST_MAP, 9, GRANTER),
    );
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, BASE, 3),
        GrantOutcome::Return(0)
    );
    assert_eq!(world.map_status(BASE), OK);
    assert_eq!(world.map_status(BASE + size), raw(GrantStatus::BadGntref));
    assert_eq!(world.map_status(BASE + 2 * size), OK);
    assert_ne!(world.map_handle(BASE), world.map_handle(BASE + 2 * size));
    assert_eq!(world.maptrack.len(), 2);
}

#[test]
fn an_unreadable_element_is_efault() {
    let mut world = World::new();
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, 0x1000, 1),
        errno(Errno::EFAULT)
    );
    assert_eq!(
        world.call(GNTTABOP_UNMAP_GRANT_REF, u64::MAX - 8, 1),
        errno(Errno::EFAULT)
    );
    assert_eq!(world.call(GNTTABOP_COPY, 0x1000, 1), errno(Errno::EFAULT));
    assert_eq!(
        world.call(GNTTABOP_SET_VERSION, 0x1000, 1),
        errno(Errno::EFAULT)
    );
}

#[test]
fn a_map_whose_answer_cannot_be_written_is_undone() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    world
        .guest
        .put(BASE, &map_op(0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER));
    world.guest.read_only_from = Some(BASE);
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, BASE, 1),
        errno(Errno::EFAULT)
    );
    assert!(world.maptrack.is_empty());
    assert_eq!(world.host.total_pinned(), 0);
    assert!(
        !world
            .host
            .physmaps
            .contains_key(&(MAPPER, GuestFrame(0x9000)))
    );
    assert_eq!(world.host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);
}

#[test]
fn unmap_flushes_before_the_granter_sees_the_entry_free() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER);
    let handle = world.map_handle(BASE);
    assert_eq!(world.unmap(BASE + 0x100, 0x0900_0000, handle), OK);
    let flush = world
        .host
        .events
        .iter()
        .find(|event| matches!(event, Event::Flushed { .. }))
        .copied();
    assert_eq!(
        flush,
        Some(Event::Flushed {
            mapper: MAPPER,
            pinned: 1
        })
    );
    assert_eq!(world.host.total_pinned(), 0);
    assert_eq!(world.host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);
    assert!(
        !world
            .host
            .physmaps
            .contains_key(&(MAPPER, GuestFrame(0x9000)))
    );
    assert!(world.maptrack.is_empty());
}

#[test]
fn unmap_refuses_bad_handles_double_unmaps_and_wrong_addresses() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER);
    let handle = world.map_handle(BASE);
    assert_eq!(
        world.unmap(BASE + 0x100, 0x0900_0000, handle + 1),
        raw(GrantStatus::BadHandle)
    );
    assert_eq!(
        world.unmap(BASE + 0x100, 0x0900_1000, handle),
        raw(GrantStatus::GeneralError)
    );
    // host_addr 0 is accepted and does nothing, as in Xen.
    assert_eq!(world.unmap(BASE + 0x100, 0, handle), OK);
    assert_eq!(world.maptrack.len(), 1);
    assert_eq!(world.unmap(BASE + 0x100, 0x0900_0000, handle), OK);
    assert_eq!(
        world.unmap(BASE + 0x100, 0x0900_0000, handle),
        raw(GrantStatus::BadHandle)
    );
    assert_eq!(world.host.total_pinned(), 0);
}

#[test]
fn unmap_of_a_slot_the_physmap_no_longer_holds_is_refused() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    world.map(BASE, 0x0900_0000, GNTMAP_HOST_MAP, 8, GRANTER);
    let handle = world.map_handle(BASE);
    world.host.physmaps.remove(&(MAPPER, GuestFrame(0x9000)));
    assert_eq!(
        world.unmap(BASE + 0x100, 0x0900_0000, handle),
        raw(GrantStatus::GeneralError)
    );
    // The use stays until the mapper dies.
    assert_eq!(world.maptrack.len(), 1);
    assert_eq!(release_mappings(&mut world.maptrack, &mut world.host), 1);
    assert_eq!(world.host.total_pinned(), 0);
}

#[test]
fn large_unmap_batches_flush_every_32() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS | GTF_READONLY, 0x51);
    let map_size = abi::map_grant_ref::SIZE as u64;
    for index in 0..40u64 {
        world.guest.put(
            BASE + index * map_size,
            &map_op(
                (0x9000 + index) << 12,
                GNTMAP_HOST_MAP | GNTMAP_READONLY,
                8,
                GRANTER,
            ),
        );
    }
    assert_eq!(
        world.call(GNTTABOP_MAP_GRANT_REF, BASE, 40),
        GrantOutcome::Return(0)
    );
    assert_eq!(
        world.host.table(GRANTER).pin_counts(GrantRef(8)),
        Some((40, 0))
    );
    let unmaps = BASE + 0x8000;
    let unmap_size = abi::unmap_grant_ref::SIZE as u64;
    for index in 0..40u64 {
        let handle = world.map_handle(BASE + index * map_size);
        world.guest.put(
            unmaps + index * unmap_size,
            &unmap_op((0x9000 + index) << 12, handle),
        );
    }
    assert_eq!(
        world.call(GNTTABOP_UNMAP_GRANT_REF, unmaps, 40),
        GrantOutcome::Return(0)
    );
    let flushes: Vec<_> = world
        .host
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Flushed { pinned, .. } => Some(*pinned),
            _ => None,
        })
        .collect();
    // Each flush happens with the entry still pinned.
    assert_eq!(flushes, [1, 1]);
    assert_eq!(world.host.total_pinned(), 0);
    assert_eq!(
        world.host.header(GRANTER, 8).flags,
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
}

#[test]
fn copy_from_own_frame_to_a_grant() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    let status = world.copy(
        BASE,
        copy_op(
            (0x70, DomainId::SELF, 16),
            (8, GRANTER, 100),
            32,
            GNTCOPY_DEST_GREF,
        ),
    );
    assert_eq!(status, OK);
    let dest = &world.host.ram[&(GRANTER, GuestFrame(0x51))];
    assert_eq!(&dest[100..132], &[0x70; 32]);
    assert_eq!(dest[99], 0x51);
    assert_eq!(dest[132], 0x51);
    assert_eq!(world.host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);
    assert_eq!(world.host.total_pinned(), 0);
}

#[test]
fn copy_from_a_grant_to_own_frame() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS | GTF_READONLY, 0x52);
    let status = world.copy(
        BASE,
        copy_op(
            (8, GRANTER, 0),
            (0x71, DomainId::SELF, 4000),
            96,
            GNTCOPY_SOURCE_GREF,
        ),
    );
    assert_eq!(status, OK);
    assert_eq!(
        &world.host.ram[&(MAPPER, GuestFrame(0x71))][4000..4096],
        &[0x52; 96]
    );
    assert_eq!(
        world.host.header(GRANTER, 8).flags,
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
}

#[test]
fn copy_between_two_grants_of_the_same_domain() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x50);
    world.grant(9, GTF_PERMIT_ACCESS, 0x53);
    let status = world.copy(
        BASE,
        copy_op(
            (8, GRANTER, 0),
            (9, GRANTER, 0),
            4096,
            GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF,
        ),
    );
    assert_eq!(status, OK);
    assert_eq!(
        world.host.ram[&(GRANTER, GuestFrame(0x53))],
        vec![0x50; 4096]
    );
}

#[test]
fn copy_refuses_a_foreign_frame_by_number() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    assert_eq!(
        world.copy(
            BASE,
            copy_op((0x50, GRANTER, 0), (8, GRANTER, 0), 8, GNTCOPY_DEST_GREF)
        ),
        raw(GrantStatus::PermissionDenied)
    );
    assert_eq!(
        world.copy(
            BASE,
            copy_op((8, GRANTER, 0), (0x70, MAPPER, 0), 8, GNTCOPY_SOURCE_GREF)
        ),
        raw(GrantStatus::PermissionDenied)
    );
    assert_eq!(world.host.total_pinned(), 0);
}

#[test]
fn copy_past_the_page_end_is_bad_copy_arg() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS, 0x51);
    for (source_offset, dest_offset, len) in [(4000, 0, 97), (0, 4095, 2), (u16::MAX, 0, 1)] {
        assert_eq!(
            world.copy(
                BASE,
                copy_op(
                    (0x70, DomainId::SELF, source_offset),
                    (8, GRANTER, dest_offset),
                    len,
                    GNTCOPY_DEST_GREF
                )
            ),
            raw(GrantStatus::BadCopyArg)
        );
    }
    assert_eq!(world.host.total_pinned(), 0);
    assert_eq!(world.host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);
    assert!(
        !world
            .host
            .events
            .iter()
            .any(|event| matches!(event, Event::Copied(_)))
    );
}

#[test]
fn copy_checks_grants_domains_and_frames() {
    let mut world = World::new();
    world.grant(8, GTF_PERMIT_ACCESS | GTF_READONLY, 0x51);
    world.grant(9, GTF_PERMIT_ACCESS, 0x99);
    let cases = [
        // Writing through a read-only grant.
        (
            copy_op(
                (0x70, DomainId::SELF, 0),
                (8, GRANTER, 0),
                8,
                GNTCOPY_DEST_GREF,
            ),
            GrantStatus::GeneralError,
        ),
        // A reference outside the table.
        (
            copy_op(
                (600, GRANTER, 0),
                (0x70, DomainId::SELF, 0),
                8,
                GNTCOPY_SOURCE_GREF,
            ),
            GrantStatus::BadGntref,
        ),
        // No such domain.
        (
            copy_op(
                (8, MISSING, 0),
                (0x70, DomainId::SELF, 0),
                8,
                GNTCOPY_SOURCE_GREF,
            ),
            GrantStatus::BadDomain,
        ),
        // A destination named by number in another domain.
        (
            copy_op((0x70, DomainId::SELF, 0), (8, GRANTER, 0), 8, 0),
            GrantStatus::PermissionDenied,
        ),
        // The caller's frames are not RAM.
        (
            copy_op((0x99, DomainId::SELF, 0), (0x70, DomainId::SELF, 0), 8, 0),
            GrantStatus::BadPage,
        ),
        (
            copy_op(
                (8, GRANTER, 0),
                (0x99, DomainId::SELF, 0),
                8,
                GNTCOPY_SOURCE_GREF,
            ),
            GrantStatus::BadPage,
        ),
        // The granted frame is not RAM.
        (
            copy_op(
                (9, GRANTER, 0),
                (0x70, DomainId::SELF, 0),
                8,
                GNTCOPY_SOURCE_GREF,
            ),
            GrantStatus::BadPage,
        ),
    ];
    for (op, status) in cases {
        assert_eq!(world.copy(BASE, op), raw(status));
        assert_eq!(world.host.total_pinned(), 0);
    }
    assert_eq!(
        world.host.header(GRANTER, 8).flags,
        GTF_PERMIT_ACCESS | GTF_READONLY
    );
}

#[test]
fn a_zero_length_copy_succeeds_without_checks() {
    let mut world = World::new();
    assert_eq!(
        world.copy(BASE, copy_op((1, MISSING, 9999), (2, MISSING, 9999), 0, 0)),
        OK
    );
}

#[test]
fn query_size_reports_own_and_permitted_tables() {
    let mut world = World::new();
    use abi::query_size as layout;
    let mut op = [0xffu8; 16];
    op[..2].copy_from_slice(&DomainId::SELF.0.to_le_bytes());
    world.guest.put(BASE, &op);
    assert_eq!(
        world.call(GNTTABOP_QUERY_SIZE, BASE, 1),
        GrantOutcome::Return(0)
    );
    assert_eq!(world.guest.u32_at(BASE + layout::NR_FRAMES as u64), 1);
    assert_eq!(world.guest.u32_at(BASE + layout::MAX_NR_FRAMES as u64), 4);
    assert_eq!(world.guest.i16_at(BASE + layout::STATUS as u64), OK);

    for (dom, privileged, status) in [
        (GRANTER, false, GrantStatus::PermissionDenied),
        (MISSING, true, GrantStatus::BadDomain),
        (GRANTER, true, GrantStatus::Okay),
    ] {
        world.caller.privileged = privileged;
        op[..2].copy_from_slice(&dom.0.to_le_bytes());
        world.guest.put(BASE, &op);
        assert_eq!(
            world.call(GNTTABOP_QUERY_SIZE, BASE, 1),
            GrantOutcome::Return(0)
        );
        assert_eq!(
            world.guest.i16_at(BASE + layout::STATUS as u64),
            raw(status)
        );
    }
    assert_eq!(
        world.call(GNTTABOP_QUERY_SIZE, BASE, 2),
        errno(Errno::EINVAL)
    );
}

fn setup_op(dom: DomainId, frames: u32, list: u64) -> [u8; 24] {
    use abi::setup_table as layout;
    let mut op = [0u8; 24];
    op[layout::DOM..][..2].copy_from_slice(&dom.0.to_le_bytes());
    op[layout::NR_FRAMES..][..4].copy_from_slice(&frames.to_le_bytes());
    op[layout::FRAME_LIST..][..8].copy_from_slice(&list.to_le_bytes());
    op
}

#[test]
fn setup_table_grows_and_lists_frames() {
    let mut world = World::new();
    let list = BASE + 0x1000;
    world.guest.put(BASE, &setup_op(DomainId::SELF, 3, list));
    assert_eq!(
        world.call(GNTTABOP_SETUP_TABLE, BASE, 1),
        GrantOutcome::Return(0)
    );
    let status_at = BASE + abi::setup_table::STATUS as u64;
    assert_eq!(world.guest.i16_at(status_at), OK);
    let table = world.host.table(MAPPER);
    assert_eq!(table.frame_count(), 3);
    for index in 0..3 {
        assert_eq!(
            world.guest.u64_at(list + 8 * index),
            table.frame(index as u32).unwrap().0 >> 12
        );
    }

    for (dom, frames, privileged, status) in [
        (GRANTER, 1, false, GrantStatus::PermissionDenied),
        (MISSING, 1, true, GrantStatus::BadDomain),
        (GRANTER, 5, true, GrantStatus::GeneralError),
        (GRANTER, 2, true, GrantStatus::Okay),
    ] {
        world.caller.privileged = privileged;
        world.guest.put(BASE, &setup_op(dom, frames, list));
        assert_eq!(
            world.call(GNTTABOP_SETUP_TABLE, BASE, 1),
            GrantOutcome::Return(0)
        );
        assert_eq!(
            world.guest.i16_at(status_at),
            raw(status),
            "{dom:?} {frames}"
        );
    }
    assert_eq!(world.host.table(GRANTER).frame_count(), 2);

    world.guest.put(BASE, &setup_op(DomainId::SELF, 1, 0x10));
    assert_eq!(
        world.call(GNTTABOP_SETUP_TABLE, BASE, 1),
        GrantOutcome::Return(0)
    );
    assert_eq!(world.guest.i16_at(status_at), raw(GrantStatus::BadVirtAddr));

    assert_eq!(
        world.call(GNTTABOP_SETUP_TABLE, BASE, 0),
        errno(Errno::EINVAL)
    );
    assert_eq!(
        world.call(GNTTABOP_SETUP_TABLE, BASE, 2),
        errno(Errno::EINVAL)
    );
}

#[test]
fn setup_table_reports_allocation_failure() {
    let mut world = World::new();
    world.host.frame_budget = Some(1);
    world
        .guest
        .put(BASE, &setup_op(DomainId::SELF, 3, BASE + 0x1000));
    assert_eq!(
        world.call(GNTTABOP_SETUP_TABLE, BASE, 1),
        GrantOutcome::Return(0)
    );
    assert_eq!(
        world.guest.i16_at(BASE + abi::setup_table::STATUS as u64),
        raw(GrantStatus::GeneralError)
    );
    assert_eq!(world.host.freed.len(), 1);
    assert_eq!(world.host.table(MAPPER).frame_count(), 1);
}

#[test]
fn set_version_accepts_one_and_always_answers_the_version() {
    let mut world = World::new();
    for (requested, outcome) in [
        (1u32, GrantOutcome::Return(0)),
        (2, errno(Errno::ENOSYS)),
        (0, errno(Errno::EINVAL)),
        (7, errno(Errno::EINVAL)),
    ] {
        world.guest.put(BASE, &requested.to_le_bytes());
        assert_eq!(world.call(GNTTABOP_SET_VERSION, BASE, 1), outcome);
        assert_eq!(world.guest.u32_at(BASE), 1);
    }
}

#[test]
fn get_version_of_self_and_others() {
    let mut world = World::new();
    let get = |world: &mut World, dom: DomainId| {
        let mut op = [0u8; 8];
        op[..2].copy_from_slice(&dom.0.to_le_bytes());
        op[4..].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        world.guest.put(BASE, &op);
        world.call(GNTTABOP_GET_VERSION, BASE, 1)
    };
    assert_eq!(get(&mut world, DomainId::SELF), GrantOutcome::Return(0));
    assert_eq!(world.guest.u32_at(BASE + 4), 1);
    assert_eq!(get(&mut world, GRANTER), errno(Errno::EPERM));
    assert_eq!(get(&mut world, MISSING), errno(Errno::ESRCH));
    world.caller.privileged = true;
    assert_eq!(get(&mut world, GRANTER), GrantOutcome::Return(0));
}

#[test]
fn long_batches_continue_where_they_stopped() {
    let mut world = World::new();
    world.guest = FakeGuest::new(BASE, 0x8000);
    let size = abi::copy::SIZE as u64;
    let count = u64::from(MAX_OPS_PER_CALL) + 88;
    for index in 0..count {
        world.guest.put(
            BASE + index * size,
            &copy_op((0x70, DomainId::SELF, 0), (0x71, DomainId::SELF, 0), 0, 0),
        );
    }
    let outcome = world.call(GNTTABOP_COPY, BASE, count);
    let next = HypercallArgs {
        rdi: u64::from(GNTTABOP_COPY),
        rsi: BASE + u64::from(MAX_OPS_PER_CALL) * size,
        rdx: 88,
        ..HypercallArgs::default()
    };
    assert_eq!(outcome, GrantOutcome::Continue(next));
    assert_eq!(world.guest.i16_at(next.rsi - size + 36), OK);
    // The element after the stop was not touched.
    assert_eq!(world.guest.u16_at(next.rsi + 36), 0xaaaa);
    let outcome = world.call(GNTTABOP_COPY, next.rsi, next.rdx);
    assert_eq!(outcome, GrantOutcome::Return(0));
    assert_eq!(world.guest.i16_at(BASE + (count - 1) * size + 36), OK);
}

#[test]
fn unmap_batches_continue_too() {
    let mut world = World::new();
    world.guest = FakeGuest::new(BASE, 0x8000);
    let size = abi::unmap_grant_ref::SIZE as u64;
    let count = u64::from(MAX_OPS_PER_CALL) + 1;
    for index in 0..count {
        world.guest.put(BASE + index * size, &unmap_op(0x1000, 77));
    }
    let outcome = world.call(GNTTABOP_UNMAP_GRANT_REF, BASE, count);
    assert!(matches!(
        outcome,
        GrantOutcome::Continue(HypercallArgs { rdx: 1, .. })
    ));
    assert_eq!(world.guest.i16_at(BASE + 20), raw(GrantStatus::BadHandle));
}
