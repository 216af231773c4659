//! The typed step for guests: a [`Document`] to a [`DomainConfig`] holding
//! the xl.cfg(5) keys Xenolith acts on today.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | the domain's name | required |
//! | `type` | `"pvh"` or `"hvm"` (`builder = "hvm"` is the old spelling) | `"pvh"`, with a warning |
//! | `memory` | MiB at boot | `maxmem`, else 32 (libxl's default) |
//! | `maxmem` | MiB the guest may balloon up to | `memory` |
//! | `vcpus` | vCPUs online at boot | 1 |
//! | `maxvcpus` | vCPUs the guest may bring online | `vcpus` |
//! | `kernel` | kernel image (module name or path); required for PVH | — |
//! | `ramdisk` | initial ramdisk | — |
//! | `cmdline`, `root`, `extra` | the kernel command line, see below | — |
//! | `vif` | list of network interfaces, see [`Vif`] | none |
//! | `disk` | list of disks, see [`Disk`] | none |
//! | `on_poweroff`, `on_reboot`, `on_crash` | see [`ShutdownAction`] | destroy, restart, destroy |
//! | `uuid` | the domain's UUID | none (the toolstack makes one) |
//!
//! The command line is built as xl's `parse_cmdline` builds it: `cmdline`
//! if set (and then `root` and `extra` are ignored, with a warning);
//! otherwise `root = "X"` and `extra = "Y"` give `"root=X Y"`, `root` alone
//! gives `"root=X"` and `extra` alone gives `"Y"`.
//!
//! Any other key is kept in the document and reported as a warning.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::disk::{Disk, DiskFormat};
use crate::document::Document;
use crate::error::{Error, ErrorKind, Warning, WarningKind, push_warning};
use crate::identifiers::{Mebibytes, Uuid};
use crate::limits::MAX_COMMAND_LINE_BYTES;
use crate::typed::{self, choice, non_empty_text, number, text, text_list};
use crate::vif::Vif;

/// How the guest is virtualised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestType {
    /// Paravirtualised hardware, direct kernel boot, no emulated devices.
    Pvh,
    /// Hardware virtualisation with an emulated platform.
    Hvm,
}

/// What to do when the guest powers off, reboots or crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownAction {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and start it again from its config.
    Restart,
    /// Keep it, stopped, for inspection.
    Preserve,
    /// Write a core dump, then destroy.
    CoredumpDestroy,
    /// Write a core dump, then restart.
    CoredumpRestart,
    /// Rename the old domain, keep it, and start a new one.
    RenameRestart,
    /// Reset the domain without tearing it down.
    SoftReset,
}

const SHUTDOWN_ACTIONS: [(&str, ShutdownAction); 7] = [
    ("destroy", ShutdownAction::Destroy),
    ("restart", ShutdownAction::Restart),
    ("preserve", ShutdownAction::Preserve),
    ("coredump-destroy", ShutdownAction::CoredumpDestroy),
    ("coredump-restart", ShutdownAction::CoredumpRestart),
    ("rename-restart", ShutdownAction::RenameRestart),
    ("soft-reset", ShutdownAction::SoftReset),
];

const SHUTDOWN_ACTION_NAMES: &str =
    "destroy, restart, preserve, coredump-destroy, coredump-restart, rename-restart, soft-reset";

/// The keys [`DomainConfig`] reads; others are warned about.
pub const DOMAIN_KEYS: [&str; 18] = [
    "name",
    "type",
    "builder",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "vif",
    "disk",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "uuid",
];

/// libxl's memory when neither `memory` nor `maxmem` is set, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 32;

/// Largest `memory` or `maxmem`: 1 TiB, in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// Most vCPUs a guest may have (Xen's `HVM_MAX_VCPUS`).
pub const MAX_VCPUS: u32 = 128;

/// A guest's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// `name`.
    pub name: String,
    /// `type` (or `builder`).
    pub guest_type: GuestType,
    /// `memory`.
    pub memory: Mebibytes,
    /// `maxmem`; never below `memory`.
    pub max_memory: Mebibytes,
    /// `vcpus`.
    pub vcpus: u32,
    /// `maxvcpus`; never below `vcpus`.
    pub max_vcpus: u32,
    /// `kernel`; always set for PVH.
    pub kernel: Option<String>,
    /// `ramdisk`; only with a kernel.
    pub ramdisk: Option<String>,
    /// The command line from `cmdline`, `root` and `extra`.
    pub command_line: Option<String>,
    /// `vif` entries, in order.
    pub vifs: Vec<Vif>,
    /// `disk` entries, in order.
    pub disks: Vec<Disk>,
    /// `on_poweroff`.
    pub on_poweroff: ShutdownAction,
    /// `on_reboot`.
    pub on_reboot: ShutdownAction,
    /// `on_crash`.
    pub on_crash: ShutdownAction,
    /// `uuid`.
    pub uuid: Option<Uuid>,
    /// Unknown keys and other things worth a look; at most
    /// [`MAX_WARNINGS`](crate::limits::MAX_WARNINGS).
    pub warnings: Vec<Warning>,
}

impl DomainConfig {
    /// Parses config text.
    pub fn parse(text: &str) -> Result<DomainConfig, Error> {
        DomainConfig::from_document(&Document::parse(text)?)
    }

    /// Parses config bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<DomainConfig, Error> {
        DomainConfig::from_document(&Document::parse_bytes(bytes)?)
    }

    /// Reads the guest keys out of a parsed document.
    pub fn from_document(document: &Document) -> Result<DomainConfig, Error> {
        let mut warnings = typed::warnings_with_unknown_keys(document, &DOMAIN_KEYS);
        let mut warn = |position, kind| push_warning(&mut warnings, Warning { position, kind });

        let name = match text(document, "name")? {
            Some((name, position)) => {
                check_name(name)
                    .map_err(|reason| Error::at(position, ErrorKind::InvalidName { reason }))?;
                String::from(name)
            }
            None => return Err(Error::whole_file(ErrorKind::MissingKey { key: "name" })),
        };

        let guest_type = guest_type(document, &mut warn)?;

        let memory = number(document, "memory", 1, MAX_MEMORY_MIB)?;
        let max_memory = number(document, "maxmem", 1, MAX_MEMORY_MIB)?;
        let (memory, max_memory) = match (memory, max_memory) {
            (Some((memory, _)), Some((max_memory, position))) => {
                if max_memory < memory {
                    return Err(Error::at(
                        position,
                        ErrorKind::MaxMemoryBelowMemory { memory, max_memory },
                    ));
                }
                (memory, max_memory)
            }
            (Some((memory, _)), None) => (memory, memory),
            (None, Some((max_memory, _))) => (max_memory, max_memory),
            (None, None) => {
                warn(
                    None,
                    WarningKind::MemoryDefaulted {
                        mebibytes: DEFAULT_MEMORY_MIB,
                    },
                );
                (DEFAULT_MEMORY_MIB, DEFAULT_MEMORY_MIB)
            }
        };

        let vcpus = vcpu_count(document, "vcpus")?;
        let max_vcpus = vcpu_count(document, "maxvcpus")?;
        let vcpus_value = vcpus.map_or(1, |(count, _)| count);
        let max_vcpus_value = match max_vcpus {
            Some((count, position)) if count < vcpus_value => {
                return Err(Error::at(
                    position,
                    ErrorKind::MaxVcpusBelowVcpus {
                        vcpus: vcpus_value,
                        max_vcpus: count,
                    },
                ));
            }
            Some((count, _)) => count,
            None => vcpus_value,
        };

        let kernel = non_empty_text(document, "kernel")?.map(|(kernel, _)| String::from(kernel));
        if guest_type == GuestType::Pvh && kernel.is_none() {
            let position = document.get("type").map(|setting| setting.value.span.start);
            return Err(Error {
                position,
                kind: ErrorKind::KernelRequired,
            });
        }
        let mut ramdisk =
            non_empty_text(document, "ramdisk")?.map(|(ramdisk, _)| String::from(ramdisk));
        if kernel.is_none()
            && let Some(setting) = document.get("ramdisk")
        {
            warn(
                Some(setting.key_span.start),
                WarningKind::RamdiskWithoutKernel,
            );
            ramdisk = None;
        }

        let command_line = command_line(document, &mut warn)?;
        let vifs = vifs(document, &mut warn)?;
        let disks = disks(document, &mut warn)?;

        let action = |key, default| -> Result<ShutdownAction, Error> {
            Ok(
                choice(document, key, &SHUTDOWN_ACTIONS, SHUTDOWN_ACTION_NAMES)?
                    .map_or(default, |(action, _)| action),
            )
        };
        let on_poweroff = action("on_poweroff", ShutdownAction::Destroy)?;
        let on_reboot = action("on_reboot", ShutdownAction::Restart)?;
        let on_crash = action("on_crash", ShutdownAction::Destroy)?;

        let uuid = match text(document, "uuid")? {
            Some((uuid, position)) => {
                Some(Uuid::parse(uuid).ok_or(Error::at(position, ErrorKind::InvalidUuid))?)
            }
            None => None,
        };

        Ok(DomainConfig {
            name,
            guest_type,
            memory: Mebibytes(memory),
            max_memory: Mebibytes(max_memory),
            vcpus: vcpus_value,
            max_vcpus: max_vcpus_value,
            kernel,
            ramdisk,
            command_line,
            vifs,
            disks,
            on_poweroff,
            on_reboot,
            on_crash,
            uuid,
            warnings,
        })
    }
}

/// Why a name is refused, if it is. Names are also API path segments and
/// xenstore values, so they are kept to a plain alphabet; an all-digit name
/// would read as a domain ID.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !typed::is_plain_name(name, &[]) {
        return Err("use 1 to 64 letters, digits, `.`, `_` or `-`");
    }
    if name.chars().all(|character| character.is_ascii_digit()) {
        return Err("an all-digit name reads as a domain ID");
    }
    if name == "Domain-0" {
        return Err("`Domain-0` is the control domain's name");
    }
    Ok(())
}

fn guest_type(
    document: &Document,
    warn: &mut impl FnMut(Option<crate::Position>, WarningKind),
) -> Result<GuestType, Error> {
    let declared = choice(
        document,
        "type",
        &[
            ("pvh", Some(GuestType::Pvh)),
            ("hvm", Some(GuestType::Hvm)),
            ("pv", None),
        ],
        "pvh, hvm",
    )?;
    let declared = match declared {
        Some((None, position)) => return Err(Error::at(position, ErrorKind::PvNotSupported)),
        Some((Some(guest_type), position)) => Some((guest_type, position)),
        None => None,
    };
    // Deprecated since Xen 4.10; "generic" means PV.
    let builder = choice(
        document,
        "builder",
        &[("hvm", Some(GuestType::Hvm)), ("generic", None)],
        "hvm, generic",
    )?;
    match (declared, builder) {
        (_, Some((None, position))) => Err(Error::at(position, ErrorKind::PvNotSupported)),
        (Some((declared, _)), Some((Some(builder), position))) => {
            warn(Some(position), WarningKind::BuilderDeprecated);
            if declared == builder {
                Ok(declared)
            } else {
                Err(Error::at(position, ErrorKind::ContradictingBuilderAndType))
            }
        }
        (None, Some((Some(builder), position))) => {
            warn(Some(position), WarningKind::BuilderDeprecated);
            Ok(builder)
        }
        (Some((declared, _)), None) => Ok(declared),
        (None, None) => {
            warn(None, WarningKind::TypeDefaultedToPvh);
            Ok(GuestType::Pvh)
        }
    }
}

fn vcpu_count(
    document: &Document,
    key: &'static str,
) -> Result<Option<(u32, crate::Position)>, Error> {
    let value = number(document, key, 1, u64::from(MAX_VCPUS))?;
    Ok(
        value
            .and_then(|(count, position)| u32::try_from(count).ok().map(|count| (count, position))),
    )
}

fn command_line(
    document: &Document,
    warn: &mut impl FnMut(Option<crate::Position>, WarningKind),
) -> Result<Option<String>, Error> {
    let cmdline = text(document, "cmdline")?;
    let root = text(document, "root")?;
    let extra = text(document, "extra")?;
    let (line, position) = match (cmdline, root, extra) {
        (Some((cmdline, position)), root, extra) => {
            if root.is_some() || extra.is_some() {
                warn(
                    Some(position),
                    WarningKind::CommandLineOverridesRootAndExtra,
                );
            }
            (String::from(cmdline), position)
        }
        (None, Some((root, position)), Some((extra, _))) => {
            (format!("root={root} {extra}"), position)
        }
        (None, Some((root, position)), None) => (format!("root={root}"), position),
        (None, None, Some((extra, position))) => (String::from(extra), position),
        (None, None, None) => return Ok(None),
    };
    if line.len() > MAX_COMMAND_LINE_BYTES {
        return Err(Error::at(
            position,
            ErrorKind::CommandLineTooLong { length: line.len() },
        ));
    }
    Ok(Some(line))
}

fn vifs(
    document: &Document,
    warn: &mut impl FnMut(Option<crate::Position>, WarningKind),
) -> Result<Vec<Vif>, Error> {
    let mut vifs: Vec<Vif> = Vec::new();
    for (index, (spec, position)) in text_list(document, "vif")?.into_iter().enumerate() {
        let vif = Vif::parse(spec)
            .map_err(|fault| Error::at(position, ErrorKind::Vif { index, fault }))?;
        if let Some(mac) = vif.mac
            && let Some(first) = vifs.iter().position(|earlier| earlier.mac == Some(mac))
        {
            return Err(Error::at(
                position,
                ErrorKind::DuplicateMac { index, first },
            ));
        }
        for option in &vif.ignored {
            warn(
                Some(position),
                WarningKind::IgnoredVifOption {
                    index,
                    option: option.clone(),
                },
            );
        }
        vifs.push(vif);
    }
    Ok(vifs)
}

fn disks(
    document: &Document,
    warn: &mut impl FnMut(Option<crate::Position>, WarningKind),
) -> Result<Vec<Disk>, Error> {
    let mut disks: Vec<Disk> = Vec::new();
    for (index, (spec, position)) in text_list(document, "disk")?.into_iter().enumerate() {
        let disk = Disk::parse(spec)
            .map_err(|fault| Error::at(position, ErrorKind::Disk { index, fault }))?;
        if !matches!(
            disk.format,
            DiskFormat::Raw | DiskFormat::Qcow2 | DiskFormat::Vmdk | DiskFormat::Empty
        ) {
            return Err(Error::at(
                position,
                ErrorKind::UnsupportedDiskFormat {
                    index,
                    format: disk.format,
                },
            ));
        }
        if let Some(first) = disks.iter().position(|earlier| earlier.vdev == disk.vdev) {
            return Err(Error::at(
                position,
                ErrorKind::DuplicateVdev { index, first },
            ));
        }
        for option in &disk.ignored {
            warn(
                Some(position),
                WarningKind::IgnoredDiskOption {
                    index,
                    option: option.clone(),
                },
            );
        }
        disks.push(disk);
    }
    Ok(disks)
}
