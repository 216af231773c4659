//! Xenbus states (`io/xenbus.h`) and the front-end keys the back end reads
//! at connect time: rings per queue, ring order, event channels, protocol.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

use crate::config::Config;
use crate::error::ConnectError;
use crate::interfaces::Xenstore;

pub use xenolith_abi::xenbus::XenbusState;

/// One queue's ring as the front end described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueKeys {
    /// `ring-ref` or `ring-ref0..N-1`.
    pub ring_grants: Vec<GrantRef>,
    /// `event-channel`.
    pub event_channel: Port,
}

/// What the front end wrote before Initialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendKeys {
    /// `ring-page-order` (0 when absent).
    pub ring_page_order: u32,
    /// One entry per queue (`multi-queue-num-queues`, 1 when absent).
    pub queues: Vec<QueueKeys>,
}

fn read_number(
    store: &mut impl Xenstore,
    path: &str,
    key: &'static str,
) -> Result<Option<u32>, ConnectError> {
    match store.read(path) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| ConnectError::BadFrontendKey { key }),
    }
}

impl FrontendKeys {
    /// Reads and checks the front end's keys against what `config` offered.
    /// Only `x86_64-abi` (or no `protocol` key: native) is accepted.
    pub fn read(store: &mut impl Xenstore, config: &Config) -> Result<Self, ConnectError> {
        let frontend = &config.frontend_path;
        if let Some(protocol) = store.read(&format!("{frontend}/protocol"))
            && protocol.trim_end_matches('\0') != "x86_64-abi"
        {
            return Err(ConnectError::UnsupportedProtocol);
        }
        let queue_count = read_number(
            store,
            &format!("{frontend}/multi-queue-num-queues"),
            "multi-queue-num-queues",
        )?
        .unwrap_or(1);
        if queue_count == 0 || queue_count > config.max_queues {
            return Err(ConnectError::BadQueueCount {
                queues: queue_count,
                maximum: config.max_queues,
            });
        }
        let order_key = read_number(
            store,
            &format!("{frontend}/ring-page-order"),
            "ring-page-order",
        )?;
        let ring_page_order = order_key.unwrap_or(0);
        if ring_page_order > config.max_ring_page_order {
            return Err(ConnectError::RingOrderTooLarge {
                order: ring_page_order,
                maximum: config.max_ring_page_order,
            });
        }
        let mut queues = Vec::new();
        for queue in 0..queue_count {
            let base: String = if queue_count == 1 {
                frontend.clone()
            } else {
                format!("{frontend}/queue-{queue}")
            };
            let mut ring_grants = Vec::new();
            if order_key.is_none() {
                let grant = read_number(store, &format!("{base}/ring-ref"), "ring-ref")?
                    .ok_or(ConnectError::BadFrontendKey { key: "ring-ref" })?;
                ring_grants.push(GrantRef(grant));
            } else {
                for page in 0..(1u32 << ring_page_order) {
                    let numbered =
                        read_number(store, &format!("{base}/ring-ref{page}"), "ring-ref%u")?;
                    // Order 0 written with the single-page key is tolerated.
                    let grant = match (numbered, page) {
                        (Some(grant), _) => grant,
                        (None, 0) if ring_page_order == 0 => {
                            read_number(store, &format!("{base}/ring-ref"), "ring-ref")?
                                .ok_or(ConnectError::BadFrontendKey { key: "ring-ref" })?
                        }
                        (None, _) => {
                            return Err(ConnectError::BadFrontendKey { key: "ring-ref%u" });
                        }
                    };
                    ring_grants.push(GrantRef(grant));
                }
            }
            let event_channel =
                read_number(store, &format!("{base}/event-channel"), "event-channel")?.ok_or(
                    ConnectError::BadFrontendKey {
                        key: "event-channel",
                    },
                )?;
            queues.push(QueueKeys {
                ring_grants,
                event_channel: Port(event_channel),
            });
        }
        Ok(Self {
            ring_page_order,
            queues,
        })
    }
}
