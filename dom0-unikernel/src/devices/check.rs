//! `devcheck`: enumerate PCI, bring up the first virtio disk and NIC, and
//! show they work driven by interrupts — the disk with a queue-depth read
//! and write check (writes only on a disk whose first sector carries the
//! scratch marker), the NIC by asking QEMU's user network for the
//! gateway's and the DNS server's MAC addresses in one batch.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use dom0::start_info::StartInfo;
use dom0::virtio_blk::{self, Operation, SCRATCH_MARKER, SECTOR_SIZE};
use dom0::virtio_net::{Ipv4, Ipv4Display, MacDisplay, arp_request, parse_arp_reply};
use log::{error, info, warn};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, HeaderType, PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;

use super::block::{BlockDevice, Completion, Request};
use super::config::ConfigSpace;
use super::msix::MsixTransport;
use super::net::NetDevice;
use super::{BLOCK_VECTOR, NET_RECEIVE_VECTOR, NET_TRANSMIT_VECTOR, interrupts, wait_until};

/// Requests the disk check keeps in flight at once.
const DEPTH: usize = 64;
/// How long any one wait may take (TCG is slow, but not this slow).
const TIMEOUT_MS: u64 = 5_000;
/// QEMU's user network: the address it gives the guest, its gateway and
/// its DNS server.
const GUEST_IP: Ipv4 = [10, 0, 2, 15];
const GATEWAY_IP: Ipv4 = [10, 0, 2, 2];
const DNS_IP: Ipv4 = [10, 0, 2, 3];

/// Every function on the buses reachable from bus 0 (PCI-PCI bridges
/// followed, each bus once).
fn functions(
    root: &PciRoot<ConfigSpace>,
    config: &ConfigSpace,
) -> Vec<(DeviceFunction, Option<DeviceType>)> {
    let mut found = Vec::new();
    let mut buses = vec![0u8];
    let mut seen = [false; 256];
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[usize::from(bus)], true) {
            continue;
        }
        for (function, info) in root.enumerate_bus(bus) {
            if info.header_type == HeaderType::PciPciBridge {
                let secondary = (config.read_word(function, 0x18) >> 8) as u8;
                if secondary != 0 {
                    buses.push(secondary);
                }
            }
            found.push((function, virtio_device_type(&info)));
        }
    }
    found
}

/// Whether the fall back to configuration ports has been logged.
static PORTS_ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Every function found, with its virtio device type if it has one.
type Functions = Vec<(DeviceFunction, Option<DeviceType>)>;

/// The configuration mechanism (ECAM from the MCFG table if there is
/// one, else the ports) and every function.
fn enumerate(info: &StartInfo) -> (PciRoot<ConfigSpace>, ConfigSpace, Functions) {
    let memory = dom0::pci::MappedOnly {
        memory: &crate::IdentityMemory,
        regions: &info.memory,
    };
    let window = dom0::pci::find_ecam(&memory, info.rsdp)
        .inspect_err(|why| {
            // The disk and the NIC each enumerate: say it once a boot.
            if !PORTS_ANNOUNCED.swap(true, Ordering::Relaxed) {
                info!("dom0: pci: {why}; using the configuration ports");
            }
        })
        .ok();
    let config = ConfigSpace::choose(window);
    let root = PciRoot::new(config);
    let found = functions(&root, &config);
    (root, config, found)
}

/// Brings up the first virtio disk for guests to use, if there is one.
pub fn first_disk(info: &StartInfo) -> Option<BlockDevice> {
    let (mut root, mut config, found) = enumerate(info);
    let (function, _) = found
        .iter()
        .find(|(_, kind)| *kind == Some(DeviceType::Block))?;
    let transport = MsixTransport::new(&mut root, &mut config, *function, &[BLOCK_VECTOR], &[0])
        .inspect_err(|why| error!("dom0: virtio-blk at {function}: {why}"))
        .ok()?;
    BlockDevice::new(transport)
        .inspect_err(|why| error!("dom0: virtio-blk at {function}: {why}"))
        .ok()
}

/// Brings up the first virtio NIC for the guests' bridge, if there is one.
pub fn first_nic(info: &StartInfo) -> Option<NetDevice> {
    let (mut root, mut config, found) = enumerate(info);
    let (function, _) = found
        .iter()
        .find(|(_, kind)| *kind == Some(DeviceType::Network))?;
    let vectors = [NET_RECEIVE_VECTOR, NET_TRANSMIT_VECTOR];
    let transport = MsixTransport::new(&mut root, &mut config, *function, &vectors, &[0, 1])
        .inspect_err(|why| error!("dom0: virtio-net at {function}: {why}"))
        .ok()?;
    NetDevice::new(transport)
        .inspect_err(|why| error!("dom0: virtio-net at {function}: {why}"))
        .ok()
}

/// Runs the check and logs one line per device.
pub fn run(info: &StartInfo) {
    let (mut root, mut config, found) = enumerate(info);
    let virtio = found.iter().filter(|(_, kind)| kind.is_some()).count();
    info!(
        "dom0: pci: {} functions through {}, {virtio} virtio",
        found.len(),
        config.name()
    );
    let first = |wanted: DeviceType| {
        found
            .iter()
            .find(|(_, kind)| *kind == Some(wanted))
            .map(|(function, _)| *function)
    };
    match first(DeviceType::Block) {
        Some(function) => block_check(&mut root, &mut config, function),
        None => warn!("dom0: virtio-blk: no device"),
    }
    match first(DeviceType::Network) {
        Some(function) => net_check(&mut root, &mut config, function),
        None => warn!("dom0: virtio-net: no device"),
    }
}

fn block_check(
    root: &mut PciRoot<ConfigSpace>,
    config: &mut ConfigSpace,
    function: DeviceFunction,
) {
    let transport = match MsixTransport::new(root, config, function, &[BLOCK_VECTOR], &[0]) {
        Ok(transport) => transport,
        Err(why) => return error!("dom0: virtio-blk at {function}: {why}"),
    };
    let mut disk = match BlockDevice::new(transport) {
        Ok(disk) => disk,
        Err(why) => return error!("dom0: virtio-blk at {function}: {why}"),
    };
    match disk_check(&mut disk) {
        Ok(summary) => info!(
            "dom0: virtio-blk: {} sectors, {summary}, {} requests in flight, {} interrupts",
            disk.capacity(),
            disk.in_flight().1,
            interrupts(BLOCK_VECTOR)
        ),
        Err(why) => error!(
            "dom0: virtio-blk: check failed: {why} ({} sectors, {} interrupts)",
            disk.capacity(),
            interrupts(BLOCK_VECTOR)
        ),
    }
}

/// Submits `requests` all at once, then collects them by interrupt.
fn batch(disk: &mut BlockDevice, requests: Vec<Request>) -> Result<Vec<Completion>, &'static str> {
    let wanted = requests.len();
    for request in requests {
        disk.submit(request)
            .map_err(|(_, _)| "a request was refused")?;
    }
    disk.kick();
    let mut done = Vec::with_capacity(wanted);
    let finished = wait_until(TIMEOUT_MS, || {
        disk.complete(|completion| done.push(completion));
        done.len() == wanted
    });
    if !finished {
        return Err("requests did not complete within 5 s");
    }
    if done.iter().any(|completion| completion.result.is_err()) {
        return Err("the device failed a request");
    }
    done.sort_by_key(|completion| completion.tag);
    Ok(done)
}

fn sector_requests(operation: Operation, first: u64, count: usize) -> Vec<Request> {
    (0..count as u64)
        .map(|index| {
            let sector = first + index;
            let mut buffer = vec![0u8; SECTOR_SIZE];
            if operation == Operation::Write {
                virtio_blk::test_pattern(sector, &mut buffer);
            }
            Request {
                tag: index,
                operation,
                sector,
                buffer,
            }
        })
        .collect()
}

fn disk_check(disk: &mut BlockDevice) -> Result<&'static str, &'static str> {
    let first = batch(disk, sector_requests(Operation::Read, 0, 1))?;
    let scratch = first
        .first()
        .is_some_and(|sector| sector.buffer.starts_with(SCRATCH_MARKER));
    let count = (disk.capacity().saturating_sub(1)).min(DEPTH as u64) as usize;
    if !scratch || disk.read_only() || count < DEPTH {
        // Not ours to write: read a queue's depth of sectors instead.
        let reads = batch(disk, sector_requests(Operation::Read, 0, count.max(1)))?;
        if reads.first().map(|sector| &sector.buffer) != first.first().map(|sector| &sector.buffer)
        {
            return Err("sector 0 read back differently");
        }
        return Ok("read check passed (not a scratch disk: no writes)");
    }
    batch(disk, sector_requests(Operation::Write, 1, DEPTH))?;
    let flush = Request {
        tag: 0,
        operation: Operation::Flush,
        sector: 0,
        buffer: Vec::new(),
    };
    batch(disk, vec![flush])?;
    let reads = batch(disk, sector_requests(Operation::Read, 1, DEPTH))?;
    let mut expected = vec![0u8; SECTOR_SIZE];
    for read in &reads {
        virtio_blk::test_pattern(read.sector, &mut expected);
        if read.operation != Operation::Read || read.buffer != expected {
            return Err("a sector read back differently from what was written");
        }
    }
    Ok("read/write check passed")
}

fn net_check(root: &mut PciRoot<ConfigSpace>, config: &mut ConfigSpace, function: DeviceFunction) {
    let vectors = [NET_RECEIVE_VECTOR, NET_TRANSMIT_VECTOR];
    let transport = match MsixTransport::new(root, config, function, &vectors, &[0, 1]) {
        Ok(transport) => transport,
        Err(why) => return error!("dom0: virtio-net at {function}: {why}"),
    };
    let mut nic = match NetDevice::new(transport) {
        Ok(nic) => nic,
        Err(why) => return error!("dom0: virtio-net at {function}: {why}"),
    };
    let mac = nic.mac();
    let targets = [GATEWAY_IP, DNS_IP];
    for target in targets {
        if let Err(why) = nic.send(&arp_request(mac, GUEST_IP, target)) {
            return error!("dom0: virtio-net: sending ARP failed: {why}");
        }
    }
    let mut replies = Vec::new();
    let mut sent_back = 0;
    let answered = wait_until(TIMEOUT_MS, || {
        sent_back += nic.reclaim();
        nic.receive(|frame| {
            if let Some(reply) = parse_arp_reply(frame, mac)
                && !replies.contains(&reply)
            {
                replies.push(reply);
            }
        });
        sent_back == targets.len() && replies.len() == targets.len()
    });
    let gateway = replies.iter().find(|reply| reply.sender_ip == GATEWAY_IP);
    match gateway {
        Some(reply) if answered => info!(
            "dom0: virtio-net: mac {}, sent ARP, got reply from {} ({}), {} frames in, {} out in one batch, {} interrupts ({} receive, {} transmit), {} receive buffers posted",
            MacDisplay(mac),
            Ipv4Display(reply.sender_ip),
            MacDisplay(reply.sender_mac),
            nic.received,
            nic.sent,
            interrupts(NET_RECEIVE_VECTOR) + interrupts(NET_TRANSMIT_VECTOR),
            interrupts(NET_RECEIVE_VECTOR),
            interrupts(NET_TRANSMIT_VECTOR),
            nic.receive_slots()
        ),
        _ => error!(
            "dom0: virtio-net: mac {}, sent ARP, no reply within 5 s ({} replies, {} of {} sent, {} frames in, {} interrupts)",
            MacDisplay(mac),
            replies.len(),
            sent_back,
            targets.len(),
            nic.received,
            interrupts(NET_RECEIVE_VECTOR) + interrupts(NET_TRANSMIT_VECTOR)
        ),
    }
}
