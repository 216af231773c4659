//! Dom0's own IPv4 address: a smoltcp interface on its own port of the
//! bridge (`xenbr0`), like a Linux bridge's own interface. The address is
//! leased by DHCP or fixed by the appliance config; smoltcp answers ARP and
//! ping, and carries the management API's TCP (`api_service`).
//!
//! Frames cross between the bridge and smoltcp through two bounded queues
//! ([`FrameQueue`]): the bridge fills the inbound one, smoltcp's
//! transmissions wait in the outbound one until Dom0's loop hands them to
//! the bridge. Time comes in on every call (Dom0's TSC clock; a test's
//! own), so the whole stack runs on the host in tests.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use config::NetworkConfig;
use log::{info, warn};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Frames smoltcp may have waiting for the bridge; it holds back more.
const OUTBOUND_FRAMES: usize = 64;
/// Frames from the bridge waiting for smoltcp; older ones go first.
const INBOUND_FRAMES: usize = 128;
/// An Ethernet frame without FCS, as the NIC and the vifs carry them.
const MAX_FRAME_BYTES: usize = 1514;

/// smoltcp's device: frames queued between the bridge and the interface.
#[derive(Default)]
struct FrameQueue {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
}

struct Inbound(Vec<u8>);

impl RxToken for Inbound {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

struct Outbound<'a>(&'a mut Vec<Vec<u8>>);

impl TxToken for Outbound<'_> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; length];
        let result = f(&mut frame);
        self.0.push(frame);
        result
    }
}

impl Device for FrameQueue {
    type RxToken<'a>
        = Inbound
    where
        Self: 'a;
    type TxToken<'a>
        = Outbound<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Inbound, Outbound<'_>)> {
        let frame = self.inbound.pop_front()?;
        Some((Inbound(frame), Outbound(&mut self.outbound)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Outbound<'_>> {
        (self.outbound.len() < OUTBOUND_FRAMES).then_some(Outbound(&mut self.outbound))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME_BYTES;
        capabilities
    }
}

/// Dom0's interface, its sockets and how it got its address.
pub struct Dom0Ip {
    interface: Interface,
    device: FrameQueue,
    /// Every socket on Dom0's address (DHCP's and the API's).
    pub sockets: SocketSet<'static>,
    /// The DHCP client, when the address is leased.
    dhcp: Option<SocketHandle>,
    /// The address in use, if any.
    address: Option<Ipv4Cidr>,
    mac: [u8; 6],
    /// Frames dropped because smoltcp had not caught up.
    inbound_drops: u64,
    /// Leases taken so far.
    lease_changes: u64,
}

/// The first few events of a kind, then the powers of two.
fn worth_logging(count: u64) -> bool {
    count <= 4 || count.is_power_of_two()
}

impl Dom0Ip {
    /// An interface with MAC `mac`: a static address at once, or a DHCP
    /// client asking for one. `random_seed` seeds TCP's initial sequence
    /// numbers and DHCP's transaction ids.
    pub fn new(network: &NetworkConfig, mac: [u8; 6], random_seed: u64, now: Instant) -> Self {
        let mut device = FrameQueue::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = random_seed;
        let interface = Interface::new(config, &mut device, now);
        let mut dom0_ip = Self {
            interface,
            device,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            address: None,
            mac,
            inbound_drops: 0,
            lease_changes: 0,
        };
        match *network {
            NetworkConfig::Dhcp => {
                dom0_ip.dhcp = Some(dom0_ip.sockets.add(dhcpv4::Socket::new()));
                info!("dom0: asking DHCP for an address ({})", dom0_ip.mac_text());
            }
            NetworkConfig::Static { address, gateway } => {
                let cidr = Ipv4Cidr::new(address.address, address.prefix_length);
                dom0_ip.configure(cidr, gateway);
                match gateway {
                    Some(gateway) => {
                        info!("dom0: address {cidr} static, gateway {gateway}")
                    }
                    None => info!("dom0: address {cidr} static"),
                }
            }
        }
        dom0_ip
    }

    /// The address in use, if any, and whether DHCP leased it.
    pub fn address(&self) -> Option<(Ipv4Cidr, bool)> {
        self.address.map(|address| (address, self.dhcp.is_some()))
    }

    fn mac_text(&self) -> MacText {
        MacText(self.mac)
    }

    fn configure(&mut self, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.interface.update_ip_addrs(|addresses| {
            addresses.clear();
            let _ = addresses.push(IpCidr::Ipv4(cidr));
        });
        let routes = self.interface.routes_mut();
        match gateway {
            Some(gateway) => {
                let _ = routes.add_default_ipv4_route(gateway);
            }
            None => {
                let _ = routes.remove_default_ipv4_route();
            }
        }
        self.address = Some(cidr);
    }

    fn deconfigure(&mut self) {
        self.interface
            .update_ip_addrs(|addresses| addresses.clear());
        let _ = self.interface.routes_mut().remove_default_ipv4_route();
        self.address = None;
    }

    /// Connects TCP socket `handle` to `remote` from `local_port` (Dom0
    /// itself only listens; the host tests' and fuzzer's clients connect).
    pub fn connect(
        &mut self,
        handle: SocketHandle,
        remote: (Ipv4Address, u16),
        local_port: u16,
    ) -> Result<(), smoltcp::socket::tcp::ConnectError> {
        let context = self.interface.context();
        self.sockets
            .get_mut::<smoltcp::socket::tcp::Socket>(handle)
            .connect(context, remote, local_port)
    }

    /// Takes frames the bridge sent Dom0's port.
    pub fn push_inbound(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        for frame in frames {
            if self.device.inbound.len() >= INBOUND_FRAMES {
                self.device.inbound.pop_front();
                self.inbound_drops += 1;
                if worth_logging(self.inbound_drops) {
                    warn!(
                        "dom0: {} frames for Dom0 dropped: it fell behind",
                        self.inbound_drops
                    );
                }
            }
            self.device.inbound.push_back(frame);
        }
    }

    /// The frames smoltcp sent, for the bridge.
    pub fn take_outbound(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.device.outbound)
    }

    /// Lets smoltcp process what arrived and send what is due, then
    /// follows the DHCP client. True if a socket may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let changed = self
            .interface
            .poll(now, &mut self.device, &mut self.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        let Some(handle) = self.dhcp else {
            return changed;
        };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            Some(dhcpv4::Event::Configured(config)) => Some(Some((config.address, config.router))),
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        match event {
            Some(Some((address, router))) => {
                self.configure(address, router);
                self.lease_changes = self.lease_changes.saturating_add(1);
                // Any host on the bridge, a guest too, may answer DHCP: a
                // flapping lease is logged sparingly.
                if worth_logging(self.lease_changes) {
                    match router {
                        Some(router) => {
                            info!("dom0: address {address} via dhcp, gateway {router}")
                        }
                        None => info!("dom0: address {address} via dhcp"),
                    }
                }
                true
            }
            Some(None) => {
                if let Some(address) = self.address
                    && worth_logging(self.lease_changes)
                {
                    warn!("dom0: the DHCP lease of {address} ended; asking again");
                }
                self.deconfigure();
                true
            }
            None => changed,
        }
    }

    /// How long until smoltcp has something to do without new frames
    /// (`None`: nothing until one arrives).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.interface.poll_delay(now, &self.sockets)
    }
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
struct MacText([u8; 6]);

impl fmt::Display for MacText {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, f] = self.0;
        write!(formatter, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}
