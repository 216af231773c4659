//! Dom0 on the network: its own address (`dom0_ip`) on the bridge and the
//! management API (`api_service`) on it, driven once per pass of Dom0's
//! loop after the rings: frames the bridge sent Dom0 go to smoltcp, the
//! API answers, and what smoltcp sends goes back into the bridge.

use alloc::vec::Vec;

use config::{ApplianceConfig, NetworkConfig};
use log::{info, warn};

use dom0::api_service::{self, ApiService};
use dom0::dom0_ip::Dom0Ip;
use smoltcp::time::Instant;

use crate::api_backend::{GuestFile, ToolstackBackend};
use crate::toolstack::Toolstack;

/// Rounds of frames in, API, frames out per pass: a reply that leads to
/// another (ARP before TCP) goes out in the same pass, within a bound.
const ROUNDS: usize = 8;

/// Dom0's clock as smoltcp counts it.
fn now() -> Instant {
    let millis = crate::net_service::now().as_millis();
    Instant::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// What the shell's `info` shows of Dom0 on the network.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkStatus {
    /// Dom0's address, and whether DHCP leased it.
    pub address: Option<(smoltcp::wire::Ipv4Cidr, bool)>,
    /// The API's port, when it listens.
    pub api_port: Option<u16>,
}

/// Dom0's address and the API on it.
pub struct Dom0Network {
    ip: Dom0Ip,
    api: Option<ApiService>,
    files: Vec<GuestFile>,
}

impl Dom0Network {
    /// Puts Dom0 on the bridge as the appliance config says (DHCP without
    /// one) and listens for the API if it has a token. `None` without a
    /// NIC: there is no network to be on.
    pub fn start(
        appliance: Option<&ApplianceConfig>,
        files: Vec<GuestFile>,
        toolstack: &mut Toolstack,
    ) -> Option<Self> {
        let api_config = appliance.and_then(|config| config.api.as_ref());
        let Some(nic) = toolstack.nets.nic_mac() else {
            if api_config.is_some() {
                warn!("dom0: no NIC: Dom0 has no address and the management API is off");
            }
            return None;
        };
        let mac = dom0::virtio_net::dom0_mac_for(nic);
        if let Err(why) = toolstack.nets.attach_local(mac) {
            warn!("dom0: {why}: Dom0 has no address");
            return None;
        }
        let network = appliance.map_or(NetworkConfig::Dhcp, |config| config.network);
        let mut ip = Dom0Ip::new(&network, mac, baremetal::cpu::rdtsc(), now());
        let api = match api_config {
            Some(config) => {
                let api = ApiService::new(config, &mut ip.sockets);
                info!(
                    "dom0: management API on TCP port {} ({} connections at once)",
                    api.port(),
                    api_service::SOCKETS
                );
                Some(api)
            }
            None => {
                info!("dom0: management API off: the appliance config sets no api_token");
                None
            }
        };
        Some(Self { ip, api, files })
    }

    /// Dom0's address and the API's port, for the shell's `info`.
    pub fn status(&self) -> NetworkStatus {
        NetworkStatus {
            address: self.ip.address(),
            api_port: self.api.as_ref().map(ApiService::port),
        }
    }

    /// One pass: frames in, smoltcp, the API, frames out.
    pub fn service(&mut self, toolstack: &mut Toolstack) {
        let mut sent = false;
        for _ in 0..ROUNDS {
            let inbound = toolstack.nets.take_local_frames();
            let mut moved = !inbound.is_empty();
            self.ip.push_inbound(inbound);
            let now = now();
            moved |= self.ip.poll(now);
            if let Some(api) = &mut self.api {
                let mut backend = ToolstackBackend {
                    toolstack: &mut *toolstack,
                    files: &mut self.files,
                };
                let now_ms = u64::try_from(now.total_millis()).unwrap_or(0);
                if api.service(&mut self.ip.sockets, now_ms, &mut backend) {
                    moved = true;
                    // Sends what the API wrote.
                    self.ip.poll(now);
                }
            }
            let outbound = self.ip.take_outbound();
            moved |= !outbound.is_empty();
            for frame in outbound {
                sent = true;
                toolstack.nets.send_local(frame);
            }
            if !moved {
                break;
            }
        }
        if sent {
            toolstack.nets.deliver_pending(&mut toolstack.xenstore);
            toolstack.xenstore.service();
        }
    }

    /// Nanoseconds until smoltcp or the API has something to do without
    /// new input (`None`: nothing until input comes).
    pub fn wait_ns(&mut self) -> Option<u64> {
        let now = now();
        let smoltcp = self
            .ip
            .poll_delay(now)
            .map(|delay| delay.total_micros().saturating_mul(1000));
        let now_ms = u64::try_from(now.total_millis()).unwrap_or(0);
        let api = self
            .api
            .as_ref()
            .and_then(ApiService::next_deadline)
            .map(|deadline| deadline.saturating_sub(now_ms).saturating_mul(1_000_000));
        match (smoltcp, api) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
