//! Xenolith's configuration files: guest configs in xl.cfg(5) syntax and
//! the appliance's own config in the same syntax.
//!
//! Parsing is two steps, as in smoltcp: [`Document::parse`] turns text into
//! ordered `key = value` settings with spans (strings, numbers, lists), and
//! [`DomainConfig::from_document`] or [`ApplianceConfig::from_document`]
//! reads typed values out of it. Errors print as `line:column: message`;
//! unknown keys become warnings, not errors.
//!
//! ```
//! let guest = config::DomainConfig::parse(
//!     "name = 'web'\ntype = 'pvh'\nkernel = 'vmlinuz'\nmemory = 512\n",
//! )
//! .unwrap();
//! assert_eq!(guest.memory.0, 512);
//! ```
//!
//! Every input is bounded (see [`limits`]) and no input panics: the unit
//! tests mutate the samples in `examples/` thousands of times and the fuzz
//! target `xl_config` runs [`invariants::check_all`] on whatever it finds.
//! See `README.md` for the syntax and where it departs from xl.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod appliance;
pub mod disk;
pub mod document;
pub mod domain;
pub mod error;
pub mod identifiers;
pub mod invariants;
mod lexer;
pub mod limits;
pub mod position;
mod typed;
pub mod vif;

#[cfg(test)]
mod tests;

pub use appliance::{
    ApiConfig, ApiToken, ApplianceConfig, Ipv4Cidr, LogLevel, NetworkConfig, StorageConfig,
};
pub use disk::{Disk, DiskAccess, DiskFault, DiskFormat};
pub use document::{Document, Number, Setting, Value, ValueKind};
pub use domain::{DomainConfig, GuestType, ShutdownAction};
pub use error::{Error, ErrorKind, Found, NumberFault, Warning, WarningKind};
pub use identifiers::{MacAddress, Mebibytes, Uuid};
pub use position::{Position, Span};
pub use vif::{Vif, VifFault, VifType};
