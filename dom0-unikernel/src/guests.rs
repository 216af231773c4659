//! Starting guests from boot modules and looking after them until they
//! stop: Dom0's minimal domain builder (the full toolstack comes later).

use dom0::guest_builder::{self, GuestSpec, Source};
use dom0::start_info::StartInfo;
use log::{error, info};
use xenolith_abi::control as abi;
use xenolith_abi::cpuid::XEN_CPUID_BASE;

use crate::hypercall;

/// RAM each test guest gets.
const GUEST_MEMORY_KIB: u64 = 32 * 1024;

type Request = [u8; abi::REQUEST_SIZE];

fn request(cmd: u32, domain: u16) -> Request {
    let mut request = [0u8; abi::REQUEST_SIZE];
    request[0..4].copy_from_slice(&cmd.to_le_bytes());
    request[4..8].copy_from_slice(&abi::VERSION.to_le_bytes());
    request[8..10].copy_from_slice(&domain.to_le_bytes());
    request
}

fn put_u32(request: &mut Request, offset: usize, value: u32) {
    request[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(request: &mut Request, offset: usize, value: u64) {
    request[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn u32_at(request: &Request, offset: usize) -> u32 {
    u32::from_le_bytes([
        request[offset],
        request[offset + 1],
        request[offset + 2],
        request[offset + 3],
    ])
}

fn u64_at(request: &Request, offset: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&request[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

/// Free memory, in KiB.
pub fn free_kib() -> u64 {
    let mut physinfo = request(abi::PHYSINFO, 0);
    match hypercall::control(&mut physinfo) {
        Ok(()) => u64_at(&physinfo, 24) * 4,
        Err(_) => 0,
    }
}

fn simple(cmd: u32, domain: u16) -> Result<(), i64> {
    hypercall::control(&mut request(cmd, domain))
}

/// Creates a paused, empty test guest; returns its domain id.
pub fn create() -> Result<u16, i64> {
    create_with(GUEST_MEMORY_KIB)
}

/// Creates a paused, empty guest with `memory_kib` of RAM.
fn create_with(memory_kib: u64) -> Result<u16, i64> {
    let mut create = request(abi::CREATE, 0);
    put_u32(&mut create, 16, 1);
    put_u64(&mut create, 24, memory_kib);
    hypercall::control(&mut create)?;
    Ok(u16::from_le_bytes([create[8], create[9]]))
}

/// Loads `image` with `cmdline` into paused test guest `domain` and sets
/// its entry point.
pub fn load(domain: u16, image: &[u8], cmdline: &str) -> Result<(), i64> {
    build(
        domain,
        &GuestSpec {
            image,
            memory_kib: GUEST_MEMORY_KIB,
            vcpus: 1,
            cmdline,
            initrd: None,
        },
    )
}

/// Loads a guest as `spec` says into paused domain `domain` and sets its
/// entry point.
fn build(domain: u16, spec: &GuestSpec<'_>) -> Result<(), i64> {
    let (image, initrd) = (spec.image, spec.initrd.unwrap_or(&[]));
    let plan = guest_builder::plan(spec).map_err(|build_error| {
        error!("dom0: cannot build guest: {build_error}");
        -22
    })?;
    for copy in &plan.copies {
        let bytes = match copy.source {
            Source::Image { offset, length } => image.get(offset..offset + length).ok_or(-22)?,
            Source::Initrd { offset, length } => initrd.get(offset..offset + length).ok_or(-22)?,
            Source::StartInfo => &plan.start_info[..],
            Source::Acpi => &plan.acpi[..],
        };
        let mut write = request(abi::WRITE_MEMORY, domain);
        put_u64(&mut write, 16, copy.address);
        put_u32(&mut write, 24, bytes.len() as u32);
        put_u64(&mut write, 32, bytes.as_ptr() as u64);
        hypercall::control(&mut write)?;
    }
    let mut entry = request(abi::SET_VCPU_ENTRY, domain);
    put_u32(&mut entry, 16, 0);
    put_u64(&mut entry, 24, u64::from(plan.entry));
    put_u64(&mut entry, 32, plan.start_info_address);
    hypercall::control(&mut entry)
}

/// Builds and starts one guest; returns its domain id.
pub fn start(image: &[u8], cmdline: &str) -> Result<u16, i64> {
    let domain = create()?;
    let result = load(domain, image, cmdline).and_then(|()| simple(abi::UNPAUSE, domain));
    if let Err(code) = result {
        let _ = simple(abi::DESTROY, domain);
        return Err(code);
    }
    Ok(domain)
}

/// Starts two instances of `image` that talk to each other: Dom0 offers
/// the first an event channel to the second (as a toolstack does), and
/// tells each its peer and the port on its command line.
fn start_pair(image: &[u8]) -> Result<[u16; 2], i64> {
    let offer = create()?;
    let accept = match create() {
        Ok(domain) => domain,
        Err(code) => {
            let _ = simple(abi::DESTROY, offer);
            return Err(code);
        }
    };
    let result = (|| {
        let port = hypercall::alloc_unbound(offer, accept)?;
        let mut cmdline: arrayvec::ArrayString<64> = arrayvec::ArrayString::new();
        let _ = core::fmt::write(
            &mut cmdline,
            format_args!("role=offer peer={accept} port={port}"),
        );
        load(offer, image, &cmdline)?;
        cmdline.clear();
        let _ = core::fmt::write(
            &mut cmdline,
            format_args!("role=accept peer={offer} port={port}"),
        );
        load(accept, image, &cmdline)?;
        simple(abi::UNPAUSE, offer)?;
        simple(abi::UNPAUSE, accept)
    })();
    if let Err(code) = result {
        let _ = simple(abi::DESTROY, offer);
        let _ = simple(abi::DESTROY, accept);
        return Err(code);
    }
    info!("dom0: started domains {offer} and {accept} as a pair");
    Ok([offer, accept])
}

/// Why a domain stopped, from its info flags.
fn shutdown_reason(flags: u32) -> Option<&'static str> {
    if flags & (1 << 2) == 0 {
        return None;
    }
    Some(match (flags >> 16) & 0xff {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        _ => "unknown",
    })
}

/// Starts every boot module named `test-guest` and waits for them all to
/// stop, destroying each; then reports memory before and after.
pub fn run_test_guests(info: &StartInfo) {
    let events = crate::events::DomainEvents::new();
    let free_before = free_kib();
    let mut running: arrayvec::ArrayVec<u16, 16> = arrayvec::ArrayVec::new();
    for (index, module) in info.modules.iter().enumerate() {
        let mut words = module.cmdline.split_whitespace();
        let first = words.next();
        if first == Some("linux") {
            let line = module.cmdline.trim_start_matches("linux").trim();
            // SAFETY: modules lie in Dom0's RAM, reserved from its heap.
            let kernel = unsafe {
                core::slice::from_raw_parts(
                    module.range.start as usize as *const u8,
                    module.range.len() as usize,
                )
            };
            let initrd = info
                .modules
                .get(index + 1)
                .filter(|next| next.cmdline.as_str() == "linux-initrd")
                .map(|next| {
                    // SAFETY: as above.
                    unsafe {
                        core::slice::from_raw_parts(
                            next.range.start as usize as *const u8,
                            next.range.len() as usize,
                        )
                    }
                });
            match start_linux(kernel, line, initrd) {
                Ok(domain) => {
                    let _ = running.try_push(domain);
                }
                Err(code) => error!("dom0: starting Linux failed: error {code}"),
            }
            continue;
        }
        if first != Some("test-guest") {
            continue;
        }
        let cmdline = module.cmdline.trim_start_matches("test-guest").trim();
        let start = module.range.start as usize;
        // SAFETY: the hypervisor put the module in Dom0's RAM at this
        // address and size, and reserved it from Dom0's heap.
        let image =
            unsafe { core::slice::from_raw_parts(start as *const u8, module.range.len() as usize) };
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
        if let Some(domain) = start_guest(image, cmdline) {
            let _ = running.try_push(domain);
        }
    }
    if running.is_empty() {
        return;
    }
    while !running.is_empty() {
        running.retain(|domain| {
            let mut get = request(abi::GET_INFO, *domain);
            if hypercall::control(&mut get).is_err()
                || u16::from_le_bytes([get[8], get[9]]) != *domain
            {
                error!("dom0: domain {domain} vanished");
                return false;
            }
            let Some(reason) = shutdown_reason(u32_at(&get, 16)) else {
                return true;
            };
            info!("dom0: domain {domain} shut down ({reason}); destroying it");
            if let Err(code) = simple(abi::DESTROY, *domain) {
                error!("dom0: destroying domain {domain} failed: {code}");
            }
            false
        });
        if running.is_empty() {
            break;
        }
        // Sleep until the hypervisor says a domain stopped (VIRQ_DOM_EXC);
        // without the event channel, fall back to yielding.
        match &events {
            Some(events) => events.wait(),
            None => hypercall::yield_now(),
        }
    }
    info!(
        "dom0: all guests done; free memory {free_before} KiB before, {} KiB after",
        free_kib()
    );
}

fn start_guest(image: &[u8], cmdline: &str) -> Option<u16> {
    match start(image, cmdline) {
        Ok(domain) => {
            info!(
                "dom0: started domain {domain} ({} KiB image, command line {cmdline:?})",
                image.len() / 1024
            );
            Some(domain)
        }
        Err(code) => {
            error!("dom0: starting a guest failed: error {code}");
            None
        }
    }
}

/// Creates and destroys a paused guest `cycles` times, reporting free
/// memory before and after (a leak shows as a difference) and the mean
/// time one create+destroy pair took.
pub fn create_destroy_cycles(cycles: u32) {
    let before = free_kib();
    let started = baremetal::cpu::rdtsc();
    for cycle in 0..cycles {
        let mut create = request(abi::CREATE, 0);
        put_u32(&mut create, 16, 1);
        put_u64(&mut create, 24, GUEST_MEMORY_KIB);
        if let Err(code) = hypercall::control(&mut create) {
            error!("dom0: create {cycle} failed: {code}");
            return;
        }
        let domain = u16::from_le_bytes([create[8], create[9]]);
        if let Err(code) = simple(abi::DESTROY, domain) {
            error!("dom0: destroy of domain {domain} failed: {code}");
            return;
        }
    }
    let ticks = baremetal::cpu::rdtsc().wrapping_sub(started);
    info!(
        "dom0: {cycles} create/destroy cycles: free memory {before} KiB before, {} KiB after, {} us per create+destroy",
        free_kib(),
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
fn tsc_khz() -> u32 {
    baremetal::cpu::cpuid(XEN_CPUID_BASE + 3, 0)[2]
}

/// Maps two frames of a fresh guest into Dom0, writes them, unmaps, maps
/// again and reads back: foreign mappings reach the guest's own memory.
pub fn foreign_mapping_check() {
    const PATTERN: u64 = 0x5865_6e6f_6c69_7468; // "Xenolith"
    let before = free_kib();
    let result = (|| -> Result<(), &'static str> {
        let domain = create().map_err(|_| "create failed")?;
        let outcome = (|| {
            let mut addresses = [0u64; 2];
            map_frames(domain, 0x10, &mut addresses).map_err(|_| "map failed")?;
            for (index, address) in addresses.iter().enumerate() {
                // SAFETY: the hypervisor just mapped this guest frame into
                // Dom0 at this (identity, below 4 GiB) address.
                unsafe { core::ptr::write_volatile(*address as *mut u64, PATTERN + index as u64) };
            }
            unmap_frames(domain, 0x10, 2).map_err(|_| "unmap failed")?;
            let mut again = [0u64; 2];
            map_frames(domain, 0x10, &mut again).map_err(|_| "second map failed")?;
            for (index, address) in again.iter().enumerate() {
                // SAFETY: as above.
                let value = unsafe { core::ptr::read_volatile(*address as *const u64) };
                if value != PATTERN + index as u64 {
                    return Err("read back a different value");
                }
            }
            Ok(())
        })();
        simple(abi::DESTROY, domain).map_err(|_| "destroy failed")?;
        outcome
    })();
    match result {
        // Nested-table pages made for the mappings stay with Dom0 for reuse,
        // so free memory may be a page or two lower afterwards.
        Ok(()) => info!(
            "dom0: foreign mapping check passed ({before} KiB free before, {} KiB after)",
            free_kib()
        ),
        Err(why) => error!("dom0: foreign mapping check failed: {why}"),
    }
}

fn map_frames(domain: u16, gfn: u64, addresses: &mut [u64]) -> Result<(), i64> {
    let mut map = request(abi::MAP_FRAMES, domain);
    put_u64(&mut map, 16, gfn);
    put_u32(&mut map, 24, addresses.len() as u32);
    put_u64(&mut map, 32, addresses.as_mut_ptr() as u64);
    hypercall::control(&mut map)
}

fn unmap_frames(domain: u16, gfn: u64, count: u32) -> Result<(), i64> {
    let mut unmap = request(abi::UNMAP_FRAMES, domain);
    put_u64(&mut unmap, 16, gfn);
    put_u32(&mut unmap, 24, count);
    hypercall::control(&mut unmap)
}

/// Most RAM a Linux guest may ask for on its module line, in MiB.
const LINUX_MEMORY_MAX_MIB: u64 = 4096;

/// Starts a Linux kernel (a distro bzImage or an ELF vmlinux) from boot
/// modules: the module line is `linux [memory=MiB] KERNEL ARGS...`, and
/// the next module named `linux-initrd`, if any, is its initrd.
fn start_linux(kernel: &[u8], line: &str, initrd: Option<&[u8]>) -> Result<u16, i64> {
    let mut memory_mib = 256;
    let mut args = line;
    if let Some(rest) = line.strip_prefix("memory=") {
        let (value, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        memory_mib = value
            .parse()
            .ok()
            .filter(|mib| (64..=LINUX_MEMORY_MAX_MIB).contains(mib))
            .ok_or(-22)?;
        args = tail.trim();
    }
    let started = baremetal::cpu::rdtsc();
    let vmlinux =
        pvh::bzimage::vmlinux(kernel, pvh::bzimage::SUGGESTED_LIMIT).map_err(|error| {
            error!("dom0: the Linux image is unusable: {error:?}");
            -22
        })?;
    let khz =
        u64::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1));
    info!(
        "dom0: Linux image {} KiB -> vmlinux {} KiB in {} ms",
        kernel.len() / 1024,
        vmlinux.len() / 1024,
        baremetal::cpu::rdtsc().wrapping_sub(started) / khz
    );
    let memory_kib = memory_mib * 1024;
    let domain = create_with(memory_kib)?;
    let spec = GuestSpec {
        image: &vmlinux,
        memory_kib,
        vcpus: 1,
        cmdline: args,
        initrd,
    };
    let result = build(domain, &spec).and_then(|()| simple(abi::UNPAUSE, domain));
    if let Err(code) = result {
        let _ = simple(abi::DESTROY, domain);
        return Err(code);
    }
    info!("dom0: started Linux as domain {domain} ({memory_mib} MiB, command line {args:?})");
    Ok(domain)
}
