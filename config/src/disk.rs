//! One `disk` entry, in xl-disk-configuration(5) syntax, following xl's
//! `libxlu_disk_l.l`.
//!
//! An entry is comma-separated parameters. Keyed ones (`format=`, `vdev=`,
//! `access=`, `devtype=`, `backend=`, ...) may come in any order;
//! `target=` must be last and takes the rest of the entry, commas and all.
//! Unkeyed ones are positional: target, format, vdev, access, in that
//! order, each slot filled only if no keyed parameter filled it. Old
//! prefixes on the target (`phy:`, `file:`, `tap:aio:`, `raw:`, `qcow2:`
//! ...) are accepted; after one, the format slot is skipped, so the classic
//! `"phy:/dev/vg/guest,xvda,w"` means target, vdev, access.
//!
//! ```text
//! "format=qcow2, vdev=xvda, access=rw, target=guests/debian"
//! "guests/debian,raw,xvda,rw"
//! "file:/images/debian.img,xvda,w"
//! ",,hdc:cdrom,r"                                  # an empty CD-ROM drive
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::Shown;

/// The image format, `format=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// Plain bytes (the default).
    Raw,
    /// QEMU copy-on-write version 1.
    Qcow,
    /// QEMU copy-on-write version 2.
    Qcow2,
    /// Virtual PC.
    Vhd,
    /// QEMU enhanced disk.
    Qed,
    /// VMware's format (Xenolith serves monolithicSparse, read-only).
    Vmdk,
    /// No medium (an empty CD-ROM drive).
    Empty,
}

impl DiskFormat {
    /// The name xl uses.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qed => "qed",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Empty => "empty",
        }
    }

    fn from_name(name: &str) -> Option<DiskFormat> {
        Some(match name {
            "" | "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            "vmdk" => DiskFormat::Vmdk,
            "empty" => DiskFormat::Empty,
            _ => return None,
        })
    }
}

/// Whether the guest may write, `access=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskAccess {
    /// `r` or `ro`.
    ReadOnly,
    /// `w`, `rw` or empty (the default).
    ReadWrite,
}

/// A guest disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// What backs the disk: a volume name (`guests/debian`) or a path.
    /// Empty only for an empty CD-ROM drive.
    pub target: String,
    /// Image format.
    pub format: DiskFormat,
    /// The name the guest sees (`xvda`, `hdc`, `sda1`, `d0p1`).
    pub vdev: String,
    /// Read-only or read-write.
    pub access: DiskAccess,
    /// A CD-ROM rather than a disk.
    pub cdrom: bool,
    /// `backend=`: the backend domain's name.
    pub backend: Option<String>,
    /// `discard` / `no-discard`.
    pub discard: Option<bool>,
    /// Parameters xl knows that Xenolith ignores, as written.
    pub ignored: Vec<String>,
}

/// Why a `disk` entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// `format=` or a positional format xl does not know.
    UnknownFormat {
        /// The value.
        value: String,
    },
    /// `access=` or a positional access other than r, ro, w, rw.
    UnknownAccess {
        /// The value.
        value: String,
    },
    /// `devtype=` other than disk or cdrom, or `vdev:type` likewise.
    UnknownDeviceType {
        /// The value.
        value: String,
    },
    /// A `key=value` parameter xl does not know.
    UnknownParameter {
        /// The parameter as written.
        parameter: String,
    },
    /// A `prefix:` on the target xl does not know.
    UnknownPrefix {
        /// The prefix.
        prefix: String,
    },
    /// Text xl's disk lexer rejects (such as `=` inside a positional value).
    BadSyntax {
        /// The parameter as written.
        parameter: String,
    },
    /// The same thing given twice with different values.
    Respecified {
        /// What: target, vdev, format, backend, script.
        what: &'static str,
    },
    /// More than four positional parameters.
    TooManyPositional,
    /// No `vdev`.
    MissingVdev,
    /// A `vdev` that names no Xen virtual device.
    InvalidVdev {
        /// The value.
        value: String,
    },
    /// No target on a disk that is not a CD-ROM.
    MissingTarget,
}

impl fmt::Display for DiskFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskFault::UnknownFormat { value } => write!(
                formatter,
                "unknown format \"{}\" (raw, qcow, qcow2, vhd, qed, empty); \
                 a positional format comes after the target: \"TARGET,FORMAT,VDEV,ACCESS\"",
                Shown(value)
            ),
            DiskFault::UnknownAccess { value } => {
                write!(
                    formatter,
                    "unknown access \"{}\" (r, ro, w, rw)",
                    Shown(value)
                )
            }
            DiskFault::UnknownDeviceType { value } => {
                write!(
                    formatter,
                    "unknown device type \"{}\" (disk, cdrom)",
                    Shown(value)
                )
            }
            DiskFault::UnknownParameter { parameter } => {
                write!(formatter, "unknown parameter `{}`", Shown(parameter))
            }
            DiskFault::UnknownPrefix { prefix } => {
                write!(formatter, "unknown target prefix `{}:`", Shown(prefix))
            }
            DiskFault::BadSyntax { parameter } => write!(
                formatter,
                "bad disk syntax at `{}` (a target containing `=` or `,` must be written as target=... at the end)",
                Shown(parameter)
            ),
            DiskFault::Respecified { what } => write!(formatter, "{what} is given twice"),
            DiskFault::TooManyPositional => formatter
                .write_str("too many positional parameters (at most target, format, vdev, access)"),
            DiskFault::MissingVdev => formatter.write_str("no vdev (such as vdev=xvda)"),
            DiskFault::InvalidVdev { value } => write!(
                formatter,
                "vdev \"{}\" is not a Xen virtual disk name (xvdX, hdX, sdX, dNpN)",
                Shown(value)
            ),
            DiskFault::MissingTarget => {
                formatter.write_str("no target (only a CD-ROM drive may be empty)")
            }
        }
    }
}

/// Keyed parameters xl knows that Xenolith ignores.
const IGNORED_KEYED: [&str; 8] = [
    "backendtype",
    "specification",
    "script",
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
];

/// Flags xl knows that Xenolith ignores.
const IGNORED_FLAGS: [&str; 5] = ["direct-io-safe", "colo", "no-colo", "trusted", "untrusted"];

/// Target prefixes xl accepts; those naming a format set it.
const PREFIXES: [(&str, Option<DiskFormat>); 15] = [
    ("raw", Some(DiskFormat::Raw)),
    ("qcow", Some(DiskFormat::Qcow)),
    ("qcow2", Some(DiskFormat::Qcow2)),
    ("vhd", Some(DiskFormat::Vhd)),
    ("iscsi", None),
    ("nbd", None),
    ("enbd", None),
    ("drbd", None),
    ("tapdisk", None),
    ("tap", None),
    ("tap2", None),
    ("aio", None),
    ("ioemu", None),
    ("file", None),
    ("phy", None),
];

/// The disk being assembled, with the slots positional parameters fill.
#[derive(Default)]
struct Builder {
    target: Option<String>,
    format: Option<DiskFormat>,
    vdev: Option<String>,
    access: Option<DiskAccess>,
    cdrom: bool,
    backend: Option<String>,
    discard: Option<bool>,
    had_prefix: bool,
    ignored: Vec<String>,
}

impl Builder {
    fn set_format(&mut self, value: &str) -> Result<(), DiskFault> {
        let format = DiskFormat::from_name(value).ok_or_else(|| DiskFault::UnknownFormat {
            value: String::from(value),
        })?;
        match self.format {
            Some(existing) if existing != format => Err(DiskFault::Respecified { what: "format" }),
            _ => {
                self.format = Some(format);
                Ok(())
            }
        }
    }

    fn set_access(&mut self, value: &str) -> Result<(), DiskFault> {
        self.access = Some(match value {
            "r" | "ro" => DiskAccess::ReadOnly,
            "" | "w" | "rw" => DiskAccess::ReadWrite,
            _ => {
                return Err(DiskFault::UnknownAccess {
                    value: String::from(value),
                });
            }
        });
        Ok(())
    }

    fn set_device_type(&mut self, value: &str) -> Result<(), DiskFault> {
        self.cdrom = match value {
            "cdrom" => true,
            "disk" => false,
            _ => {
                return Err(DiskFault::UnknownDeviceType {
                    value: String::from(value),
                });
            }
        };
        Ok(())
    }

    /// Like xl's `savestring`: a non-empty value may not be replaced.
    fn save(slot: &mut Option<String>, what: &'static str, value: &str) -> Result<(), DiskFault> {
        if slot.as_deref().is_some_and(|existing| !existing.is_empty()) {
            return Err(DiskFault::Respecified { what });
        }
        *slot = Some(String::from(value));
        Ok(())
    }

    /// `vdev:cdrom` or `vdev:disk`; false (doing nothing) without a colon.
    fn vdev_and_device_type(&mut self, value: &str) -> Result<bool, DiskFault> {
        let Some((vdev, device_type)) = value.rsplit_once(':') else {
            return Ok(false);
        };
        Builder::save(&mut self.vdev, "vdev", vdev)?;
        self.set_device_type(device_type)?;
        Ok(true)
    }

    fn keyed(&mut self, key: &str, value: &str, parameter: &str) -> Result<(), DiskFault> {
        match key {
            "format" => self.set_format(value),
            "access" => self.set_access(value),
            "vdev" => Builder::save(&mut self.vdev, "vdev", value),
            "devtype" => self.set_device_type(value),
            "backend" => Builder::save(&mut self.backend, "backend", value),
            _ if IGNORED_KEYED.contains(&key) || key == "grant_usage" => {
                self.ignored.push(String::from(parameter));
                Ok(())
            }
            _ if is_parameter_name(key) => Err(DiskFault::UnknownParameter {
                parameter: String::from(parameter),
            }),
            _ => Err(DiskFault::BadSyntax {
                parameter: String::from(parameter),
            }),
        }
    }

    fn flag(&mut self, parameter: &str) -> bool {
        match parameter {
            "cdrom" => self.cdrom = true,
            "discard" => self.discard = Some(true),
            "no-discard" => self.discard = Some(false),
            _ if IGNORED_FLAGS.contains(&parameter) => self.ignored.push(String::from(parameter)),
            _ => return false,
        }
        true
    }

    fn positional(&mut self, value: &str) -> Result<(), DiskFault> {
        if self.target.is_none() {
            return Builder::save(&mut self.target, "target", value);
        }
        if !self.had_prefix && self.format.is_none() {
            let empty_target = self.target.as_deref() == Some("");
            if empty_target && self.vdev_and_device_type(value)? {
                self.format = Some(DiskFormat::Empty);
                return Ok(());
            }
            return self.set_format(value);
        }
        if self.vdev.is_none() {
            if !self.vdev_and_device_type(value)? {
                Builder::save(&mut self.vdev, "vdev", value)?;
            }
            return Ok(());
        }
        if self.access.is_none() {
            return self.set_access(value);
        }
        Err(DiskFault::TooManyPositional)
    }

    /// Strips an old `prefix:` from the front of `rest`, if there is one.
    fn prefix<'a>(&mut self, rest: &'a str) -> Result<Option<&'a str>, DiskFault> {
        let Some((prefix, after)) = rest.split_once(':') else {
            return Ok(None);
        };
        let looks_like_prefix = prefix.starts_with(|first: char| first.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit());
        if !looks_like_prefix {
            return Ok(None);
        }
        if let Some((_, format)) = PREFIXES.iter().find(|(name, _)| *name == prefix) {
            self.had_prefix = true;
            match prefix {
                "iscsi" | "nbd" | "enbd" | "drbd" => self.ignored.push(format!("{prefix}:")),
                _ => {}
            }
            if let Some(format) = format {
                self.set_format(format.name())?;
            }
            return Ok(Some(after));
        }
        // `hdc:cdrom` is a vdev with a type, not a prefix: xl only calls it a
        // prefix when no letter or digit follows the colon.
        if after.starts_with(|next: char| next.is_ascii_lowercase() || next.is_ascii_digit()) {
            return Ok(None);
        }
        Err(DiskFault::UnknownPrefix {
            prefix: String::from(prefix),
        })
    }

    fn finish(self) -> Result<Disk, DiskFault> {
        let vdev = self.vdev.ok_or(DiskFault::MissingVdev)?;
        if !is_valid_vdev(&vdev) {
            return Err(DiskFault::InvalidVdev { value: vdev });
        }
        let target = self.target.unwrap_or_default();
        let format = if target.is_empty() {
            DiskFormat::Empty
        } else {
            self.format.unwrap_or(DiskFormat::Raw)
        };
        if format == DiskFormat::Empty && !self.cdrom {
            return Err(DiskFault::MissingTarget);
        }
        Ok(Disk {
            target,
            format,
            vdev,
            access: self.access.unwrap_or(DiskAccess::ReadWrite),
            cdrom: self.cdrom,
            backend: self.backend,
            discard: self.discard,
            ignored: self.ignored,
        })
    }
}

/// `[a-z][-a-z0-9]*`: what xl's lexer takes for a parameter name.
fn is_parameter_name(key: &str) -> bool {
    key.starts_with(|first: char| first.is_ascii_lowercase())
        && key.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
        })
}

/// Whether `vdev` is a name libxl turns into a device number: `xvd` and
/// letters, `hd` or `sd` and one letter, each with an optional partition
/// number; `d<disk>` with an optional `p<partition>`; or a plain number.
pub fn is_valid_vdev(vdev: &str) -> bool {
    fn letters_then_digits(rest: &str, max_letters: usize) -> bool {
        let letters = rest.chars().take_while(char::is_ascii_lowercase).count();
        let digits = rest.get(letters..).unwrap_or("");
        (1..=max_letters).contains(&letters)
            && digits.chars().all(|digit| digit.is_ascii_digit())
            && digits.len() <= 3
    }
    fn number(text: &str) -> bool {
        !text.is_empty() && text.len() <= 9 && text.chars().all(|digit| digit.is_ascii_digit())
    }
    if let Some(rest) = vdev.strip_prefix("xvd") {
        return letters_then_digits(rest, 4);
    }
    if let Some(rest) = vdev.strip_prefix("hd").or_else(|| vdev.strip_prefix("sd")) {
        return letters_then_digits(rest, 1);
    }
    if let Some(rest) = vdev.strip_prefix('d') {
        return match rest.split_once('p') {
            Some((disk, partition)) => number(disk) && number(partition),
            None => number(rest),
        };
    }
    number(vdev)
}

impl Disk {
    /// Parses one `disk` list entry.
    pub fn parse(spec: &str) -> Result<Disk, DiskFault> {
        let mut builder = Builder::default();
        let mut rest = spec;
        loop {
            rest = rest.trim_start_matches([' ', '\t', '\n']);
            if rest.is_empty() {
                break;
            }
            if let Some(target) = rest.strip_prefix("target=") {
                let target = target.strip_suffix(',').unwrap_or(target);
                Builder::save(&mut builder.target, "target", target)?;
                break;
            }
            if let Some(after) = builder.prefix(rest)? {
                rest = after;
                continue;
            }
            let (parameter, after) = rest.split_once(',').unwrap_or((rest, ""));
            rest = after;
            // xl keeps spaces before a comma; trimming them is kinder and
            // no vdev, format or access value has one.
            let parameter = parameter.trim_end_matches([' ', '\t', '\n']);
            if let Some((key, value)) = parameter.split_once('=') {
                builder.keyed(key, value, parameter)?;
            } else if !builder.flag(parameter) {
                builder.positional(parameter)?;
            }
        }
        builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn disk(spec: &str) -> Disk {
        Disk::parse(spec).unwrap_or_else(|fault| panic!("{spec}: {fault}"))
    }

    #[test]
    fn keyed_form() {
        let disk = disk("format=qcow2, vdev=xvda, access=rw, target=guests/debian");
        assert_eq!(disk.target, "guests/debian");
        assert_eq!(disk.format, DiskFormat::Qcow2);
        assert_eq!(disk.vdev, "xvda");
        assert_eq!(disk.access, DiskAccess::ReadWrite);
        assert!(!disk.cdrom);
    }

    #[test]
    fn target_takes_the_rest_including_commas() {
        let disk = disk("vdev=xvdb, target=/images/a,b=c:d,");
        assert_eq!(disk.target, "/images/a,b=c:d");
    }

    #[test]
    fn four_positional_parameters() {
        let disk = disk("/images/debian.img,qcow2,xvda,r");
        assert_eq!(disk.target, "/images/debian.img");
        assert_eq!(disk.format, DiskFormat::Qcow2);
        assert_eq!(disk.vdev, "xvda");
        assert_eq!(disk.access, DiskAccess::ReadOnly);
    }

    #[test]
    fn empty_positional_format_and_access_default() {
        let defaults = disk("guests/a,,xvda");
        assert_eq!(defaults.format, DiskFormat::Raw);
        assert_eq!(defaults.access, DiskAccess::ReadWrite);
        let trailing = disk("guests/a,,xvda,");
        assert_eq!(trailing.access, DiskAccess::ReadWrite);
    }

    #[test]
    fn old_prefix_skips_the_format_slot() {
        let physical = disk("phy:/dev/vg/guest,xvda,w");
        assert_eq!(physical.target, "/dev/vg/guest");
        assert_eq!(physical.format, DiskFormat::Raw);
        assert_eq!(physical.vdev, "xvda");
        let tap = disk("tap:aio:/images/a.img,xvdb,r");
        assert_eq!(tap.target, "/images/a.img");
        assert_eq!(tap.access, DiskAccess::ReadOnly);
        let qcow = disk("tap:qcow2:/images/a.qcow2,xvdc,w");
        assert_eq!(qcow.format, DiskFormat::Qcow2);
        let network = disk("nbd:server:1234,xvdd,w");
        assert_eq!(network.target, "server:1234");
        assert_eq!(network.ignored, ["nbd:"]);
    }

    #[test]
    fn without_prefix_the_second_slot_is_the_format() {
        assert_eq!(
            Disk::parse("/images/a.img,xvda,w"),
            Err(DiskFault::UnknownFormat {
                value: "xvda".to_string()
            })
        );
    }

    #[test]
    fn cdrom_forms() {
        let empty = disk(",,hdc:cdrom,r");
        assert!(empty.cdrom);
        assert_eq!(empty.format, DiskFormat::Empty);
        assert_eq!(empty.vdev, "hdc");
        assert_eq!(empty.target, "");
        let empty = disk(",hdc:cdrom,r");
        assert!(empty.cdrom);
        assert_eq!(empty.vdev, "hdc");
        let iso = disk("vdev=hdc, devtype=cdrom, access=ro, target=/isos/debian.iso");
        assert!(iso.cdrom);
        assert_eq!(iso.format, DiskFormat::Raw);
        let flag = disk("cdrom, vdev=hdd, target=/isos/x.iso");
        assert!(flag.cdrom);
        let typed = disk("file:/isos/x.iso,hdc:cdrom,r");
        assert!(typed.cdrom);
        assert_eq!(typed.vdev, "hdc");
        assert!(!disk("guests/a,raw,xvda:disk,w").cdrom);
    }

    #[test]
    fn flags_and_ignored_parameters() {
        let disk = disk(
            "vdev=xvda, discard, direct-io-safe, backendtype=qdisk, script=block-x, \
             backend=storage, target=a",
        );
        assert_eq!(disk.discard, Some(true));
        assert_eq!(disk.backend.as_deref(), Some("storage"));
        assert_eq!(
            disk.ignored,
            ["direct-io-safe", "backendtype=qdisk", "script=block-x"]
        );
        assert_eq!(disk_parse_discard("no-discard"), Some(false));
    }

    fn disk_parse_discard(flag: &str) -> Option<bool> {
        disk(&format!("vdev=xvda,{flag},target=a")).discard
    }

    #[test]
    fn same_value_twice_is_fine_different_is_not() {
        assert!(Disk::parse("format=raw,format=raw,vdev=xvda,target=a").is_ok());
        assert_eq!(
            Disk::parse("format=raw,format=qcow2,vdev=xvda,target=a"),
            Err(DiskFault::Respecified { what: "format" })
        );
        assert_eq!(
            Disk::parse("vdev=xvda,vdev=xvdb,target=a"),
            Err(DiskFault::Respecified { what: "vdev" })
        );
        assert_eq!(
            Disk::parse("a,raw,xvda,w,target=b"),
            Err(DiskFault::Respecified { what: "target" })
        );
    }

    #[test]
    fn faults() {
        let cases: [(&str, DiskFault); 11] = [
            ("a,raw,xvda,w,extra", DiskFault::TooManyPositional),
            ("a,raw", DiskFault::MissingVdev),
            ("", DiskFault::MissingVdev),
            ("vdev=xvda", DiskFault::MissingTarget),
            (
                "a,raw,xvda,maybe",
                DiskFault::UnknownAccess {
                    value: "maybe".to_string(),
                },
            ),
            (
                "devtype=floppy,vdev=xvda,target=a",
                DiskFault::UnknownDeviceType {
                    value: "floppy".to_string(),
                },
            ),
            (
                "colour=red,vdev=xvda,target=a",
                DiskFault::UnknownParameter {
                    parameter: "colour=red".to_string(),
                },
            ),
            (
                "/a=b,raw,xvda",
                DiskFault::BadSyntax {
                    parameter: "/a=b".to_string(),
                },
            ),
            (
                "weird:/x,xvda",
                DiskFault::UnknownPrefix {
                    prefix: "weird".to_string(),
                },
            ),
            (
                "a,raw,floppy0",
                DiskFault::InvalidVdev {
                    value: "floppy0".to_string(),
                },
            ),
            (
                "a,raw,hdc:tape",
                DiskFault::UnknownDeviceType {
                    value: "tape".to_string(),
                },
            ),
        ];
        for (spec, fault) in cases {
            assert_eq!(Disk::parse(spec), Err(fault), "{spec:?}");
        }
    }

    #[test]
    fn vdev_names() {
        for good in [
            "xvda", "xvdz", "xvdaa", "xvda1", "hda", "hdd", "sdb3", "d0", "d0p1", "51712",
        ] {
            assert!(is_valid_vdev(good), "{good}");
        }
        for bad in [
            "",
            "xvd",
            "xvdA",
            "xvda1b",
            "hdaa",
            "sd",
            "d",
            "dp1",
            "d0p",
            "vda",
            "xvda1234",
            "1234567890",
        ] {
            assert!(!is_valid_vdev(bad), "{bad}");
        }
    }

    #[test]
    fn fault_messages() {
        let message = DiskFault::UnknownFormat {
            value: "xvda".to_string(),
        }
        .to_string();
        assert!(message.contains("TARGET,FORMAT,VDEV,ACCESS"), "{message}");
        assert!(DiskFault::MissingVdev.to_string().contains("vdev="));
    }
}
