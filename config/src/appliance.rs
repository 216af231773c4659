//! Xenolith's own config: how Dom0 reaches the network, where it keeps
//! guest volumes, how the management API listens, which guests start at
//! boot and how much it logs. Same syntax as xl.cfg, so one parser and one
//! set of habits serve both.
//!
//! ```text
//! network = "static"            # "dhcp" (default) or "static"
//! address = "192.168.1.10/24"   # static only: Dom0's IPv4 address and prefix
//! gateway = "192.168.1.1"       # static only, optional: inside the subnet
//! storage_disk = "virtio0"      # placeholder: the disk holding the volume store
//! volume_store = "xenolith"     # placeholder: the volume store's label
//! api_port = 8080               # default 8080; needs api_token
//! api_token = "..."             # 32+ characters; the API is off without it
//! guests = [ "debian", "minimal" ]   # started at boot, in this order
//! log_level = "info"            # off, error, warn, info (default), debug, trace
//! ```
//!
//! Unknown keys are warnings, as for guests.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use crate::document::Document;
use crate::error::{Error, ErrorKind, Warning};
use crate::typed::{self, choice, non_empty_text, number, text, text_list};

/// The keys [`ApplianceConfig`] reads; others are warned about.
pub const APPLIANCE_KEYS: [&str; 9] = [
    "network",
    "address",
    "gateway",
    "storage_disk",
    "volume_store",
    "api_port",
    "api_token",
    "guests",
    "log_level",
];

/// The API port when `api_port` is absent.
pub const DEFAULT_API_PORT: u16 = 8080;

/// The volume store label when `volume_store` is absent.
pub const DEFAULT_VOLUME_STORE: &str = "xenolith";

/// Shortest API token: 32 characters (about 190 bits in base64).
pub const MIN_API_TOKEN_BYTES: usize = 32;

/// Longest API token.
pub const MAX_API_TOKEN_BYTES: usize = 256;

/// An IPv4 address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// Bits of network prefix, 1 to 32.
    pub prefix_length: u8,
}

impl Ipv4Cidr {
    /// Reads `a.b.c.d/n` with `n` in 1..=32.
    pub fn parse(text: &str) -> Option<Ipv4Cidr> {
        let (address, prefix_length) = text.split_once('/')?;
        let address = address.parse().ok()?;
        let valid_digits = !prefix_length.is_empty()
            && prefix_length.len() <= 2
            && prefix_length.chars().all(|digit| digit.is_ascii_digit());
        if !valid_digits {
            return None;
        }
        let prefix_length: u8 = prefix_length.parse().ok()?;
        if !(1..=32).contains(&prefix_length) {
            return None;
        }
        Some(Ipv4Cidr {
            address,
            prefix_length,
        })
    }

    /// The subnet mask.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_length))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `other` is in the same subnet.
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(self.address) & mask == u32::from(other) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.address, self.prefix_length)
    }
}

/// How Dom0 gets its own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkConfig {
    /// Ask a DHCP server.
    Dhcp,
    /// A fixed address.
    Static {
        /// Address and prefix.
        address: Ipv4Cidr,
        /// Default route, if any.
        gateway: Option<Ipv4Addr>,
    },
}

/// Where guest volumes live. Placeholder keys: the storage layer will
/// give them meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// The disk holding the volume store; `None` means the first one.
    pub disk: Option<String>,
    /// The volume store's label.
    pub volume_store: String,
}

/// The management API's secret. Its `Debug` output hides the value, so
/// logging a config does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token, for comparing against a request's.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiToken(<hidden>)")
    }
}

/// The management API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// TCP port.
    pub port: u16,
    /// The bearer token every request must carry.
    pub token: ApiToken,
}

/// How much Dom0 logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default.
    Info,
    /// Detail for debugging.
    Debug,
    /// Everything.
    Trace,
}

/// The appliance's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplianceConfig {
    /// Dom0's own network address.
    pub network: NetworkConfig,
    /// Volume storage.
    pub storage: StorageConfig,
    /// The API, or `None` when there is no token (the API is off).
    pub api: Option<ApiConfig>,
    /// Guests to start at boot, in order: config or module names.
    pub boot_guests: Vec<String>,
    /// Log level.
    pub log_level: LogLevel,
    /// Unknown keys and other things worth a look.
    pub warnings: Vec<Warning>,
}

impl ApplianceConfig {
    /// Parses config text.
    pub fn parse(text: &str) -> Result<ApplianceConfig, Error> {
        ApplianceConfig::from_document(&Document::parse(text)?)
    }

    /// Parses config bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<ApplianceConfig, Error> {
        ApplianceConfig::from_document(&Document::parse_bytes(bytes)?)
    }

    /// Reads the appliance keys out of a parsed document.
    pub fn from_document(document: &Document) -> Result<ApplianceConfig, Error> {
        let warnings = typed::warnings_with_unknown_keys(document, &APPLIANCE_KEYS);
        Ok(ApplianceConfig {
            network: network(document)?,
            storage: storage(document)?,
            api: api(document)?,
            boot_guests: boot_guests(document)?,
            log_level: choice(
                document,
                "log_level",
                &[
                    ("off", LogLevel::Off),
                    ("error", LogLevel::Error),
                    ("warn", LogLevel::Warn),
                    ("info", LogLevel::Info),
                    ("debug", LogLevel::Debug),
                    ("trace", LogLevel::Trace),
                ],
                "off, error, warn, info, debug, trace",
            )?
            .map_or(LogLevel::Info, |(level, _)| level),
            warnings,
        })
    }
}

fn network(document: &Document) -> Result<NetworkConfig, Error> {
    let is_static = choice(
        document,
        "network",
        &[("dhcp", false), ("static", true)],
        "dhcp, static",
    )?
    .is_some_and(|(is_static, _)| is_static);
    let address = text(document, "address")?;
    let gateway = text(document, "gateway")?;
    if !is_static {
        for (key, value) in [("address", address), ("gateway", gateway)] {
            if let Some((_, position)) = value {
                return Err(Error::at(position, ErrorKind::AddressWithDhcp { key }));
            }
        }
        return Ok(NetworkConfig::Dhcp);
    }
    let Some((address_text, address_position)) = address else {
        let position = document
            .get("network")
            .map(|setting| setting.value.span.start);
        return Err(Error {
            position,
            kind: ErrorKind::StaticWithoutAddress,
        });
    };
    let address = Ipv4Cidr::parse(address_text).ok_or_else(|| {
        Error::at(
            address_position,
            ErrorKind::InvalidAddress {
                key: "address",
                value: String::from(address_text),
            },
        )
    })?;
    let gateway = match gateway {
        Some((gateway_text, position)) => {
            let gateway: Ipv4Addr = gateway_text.parse().map_err(|_| {
                Error::at(
                    position,
                    ErrorKind::InvalidAddress {
                        key: "gateway",
                        value: String::from(gateway_text),
                    },
                )
            })?;
            if !address.contains(gateway) || gateway == address.address {
                return Err(Error::at(position, ErrorKind::GatewayNotInSubnet));
            }
            Some(gateway)
        }
        None => None,
    };
    Ok(NetworkConfig::Static { address, gateway })
}

fn storage_name(document: &Document, key: &'static str) -> Result<Option<String>, Error> {
    match non_empty_text(document, key)? {
        Some((name, position)) => {
            if !typed::is_plain_name(name, &[':']) {
                return Err(Error::at(position, ErrorKind::InvalidStorageName { key }));
            }
            Ok(Some(String::from(name)))
        }
        None => Ok(None),
    }
}

fn storage(document: &Document) -> Result<StorageConfig, Error> {
    Ok(StorageConfig {
        disk: storage_name(document, "storage_disk")?,
        volume_store: storage_name(document, "volume_store")?
            .unwrap_or_else(|| String::from(DEFAULT_VOLUME_STORE)),
    })
}

fn api(document: &Document) -> Result<Option<ApiConfig>, Error> {
    let port = number(document, "api_port", 1, u64::from(u16::MAX))?;
    let Some((token, position)) = text(document, "api_token")? else {
        return match port {
            Some((_, position)) => Err(Error::at(position, ErrorKind::ApiPortWithoutToken)),
            None => Ok(None),
        };
    };
    let invalid = |reason| Err(Error::at(position, ErrorKind::InvalidApiToken { reason }));
    if token.len() < MIN_API_TOKEN_BYTES {
        return invalid("it must be at least 32 characters (try `openssl rand -base64 32`)");
    }
    if token.len() > MAX_API_TOKEN_BYTES {
        return invalid("it must be at most 256 characters");
    }
    let safe = |character: char| {
        character.is_ascii_alphanumeric()
            || matches!(character, '-' | '.' | '_' | '~' | '+' | '/' | '=')
    };
    if !token.chars().all(safe) {
        return invalid("use letters, digits and - . _ ~ + / = only");
    }
    let port = port
        .and_then(|(port, _)| u16::try_from(port).ok())
        .unwrap_or(DEFAULT_API_PORT);
    Ok(Some(ApiConfig {
        port,
        token: ApiToken(String::from(token)),
    }))
}

fn boot_guests(document: &Document) -> Result<Vec<String>, Error> {
    let mut guests: Vec<String> = Vec::new();
    for (index, (name, position)) in text_list(document, "guests")?.into_iter().enumerate() {
        if !typed::is_plain_name(name, &[]) {
            return Err(Error::at(position, ErrorKind::InvalidGuestName { index }));
        }
        if guests.iter().any(|earlier| earlier == name) {
            return Err(Error::at(position, ErrorKind::DuplicateGuest { index }));
        }
        guests.push(String::from(name));
    }
    Ok(guests)
}
