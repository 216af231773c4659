//! One `vif` entry: a guest network interface, written as comma-separated
//! `key=value` options, as in xl's `parse_nic_config` (xl-network-configuration(5)).
//!
//! ```text
//! vif = [ "mac=00:16:3e:01:02:03, bridge=xenbr0, ip=10.0.0.2" ]
//! ```
//!
//! Options: `mac`, `bridge`, `ip` (space-separated addresses), `model`,
//! `type` (`vif` | `ioemu`), `vifname`, `backend`, `mtu`, `devid`. Options
//! xl knows that Xenolith does not use (`script`, `rate`, `gatewaydev`,
//! `netdev`, `accel`, `forwarddev`, `colo_*`) are kept in
//! [`Vif::ignored`] and warned about; anything else is an error, as in xl.
//! An empty entry (`""`) is a vif with every default.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use crate::error::Shown;
use crate::identifiers::MacAddress;
use crate::lexer::parse_number;

/// How the guest sees the interface (HVM only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VifType {
    /// Paravirtual only (`type=vif`).
    Vif,
    /// Paravirtual plus an emulated NIC (`type=ioemu`).
    Ioemu,
}

/// A guest network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vif {
    /// `mac=`; when absent the toolstack picks one.
    pub mac: Option<MacAddress>,
    /// `bridge=`: the bridge the backend joins.
    pub bridge: Option<String>,
    /// `ip=`: addresses the guest may use.
    pub ip: Vec<IpAddr>,
    /// `model=`: the emulated NIC model (HVM).
    pub model: Option<String>,
    /// `type=`.
    pub vif_type: Option<VifType>,
    /// `vifname=`: the backend interface's name.
    pub vifname: Option<String>,
    /// `backend=`: the backend domain's name.
    pub backend: Option<String>,
    /// `mtu=`.
    pub mtu: Option<u16>,
    /// `devid=`: the device number in xenstore.
    pub devid: Option<u32>,
    /// Options xl knows that Xenolith ignores, as written.
    pub ignored: Vec<String>,
}

/// Why a `vif` entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifFault {
    /// An option not of the form `key=value`.
    NotKeyValue {
        /// The option as written.
        option: String,
    },
    /// A key xl does not know.
    UnknownOption {
        /// The key.
        key: String,
    },
    /// `key=` with nothing after it.
    EmptyValue {
        /// The key.
        key: &'static str,
    },
    /// `mac=` that is not six hex pairs.
    InvalidMac,
    /// `mac=` with the group bit set.
    MulticastMac,
    /// An `ip=` address that does not parse.
    InvalidIp,
    /// `type=` other than `vif` or `ioemu`.
    InvalidType,
    /// `mtu=` that is not a number in 68..=65535.
    InvalidMtu,
    /// `devid=` that is not a 32-bit number.
    InvalidDevid,
}

impl fmt::Display for VifFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifFault::NotKeyValue { option } => {
                write!(formatter, "option `{}` is not key=value", Shown(option))
            }
            VifFault::UnknownOption { key } => write!(
                formatter,
                "unknown option `{}` (known: mac, bridge, ip, model, type, vifname, backend, mtu, devid)",
                Shown(key)
            ),
            VifFault::EmptyValue { key } => write!(formatter, "`{key}=` has no value"),
            VifFault::InvalidMac => {
                formatter.write_str("mac must be six hex pairs such as 00:16:3e:01:02:03")
            }
            VifFault::MulticastMac => formatter
                .write_str("mac has the multicast bit set (first byte odd); use a unicast address"),
            VifFault::InvalidIp => {
                formatter.write_str("ip must be IPv4 or IPv6 addresses separated by spaces")
            }
            VifFault::InvalidType => formatter.write_str("type must be vif or ioemu"),
            VifFault::InvalidMtu => formatter.write_str("mtu must be a number from 68 to 65535"),
            VifFault::InvalidDevid => formatter.write_str("devid must be a number below 2^32"),
        }
    }
}

/// xl's vif options that Xenolith accepts and ignores.
const IGNORED_OPTIONS: [&str; 6] = [
    "script",
    "rate",
    "gatewaydev",
    "netdev",
    "accel",
    "forwarddev",
];

impl Vif {
    /// Parses one `vif` list entry.
    pub fn parse(spec: &str) -> Result<Vif, VifFault> {
        let mut vif = Vif::default();
        // xl splits with strtok, so empty options between commas vanish.
        for option in spec
            .split(',')
            .map(str::trim)
            .filter(|option| !option.is_empty())
        {
            let Some((key, value)) = option.split_once('=') else {
                return Err(VifFault::NotKeyValue {
                    option: String::from(option),
                });
            };
            vif.apply(key, value, option)?;
        }
        Ok(vif)
    }

    fn apply(&mut self, key: &str, value: &str, option: &str) -> Result<(), VifFault> {
        let text = |name: &'static str| {
            if value.is_empty() {
                Err(VifFault::EmptyValue { key: name })
            } else {
                Ok(Some(String::from(value)))
            }
        };
        match key {
            "mac" => {
                let mac = MacAddress::parse(value).ok_or(VifFault::InvalidMac)?;
                if mac.is_multicast() {
                    return Err(VifFault::MulticastMac);
                }
                self.mac = Some(mac);
            }
            "bridge" => self.bridge = text("bridge")?,
            "model" => self.model = text("model")?,
            "vifname" => self.vifname = text("vifname")?,
            "backend" => self.backend = text("backend")?,
            "ip" => {
                let addresses: Result<Vec<IpAddr>, _> =
                    value.split_ascii_whitespace().map(str::parse).collect();
                let addresses = addresses.map_err(|_| VifFault::InvalidIp)?;
                if addresses.is_empty() {
                    return Err(VifFault::EmptyValue { key: "ip" });
                }
                self.ip = addresses;
            }
            "type" => {
                self.vif_type = Some(match value {
                    "vif" => VifType::Vif,
                    "ioemu" => VifType::Ioemu,
                    _ => return Err(VifFault::InvalidType),
                });
            }
            "mtu" => {
                let mtu = parse_number(value)
                    .ok()
                    .filter(|mtu| (68..=65535).contains(mtu))
                    .and_then(|mtu| u16::try_from(mtu).ok())
                    .ok_or(VifFault::InvalidMtu)?;
                self.mtu = Some(mtu);
            }
            "devid" => {
                let devid = parse_number(value)
                    .ok()
                    .and_then(|devid| u32::try_from(devid).ok())
                    .ok_or(VifFault::InvalidDevid)?;
                self.devid = Some(devid);
            }
            _ if IGNORED_OPTIONS.contains(&key) || key.starts_with("colo_") => {
                self.ignored.push(String::from(option));
            }
            _ => {
                return Err(VifFault::UnknownOption {
                    key: String::from(key),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn every_option() {
        let vif = Vif::parse(
            "mac=00:16:3e:01:02:03, bridge=xenbr0, ip=10.0.0.2 fd00::2, model=e1000, \
             type=ioemu, vifname=vif-web, backend=dom0, mtu=9000, devid=3",
        )
        .unwrap();
        assert_eq!(vif.mac.unwrap().to_string(), "00:16:3e:01:02:03");
        assert_eq!(vif.bridge.as_deref(), Some("xenbr0"));
        assert_eq!(
            vif.ip,
            [
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))
            ]
        );
        assert_eq!(vif.model.as_deref(), Some("e1000"));
        assert_eq!(vif.vif_type, Some(VifType::Ioemu));
        assert_eq!(vif.vifname.as_deref(), Some("vif-web"));
        assert_eq!(vif.backend.as_deref(), Some("dom0"));
        assert_eq!(vif.mtu, Some(9000));
        assert_eq!(vif.devid, Some(3));
        assert!(vif.ignored.is_empty());
    }

    #[test]
    fn empty_entry_is_all_defaults() {
        assert_eq!(Vif::parse("").unwrap(), Vif::default());
        assert_eq!(Vif::parse(" , ,").unwrap(), Vif::default());
        assert_eq!(Vif::parse("type=vif").unwrap().vif_type, Some(VifType::Vif));
    }

    #[test]
    fn later_option_wins_as_in_xl() {
        assert_eq!(
            Vif::parse("bridge=a,bridge=b").unwrap().bridge.as_deref(),
            Some("b")
        );
    }

    #[test]
    fn ignored_options_are_kept() {
        let vif = Vif::parse("script=vif-bridge,rate=10Mb/s,colo_forwarddev=x").unwrap();
        assert_eq!(
            vif.ignored,
            ["script=vif-bridge", "rate=10Mb/s", "colo_forwarddev=x"]
        );
    }

    #[test]
    fn faults() {
        let cases: [(&str, VifFault); 13] = [
            (
                "bridge",
                VifFault::NotKeyValue {
                    option: "bridge".to_string(),
                },
            ),
            (
                "colour=red",
                VifFault::UnknownOption {
                    key: "colour".to_string(),
                },
            ),
            ("bridge=", VifFault::EmptyValue { key: "bridge" }),
            ("ip=", VifFault::EmptyValue { key: "ip" }),
            ("mac=00:16:3e:01:02", VifFault::InvalidMac),
            ("mac=03:16:3e:01:02:03", VifFault::MulticastMac),
            ("ip=10.0.0.300", VifFault::InvalidIp),
            ("ip=10.0.0.0/24", VifFault::InvalidIp),
            ("type=pv", VifFault::InvalidType),
            ("mtu=67", VifFault::InvalidMtu),
            ("mtu=65536", VifFault::InvalidMtu),
            ("devid=4294967296", VifFault::InvalidDevid),
            ("devid=x", VifFault::InvalidDevid),
        ];
        for (spec, fault) in cases {
            assert_eq!(Vif::parse(spec), Err(fault), "{spec}");
        }
    }

    #[test]
    fn fault_messages_name_the_problem() {
        assert!(VifFault::InvalidMac.to_string().contains("00:16:3e"));
        assert!(
            VifFault::UnknownOption {
                key: "x".to_string()
            }
            .to_string()
            .contains("bridge")
        );
    }
}
