//! The self-checking test guests (boot modules named `test-guest`):
//! started, waited for and destroyed before Dom0's services start, plus
//! the create/destroy and foreign-mapping checks. Real guests go through
//! the toolstack.

use alloc::format;
use alloc::string::String;

use dom0::create_error::CreateError;
use dom0::guest_builder::{self, BuildPlan, GuestSpec, KernelImage, Source};
use dom0::start_info::{Module, StartInfo};
use log::{error, info};
use xenolith_abi::cpuid::XEN_CPUID_BASE;
use xenolith_abi::domain::DomainId;

use crate::control::{self, Errno};
use crate::events::EventHub;
use crate::hypercall;

/// RAM each test guest gets.
const GUEST_MEMORY_KIB: u64 = 32 * 1024;

/// The bytes of a boot module.
pub fn module_bytes(module: &Module) -> &'static [u8] {
    // SAFETY: the hypervisor put the module in Dom0's RAM at this address
    // and size and reserved it from Dom0's heap; nothing writes it.
    unsafe {
        core::slice::from_raw_parts(
            module.range.start as usize as *const u8,
            module.range.len() as usize,
        )
    }
}

/// Loads a guest as `spec` says into paused domain `domain` and sets its
/// entry point; returns the plan (for its special pages).
pub fn build(domain: DomainId, spec: &GuestSpec<'_>) -> Result<BuildPlan, CreateError> {
    let plan = guest_builder::plan(spec).map_err(CreateError::from_build)?;
    let mut scratch = alloc::vec::Vec::new();
    for copy in &plan.copies {
        load_piece(domain, spec, &plan, copy, &mut scratch)?;
    }
    set_entry(domain, &plan)?;
    Ok(plan)
}

/// Copies one piece of the plan (at most 1 MiB) into the guest; `scratch`
/// holds a cached run's decoded bytes.
pub fn load_piece(
    domain: DomainId,
    spec: &GuestSpec<'_>,
    plan: &BuildPlan,
    copy: &guest_builder::Copy,
    scratch: &mut alloc::vec::Vec<u8>,
) -> Result<(), CreateError> {
    let initrd = spec.initrd.unwrap_or(&[]);
    // A copy the plan names but its source lacks: the plan is wrong, not
    // the guest.
    let misplanned = || CreateError::Internal(String::from("the build plan names missing bytes"));
    let bytes = match (copy.source, spec.kernel) {
        (Source::Image { offset, length }, KernelImage::Elf(image))
        | (Source::Image { offset, length }, KernelImage::BzImage(image)) => {
            image.get(offset..offset + length).ok_or_else(misplanned)?
        }
        (Source::CachedRun(index), KernelImage::Cached(kernel)) => {
            let run = kernel.runs().get(index).ok_or_else(misplanned)?;
            scratch.resize(run.length, 0);
            run.decompress(scratch).map_err(|corrupt| {
                CreateError::Internal(format!(
                    "the kernel cache is corrupt at {:#x}",
                    corrupt.address
                ))
            })?
        }
        (Source::Initrd { offset, length }, _) => {
            initrd.get(offset..offset + length).ok_or_else(misplanned)?
        }
        (Source::StartInfo, _) => &plan.start_info[..],
        (Source::Acpi, _) => &plan.acpi[..],
        (Source::ResetVector, _) => &pvh::acpi::RESET_VECTOR[..],
        _ => return Err(misplanned()),
    };
    write_nonzero(domain, copy.address, bytes).map_err(|errno| {
        CreateError::hypervisor(
            format!("writing guest memory at {:#x}", copy.address),
            errno,
        )
    })
}

/// Sets vCPU 0's entry point once every piece is loaded.
pub fn set_entry(domain: DomainId, plan: &BuildPlan) -> Result<(), CreateError> {
    control::set_vcpu_entry(domain, 0, u64::from(plan.entry), plan.start_info_address)
        .map_err(|errno| CreateError::hypervisor("setting the entry point", errno))
}

/// Copies `bytes` to guest-physical `address`, skipping whole zero pages:
/// a fresh domain's RAM is zero already, and half of a distro vmlinux is
/// (its .bss and alignment padding).
fn write_nonzero(domain: DomainId, address: u64, bytes: &[u8]) -> Result<(), Errno> {
    const PAGE: usize = 4096;
    let mut run_start: Option<usize> = None;
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + PAGE).min(bytes.len());
        let zero = bytes[offset..end].iter().all(|&byte| byte == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(offset),
            (true, Some(start)) => {
                control::write_memory(domain, address + start as u64, &bytes[start..offset])?;
                run_start = None;
            }
            _ => {}
        }
        offset = end;
    }
    if let Some(start) = run_start {
        control::write_memory(domain, address + start as u64, &bytes[start..])?;
    }
    Ok(())
}

fn load(domain: DomainId, image: &[u8], cmdline: &str) -> Result<(), Errno> {
    let spec = GuestSpec {
        kernel: KernelImage::Elf(image),
        memory_kib: GUEST_MEMORY_KIB,
        vcpus: 1,
        cmdline,
        initrd: None,
    };
    build(domain, &spec).map(drop).map_err(|why| {
        error!("dom0: cannot build test guest: {why}");
        why.errno()
    })
}

/// Builds and starts one test guest; returns its domain id.
fn start(image: &[u8], cmdline: &str) -> Result<DomainId, Errno> {
    let domain = control::create(1, GUEST_MEMORY_KIB)?;
    let result = load(domain, image, cmdline).and_then(|()| control::unpause(domain));
    if let Err(code) = result {
        let _ = control::destroy(domain);
        return Err(code);
    }
    Ok(domain)
}

/// Starts two instances of `image` that talk to each other: Dom0 offers
/// the first an event channel to the second (as a toolstack does), and
/// tells each its peer and the port on its command line.
fn start_pair(image: &[u8]) -> Result<[DomainId; 2], Errno> {
    let offer = control::create(1, GUEST_MEMORY_KIB)?;
    let accept = match control::create(1, GUEST_MEMORY_KIB) {
        Ok(domain) => domain,
        Err(code) => {
            let _ = control::destroy(offer);
            return Err(code);
        }
    };
    let result = (|| {
        let port = hypercall::alloc_unbound(offer.0, accept.0)?;
        let mut cmdline: arrayvec::ArrayString<64> = arrayvec::ArrayString::new();
        let _ = core::fmt::write(
            &mut cmdline,
            format_args!("role=offer peer={} port={port}", accept.0),
        );
        load(offer, image, &cmdline)?;
        cmdline.clear();
        let _ = core::fmt::write(
            &mut cmdline,
            format_args!("role=accept peer={} port={port}", offer.0),
        );
        load(accept, image, &cmdline)?;
        control::unpause(offer)?;
        control::unpause(accept)
    })();
    if let Err(code) = result {
        let _ = control::destroy(offer);
        let _ = control::destroy(accept);
        return Err(code);
    }
    info!(
        "dom0: started domains {} and {} as a pair",
        offer.0, accept.0
    );
    Ok([offer, accept])
}

/// Starts every boot module named `test-guest` and waits for them all to
/// stop, destroying each; then reports memory before and after.
pub fn run_test_guests(info: &StartInfo, events: Option<&EventHub>) {
    let free_before = control::free_kib();
    let mut running: arrayvec::ArrayVec<DomainId, 16> = arrayvec::ArrayVec::new();
    for module in &info.modules {
        let Some(cmdline) = module.cmdline.strip_prefix("test-guest") else {
            continue;
        };
        if !(cmdline.is_empty() || cmdline.starts_with(' ')) {
            continue;
        }
        let cmdline = cmdline.trim();
        let image = module_bytes(module);
        if cmdline == "pair" {
            match start_pair(image) {
                Ok(pair) => {
                    for domain in pair {
                        let _ = running.try_push(domain);
                    }
                }
                Err(code) => error!("dom0: starting a guest pair failed: error {code}"),
            }
            continue;
        }
        match start(image, cmdline) {
            Ok(domain) => {
                info!(
                    "dom0: started domain {} ({} KiB image, command line {cmdline:?})",
                    domain.0,
                    image.len() / 1024
                );
                let _ = running.try_push(domain);
            }
            Err(code) => error!("dom0: starting a guest failed: error {code}"),
        }
    }
    if running.is_empty() {
        return;
    }
    while !running.is_empty() {
        running.retain(|domain| {
            let Ok(state) = control::info(*domain) else {
                error!("dom0: domain {} vanished", domain.0);
                return false;
            };
            let Some(reason) = state.stopped() else {
                return true;
            };
            info!(
                "dom0: domain {} shut down ({}); destroying it",
                domain.0,
                reason.name()
            );
            if let Err(code) = control::destroy(*domain) {
                error!("dom0: destroying domain {} failed: {code}", domain.0);
            }
            false
        });
        if running.is_empty() {
            break;
        }
        // Sleep until the hypervisor says a domain stopped (VIRQ_DOM_EXC);
        // without the event channel, fall back to yielding.
        match events {
            Some(events) => events.wait_domain_exception(),
            None => hypercall::yield_now(),
        }
    }
    info!(
        "dom0: all guests done; free memory {free_before} KiB before, {} KiB after",
        control::free_kib()
    );
}

/// Creates and destroys a paused guest `cycles` times, reporting free
/// memory before and after (a leak shows as a difference) and the mean
/// time one create+destroy pair took.
pub fn create_destroy_cycles(cycles: u32) {
    let before = control::free_kib();
    let started = baremetal::cpu::rdtsc();
    for cycle in 0..cycles {
        let domain = match control::create(1, GUEST_MEMORY_KIB) {
            Ok(domain) => domain,
            Err(code) => {
                error!("dom0: create {cycle} failed: {code}");
                return;
            }
        };
        if let Err(code) = control::destroy(domain) {
            error!("dom0: destroy of domain {} failed: {code}", domain.0);
            return;
        }
    }
    let ticks = baremetal::cpu::rdtsc().wrapping_sub(started);
    info!(
        "dom0: {cycles} create/destroy cycles: free memory {before} KiB before, {} KiB after, {} us per create+destroy",
        control::free_kib(),
        microseconds_each(ticks, cycles, tsc_khz())
    );
}

/// The mean of `count` operations that took `ticks` TSC ticks in all, in
/// microseconds (0 when the TSC rate is unknown or nothing was counted).
fn microseconds_each(ticks: u64, count: u32, tsc_khz: u32) -> u64 {
    let divisor = u128::from(tsc_khz) * u128::from(count);
    if divisor == 0 {
        return 0;
    }
    (u128::from(ticks) * 1_000 / divisor).min(u128::from(u64::MAX)) as u64
}

/// The TSC frequency from the Xen CPUID leaf base+3 (sub-leaf 0, ECX).
pub fn tsc_khz() -> u32 {
    baremetal::cpu::cpuid(XEN_CPUID_BASE + 3, 0)[2]
}

/// Milliseconds since `started` (a TSC reading).
pub fn milliseconds_since(started: u64) -> u64 {
    baremetal::cpu::rdtsc().wrapping_sub(started) / u64::from(tsc_khz().max(1))
}

/// Maps two frames of a fresh guest into Dom0, writes them, unmaps, maps
/// again and reads back: foreign mappings reach the guest's own memory.
pub fn foreign_mapping_check() {
    const PATTERN: u64 = 0x5865_6e6f_6c69_7468; // "Xenolith"
    let before = control::free_kib();
    let result = (|| -> Result<(), &'static str> {
        let domain = control::create(1, GUEST_MEMORY_KIB).map_err(|_| "create failed")?;
        let outcome = (|| {
            let mut addresses = [0u64; 2];
            control::map_frames(domain, 0x10, &mut addresses).map_err(|_| "map failed")?;
            for (index, address) in addresses.iter().enumerate() {
                // SAFETY: the hypervisor just mapped this guest frame into
                // Dom0 at this (identity, below 4 GiB) address.
                unsafe { core::ptr::write_volatile(*address as *mut u64, PATTERN + index as u64) };
            }
            control::unmap_frames(domain, 0x10, 2).map_err(|_| "unmap failed")?;
            let mut again = [0u64; 2];
            control::map_frames(domain, 0x10, &mut again).map_err(|_| "second map failed")?;
            for (index, address) in again.iter().enumerate() {
                // SAFETY: as above.
                let value = unsafe { core::ptr::read_volatile(*address as *const u64) };
                if value != PATTERN + index as u64 {
                    return Err("read back a different value");
                }
            }
            Ok(())
        })();
        control::destroy(domain).map_err(|_| "destroy failed")?;
        outcome
    })();
    match result {
        // Nested-table pages made for the mappings stay with Dom0 for reuse,
        // so free memory may be a page or two lower afterwards.
        Ok(()) => info!(
            "dom0: foreign mapping check passed ({before} KiB free before, {} KiB after)",
            control::free_kib()
        ),
        Err(why) => error!("dom0: foreign mapping check failed: {why}"),
    }
}
