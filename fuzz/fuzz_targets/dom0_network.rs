//! Fuzzes Dom0 on the network: its smoltcp interface (static address) with
//! the management API's sockets listening, fed hostile Ethernet frames from
//! the bridge mixed with a well-behaved client's TCP connections carrying
//! hostile bytes, with time passing. Nothing may panic, Dom0 never sends a
//! frame longer than Ethernet allows, and its answers stay bounded.
//!
//! Input: records of `[operation][argument][length][length bytes]`.
//! Operation % 8: 0-3 the bytes as a frame into Dom0 and `argument`
//! milliseconds passing; 4 a client connection opens; 5 the bytes are sent
//! on client connection `argument`; 6 that connection closes (aborts when
//! `argument` is odd); 7 `argument` times 100 milliseconds pass.
#![no_main]

use config::ApplianceConfig;
use dom0::api_service::ApiService;
use dom0::dom0_ip::Dom0Ip;
use libfuzzer_sys::fuzz_target;
use mgmt_api::fake::FakeBackend;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

const TOKEN: &str = "fuzz-token-0123456789abcdef0123456789";
/// An Ethernet frame without FCS.
const MAX_FRAME: usize = 1514;
const MAX_CLIENTS: usize = 8;

struct Network {
    dom0: Dom0Ip,
    api: ApiService,
    client: Dom0Ip,
    backend: FakeBackend,
    now: u64,
}

impl Network {
    /// Lets `milliseconds` pass in at most 20 steps; `frame` reaches Dom0
    /// in the first.
    fn run(&mut self, milliseconds: u64, mut frame: Option<&[u8]>) {
        let steps = milliseconds.clamp(1, 20);
        for _ in 0..steps {
            self.now += (milliseconds / steps).max(1);
            let now = Instant::from_millis(self.now as i64);
            if let Some(frame) = frame.take() {
                self.dom0.push_inbound([frame.to_vec()]);
            }
            self.dom0.poll(now);
            self.api
                .service(&mut self.dom0.sockets, self.now, &mut self.backend);
            self.dom0.poll(now);
            let out = self.dom0.take_outbound();
            assert!(out.iter().all(|frame| frame.len() <= MAX_FRAME));
            self.client.push_inbound(out);
            self.client.poll(now);
            let back = self.client.take_outbound();
            self.dom0.push_inbound(back);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dom0_config = ApplianceConfig::parse(&format!(
        "network = \"static\"\naddress = \"10.0.0.1/24\"\ngateway = \"10.0.0.254\"\napi_token = \"{TOKEN}\"\n"
    ))
    .expect("the fuzzer's appliance config parses");
    let client_config = ApplianceConfig::parse("network = \"static\"\naddress = \"10.0.0.2/24\"\n")
        .expect("the client's config parses");
    let start = Instant::from_millis(0);
    let mut dom0 = Dom0Ip::new(
        &dom0_config.network,
        [0x56, 0x54, 0, 0x12, 0x34, 0x56],
        7,
        start,
    );
    let api = ApiService::new(
        dom0_config.api.as_ref().expect("the API is configured"),
        &mut dom0.sockets,
    );
    let client = Dom0Ip::new(
        &client_config.network,
        [0x00, 0x16, 0x3e, 0, 0, 2],
        9,
        start,
    );
    let mut network = Network {
        dom0,
        api,
        client,
        backend: FakeBackend::new(),
        now: 0,
    };
    let mut clients: Vec<SocketHandle> = Vec::new();
    let mut next_port = 49152u16;
    let mut rest = data;
    while let [operation, argument, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (bytes, next) = tail.split_at(length);
        rest = next;
        let chosen = clients
            .get(usize::from(*argument) % clients.len().max(1))
            .copied();
        match operation % 8 {
            0..=3 => network.run(u64::from(*argument), Some(bytes)),
            4 if clients.len() < MAX_CLIENTS => {
                let socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 4096]),
                    tcp::SocketBuffer::new(vec![0; 4096]),
                );
                let handle = network.client.sockets.add(socket);
                next_port = next_port.wrapping_add(1).max(49152);
                let _ = network.client.connect(
                    handle,
                    (core::net::Ipv4Addr::new(10, 0, 0, 1), 8080),
                    next_port,
                );
                clients.push(handle);
                network.run(5, None);
            }
            5 => {
                if let Some(handle) = chosen {
                    let socket = network.client.sockets.get_mut::<tcp::Socket>(handle);
                    let _ = socket.send_slice(bytes);
                    // The client reads what came, like any client.
                    let mut sink = [0u8; 4096];
                    while socket.can_recv() {
                        if socket.recv_slice(&mut sink).unwrap_or(0) == 0 {
                            break;
                        }
                    }
                }
                network.run(5, None);
            }
            6 => {
                if let Some(handle) = chosen {
                    let socket = network.client.sockets.get_mut::<tcp::Socket>(handle);
                    if argument % 2 == 1 {
                        socket.abort();
                    } else {
                        socket.close();
                    }
                }
                network.run(5, None);
            }
            _ => network.run(u64::from(*argument) * 100, None),
        }
    }
    // Every timeout (idle, close grace, TCP's) passes.
    network.run(100_000, None);
});
