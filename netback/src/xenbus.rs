//! The vif's xenbus handshake (`netif.h`, Linux's `xen-netback/xenbus.c`):
//! the keys the back end advertises, the front end's keys read and checked
//! once, and the back end's state changes as actions for Dom0 to carry out
//! in xenstore.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::event_channel::Port;
use xenolith_abi::grant_table::GrantRef;

pub use xenolith_abi::xenbus::XenbusState;

/// What this back end offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendFeatures {
    /// `multi-queue-max-queues` (at least 1).
    pub max_queues: u16,
    /// `feature-split-event-channels`.
    pub split_event_channels: bool,
    /// `feature-gso-tcpv4` and `feature-gso-tcpv6`: the guest may send GSO
    /// packets.
    pub gso: bool,
}

impl Default for BackendFeatures {
    fn default() -> Self {
        Self {
            max_queues: 4,
            split_event_channels: true,
            gso: true,
        }
    }
}

impl BackendFeatures {
    /// The keys to write in the back end's directory before `InitWait`.
    pub fn advertised_keys(&self) -> Vec<(&'static str, String)> {
        let flag = |on: bool| String::from(if on { "1" } else { "0" });
        alloc::vec![
            ("feature-sg", flag(true)),
            ("feature-gso-tcpv4", flag(self.gso)),
            ("feature-gso-tcpv6", flag(self.gso)),
            ("feature-ipv6-csum-offload", flag(true)),
            ("feature-rx-copy", flag(true)),
            ("feature-rx-flip", flag(false)),
            (
                "feature-split-event-channels",
                flag(self.split_event_channels)
            ),
            (
                "multi-queue-max-queues",
                format!("{}", self.max_queues.max(1))
            ),
        ]
    }
}

/// Reads keys in the front end's directory (Dom0: xenstore reads of
/// `<frontend>/<key>`). `None` when the key does not exist.
pub trait FrontendKeys {
    /// The value of `<frontend>/<key>`.
    fn read(&self, key: &str) -> Option<String>;
}

/// One queue's rings and event channels, as the front end granted and
/// allocated them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueKeys {
    /// `tx-ring-ref`: the TX ring's page (one page).
    pub tx_ring_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ring_ref: GrantRef,
    /// The front end's event-channel ports (to bind interdomain).
    pub event_channels: EventChannels,
}

/// One channel for both rings, or one each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventChannels {
    /// `event-channel`.
    Shared(Port),
    /// `event-channel-tx` and `event-channel-rx`.
    Split {
        /// For TX notifications.
        tx: Port,
        /// For RX notifications.
        rx: Port,
    },
}

/// What the front end can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrontendFeatures {
    /// `feature-sg`: packets over several RX slots.
    pub scatter_gather: bool,
    /// `feature-gso-tcpv4`: TCPv4 GSO packets on RX.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: blank IPv4 checksums on RX.
    pub ipv4_checksum_offload: bool,
    /// `feature-ipv6-csum-offload`: blank IPv6 checksums on RX.
    pub ipv6_checksum_offload: bool,
    /// `feature-rx-notify`: the front end notifies when it posts RX
    /// requests (without it, Dom0 must poll a stalled RX ring).
    pub rx_notify: bool,
    /// `feature-multicast-control`.
    pub multicast_control: bool,
}

/// The front end's configuration, read once at connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// One entry per queue (`multi-queue-num-queues`, default 1).
    pub queues: Vec<QueueKeys>,
    /// What it can take.
    pub features: FrontendFeatures,
}

/// Why a front end's keys were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// A required key is absent.
    MissingKey(String),
    /// A key's value is not what it should be.
    InvalidValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `request-rx-copy` is absent or 0: flipping is not supported (Linux
    /// netback refuses such a front end too).
    RxCopyNotRequested,
    /// `multi-queue-num-queues` is 0 or above what the back end offered.
    BadQueueCount(u32),
    /// Split event channels used without being offered.
    SplitChannelsNotOffered,
}

fn read_number(keys: &impl FrontendKeys, key: &str) -> Result<Option<u32>, HandshakeError> {
    let Some(value) = keys.read(key) else {
        return Ok(None);
    };
    let trimmed = value.trim_end_matches('\0');
    // Decimal only, as xenbus_scanf("%u") would accept the common case.
    if trimmed.is_empty() || trimmed.len() > 10 || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError::InvalidValue {
            key: String::from(key),
            value,
        });
    }
    trimmed
        .parse::<u32>()
        .map(Some)
        .map_err(|_| HandshakeError::InvalidValue {
            key: String::from(key),
            value,
        })
}

fn read_flag(keys: &impl FrontendKeys, key: &str, default: bool) -> Result<bool, HandshakeError> {
    Ok(read_number(keys, key)?.map_or(default, |value| value != 0))
}

fn require(keys: &impl FrontendKeys, key: &str) -> Result<u32, HandshakeError> {
    read_number(keys, key)?.ok_or_else(|| HandshakeError::MissingKey(String::from(key)))
}

impl FrontendConfig {
    /// Reads and checks the front end's keys (`connect` in Linux's
    /// `xenbus.c`).
    pub fn read(
        keys: &impl FrontendKeys,
        offered: &BackendFeatures,
    ) -> Result<Self, HandshakeError> {
        if !read_flag(keys, "request-rx-copy", false)? {
            return Err(HandshakeError::RxCopyNotRequested);
        }
        let count = read_number(keys, "multi-queue-num-queues")?.unwrap_or(1);
        if count == 0 || count > u32::from(offered.max_queues.max(1)) {
            return Err(HandshakeError::BadQueueCount(count));
        }
        let mut queues = Vec::new();
        for index in 0..count {
            // A single queue's keys sit in the device directory itself.
            let prefix = if count == 1 {
                String::new()
            } else {
                format!("queue-{index}/")
            };
            let key = |name: &str| format!("{prefix}{name}");
            let tx_ring_ref = GrantRef(require(keys, &key("tx-ring-ref"))?);
            let rx_ring_ref = GrantRef(require(keys, &key("rx-ring-ref"))?);
            let event_channels = match read_number(keys, &key("event-channel"))? {
                Some(port) => EventChannels::Shared(Port(port)),
                None => {
                    let tx = require(keys, &key("event-channel-tx"))?;
                    let rx = require(keys, &key("event-channel-rx"))?;
                    if !offered.split_event_channels {
                        return Err(HandshakeError::SplitChannelsNotOffered);
                    }
                    EventChannels::Split {
                        tx: Port(tx),
                        rx: Port(rx),
                    }
                }
            };
            queues.push(QueueKeys {
                tx_ring_ref,
                rx_ring_ref,
                event_channels,
            });
        }
        let features = FrontendFeatures {
            scatter_gather: read_flag(keys, "feature-sg", false)?,
            gso_tcpv4: read_flag(keys, "feature-gso-tcpv4", false)?,
            gso_tcpv6: read_flag(keys, "feature-gso-tcpv6", false)?,
            ipv4_checksum_offload: !read_flag(keys, "feature-no-csum-offload", false)?,
            ipv6_checksum_offload: read_flag(keys, "feature-ipv6-csum-offload", false)?,
            rx_notify: read_flag(keys, "feature-rx-notify", false)?,
            multicast_control: read_flag(keys, "feature-multicast-control", false)?,
        };
        Ok(Self { queues, features })
    }
}

/// Something for Dom0 to do in xenstore or to the vif.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeAction {
    /// Write `<backend>/<key>`.
    WriteBackendKey {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Write `<backend>/state` (after the action that precedes it is done).
    SwitchState(XenbusState),
    /// Map each queue's rings, bind its event channels, and create the
    /// [`crate::Vif`].
    Connect(FrontendConfig),
    /// Drop the [`crate::Vif`]: unbind the event channels, unmap the rings.
    Disconnect,
    /// Write `error/backend/vif/<domid>/<devid>/error` (Linux's
    /// `xenbus_dev_fatal`).
    ReportError(String),
}

/// The back end's side of the handshake for one vif.
#[derive(Debug)]
pub struct Handshake {
    offered: BackendFeatures,
    state: XenbusState,
    connected: bool,
}

impl Handshake {
    /// A handshake offering `offered`; nothing is written until
    /// [`Handshake::probe`].
    pub fn new(offered: BackendFeatures) -> Self {
        Self {
            offered,
            state: XenbusState::Initialising,
            connected: false,
        }
    }

    /// The back end's current state.
    pub const fn state(&self) -> XenbusState {
        self.state
    }

    /// Whether the vif is connected.
    pub const fn is_connected(&self) -> bool {
        self.connected
    }

    /// What was offered.
    pub const fn offered(&self) -> &BackendFeatures {
        &self.offered
    }

    /// The back-end directory exists: advertise the features and wait.
    pub fn probe(&mut self) -> Vec<HandshakeAction> {
        let mut actions: Vec<HandshakeAction> = self
            .offered
            .advertised_keys()
            .into_iter()
            .map(|(key, value)| HandshakeAction::WriteBackendKey { key, value })
            .collect();
        actions.extend(self.switch(XenbusState::InitWait));
        actions
    }

    /// The front end's `state` changed (Dom0 watches it); `keys` reads its
    /// directory.
    pub fn frontend_changed(
        &mut self,
        frontend: XenbusState,
        keys: &impl FrontendKeys,
    ) -> Vec<HandshakeAction> {
        let mut actions = Vec::new();
        match frontend {
            XenbusState::Initialising => {
                // A front end starting over after we closed (module reload,
                // kexec): offer again.
                if self.state == XenbusState::Closed {
                    actions.extend(self.switch(XenbusState::InitWait));
                }
            }
            XenbusState::Initialised | XenbusState::Connected => {
                if self.connected {
                    return actions;
                }
                if self.state == XenbusState::Closed {
                    actions.extend(self.switch(XenbusState::InitWait));
                }
                if self.state != XenbusState::InitWait {
                    return actions;
                }
                match FrontendConfig::read(keys, &self.offered) {
                    Ok(config) => {
                        self.connected = true;
                        actions.push(HandshakeAction::Connect(config));
                        actions.extend(self.switch(XenbusState::Connected));
                    }
                    Err(error) => {
                        actions.push(HandshakeAction::ReportError(format!(
                            "reading front-end keys: {error:?}"
                        )));
                        actions.extend(self.switch(XenbusState::Closing));
                    }
                }
            }
            XenbusState::Closing => {
                actions.extend(self.disconnect());
                actions.extend(self.switch(XenbusState::Closing));
            }
            XenbusState::Closed | XenbusState::Unknown => {
                actions.extend(self.disconnect());
                actions.extend(self.switch(XenbusState::Closed));
            }
            XenbusState::InitWait | XenbusState::Reconfiguring | XenbusState::Reconfigured => {}
        }
        actions
    }

    /// The vif broke the protocol for good ([`crate::Vif`] asked to be
    /// disconnected): tear it down and close.
    pub fn fail(&mut self, reason: &str) -> Vec<HandshakeAction> {
        let mut actions: Vec<HandshakeAction> = self.disconnect().into_iter().collect();
        actions.push(HandshakeAction::ReportError(String::from(reason)));
        actions.extend(self.switch(XenbusState::Closing));
        actions
    }

    fn disconnect(&mut self) -> Option<HandshakeAction> {
        core::mem::take(&mut self.connected).then_some(HandshakeAction::Disconnect)
    }

    fn switch(&mut self, state: XenbusState) -> Option<HandshakeAction> {
        (self.state != state).then(|| {
            self.state = state;
            HandshakeAction::SwitchState(state)
        })
    }
}
