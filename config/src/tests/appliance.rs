//! The appliance config key by key.

use core::net::Ipv4Addr;

use crate::{ApplianceConfig, Error, ErrorKind, Ipv4Cidr, LogLevel, NetworkConfig, WarningKind};

const TOKEN: &str = "0123456789abcdefghijABCDEFGHIJ-_";

fn appliance(text: &str) -> ApplianceConfig {
    ApplianceConfig::parse(text).unwrap_or_else(|error| panic!("{text}\n{error}"))
}

fn located(text: &str) -> (u32, u32, ErrorKind) {
    let error: Error = match ApplianceConfig::parse(text) {
        Ok(config) => panic!("{text}\naccepted: {config:?}"),
        Err(error) => error,
    };
    let position = error
        .position
        .unwrap_or_else(|| panic!("no position: {error}"));
    (position.line, position.column, error.kind)
}

#[test]
fn empty_config_has_defaults() {
    let config = appliance("");
    assert_eq!(config.network, NetworkConfig::Dhcp);
    assert_eq!(config.storage.disk, None);
    assert_eq!(config.storage.volume_store, "xenolith");
    assert_eq!(config.api, None);
    assert!(config.boot_guests.is_empty());
    assert_eq!(config.log_level, LogLevel::Info);
    assert!(config.warnings.is_empty());
    assert_eq!(appliance("network = 'dhcp'\n").network, NetworkConfig::Dhcp);
}

#[test]
fn static_network() {
    let config = appliance("network = 'static'\naddress = '10.1.2.3/16'\ngateway = '10.1.0.1'\n");
    assert_eq!(
        config.network,
        NetworkConfig::Static {
            address: Ipv4Cidr {
                address: Ipv4Addr::new(10, 1, 2, 3),
                prefix_length: 16
            },
            gateway: Some(Ipv4Addr::new(10, 1, 0, 1))
        }
    );
    let no_gateway = appliance("network = 'static'\naddress = '10.1.2.3/32'\n");
    assert!(matches!(
        no_gateway.network,
        NetworkConfig::Static { gateway: None, .. }
    ));
}

#[test]
fn network_errors() {
    assert_eq!(
        located("network = 'wifi'\n"),
        (
            1,
            11,
            ErrorKind::UnknownChoice {
                key: "network",
                value: "wifi".into(),
                allowed: "dhcp, static"
            }
        )
    );
    assert_eq!(
        located("log_level = 'info'\nnetwork = 'static'\n"),
        (2, 11, ErrorKind::StaticWithoutAddress)
    );
    assert_eq!(
        located("address = '10.0.0.2/24'\n"),
        (1, 11, ErrorKind::AddressWithDhcp { key: "address" })
    );
    assert_eq!(
        located("network = 'dhcp'\ngateway = '10.0.0.1'\n"),
        (2, 11, ErrorKind::AddressWithDhcp { key: "gateway" })
    );
    for bad in [
        "10.0.0.2",
        "10.0.0.2/0",
        "10.0.0.2/33",
        "10.0.0.2/024",
        "10.0.0.2/+4",
        "10.0.0/24",
        "fd00::2/64",
    ] {
        assert_eq!(
            located(&format!("network = 'static'\naddress = '{bad}'\n")),
            (
                2,
                11,
                ErrorKind::InvalidAddress {
                    key: "address",
                    value: bad.into()
                }
            ),
            "{bad}"
        );
    }
    let base = "network = 'static'\naddress = '10.0.0.2/24'\n";
    assert_eq!(
        located(&format!("{base}gateway = '10.0.0.1/24'\n")),
        (
            3,
            11,
            ErrorKind::InvalidAddress {
                key: "gateway",
                value: "10.0.0.1/24".into()
            }
        )
    );
    for outside in ["10.0.1.1", "10.0.0.2"] {
        assert_eq!(
            located(&format!("{base}gateway = '{outside}'\n")),
            (3, 11, ErrorKind::GatewayNotInSubnet),
            "{outside}"
        );
    }
}

#[test]
fn cidr_helpers() {
    let cidr = Ipv4Cidr::parse("192.168.1.10/24").unwrap();
    assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    assert!(cidr.contains(Ipv4Addr::new(192, 168, 1, 254)));
    assert!(!cidr.contains(Ipv4Addr::new(192, 168, 2, 1)));
    assert_eq!(cidr.to_string(), "192.168.1.10/24");
    assert_eq!(
        Ipv4Cidr::parse("1.2.3.4/32").unwrap().netmask(),
        Ipv4Addr::BROADCAST
    );
    assert_eq!(
        Ipv4Cidr::parse("1.2.3.4/1").unwrap().netmask(),
        Ipv4Addr::new(128, 0, 0, 0)
    );
}

#[test]
fn storage() {
    let config = appliance("storage_disk = 'virtio:1'\nvolume_store = 'pool-a'\n");
    assert_eq!(config.storage.disk.as_deref(), Some("virtio:1"));
    assert_eq!(config.storage.volume_store, "pool-a");
    assert_eq!(
        located("volume_store = 'a b'\n"),
        (
            1,
            16,
            ErrorKind::InvalidStorageName {
                key: "volume_store"
            }
        )
    );
    assert_eq!(
        located("storage_disk = ''\n"),
        (
            1,
            16,
            ErrorKind::EmptyValue {
                key: "storage_disk"
            }
        )
    );
}

#[test]
fn api() {
    let config = appliance(&format!("api_token = '{TOKEN}'\n"));
    let api = config.api.unwrap();
    assert_eq!(api.port, 8080);
    assert_eq!(api.token.as_str(), TOKEN);
    assert_eq!(format!("{:?}", api.token), "ApiToken(<hidden>)");
    assert!(!format!("{api:?}").contains(TOKEN));
    let config = appliance(&format!("api_port = 443\napi_token = \"{TOKEN}\"\n"));
    assert_eq!(config.api.unwrap().port, 443);
}

#[test]
fn api_errors() {
    assert_eq!(
        located("api_port = 8080\n"),
        (1, 12, ErrorKind::ApiPortWithoutToken)
    );
    for port in ["0", "65536"] {
        assert!(matches!(
            located(&format!("api_port = {port}\napi_token = '{TOKEN}'\n")).2,
            ErrorKind::OutOfRange {
                key: "api_port",
                ..
            }
        ));
    }
    let short = &TOKEN[1..];
    let long = "a".repeat(257);
    let spaced = format!("{} ", &TOKEN[1..]);
    for bad in [
        short,
        long.as_str(),
        spaced.as_str(),
        "0123456789abcdefghij0123456789\"ab",
    ] {
        let text = format!("api_token = '{}'\n", bad.replace('"', "\\\""));
        let (line, column, kind) = located(&text);
        assert_eq!((line, column), (1, 13), "{bad}");
        assert!(matches!(kind, ErrorKind::InvalidApiToken { .. }), "{bad}");
    }
}

#[test]
fn boot_guests() {
    let config = appliance("guests = [ 'debian', 'minimal.cfg', 'web_01' ]\n");
    assert_eq!(config.boot_guests, ["debian", "minimal.cfg", "web_01"]);
    assert_eq!(
        located("guests = 'debian'\n"),
        (1, 10, ErrorKind::ExpectedList { key: "guests" })
    );
    assert_eq!(
        located("guests = [ 'a',\n  'a' ]\n"),
        (2, 3, ErrorKind::DuplicateGuest { index: 1 })
    );
    assert_eq!(
        located("guests = [ 'a', '../etc' ]\n"),
        (1, 17, ErrorKind::InvalidGuestName { index: 1 })
    );
    assert_eq!(
        located("guests = [ '' ]\n"),
        (1, 12, ErrorKind::InvalidGuestName { index: 0 })
    );
}

#[test]
fn log_levels() {
    let levels = [
        ("off", LogLevel::Off),
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];
    for (word, level) in levels {
        assert_eq!(
            appliance(&format!("log_level = '{word}'\n")).log_level,
            level
        );
    }
    assert!(LogLevel::Error < LogLevel::Trace);
    assert!(matches!(
        located("log_level = 'loud'\n"),
        (
            1,
            13,
            ErrorKind::UnknownChoice {
                key: "log_level",
                ..
            }
        )
    ));
}

#[test]
fn unknown_keys_warn() {
    let config = appliance("hostname = 'box'\nlog_level = 'debug'\n");
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(
        config.warnings[0].kind,
        WarningKind::UnknownKey {
            key: "hostname".into()
        }
    );
    assert_eq!(config.warnings[0].position.unwrap().line, 1);
}
