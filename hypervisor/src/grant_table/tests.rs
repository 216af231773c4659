//! Tests of the tables, maptrack and map/unmap/copy steps without the
//! hypercall layer.

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::grant_table::{
    GTF_ACCEPT_TRANSFER, GTF_PERMIT_ACCESS, GTF_PWT, GTF_READING, GTF_READONLY, GTF_SUB_PAGE,
    GTF_TRANSITIVE, GTF_WRITING, GrantHandle, GrantRef, GrantStatus,
};

use super::fake::{FakeEntryMemory, FakeHost, Interference, read_header, try_revoke, write_entry};
use super::table::{ENTRY_UPDATE_ATTEMPTS, MAX_PINS};
use super::*;
use crate::memory::{GuestPhysAddr, HostPhysAddr};

const GRANTER: DomainId = DomainId(1);
const MAPPER: DomainId = DomainId(2);
const OTHER: DomainId = DomainId(3);
const GREF: GrantRef = GrantRef(10);
const GRANTED_FRAME: u32 = 0x1234;

fn table() -> GrantTable {
    GrantTable::new(&GrantTableLimits::default(), HostPhysAddr(0x0010_0000))
}

/// A table whose entry `GREF` grants `GRANTED_FRAME` to `MAPPER`.
fn granted(flags: u16) -> (GrantTable, FakeEntryMemory) {
    let table = table();
    let mut memory = FakeEntryMemory::default();
    write_entry(&mut memory, &table, GREF, flags, MAPPER, GRANTED_FRAME);
    (table, memory)
}

fn request(access: Access, mapper_frame: u64) -> MapRequest {
    MapRequest {
        granter: GRANTER,
        gref: GREF,
        access,
        mapper_frame: GuestFrame(mapper_frame),
    }
}

fn flags(table: &GrantTable, memory: &FakeEntryMemory) -> u16 {
    read_header(memory, table, GREF).flags
}

#[test]
fn new_table_has_one_frame_and_version_one() {
    let table = table();
    assert_eq!(table.frame_count(), INITIAL_FRAMES);
    assert_eq!(table.max_frames(), DEFAULT_MAX_FRAMES);
    assert_eq!(table.entry_count(), 512);
    assert_eq!(table.version(), 1);
    assert_eq!(table.frame(0), Some(HostPhysAddr(0x0010_0000)));
    assert_eq!(table.frame(1), None);
    assert_eq!(
        table.entry_address(GrantRef(3)),
        Some(HostPhysAddr(0x0010_0018))
    );
    assert_eq!(table.entry_address(GrantRef(512)), None);
}

#[test]
fn only_version_one_is_accepted() {
    let mut table = table();
    assert_eq!(table.set_version(1), Ok(()));
    assert_eq!(table.set_version(2), Err(Errno::ENOSYS));
    assert_eq!(table.set_version(0), Err(Errno::EINVAL));
    assert_eq!(table.set_version(3), Err(Errno::EINVAL));
    assert_eq!(table.version(), 1);
}

#[test]
fn growth_takes_only_the_frames_it_needs() {
    let mut table = table();
    assert_eq!(table.frames_needed(1), Ok(0));
    assert_eq!(table.frames_needed(3), Ok(2));
    let supplied = [
        HostPhysAddr(0x0020_0000),
        HostPhysAddr(0x0030_0000),
        HostPhysAddr(0x0040_0000),
    ];
    assert_eq!(table.grow(3, &supplied), Ok(2));
    assert_eq!(table.frame_count(), 3);
    assert_eq!(table.frame(2), Some(HostPhysAddr(0x0030_0000)));
    assert_eq!(
        table.entry_address(GrantRef(512)),
        Some(HostPhysAddr(0x0020_0000))
    );
    // Asking for fewer frames than it has never shrinks it.
    assert_eq!(table.grow(2, &[]), Ok(0));
    assert_eq!(table.frame_count(), 3);
}

#[test]
fn growth_beyond_the_limit_or_short_of_frames_fails() {
    let limits = GrantTableLimits {
        max_frames: 2,
        ..GrantTableLimits::default()
    };
    let mut table = GrantTable::new(&limits, HostPhysAddr(0x0010_0000));
    assert_eq!(
        table.frames_needed(3),
        Err(GrowError::BeyondMaximum {
            requested: 3,
            maximum: 2
        })
    );
    assert_eq!(
        table.grow(3, &[HostPhysAddr(0x1000), HostPhysAddr(0x2000)]),
        Err(GrowError::BeyondMaximum {
            requested: 3,
            maximum: 2
        })
    );
    assert_eq!(
        table.grow(2, &[]),
        Err(GrowError::MissingFrames {
            needed: 1,
            supplied: 0
        })
    );
    assert_eq!(table.frame_count(), 1);
    // A limit of zero still leaves the first frame.
    let limits = GrantTableLimits {
        max_frames: 0,
        ..GrantTableLimits::default()
    };
    assert_eq!(GrantTable::new(&limits, HostPhysAddr(0)).max_frames(), 1);
}

#[test]
fn readonly_map_sets_reading_and_returns_the_frame() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let action = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    assert_eq!(action.granter_frame, GuestFrame(u64::from(GRANTED_FRAME)));
    assert_eq!(action.mapper_frame, GuestFrame(0x8000));
    assert_eq!(action.mapper, MAPPER);
    assert_eq!(action.access, Access::ReadOnly);
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_READING);
    assert_eq!(table.pin_counts(GREF), Some((1, 0)));
    assert_eq!(table.user_of(GREF), Some(MAPPER));
    assert_eq!(maptrack.get(action.handle), Some(&action.mapping()));
    assert!(table.is_frame_pinned(GuestFrame(u64::from(GRANTED_FRAME))));
    assert!(!table.is_frame_pinned(GuestFrame(0)));
}

#[test]
fn writable_map_sets_reading_and_writing() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::Writable, 0x8000),
    )
    .unwrap();
    assert_eq!(
        flags(&table, &memory),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    assert_eq!(table.pin_counts(GREF), Some((0, 1)));
}

#[test]
fn map_outside_the_table_is_bad_gntref() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let mut bad = request(Access::ReadOnly, 0x8000);
    bad.gref = GrantRef(512);
    assert_eq!(
        map_grant(MAPPER, &mut maptrack, &mut table, &mut memory, &bad),
        Err(GrantStatus::BadGntref)
    );
    bad.gref = GrantRef(u32::MAX);
    assert_eq!(
        map_grant(MAPPER, &mut maptrack, &mut table, &mut memory, &bad),
        Err(GrantStatus::BadGntref)
    );
    assert!(maptrack.is_empty());
}

#[test]
fn map_by_the_wrong_domain_is_refused() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    assert_eq!(
        map_grant(
            OTHER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 0x8000)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS);
    assert!(maptrack.is_empty());
    assert!(!table.has_pins());
}

#[test]
fn map_of_an_entry_that_is_not_permit_access_is_refused() {
    for kind in [
        0,
        GTF_ACCEPT_TRANSFER,
        GTF_TRANSITIVE,
        GTF_PERMIT_ACCESS | GTF_SUB_PAGE,
    ] {
        let (mut table, mut memory) = granted(kind);
        let mut maptrack = Maptrack::new(4);
        assert_eq!(
            map_grant(
                MAPPER,
                &mut maptrack,
                &mut table,
                &mut memory,
                &request(Access::ReadOnly, 0x8000)
            ),
            Err(GrantStatus::GeneralError),
            "flags {kind:#x}"
        );
        assert_eq!(flags(&table, &memory), kind);
    }
}

#[test]
fn writable_map_of_a_readonly_grant_is_refused() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS | GTF_READONLY);
    let mut maptrack = Maptrack::new(4);
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::Writable, 0x8000)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_READONLY);
    // Read-only is fine.
    map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    // And a writable use is still refused while the read-only one lasts.
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::Writable, 0x8001)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(table.pin_counts(GREF), Some((1, 0)));
}

#[test]
fn two_maps_then_one_unmap_keeps_reading() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let first = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    let second = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8001),
    )
    .unwrap();
    assert_ne!(first.handle, second.handle);
    assert_eq!(table.pin_counts(GREF), Some((2, 0)));

    let step = begin_unmap(&maptrack, first.handle, GuestPhysAddr(0x0800_0000)).unwrap();
    let UnmapStep::Remove(mapping) = step else {
        panic!("expected a removal, got {step:?}");
    };
    maptrack.remove(first.handle);
    finish_unmap(&mut table, &mut memory, &mapping).unwrap();
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_READING);
    assert!(!try_revoke(&mut memory, &table, GREF));

    let UnmapStep::Remove(mapping) =
        begin_unmap(&maptrack, second.handle, GuestPhysAddr(0x0800_1000)).unwrap()
    else {
        panic!("expected a removal");
    };
    maptrack.remove(second.handle);
    finish_unmap(&mut table, &mut memory, &mapping).unwrap();
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS);
    assert!(!table.has_pins());
    assert!(!table.is_frame_pinned(GuestFrame(u64::from(GRANTED_FRAME))));
    assert!(try_revoke(&mut memory, &table, GREF));
}

#[test]
fn ending_the_writable_use_keeps_reading_for_the_readonly_one() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let reader = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    let writer = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::Writable, 0x8001),
    )
    .unwrap();
    assert_eq!(
        flags(&table, &memory),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    assert_eq!(table.pin_counts(GREF), Some((1, 1)));
    cancel_map(&mut maptrack, &mut table, &mut memory, &writer).unwrap();
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_READING);
    cancel_map(&mut maptrack, &mut table, &mut memory, &reader).unwrap();
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS);
}

#[test]
fn an_entry_in_use_by_one_domain_cannot_be_used_by_another() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    // The granter re-targets the entry while it is in use (misbehaving).
    write_entry(
        &mut memory,
        &table,
        GREF,
        GTF_PERMIT_ACCESS | GTF_READING,
        OTHER,
        GRANTED_FRAME,
    );
    let mut other_maptrack = Maptrack::new(4);
    assert_eq!(
        map_grant(
            OTHER,
            &mut other_maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 0x8000)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(
        table.pin_for_copy(&mut memory, GREF, OTHER, Access::ReadOnly),
        Err(GrantStatus::GeneralError)
    );
}

#[test]
fn a_later_use_trusts_the_first_and_ignores_a_changed_frame() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    write_entry(
        &mut memory,
        &table,
        GREF,
        GTF_PERMIT_ACCESS | GTF_READING,
        MAPPER,
        0x9999,
    );
    let second = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8001),
    )
    .unwrap();
    assert_eq!(second.granter_frame, GuestFrame(u64::from(GRANTED_FRAME)));
    assert!(!table.is_frame_pinned(GuestFrame(0x9999)));
}

#[test]
fn pin_counters_do_not_overflow() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut pins = Vec::new();
    for _ in 0..MAX_PINS {
        pins.push(
            table
                .pin_for_copy(&mut memory, GREF, MAPPER, Access::ReadOnly)
                .unwrap(),
        );
    }
    assert_eq!(
        table.pin_for_copy(&mut memory, GREF, MAPPER, Access::ReadOnly),
        Err(GrantStatus::GeneralError)
    );
    // The writable counter is separate.
    assert!(
        table
            .pin_for_copy(&mut memory, GREF, MAPPER, Access::Writable)
            .is_ok()
    );
    assert_eq!(table.pin_counts(GREF), Some((MAX_PINS, 1)));
}

#[test]
fn unmap_of_a_bad_or_stale_handle_is_bad_handle() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    assert_eq!(
        begin_unmap(&maptrack, GrantHandle(0), GuestPhysAddr(0x0800_0000)),
        Err(GrantStatus::BadHandle)
    );
    let action = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    assert_eq!(
        begin_unmap(&maptrack, GrantHandle(7), GuestPhysAddr(0x0800_0000)),
        Err(GrantStatus::BadHandle)
    );
    assert_eq!(
        begin_unmap(&maptrack, GrantHandle(u32::MAX), GuestPhysAddr(0x0800_0000)),
        Err(GrantStatus::BadHandle)
    );
    let UnmapStep::Remove(mapping) =
        begin_unmap(&maptrack, action.handle, GuestPhysAddr(0x0800_0123)).unwrap()
    else {
        panic!("expected a removal");
    };
    maptrack.remove(action.handle);
    finish_unmap(&mut table, &mut memory, &mapping).unwrap();
    // Double unmap.
    assert_eq!(
        begin_unmap(&maptrack, action.handle, GuestPhysAddr(0x0800_0000)),
        Err(GrantStatus::BadHandle)
    );
    // And the table refuses a second unpin rather than underflow.
    assert_eq!(
        finish_unmap(&mut table, &mut memory, &mapping),
        Err(NotPinned {
            gref: GREF,
            access: Access::ReadOnly
        })
    );
}

#[test]
fn unmap_at_another_address_is_refused_and_at_zero_does_nothing() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let action = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    assert_eq!(
        begin_unmap(&maptrack, action.handle, GuestPhysAddr(0x0800_1000)),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(
        begin_unmap(&maptrack, action.handle, GuestPhysAddr(0)),
        Ok(UnmapStep::Nothing)
    );
    assert_eq!(maptrack.len(), 1);
}

#[test]
fn a_full_maptrack_is_no_space() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(2);
    for frame in 0..2 {
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, frame),
        )
        .unwrap();
    }
    assert!(maptrack.is_full());
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 9)
        ),
        Err(GrantStatus::NoSpace)
    );
    // Checked before the grant: a bad ref still says no_space, as in Xen.
    let mut bad = request(Access::ReadOnly, 9);
    bad.gref = GrantRef(9999);
    assert_eq!(
        map_grant(MAPPER, &mut maptrack, &mut table, &mut memory, &bad),
        Err(GrantStatus::NoSpace)
    );
    assert_eq!(table.pin_counts(GREF), Some((2, 0)));
}

#[test]
fn maptrack_reuses_the_longest_free_handle_first() {
    let mut maptrack = Maptrack::new(3);
    let mapping = Mapping {
        granter: GRANTER,
        gref: GREF,
        access: Access::ReadOnly,
        mapper_frame: GuestFrame(1),
        granter_frame: GuestFrame(2),
    };
    let a = maptrack.insert(mapping).unwrap();
    let b = maptrack.insert(mapping).unwrap();
    let c = maptrack.insert(mapping).unwrap();
    assert_eq!(maptrack.insert(mapping), Err(MaptrackFull));
    maptrack.remove(b);
    maptrack.remove(a);
    assert_eq!(maptrack.insert(mapping), Ok(b));
    assert_eq!(maptrack.insert(mapping), Ok(a));
    assert_eq!(maptrack.iter().count(), 3);
    assert_eq!(maptrack.remove(c), Some(mapping));
    assert_eq!(maptrack.remove(c), None);
    assert_eq!(maptrack.take_all().len(), 2);
    assert!(maptrack.is_empty());
}

#[test]
fn guest_revoking_between_read_and_update_fails_the_map() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let address = table.entry_address(GREF).unwrap();
    memory.interference.push_back(Interference {
        address,
        value: EntryHeader {
            flags: 0,
            domid: MAPPER,
        }
        .to_raw(),
    });
    let mut maptrack = Maptrack::new(4);
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 0x8000)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(flags(&table, &memory), 0);
    assert!(!table.has_pins());
    assert!(maptrack.is_empty());
}

#[test]
fn guest_making_readonly_between_read_and_update_fails_a_writable_map() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let address = table.entry_address(GREF).unwrap();
    memory.interference.push_back(Interference {
        address,
        value: EntryHeader {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY,
            domid: MAPPER,
        }
        .to_raw(),
    });
    assert_eq!(
        table.pin_for_copy(&mut memory, GREF, MAPPER, Access::Writable),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_READONLY);
}

#[test]
fn a_harmless_concurrent_change_is_retried() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let address = table.entry_address(GREF).unwrap();
    memory.interference.push_back(Interference {
        address,
        value: EntryHeader {
            flags: GTF_PERMIT_ACCESS | GTF_PWT,
            domid: MAPPER,
        }
        .to_raw(),
    });
    let mut maptrack = Maptrack::new(4);
    map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    assert_eq!(memory.compare_exchanges, 2);
    assert_eq!(
        flags(&table, &memory),
        GTF_PERMIT_ACCESS | GTF_PWT | GTF_READING
    );
}

#[test]
fn an_entry_that_keeps_changing_is_given_up_on() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let address = table.entry_address(GREF).unwrap();
    for attempt in 0..ENTRY_UPDATE_ATTEMPTS {
        let flags = if attempt % 2 == 0 {
            GTF_PERMIT_ACCESS | GTF_PWT
        } else {
            GTF_PERMIT_ACCESS
        };
        memory.interference.push_back(Interference {
            address,
            value: EntryHeader {
                flags,
                domid: MAPPER,
            }
            .to_raw(),
        });
    }
    let mut maptrack = Maptrack::new(4);
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 0x8000)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(memory.compare_exchanges, ENTRY_UPDATE_ATTEMPTS as usize);
    assert!(!table.has_pins());
    assert_eq!(flags(&table, &memory) & GTF_READING, 0);
}

#[test]
fn copy_pins_hold_the_grant_until_released() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS | GTF_SUB_PAGE);
    // Sub-page is ignored by a version-1 copy (only maps refuse it).
    let pin = table
        .pin_for_copy(&mut memory, GREF, MAPPER, Access::Writable)
        .unwrap();
    assert_eq!(pin.frame, GuestFrame(u64::from(GRANTED_FRAME)));
    assert!(!try_revoke(&mut memory, &table, GREF));
    table.release_copy(&mut memory, pin).unwrap();
    assert_eq!(flags(&table, &memory), GTF_PERMIT_ACCESS | GTF_SUB_PAGE);
    assert!(try_revoke(&mut memory, &table, GREF));
}

#[test]
fn copy_bounds_stop_at_the_page_end() {
    assert!(copy_fits(0, 4096));
    assert!(copy_fits(4095, 1));
    assert!(!copy_fits(4095, 2));
    assert!(!copy_fits(u16::MAX, u16::MAX));
    assert!(!copy_fits(0, 4097));
}

#[test]
fn a_dying_granter_accepts_no_new_uses_but_ends_old_ones() {
    let (mut table, mut memory) = granted(GTF_PERMIT_ACCESS);
    let mut maptrack = Maptrack::new(4);
    let action = map_grant(
        MAPPER,
        &mut maptrack,
        &mut table,
        &mut memory,
        &request(Access::ReadOnly, 0x8000),
    )
    .unwrap();
    table.set_dying();
    assert!(table.is_dying());
    assert_eq!(
        map_grant(
            MAPPER,
            &mut maptrack,
            &mut table,
            &mut memory,
            &request(Access::ReadOnly, 0x8001)
        ),
        Err(GrantStatus::GeneralError)
    );
    assert_eq!(
        table.pin_for_copy(&mut memory, GREF, MAPPER, Access::ReadOnly),
        Err(GrantStatus::BadDomain)
    );
    let table = match table.into_frames() {
        Ok(_) => panic!("frames freed while mapped"),
        Err(table) => table,
    };
    let mut table = table;
    cancel_map(&mut maptrack, &mut table, &mut memory, &action).unwrap();
    assert_eq!(
        table.into_frames().ok(),
        Some(vec![HostPhysAddr(0x0010_0000)])
    );
}

#[test]
fn a_dying_mapper_releases_every_mapping() {
    let mut host = FakeHost::new();
    host.add_domain(GRANTER, 4, &[0x50, 0x51]);
    host.add_domain(OTHER, 4, &[0x60]);
    host.add_domain(MAPPER, 4, &[]);
    host.grant(GRANTER, 8, GTF_PERMIT_ACCESS, MAPPER, 0x50);
    host.grant(GRANTER, 9, GTF_PERMIT_ACCESS, MAPPER, 0x51);
    host.grant(OTHER, 8, GTF_PERMIT_ACCESS, MAPPER, 0x60);
    let mut maptrack = Maptrack::new(8);
    for (granter, gref, access) in [
        (GRANTER, 8, Access::ReadOnly),
        (GRANTER, 8, Access::Writable),
        (GRANTER, 9, Access::ReadOnly),
        (OTHER, 8, Access::Writable),
    ] {
        let request = MapRequest {
            granter,
            gref: GrantRef(gref),
            access,
            mapper_frame: GuestFrame(0x100),
        };
        host.with_table(granter, |table, memory| {
            map_grant(MAPPER, &mut maptrack, table, memory, &request)
        })
        .unwrap()
        .unwrap();
    }
    assert!(host.table(GRANTER).is_frame_pinned(GuestFrame(0x50)));
    assert_eq!(release_mappings(&mut maptrack, &mut host), 4);
    assert!(maptrack.is_empty());
    assert_eq!(host.total_pinned(), 0);
    assert_eq!(host.header(GRANTER, 8).flags, GTF_PERMIT_ACCESS);
    assert_eq!(host.header(OTHER, 8).flags, GTF_PERMIT_ACCESS);
    assert!(!host.table(GRANTER).is_frame_pinned(GuestFrame(0x50)));
}

#[test]
fn a_mapping_of_a_vanished_granter_is_dropped_on_release() {
    let mut host = FakeHost::new();
    host.add_domain(MAPPER, 4, &[]);
    let mut maptrack = Maptrack::new(8);
    maptrack
        .insert(Mapping {
            granter: GRANTER,
            gref: GREF,
            access: Access::ReadOnly,
            mapper_frame: GuestFrame(1),
            granter_frame: GuestFrame(2),
        })
        .unwrap();
    assert_eq!(release_mappings(&mut maptrack, &mut host), 0);
    assert!(maptrack.is_empty());
}

#[test]
fn physmap_insertion_grows_the_table_up_to_its_limit() {
    let mut host = FakeHost::new();
    host.add_domain(GRANTER, 3, &[]);
    let first = host.table(GRANTER).frame(0).unwrap();
    assert_eq!(shared_frame_for_physmap(&mut host, GRANTER, 0), Ok(first));
    let third = shared_frame_for_physmap(&mut host, GRANTER, 2).unwrap();
    assert_eq!(host.table(GRANTER).frame_count(), 3);
    assert_eq!(host.table(GRANTER).frame(2), Some(third));
    assert_eq!(
        shared_frame_for_physmap(&mut host, GRANTER, 3),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        shared_frame_for_physmap(&mut host, GRANTER, 0x8000_0000),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        shared_frame_for_physmap(&mut host, GRANTER, u64::MAX),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        shared_frame_for_physmap(&mut host, MAPPER, 0),
        Err(Errno::ESRCH)
    );
}

#[test]
fn growth_that_runs_out_of_frames_gives_them_back() {
    let mut host = FakeHost::new();
    host.add_domain(GRANTER, 8, &[]);
    host.frame_budget = Some(2);
    assert_eq!(
        shared_frame_for_physmap(&mut host, GRANTER, 4),
        Err(Errno::EINVAL)
    );
    assert_eq!(host.freed.len(), 2);
    assert_eq!(host.table(GRANTER).frame_count(), 1);
}

#[test]
fn entry_header_packs_flags_low_and_domid_high() {
    let header = EntryHeader {
        flags: 0x1234,
        domid: DomainId(0x5678),
    };
    assert_eq!(header.to_raw(), 0x5678_1234);
    assert_eq!(EntryHeader::from_raw(0x5678_1234), header);
}

#[test]
fn guest_frames_convert_to_and_from_addresses() {
    assert_eq!(
        GuestFrame::containing(GuestPhysAddr(0x1234_5678)),
        GuestFrame(0x12345)
    );
    assert_eq!(
        GuestFrame(0x12345).address(),
        Some(GuestPhysAddr(0x1234_5000))
    );
    assert_eq!(GuestFrame(u64::MAX).address(), None);
    assert_eq!(Access::ReadOnly.in_use_flags(), GTF_READING);
    assert_eq!(Access::Writable.in_use_flags(), GTF_READING | GTF_WRITING);
}
