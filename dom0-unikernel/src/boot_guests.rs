//! Guests from boot modules: `guest-config NAME` modules carry xl.cfg
//! files, each followed by `guest-file VALUE` modules for the `kernel` and
//! `ramdisk` values it names; `linux [memory=MiB] ARGS` (with an optional
//! `linux-initrd` after it) is a shorthand for a Linux guest. The config
//! volumes of the appliance disk's store define more (`store_guests`). An
//! `appliance-config` module's `guests` list (else the store's appliance
//! config's) says which to start at boot; without one, every guest
//! defined starts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use config::{ApplianceConfig, DomainConfig, ShutdownAction, Warning};
use dom0::start_info::{Module, StartInfo};
use log::{error, warn};

use crate::api_backend::GuestFile;
use crate::guests::module_bytes;
use crate::toolstack::{GuestDefinition, Toolstack};

/// Memory of a `linux` guest unless its line says otherwise, in MiB.
const LINUX_DEFAULT_MIB: u64 = 256;

/// The first word of a module's command line, and the rest.
fn split(module: &Module) -> (&str, &str) {
    let line = module.cmdline.as_str().trim_start();
    match line.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (line, ""),
    }
}

/// What the boot modules say beyond the guests they define.
pub struct BootPlan {
    /// The definitions to start now, in order.
    pub start: Vec<usize>,
    /// The `appliance-config` module's settings, if one parsed.
    pub appliance: Option<ApplianceConfig>,
    /// Every `guest-file` module by name (the first of equal names), then
    /// the store's kernel and initrd volumes read at boot, for configs that
    /// arrive later (the API's creates).
    pub files: Vec<GuestFile>,
}

/// Defines every guest the boot modules describe; returns the
/// definitions to start now and the appliance's settings.
pub fn define(info: &StartInfo, toolstack: &mut Toolstack) -> BootPlan {
    let mut files = guest_files(info);
    let (start, appliance, store_files) = define_guests(info, toolstack);
    for (name, bytes) in store_files {
        if !files.iter().any(|(known, _)| *known == name) {
            files.push((name, bytes));
        }
    }
    BootPlan {
        start,
        appliance,
        files,
    }
}

/// Every `guest-file` module by name; the first of equal names wins (two
/// configs naming the same file each carry a copy of it).
fn guest_files(info: &StartInfo) -> Vec<GuestFile> {
    let mut files: Vec<GuestFile> = Vec::new();
    for module in &info.modules {
        if let ("guest-file", name) = split(module)
            && !files.iter().any(|(known, _)| known == name)
        {
            files.push((String::from(name), module_bytes(module)));
        }
    }
    files
}

fn define_guests(
    info: &StartInfo,
    toolstack: &mut Toolstack,
) -> (Vec<usize>, Option<ApplianceConfig>, Vec<GuestFile>) {
    let mut defined = Vec::new();
    let mut appliance: Option<ApplianceConfig> = None;
    for (index, module) in info.modules.iter().enumerate() {
        match split(module) {
            ("guest-config", name) => {
                let files: Vec<&Module> = info.modules[index + 1..]
                    .iter()
                    .take_while(|next| split(next).0 == "guest-file")
                    .collect();
                match guest_config(name, module_bytes(module), &files) {
                    Ok(definition) => defined.push(toolstack.define(definition)),
                    Err(why) => {
                        error!("dom0: {why}");
                        toolstack.outcomes.failed += 1;
                    }
                }
            }
            ("linux", line) => {
                let initrd = info
                    .modules
                    .get(index + 1)
                    .filter(|next| split(next).0 == "linux-initrd")
                    .map(module_bytes);
                let name = if defined.is_empty() {
                    String::from("linux")
                } else {
                    format!("linux-{}", defined.len() + 1)
                };
                match linux(name, module_bytes(module), line, initrd) {
                    Ok(definition) => defined.push(toolstack.define(definition)),
                    Err(why) => {
                        error!("dom0: linux module: {why}");
                        toolstack.outcomes.failed += 1;
                    }
                }
            }
            ("appliance-config", name) => {
                match ApplianceConfig::parse_bytes(module_bytes(module)) {
                    Ok(config) => {
                        for warning in &config.warnings {
                            warn!("dom0: {}", warning_in(name, warning));
                        }
                        appliance = Some(config);
                    }
                    Err(error) => error!("dom0: {}", error_in(name, &error)),
                }
            }
            _ => {}
        }
    }
    let from_store = crate::store_guests::define(toolstack);
    defined.extend(from_store.defined);
    let store_files = from_store.files;
    let Some(appliance) = appliance.or(from_store.appliance) else {
        return (defined, None, store_files);
    };
    let start = appliance
        .boot_guests
        .iter()
        .filter_map(|name| {
            let found = toolstack.find_definition(name);
            if found.is_none() {
                error!("dom0: the appliance config starts {name:?}, which no guest config defines");
            }
            found
        })
        .collect();
    (start, Some(appliance), store_files)
}

/// `FILE:LINE:COLUMN: message`, or `FILE: message` without a position.
pub(crate) fn error_in(file: &str, error: &config::Error) -> String {
    match error.position {
        Some(_) => format!("{file}:{error}"),
        None => format!("{file}: {error}"),
    }
}

/// As [`error_in`], for a warning.
pub(crate) fn warning_in(file: &str, warning: &Warning) -> String {
    match warning.position {
        Some(_) => format!("{file}:{warning}"),
        None => format!("{file}: {warning}"),
    }
}

/// A guest definition from an xl.cfg module; errors name the file.
fn guest_config(name: &str, text: &[u8], files: &[&Module]) -> Result<GuestDefinition, String> {
    let config = DomainConfig::parse_bytes(text).map_err(|error| error_in(name, &error))?;
    for warning in &config.warnings {
        warn!("dom0: {}", warning_in(name, warning));
    }
    GuestDefinition::from_config(name, &config, |value| {
        files
            .iter()
            .find(|module| split(module).1 == value)
            .map(|module| module_bytes(module))
    })
    .map_err(|why| format!("{name}: {why}"))
}

fn linux(
    name: String,
    kernel: &'static [u8],
    line: &str,
    initrd: Option<&'static [u8]>,
) -> Result<GuestDefinition, String> {
    let mut memory_mib = LINUX_DEFAULT_MIB;
    let mut cmdline = line.trim();
    if let Some(rest) = cmdline.strip_prefix("memory=") {
        let (value, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        memory_mib = value
            .parse()
            .map_err(|_| format!("memory={value}: give a number of MiB"))?;
        cmdline = tail.trim();
    }
    Ok(GuestDefinition {
        source: name.clone(),
        name,
        hvm: false,
        memory_mib,
        vcpus: 1,
        kernel,
        ramdisk: initrd,
        cmdline: cmdline.into(),
        uuid: None,
        on_poweroff: ShutdownAction::Destroy,
        on_reboot: ShutdownAction::Restart,
        on_crash: ShutdownAction::Destroy,
        disks: Vec::new(),
        vifs: Vec::new(),
    })
}
