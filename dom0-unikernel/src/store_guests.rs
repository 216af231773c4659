//! Guests from the appliance disk: every `config` volume of the store is an
//! xl.cfg file (the one named [`APPLIANCE_CONFIG`] is the appliance
//! config instead), and its `kernel` and `ramdisk` values name `kernel`
//! and `initrd` volumes of the same store. So an appliance disk made with
//! `xenolith-img` alone boots its guests, with no boot modules.
//!
//! Memory: a config is read only up to [`MAX_CONFIG_BYTES`]; each kernel
//! or initrd volume a config names is read once, straight from the store
//! into one buffer of its size (reserved fallibly, so a volume too big
//! for Dom0's heap is an error, not an allocation failure), and kept for
//! restarts as a boot module would be. Volumes no config names are never
//! read.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use config::{ApplianceConfig, DomainConfig};
use log::{error, info, warn};
use storage::store::VolumeKind;

use crate::boot_guests::{error_in, warning_in};
use crate::toolstack::{GuestDefinition, Toolstack};
use crate::volumes::SharedStore;

/// The config volume holding the appliance config (its `guests` list says
/// which guests start at boot).
pub const APPLIANCE_CONFIG: &str = "appliance";
/// The most bytes of a config volume read (xl.cfg files are small).
const MAX_CONFIG_BYTES: u64 = 64 << 10;
/// Bytes read from the disk at a time.
const CHUNK: usize = 256 << 10;

/// What the store defines: guests (definition indices, in the store's
/// order), its appliance config, if it has one, and the kernel and initrd
/// volumes read for them (by name, for later creates).
pub struct StoreGuests {
    pub defined: Vec<usize>,
    pub appliance: Option<ApplianceConfig>,
    pub files: Vec<(String, &'static [u8])>,
}

/// Defines a guest for each config volume of the appliance disk's store.
/// Errors are logged and counted as failed starts; the other guests go on.
pub fn define(toolstack: &mut Toolstack) -> StoreGuests {
    let mut found = StoreGuests {
        defined: Vec::new(),
        appliance: None,
        files: Vec::new(),
    };
    let Some(store) = toolstack.blocks.store() else {
        return found;
    };
    let configs: Vec<String> = store
        .borrow()
        .volumes()
        .iter()
        .filter(|volume| volume.kind == VolumeKind::Config)
        .map(|volume| volume.name.as_str().to_string())
        .collect();
    // Kernel and initrd volumes read so far, by name.
    let mut files: BTreeMap<String, &'static [u8]> = BTreeMap::new();
    for name in configs {
        let source = format!("volume {name}");
        let text = match read_volume(&store, &name, VolumeKind::Config, MAX_CONFIG_BYTES) {
            Ok(text) => text,
            Err(why) => {
                error!("dom0: {source}: {why}");
                toolstack.outcomes.failed += 1;
                continue;
            }
        };
        if name == APPLIANCE_CONFIG {
            match ApplianceConfig::parse_bytes(&text) {
                Ok(config) => {
                    for warning in &config.warnings {
                        warn!("dom0: {}", warning_in(&source, warning));
                    }
                    found.appliance = Some(config);
                }
                Err(error) => error!("dom0: {}", error_in(&source, &error)),
            }
            continue;
        }
        match definition(&store, &name, &source, &text, &mut files) {
            Ok(definition) => {
                if toolstack.find_definition(&definition.name).is_some() {
                    error!(
                        "dom0: {source}: a guest named {:?} is defined already; not defined again",
                        definition.name
                    );
                    toolstack.outcomes.failed += 1;
                    continue;
                }
                info!(
                    "dom0: {source}: guest {} (kernel and ramdisk from the store)",
                    definition.name
                );
                found.defined.push(toolstack.define(definition));
            }
            Err(why) => {
                error!("dom0: {why}");
                toolstack.outcomes.failed += 1;
            }
        }
    }
    found.files = files.into_iter().collect();
    found
}

/// Reads kernel or initrd volume `name` for a guest defined later (the
/// API's create), kept for good as a boot module would be.
pub fn read_file(
    store: &SharedStore,
    name: &str,
    kind: VolumeKind,
) -> Result<&'static [u8], String> {
    read_volume(store, name, kind, u64::MAX).map(|bytes| &*bytes.leak())
}

/// A definition from config volume `name`, its files read from the store.
fn definition(
    store: &SharedStore,
    name: &str,
    source: &str,
    text: &[u8],
    files: &mut BTreeMap<String, &'static [u8]>,
) -> Result<GuestDefinition, String> {
    let config = DomainConfig::parse_bytes(text).map_err(|error| error_in(source, &error))?;
    for warning in &config.warnings {
        warn!("dom0: {}", warning_in(source, warning));
    }
    // Read what the config names before resolving (the resolver cannot
    // fail with a reason of its own).
    let mut failure = None;
    for (value, kind) in [
        (config.kernel.as_deref(), VolumeKind::Kernel),
        (config.ramdisk.as_deref(), VolumeKind::Initrd),
    ] {
        let Some(value) = value else { continue };
        if files.contains_key(value) {
            continue;
        }
        match read_volume(store, value, kind, u64::MAX) {
            Ok(bytes) => {
                files.insert(value.to_string(), bytes.leak());
            }
            Err(why) => {
                failure.get_or_insert(format!("{source}: {why}"));
            }
        }
    }
    if let Some(why) = failure {
        return Err(why);
    }
    GuestDefinition::from_config(name, &config, |value| files.get(value).copied())
        .map_err(|why| format!("{source}: {why}"))
}

/// Reads volume `name`, which must be of `kind` and at most `limit` bytes.
fn read_volume(
    store: &SharedStore,
    name: &str,
    kind: VolumeKind,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let mut store = store.borrow_mut();
    let (id, found, size) = {
        let volume = store
            .lookup(name)
            .map_err(|_| format!("no volume {name:?} in the store"))?;
        (volume.id, volume.kind, volume.size)
    };
    if found != kind {
        return Err(format!("volume {name:?} is a {found:?}, not a {kind:?}"));
    }
    if size > limit {
        return Err(format!(
            "volume {name:?} is {size} bytes; at most {limit} are read"
        ));
    }
    let length = usize::try_from(size).map_err(|_| format!("volume {name:?} is too big"))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(length)
        .map_err(|_| format!("volume {name:?} ({size} bytes) does not fit in Dom0's memory"))?;
    bytes.resize(length, 0);
    let mut done = 0;
    while done < length {
        let count = (length - done).min(CHUNK);
        store
            .read_at(id, done as u64, &mut bytes[done..done + count])
            .map_err(|error| format!("reading volume {name:?} failed: {error}"))?;
        done += count;
    }
    Ok(bytes)
}
