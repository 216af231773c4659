//! `memory_op`: the memory map, shared_info and grant frame 0 placed over
//! RAM pages of ours, the reservation counters, and a page given back and
//! repopulated.

use xen_guest::grant_table::GrantTableFrame;
use xen_guest::memory::{self, E820Entry, MapSpace};
use xen_guest::raw::rdtsc;
use xen_guest::shared::map_shared_info;
use xen_guest::{DomainId, VcpuId};

use super::Context;
use crate::memory::image;
use crate::report::{Outcome, ensure, fail, ok};

/// 2020-01-01 and 2100-01-01, UTC: a plausible wallclock lies between.
const PLAUSIBLE_SECONDS: core::ops::Range<u64> = 1_577_836_800..4_102_444_800;

pub fn memory_map(_context: &mut Context) -> Outcome {
    let mut entries = [E820Entry::default(); 32];
    let count = ok("XENMEM_memory_map", memory::memory_map(&mut entries))?;
    ensure!(count > 0, "no entries");
    let (start, end) = image();
    let covered = entries[..count].iter().any(|entry| {
        entry.kind() == E820Entry::RAM && entry.address() <= start && end <= entry.end()
    });
    ensure!(
        covered,
        "none of {count} entries is RAM covering the image {start:#x}..{end:#x}"
    );
    Ok(())
}

pub fn shared_info_map(context: &mut Context) -> Outcome {
    let pages = context.pages()?;
    let shared = ok(
        "add_to_physmap(shared_info, 0)",
        map_shared_info(pages.shared_info),
    )?;
    context.shared = Some(shared);
    context.vcpu_info = shared.vcpu_info(VcpuId::BOOT);
    Ok(())
}

pub fn shared_info_wallclock(context: &mut Context) -> Outcome {
    let Some(wallclock) = context.shared()?.wallclock() else {
        fail!("wc_version never even and stable");
    };
    ensure!(
        PLAUSIBLE_SECONDS.contains(&wallclock.seconds),
        "wc_sec {} is not between 2020 and 2100",
        wallclock.seconds
    );
    ensure!(
        wallclock.nanoseconds < 1_000_000_000,
        "wc_nsec {} is a second or more",
        wallclock.nanoseconds
    );
    Ok(())
}

/// Busy-waits about `cycles` TSC ticks.
pub fn spin(cycles: u64) {
    let start = rdtsc();
    let mut rounds = 0u64;
    while rdtsc().wrapping_sub(start) < cycles && rounds < 1 << 28 {
        core::hint::spin_loop();
        rounds += 1;
    }
}

pub fn shared_info_time(context: &mut Context) -> Outcome {
    let Some(slot) = context.shared()?.vcpu_info(VcpuId::BOOT) else {
        fail!("no vcpu_info slot 0");
    };
    let Some(first) = slot.time() else {
        fail!("vcpu_info[0].time version never even and stable");
    };
    ensure!(first.tsc_to_system_mul != 0, "tsc_to_system_mul is 0");
    let before = first.system_time_at(rdtsc());
    spin(2_000_000);
    let Some(second) = slot.time() else {
        fail!("vcpu_info[0].time unstable on the second read");
    };
    let after = second.system_time_at(rdtsc());
    ensure!(
        after > before,
        "system time did not advance: {} then {} ns (versions {} and {})",
        before.nanoseconds(),
        after.nanoseconds(),
        first.version,
        second.version
    );
    Ok(())
}

pub fn grant_table_map(context: &mut Context) -> Outcome {
    let pages = context.pages()?;
    ok(
        "add_to_physmap(grant_table, 0)",
        memory::add_to_physmap(MapSpace::GRANT_TABLE, 0, &pages.grant_table),
    )?;
    context.grants = Some(GrantTableFrame::new(pages.grant_table, 0));
    Ok(())
}

pub fn reservation(_context: &mut Context) -> Outcome {
    let current = ok(
        "current_reservation",
        memory::current_reservation(DomainId::SELF),
    )?;
    let maximum = ok(
        "maximum_reservation",
        memory::maximum_reservation(DomainId::SELF),
    )?;
    let (start, end) = image();
    let image_pages = (end - start) / 4096;
    ensure!(
        current >= image_pages,
        "current {current} pages is less than the image's {image_pages}"
    );
    ensure!(
        maximum >= current,
        "maximum {maximum} below current {current}"
    );
    Ok(())
}

pub fn balloon(context: &mut Context) -> Outcome {
    let page = context.pages()?.balloon;
    let current = || {
        ok(
            "current_reservation",
            memory::current_reservation(DomainId::SELF),
        )
    };
    let before = current()?;
    let released = ok(
        "decrease_reservation",
        memory::decrease_reservation(&[page]),
    )?;
    ensure!(
        released == 1,
        "decrease_reservation released {released} of 1"
    );
    let during = current()?;
    ensure!(
        during + 1 == before,
        "reservation {before} -> {during} after giving one page back"
    );
    let populated = ok("populate_physmap", memory::populate_physmap(&[page]))?;
    // Until repopulated, touching the page would fault: stop here if not.
    ensure!(
        populated == 1,
        "populate_physmap populated {populated} of 1"
    );
    let after = current()?;
    ensure!(
        after == before,
        "reservation {before} -> {after} after repopulating"
    );
    for (offset, value) in [
        (0usize, 0x1122_3344_5566_7788u64),
        (2048, 0xa5a5),
        (4088, 1),
    ] {
        page.store(offset, value);
        let read = page.load::<u64>(offset);
        ensure!(
            read == Some(value),
            "repopulated page reads {read:?} at {offset}, wrote {value:#x}"
        );
    }
    Ok(())
}
