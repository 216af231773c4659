//! Requests a buggy or malicious guest might make. Each must fail with
//! Xen's error and leave this guest running; none can reach our memory
//! (bad pointers are unmapped or non-canonical, map targets are holes).

use xen_guest::event_channel::{self, ChannelState, EVTCHNSTAT_VIRQ};
use xen_guest::grant_table::{
    self, CopyEnd, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, MapGrantRef,
};
use xen_guest::hvm::{self, HvmParamIndex};
use xen_guest::memory::{self as guest_memory, MapSpace};
use xen_guest::{
    DomainId, GrantError, GrantHandle, GrantRef, GrantStatus, GuestFrame, Port, SystemTime, VcpuId,
    Virq, XenError, sched, vcpu, version,
};

use super::{Context, HOLE_HOSTILE, MILLISECOND};
use crate::memory::{
    PointerProbe, StraddleProbe, Unreachable, call_straddling, call_with_unreachable,
    console_write_with_count, memory_map_with_unreachable_buffer, poll_with_unreachable_ports,
    register_time_area_at, reservation_with_unreachable_extents, sched_op_with_scratch,
    setup_table_with_unreachable_list,
};
use crate::report::{Outcome, ensure, expect_error, expect_raw, expect_status, fail, grant_ok, ok};

/// A domain id below the reserved range that no test setup creates.
const NO_SUCH_DOMAIN: DomainId = DomainId(0x7fe0);
/// Ports that are reserved, at the 2-level limit, and far beyond it.
const BAD_PORTS: [Port; 3] = [Port(0), Port(4095), Port(1_000_000)];

pub fn ports(_context: &mut Context) -> Outcome {
    for port in BAD_PORTS {
        let beyond = port.0 >= 4096;
        expect_error("send", event_channel::send(port), &[XenError::EINVAL])?;
        expect_error("close", event_channel::close(port), &[XenError::EINVAL])?;
        expect_error(
            "bind_vcpu",
            event_channel::bind_vcpu(port, VcpuId::BOOT),
            &[XenError::EINVAL],
        )?;
        // Xen treats ports inside its allocated buckets as valid: unmask
        // is then a harmless success and status says "closed".
        match event_channel::unmask(port) {
            Err(XenError::EINVAL) => {}
            Ok(()) if !beyond => {}
            other => fail!(
                "unmask({}): expected -EINVAL or harmless 0, got {other:?}",
                port.0
            ),
        }
        match event_channel::status(DomainId::SELF, port) {
            Err(XenError::EINVAL) => {}
            Ok(status) if !beyond && status.state == ChannelState::Closed => {}
            other => fail!(
                "status({}): expected -EINVAL or closed, got {other:?}",
                port.0
            ),
        }
    }
    Ok(())
}

pub fn bind(_context: &mut Context) -> Outcome {
    for virq in [Virq(24), Virq(99), Virq(u32::MAX)] {
        expect_error(
            "bind_virq(out-of-range VIRQ)",
            event_channel::bind_virq(virq, VcpuId::BOOT),
            &[XenError::EINVAL],
        )?;
    }
    expect_error(
        "bind_virq(TIMER, vcpu 4096)",
        event_channel::bind_virq(Virq::TIMER, VcpuId(4096)),
        &[XenError::ENOENT],
    )?;
    expect_error(
        "bind_ipi(vcpu 4096)",
        event_channel::bind_ipi(VcpuId(4096)),
        &[XenError::ENOENT],
    )?;
    expect_error(
        "bind_interdomain(no such domain)",
        event_channel::bind_interdomain(NO_SUCH_DOMAIN, Port(1)),
        &[XenError::ESRCH],
    )?;
    expect_error(
        "bind_interdomain(self, port 1000000)",
        event_channel::bind_interdomain(DomainId::SELF, Port(1_000_000)),
        &[XenError::EINVAL],
    )
}

pub fn grant_ref(context: &mut Context) -> Outcome {
    let (domain, hole) = (context.domain()?, context.hole(HOLE_HOSTILE)?);
    for gref in [GrantRef(1_000_000), GrantRef(u32::MAX)] {
        expect_status(
            "map_grant_ref(own gref out of range)",
            grant_table::map_grant(&hole, gref, domain, false),
            GrantStatus::BAD_GNTREF,
        )?;
    }
    Ok(())
}

pub fn grant_domain(context: &mut Context) -> Outcome {
    let (hole, pages) = (context.hole(HOLE_HOSTILE)?, context.pages()?);
    expect_status(
        "map_grant_ref(no such domain)",
        grant_table::map_grant(&hole, GrantRef(8), NO_SUCH_DOMAIN, false),
        GrantStatus::BAD_DOMAIN,
    )?;
    expect_status(
        "copy(from a grant of no such domain)",
        grant_table::copy_one(
            CopyEnd::Grant {
                gref: GrantRef(8),
                domid: NO_SUCH_DOMAIN,
                offset: 0,
            },
            CopyEnd::own(pages.copy_dest, 0),
            16,
        ),
        GrantStatus::BAD_DOMAIN,
    )?;
    // A frame number names our own memory only with DOMID_SELF.
    expect_status(
        "copy(from dom0's frame by number)",
        grant_table::copy_one(
            CopyEnd::Frame {
                slot: pages.copy_source,
                domid: DomainId::DOM0,
                offset: 0,
            },
            CopyEnd::own(pages.copy_dest, 0),
            16,
        ),
        GrantStatus::PERMISSION_DENIED,
    )
}

pub fn grant_copy(context: &mut Context) -> Outcome {
    let pages = context.pages()?;
    let (source, dest) = (pages.copy_source, pages.copy_dest);
    expect_status(
        "copy(source offset 4000, 200 bytes)",
        grant_table::copy_one(CopyEnd::own(source, 4000), CopyEnd::own(dest, 0), 200),
        GrantStatus::BAD_COPY_ARG,
    )?;
    expect_status(
        "copy(dest offset 4000, 200 bytes)",
        grant_table::copy_one(CopyEnd::own(source, 0), CopyEnd::own(dest, 4000), 200),
        GrantStatus::BAD_COPY_ARG,
    )?;
    expect_status(
        "copy(offset 65535)",
        grant_table::copy_one(CopyEnd::own(source, u16::MAX), CopyEnd::own(dest, 0), 1),
        GrantStatus::BAD_COPY_ARG,
    )
}

pub fn grant_handle(context: &mut Context) -> Outcome {
    let hole = context.hole(HOLE_HOSTILE)?;
    for handle in [GrantHandle(0xdead), GrantHandle(u32::MAX)] {
        expect_status(
            "unmap_grant_ref(never-issued handle)",
            grant_table::unmap_grant(&hole, handle),
            GrantStatus::BAD_HANDLE,
        )?;
    }
    Ok(())
}

/// HVM/PVH callers may only host-map: device and PTE maps are refused.
pub fn grant_flags(context: &mut Context) -> Outcome {
    let (domain, hole) = (context.domain()?, context.hole(HOLE_HOSTILE)?);
    for flags in [
        GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP,
        GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE,
    ] {
        let mut operation = MapGrantRef::with_flags(&hole, GrantRef(8), domain, flags);
        grant_ok(
            "map_grant_ref(PV-only flags)",
            grant_table::map_grant_refs(core::slice::from_mut(&mut operation))
                .map_err(GrantError::from),
        )?;
        ensure!(
            operation.status() == GrantStatus::GENERAL_ERROR,
            "flags {flags:#x}: expected {}, got {}",
            GrantStatus::GENERAL_ERROR,
            operation.status()
        );
    }
    Ok(())
}

pub fn physmap(context: &mut Context) -> Outcome {
    let hole = context.hole(HOLE_HOSTILE)?;
    for (space, index, what) in [
        (MapSpace::SHARED_INFO, 1, "add_to_physmap(shared_info, 1)"),
        (
            MapSpace::GRANT_TABLE,
            1_000_000,
            "add_to_physmap(grant_table, 1000000)",
        ),
        (MapSpace(99), 0, "add_to_physmap(space 99)"),
    ] {
        expect_error(
            what,
            guest_memory::add_to_physmap(space, index, &hole),
            &[XenError::EINVAL],
        )?;
    }
    Ok(())
}

pub fn bad_pointers(_context: &mut Context) -> Outcome {
    for address in [Unreachable::UNMAPPED, Unreachable::NON_CANONICAL] {
        for probe in PointerProbe::ALL {
            let result = call_with_unreachable(probe, address);
            if XenError::check(result) != Err(XenError::EFAULT) {
                fail!(
                    "{} with pointer {:#x}: expected -EFAULT, got {result}",
                    probe.name(),
                    address.address()
                );
            }
        }
        expect_raw(
            "sched poll, port list unreachable",
            poll_with_unreachable_ports(address),
            &[XenError::EFAULT],
        )?;
        expect_raw(
            "memory_map, buffer unreachable",
            memory_map_with_unreachable_buffer(address),
            &[XenError::EFAULT],
        )?;
        let (result, status) = setup_table_with_unreachable_list(address);
        let refused = XenError::check(result) == Err(XenError::EFAULT)
            || (result == 0 && GrantStatus(status) == GrantStatus::BAD_VIRT_ADDR);
        ensure!(
            refused,
            "setup_table, frame list unreachable: got {result}, status {}",
            GrantStatus(status)
        );
    }
    Ok(())
}

/// A time area at an address nothing maps is accepted, as Xen accepts it;
/// the writes on every entry then fail quietly and the guest runs on.
pub fn bad_time_area(_context: &mut Context) -> Outcome {
    for address in [Unreachable::UNMAPPED, Unreachable::NON_CANONICAL] {
        let result = register_time_area_at(address.address());
        ensure!(
            result == 0,
            "time area at {:#x}: registration returned {result}",
            address.address()
        );
        ok("sched_op yield", sched::yield_now())?;
    }
    let result = register_time_area_at(0);
    ensure!(result == 0, "unregistering the time area returned {result}");
    Ok(())
}

/// Xen's guest copies accept any alignment, even across a page boundary.
pub fn unaligned_pointers(context: &mut Context) -> Outcome {
    let expected = ok("XENVER_get_features(0)", version::features(0))?;
    let (result, after) = call_straddling(StraddleProbe::XenVersionFeatures, [0; 24]);
    let submap = u32::from_le_bytes([after[4], after[5], after[6], after[7]]);
    ensure!(
        result == 0 && submap == expected,
        "get_features across a page boundary: result {result}, submap {submap:#x} (expected {expected:#x})"
    );
    let port = context.timer_port()?;
    let mut argument = [0u8; 24];
    argument[..2].copy_from_slice(&DomainId::SELF.0.to_le_bytes());
    argument[4..8].copy_from_slice(&port.0.to_le_bytes());
    let (result, after) = call_straddling(StraddleProbe::EventStatus, argument);
    let status = u32::from_le_bytes([after[8], after[9], after[10], after[11]]);
    let virq = u32::from_le_bytes([after[16], after[17], after[18], after[19]]);
    ensure!(
        result == 0 && status == EVTCHNSTAT_VIRQ && virq == Virq::TIMER.0,
        "status across a page boundary: result {result}, status {status}, virq {virq}"
    );
    Ok(())
}

pub fn console_count(_context: &mut Context) -> Outcome {
    let result = console_write_with_count(b"test-guest: huge count\n", 1 << 40);
    ensure!(
        result < 0,
        "console_io write of 2^40 bytes returned {result}"
    );
    Ok(())
}

pub fn populate_huge(context: &mut Context) -> Outcome {
    let start = context.now();
    for (decrease, what) in [(false, "populate_physmap"), (true, "decrease_reservation")] {
        let result = reservation_with_unreachable_extents(decrease, Unreachable::UNMAPPED, 1 << 40);
        ensure!(
            result < 1 << 40,
            "{what} of 2^40 extents claims {result} done"
        );
    }
    if let (Some(start), Some(end)) = (start, context.now()) {
        ensure!(
            end.since(start) < 1_000 * MILLISECOND,
            "refusing 2^40 extents took {} ms",
            end.since(start) / MILLISECOND
        );
    }
    Ok(())
}

/// A DomU asking about or acting on other domains.
pub fn foreign_domain(_context: &mut Context) -> Outcome {
    expect_error(
        "current_reservation(dom0)",
        guest_memory::current_reservation(DomainId::DOM0),
        &[XenError::EPERM],
    )?;
    expect_error(
        "current_reservation(no such domain)",
        guest_memory::current_reservation(NO_SUCH_DOMAIN),
        &[XenError::ESRCH],
    )?;
    expect_error(
        "get_param(dom0, STORE_PFN)",
        hvm::get_param(DomainId::DOM0, HvmParamIndex::STORE_PFN),
        &[XenError::EPERM],
    )?;
    expect_error(
        "get_param(no such domain)",
        hvm::get_param(NO_SUCH_DOMAIN, HvmParamIndex::STORE_PFN),
        &[XenError::ESRCH],
    )?;
    expect_error(
        "alloc_unbound(in dom0)",
        event_channel::alloc_unbound(DomainId::DOM0, DomainId::SELF),
        &[XenError::EPERM],
    )?;
    expect_error(
        "gnttab get_version(dom0)",
        grant_table::get_version(DomainId::DOM0),
        &[XenError::EPERM],
    )?;
    expect_status(
        "gnttab query_size(dom0)",
        grant_table::query_size(DomainId::DOM0),
        GrantStatus::PERMISSION_DENIED,
    )?;
    let mut frames = [GuestFrame(0)];
    expect_status(
        "gnttab setup_table(dom0)",
        grant_table::setup_table(DomainId::DOM0, &mut frames),
        GrantStatus::PERMISSION_DENIED,
    )
}

pub fn vcpu(context: &mut Context) -> Outcome {
    let slot = context.pages()?.vcpu_info;
    expect_error(
        "stop_periodic_timer(vcpu 4096)",
        vcpu::stop_periodic_timer(VcpuId(4096)),
        &[XenError::ENOENT],
    )?;
    expect_error(
        "register_vcpu_info(vcpu 4096)",
        vcpu::register_vcpu_info(VcpuId(4096), slot, 512),
        &[XenError::ENOENT],
    )?;
    // vCPU 1 does not exist here (ENOENT); if it did, it is not the caller
    // (EINVAL).
    expect_error(
        "set_singleshot_timer(vcpu 1)",
        vcpu::set_singleshot_timer(VcpuId(1), SystemTime(1), 0),
        &[XenError::ENOENT, XenError::EINVAL],
    )
}

pub fn sched_command(_context: &mut Context) -> Outcome {
    for command in [99, u64::from(u32::MAX)] {
        expect_raw(
            "sched_op(unknown command)",
            sched_op_with_scratch(command),
            &[XenError::ENOSYS, XenError::EINVAL],
        )?;
    }
    Ok(())
}

/// Last: a hypervisor that wrongly obeys ends the run here.
pub fn shutdown_reason(_context: &mut Context) -> Outcome {
    expect_error(
        "SCHEDOP_shutdown(reason 99)",
        sched::shutdown_with_code(99),
        &[XenError::EINVAL],
    )
}

/// Moves shared_info to hundreds of far-apart guest frames (512 GiB
/// apart, each needing fresh nested tables): the hypervisor must stop
/// with -ENOMEM at the guest's allowance instead of allocating tables
/// without end. shared_info goes back where the other checks expect it.
pub fn physmap_scatter(context: &mut Context) -> Outcome {
    let pages = context.pages()?;
    let mut refused = None;
    let mut accepted = 0u64;
    for step in 1..=500u64 {
        // Frames from 512 GiB up are far beyond this guest's RAM and never
        // touched; only the mappings are asked for.
        let far = xen_guest::GuestFrame(step << 27);
        match guest_memory::add_to_physmap_at(MapSpace::SHARED_INFO, 0, far) {
            Ok(()) => accepted += 1,
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    ok(
        "add_to_physmap(shared_info) back in place",
        xen_guest::shared::map_shared_info(pages.shared_info),
    )?;
    match refused {
        Some(XenError::ENOMEM) => Ok(()),
        Some(other) => {
            fail!("after {accepted} scattered mappings: expected -ENOMEM, got {other:?}")
        }
        None => fail!("all {accepted} scattered mappings accepted: nested tables are not limited"),
    }
}
