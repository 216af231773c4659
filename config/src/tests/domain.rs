//! Guest configs key by key: values, defaults, and every error with its
//! line and column.

use crate::disk::DiskFault;
use crate::vif::VifFault;
use crate::{
    DiskFormat, DomainConfig, Error, ErrorKind, Found, GuestType, Position, ShutdownAction,
    Warning, WarningKind,
};

const BASE: &str = "name = 'guest'\ntype = 'pvh'\nkernel = 'vmlinuz'; memory = 64\n";

/// Parses `BASE` followed by `more` (from line 4 on).
fn guest(more: &str) -> DomainConfig {
    let text = format!("{BASE}{more}");
    DomainConfig::parse(&text).unwrap_or_else(|error| panic!("{text}\n{error}"))
}

fn guest_error(more: &str) -> Error {
    let text = format!("{BASE}{more}");
    match DomainConfig::parse(&text) {
        Ok(config) => panic!("{text}\naccepted: {config:?}"),
        Err(error) => error,
    }
}

/// Line and column of an error, and its kind.
fn located(error: Error) -> (u32, u32, ErrorKind) {
    let position = error
        .position
        .unwrap_or_else(|| panic!("no position: {error}"));
    (position.line, position.column, error.kind)
}

fn warning_kinds(config: &DomainConfig) -> Vec<WarningKind> {
    config
        .warnings
        .iter()
        .map(|warning| warning.kind.clone())
        .collect()
}

#[test]
fn name_is_required() {
    let error = DomainConfig::parse("type = 'hvm'\n").unwrap_err();
    assert_eq!(error.position, None);
    assert_eq!(error.kind, ErrorKind::MissingKey { key: "name" });
    assert_eq!(error.to_string(), "`name` is required");
}

#[test]
fn name_values() {
    assert_eq!(guest("").name, "guest");
    assert_eq!(
        guest("name = 'web-01.example_a'\n").name,
        "web-01.example_a"
    );
    assert_eq!(guest("name = \"x\"\n").name, "x");
    for bad in ["''", "'a b'", "'a/b'", "'123'", "'Domain-0'", "'é'", "7"] {
        let (line, column, kind) = located(guest_error(&format!("name = {bad}\n")));
        assert_eq!((line, column), (4, 8), "{bad}");
        assert!(
            matches!(kind, ErrorKind::InvalidName { .. }),
            "{bad}: {kind:?}"
        );
    }
    let long = "n".repeat(65);
    assert!(matches!(
        guest_error(&format!("name = '{long}'\n")).kind,
        ErrorKind::InvalidName { .. }
    ));
    assert_eq!(
        located(guest_error("name = ['a']\n")),
        (4, 8, ErrorKind::ExpectedSingleValue { key: "name" })
    );
}

#[test]
fn guest_types() {
    assert_eq!(guest("").guest_type, GuestType::Pvh);
    assert_eq!(guest("type = 'hvm'\n").guest_type, GuestType::Hvm);
    assert_eq!(
        located(guest_error("type = 'pv'\n")),
        (4, 8, ErrorKind::PvNotSupported)
    );
    assert_eq!(
        located(guest_error("type = 'xen'\n")),
        (
            4,
            8,
            ErrorKind::UnknownChoice {
                key: "type",
                value: "xen".into(),
                allowed: "pvh, hvm"
            }
        )
    );
}

#[test]
fn builder_is_the_old_spelling_of_type() {
    let config = DomainConfig::parse("name = 'g'\nbuilder = 'hvm'\n").unwrap();
    assert_eq!(config.guest_type, GuestType::Hvm);
    assert!(warning_kinds(&config).contains(&WarningKind::BuilderDeprecated));
    let agreeing = guest("type = 'hvm'\nbuilder = 'hvm'\n");
    assert_eq!(agreeing.guest_type, GuestType::Hvm);
    assert_eq!(
        located(guest_error("builder = 'hvm'\n")),
        (4, 11, ErrorKind::ContradictingBuilderAndType)
    );
    assert_eq!(
        located(guest_error("builder = 'generic'\n")),
        (4, 11, ErrorKind::PvNotSupported)
    );
}

#[test]
fn missing_type_defaults_to_pvh_with_a_warning() {
    let config = DomainConfig::parse("name = 'g'\nkernel = 'k'\nmemory = 64\n").unwrap();
    assert_eq!(config.guest_type, GuestType::Pvh);
    assert_eq!(warning_kinds(&config), [WarningKind::TypeDefaultedToPvh]);
}

#[test]
fn pvh_needs_a_kernel_hvm_does_not() {
    let error = DomainConfig::parse("name = 'g'\ntype = 'pvh'\nmemory = 64\n").unwrap_err();
    assert_eq!(located(error), (2, 8, ErrorKind::KernelRequired));
    let error = DomainConfig::parse("name = 'g'\nmemory = 64\n").unwrap_err();
    assert_eq!(
        (error.position, error.kind),
        (None, ErrorKind::KernelRequired)
    );
    let hvm = DomainConfig::parse("name = 'g'\ntype = 'hvm'\nmemory = 64\n").unwrap();
    assert_eq!(hvm.kernel, None);
    assert_eq!(
        located(guest_error("kernel = ''\n")),
        (4, 10, ErrorKind::EmptyValue { key: "kernel" })
    );
}

#[test]
fn memory_forms_and_defaults() {
    let hvm =
        |more: &str| DomainConfig::parse(&format!("name = 'g'\ntype = 'hvm'\n{more}")).unwrap();
    let config = hvm("memory = 512\n");
    assert_eq!((config.memory.0, config.max_memory.0), (512, 512));
    assert_eq!(config.memory.bytes(), 512 << 20);
    assert_eq!(hvm("memory = 0x200\n").memory.0, 512);
    // xl stores every atom as text, so a quoted number works too.
    assert_eq!(hvm("memory = \"512\"\n").memory.0, 512);
    let config = hvm("maxmem = 256\n");
    assert_eq!((config.memory.0, config.max_memory.0), (256, 256));
    let config = hvm("memory = 256\nmaxmem = 1024\n");
    assert_eq!((config.memory.0, config.max_memory.0), (256, 1024));
    let config = hvm("");
    assert_eq!((config.memory.0, config.max_memory.0), (32, 32));
    assert_eq!(
        warning_kinds(&config),
        [WarningKind::MemoryDefaulted { mebibytes: 32 }]
    );
}

#[test]
fn memory_errors() {
    assert_eq!(
        located(guest_error("memory = 0\n")),
        (
            4,
            10,
            ErrorKind::OutOfRange {
                key: "memory",
                value: 0,
                min: 1,
                max: 1 << 20
            }
        )
    );
    assert!(matches!(
        guest_error("maxmem = 1048577\n").kind,
        ErrorKind::OutOfRange { key: "maxmem", .. }
    ));
    assert_eq!(
        located(guest_error("memory = '512M'\n")),
        (
            4,
            10,
            ErrorKind::NotANumber {
                key: "memory",
                text: "512M".into()
            }
        )
    );
    assert_eq!(
        located(guest_error("memory = [512]\n")),
        (4, 10, ErrorKind::ExpectedSingleValue { key: "memory" })
    );
    let error = guest_error("memory = 512\nmaxmem = 256\n");
    assert_eq!(
        error.to_string(),
        "5:10: `maxmem` (256 MiB) is below `memory` (512 MiB)"
    );
    assert_eq!(
        error.kind,
        ErrorKind::MaxMemoryBelowMemory {
            memory: 512,
            max_memory: 256
        }
    );
}

#[test]
fn vcpus() {
    assert_eq!((guest("").vcpus, guest("").max_vcpus), (1, 1));
    let config = guest("vcpus = 4\n");
    assert_eq!((config.vcpus, config.max_vcpus), (4, 4));
    let config = guest("vcpus = 2\nmaxvcpus = 8\n");
    assert_eq!((config.vcpus, config.max_vcpus), (2, 8));
    let config = guest("maxvcpus = 128\n");
    assert_eq!((config.vcpus, config.max_vcpus), (1, 128));
    assert_eq!(
        located(guest_error("vcpus = 4\nmaxvcpus = 2\n")),
        (
            5,
            12,
            ErrorKind::MaxVcpusBelowVcpus {
                vcpus: 4,
                max_vcpus: 2
            }
        )
    );
    for bad in [
        "vcpus = 0\n",
        "vcpus = 129\n",
        "maxvcpus = 0\n",
        "maxvcpus = 129\n",
    ] {
        assert!(
            matches!(guest_error(bad).kind, ErrorKind::OutOfRange { .. }),
            "{bad}"
        );
    }
}

#[test]
fn ramdisk() {
    assert_eq!(
        guest("ramdisk = 'initrd'\n").ramdisk.as_deref(),
        Some("initrd")
    );
    let config = DomainConfig::parse("name = 'g'\ntype = 'hvm'\nramdisk = 'initrd'\n").unwrap();
    assert_eq!(config.ramdisk, None);
    assert!(warning_kinds(&config).contains(&WarningKind::RamdiskWithoutKernel));
}

#[test]
fn command_line_as_xl_builds_it() {
    assert_eq!(guest("").command_line, None);
    assert_eq!(
        guest("cmdline = 'console=hvc0 quiet'\n")
            .command_line
            .as_deref(),
        Some("console=hvc0 quiet")
    );
    assert_eq!(
        guest("root = '/dev/xvda1 ro'\nextra = 'console=hvc0'\n")
            .command_line
            .as_deref(),
        Some("root=/dev/xvda1 ro console=hvc0")
    );
    assert_eq!(
        guest("root = '/dev/xvda1'\n").command_line.as_deref(),
        Some("root=/dev/xvda1")
    );
    assert_eq!(
        guest("extra = 'init=/bin/sh'\n").command_line.as_deref(),
        Some("init=/bin/sh")
    );
    assert_eq!(
        guest("extra = 'a'\nextra += ' b'\nextra += ' c'\n")
            .command_line
            .as_deref(),
        Some("a b c")
    );
    let config = guest("root = '/dev/xvda1'\ncmdline = 'quiet'\n");
    assert_eq!(config.command_line.as_deref(), Some("quiet"));
    assert_eq!(
        config.warnings,
        [Warning {
            position: Some(Position {
                line: 5,
                column: 11,
                offset: config.warnings[0].position.unwrap().offset
            }),
            kind: WarningKind::CommandLineOverridesRootAndExtra
        }]
    );
}

#[test]
fn command_line_limit() {
    let fits = "x".repeat(2047);
    assert_eq!(
        guest(&format!("extra = '{fits}'\n"))
            .command_line
            .unwrap()
            .len(),
        2047
    );
    let long = "x".repeat(2043);
    assert_eq!(
        located(guest_error(&format!("root = '{long}'\n"))),
        (4, 8, ErrorKind::CommandLineTooLong { length: 2048 })
    );
}

#[test]
fn vif_list() {
    let config = guest(
        "vif = [ 'bridge=xenbr0', '',\n  'mac=00:16:3e:00:00:02,ip=10.0.0.2,script=vif-bridge' ]\n",
    );
    assert_eq!(config.vifs.len(), 3);
    assert_eq!(config.vifs[0].bridge.as_deref(), Some("xenbr0"));
    assert_eq!(config.vifs[1], crate::Vif::default());
    assert_eq!(config.vifs[2].ip.len(), 1);
    assert_eq!(
        warning_kinds(&config),
        [WarningKind::IgnoredVifOption {
            index: 2,
            option: "script=vif-bridge".into()
        }]
    );
    assert_eq!(config.warnings[0].position.unwrap().line, 5);
}

#[test]
fn vif_errors_point_at_the_entry() {
    assert_eq!(
        located(guest_error("vif = [ 'bridge=a',\n        'mac=nope' ]\n")),
        (
            5,
            9,
            ErrorKind::Vif {
                index: 1,
                fault: VifFault::InvalidMac
            }
        )
    );
    assert_eq!(
        located(guest_error("vif = 'bridge=a'\n")),
        (4, 7, ErrorKind::ExpectedList { key: "vif" })
    );
    assert_eq!(
        located(guest_error("vif = [ ['bridge=a'] ]\n")),
        (
            4,
            9,
            ErrorKind::ExpectedStringItem {
                key: "vif",
                index: 0
            }
        )
    );
    assert_eq!(
        located(guest_error(
            "vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3e:00:00:01' ]\n"
        )),
        (4, 34, ErrorKind::DuplicateMac { index: 1, first: 0 })
    );
    let error = guest_error("vif = [ 'speed=fast' ]\n");
    assert!(
        error
            .to_string()
            .starts_with("4:9: vif 0: unknown option `speed`"),
        "{error}"
    );
}

#[test]
fn disk_list() {
    let config = guest(
        "disk = [\n  'format=qcow2, vdev=xvda, access=rw, target=guests/debian',\n  \
         'phy:/dev/vg/data,xvdb,r',\n  ',,hdc:cdrom,r',\n  'vdev=xvdc, trusted, target=guests/x',\n]\n",
    );
    assert_eq!(config.disks.len(), 4);
    assert_eq!(config.disks[0].format, DiskFormat::Qcow2);
    assert_eq!(config.disks[1].target, "/dev/vg/data");
    let vmdk = guest("disk = [ 'format=vmdk, vdev=xvda, access=ro, target=appliance' ]\n");
    assert_eq!(vmdk.disks[0].format, DiskFormat::Vmdk);
    assert!(config.disks[2].cdrom);
    assert_eq!(
        warning_kinds(&config),
        [WarningKind::IgnoredDiskOption {
            index: 3,
            option: "trusted".into()
        }]
    );
}

#[test]
fn disk_errors_point_at_the_entry() {
    assert_eq!(
        located(guest_error("disk = [\n  'a,raw,xvda',\n  'b,raw'\n]\n")),
        (
            6,
            3,
            ErrorKind::Disk {
                index: 1,
                fault: DiskFault::MissingVdev
            }
        )
    );
    assert_eq!(
        located(guest_error("disk = [ 'a,raw,xvda', 'b,raw,xvda' ]\n")),
        (4, 24, ErrorKind::DuplicateVdev { index: 1, first: 0 })
    );
    assert_eq!(
        located(guest_error("disk = [ 'a,vhd,xvda' ]\n")),
        (
            4,
            10,
            ErrorKind::UnsupportedDiskFormat {
                index: 0,
                format: DiskFormat::Vhd
            }
        )
    );
    assert_eq!(
        located(guest_error("disk = 'a,raw,xvda'\n")),
        (4, 8, ErrorKind::ExpectedList { key: "disk" })
    );
}

#[test]
fn shutdown_actions() {
    let config = guest("");
    assert_eq!(
        (config.on_poweroff, config.on_reboot, config.on_crash),
        (
            ShutdownAction::Destroy,
            ShutdownAction::Restart,
            ShutdownAction::Destroy
        )
    );
    let all = [
        ("destroy", ShutdownAction::Destroy),
        ("restart", ShutdownAction::Restart),
        ("preserve", ShutdownAction::Preserve),
        ("coredump-destroy", ShutdownAction::CoredumpDestroy),
        ("coredump-restart", ShutdownAction::CoredumpRestart),
        ("rename-restart", ShutdownAction::RenameRestart),
        ("soft-reset", ShutdownAction::SoftReset),
    ];
    for (word, action) in all {
        let config = guest(&format!(
            "on_poweroff = '{word}'\non_reboot = '{word}'\non_crash = '{word}'\n"
        ));
        assert_eq!(
            (config.on_poweroff, config.on_reboot, config.on_crash),
            (action, action, action)
        );
    }
    let error = guest_error("on_crash = 'explode'\n");
    assert_eq!(error.position.unwrap().line, 4);
    assert!(
        error.to_string().contains("unknown on_crash \"explode\""),
        "{error}"
    );
    assert!(error.to_string().contains("rename-restart"), "{error}");
}

#[test]
fn uuid() {
    let config = guest("uuid = '3F2A6C1E-8B4D-4E5F-9A7B-0C1D2E3F4A5B'\n");
    assert_eq!(
        config.uuid.unwrap().to_string(),
        "3f2a6c1e-8b4d-4e5f-9a7b-0c1d2e3f4a5b"
    );
    assert_eq!(
        located(guest_error("uuid = 'not-a-uuid'\n")),
        (4, 8, ErrorKind::InvalidUuid)
    );
}

#[test]
fn unknown_keys_are_warnings_and_kept() {
    let text = format!("{BASE}serial = 'pty'\nvnc = 1\ncpus = ['0-3']\n");
    let document = crate::Document::parse(&text).unwrap();
    let config = DomainConfig::from_document(&document).unwrap();
    let unknown: Vec<(u32, String)> = config
        .warnings
        .iter()
        .filter_map(|warning| match &warning.kind {
            WarningKind::UnknownKey { key } => Some((warning.position.unwrap().line, key.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        unknown,
        [(4, "serial".into()), (5, "vnc".into()), (6, "cpus".into())]
    );
    assert!(document.get("serial").is_some());
    assert_eq!(
        config.warnings[0].to_string(),
        "4:1: warning: unknown key `serial` is ignored"
    );
}

#[test]
fn duplicate_key_warning_reaches_the_config() {
    let config = guest("memory = 128\n");
    assert_eq!(config.memory.0, 128);
    assert_eq!(
        warning_kinds(&config),
        [WarningKind::DuplicateKey {
            key: "memory".into(),
            first_line: 3
        }]
    );
}

#[test]
fn comments_separators_and_continuations() {
    let config = DomainConfig::parse(
        "# leading comment\r\n\
         name = 'g' ; type = 'pvh' ; kernel = 'k' # three settings on one line\r\n\
         \r\n\
         extra = \"a # not a comment ; not a separator\"\r\n\
         memory = 64;\r\n\
         disk = [ # a list may span lines\r\n\
         \t'a,raw,xvda', # with comments\r\n\
         \r\n\
         \t'b,raw,xvdb'   ,\r\n\
         ]",
    )
    .unwrap();
    assert_eq!(config.name, "g");
    assert_eq!(
        config.command_line.as_deref(),
        Some("a # not a comment ; not a separator")
    );
    assert_eq!(config.disks.len(), 2);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn syntax_errors_in_a_guest_keep_their_place() {
    let cases: [(&str, (u32, u32)); 6] = [
        ("memory =\n  512\n", (4, 9)),
        ("extra = 'a\\\n b'\n", (4, 11)),
        ("memory = 512 MiB\n", (4, 14)),
        ("vif = [ 'a'\n        'b' ]\n", (5, 9)),
        ("Memory = 1\n", (4, 1)),
        ("memory: 512\n", (4, 7)),
    ];
    for (more, (line, column)) in cases {
        let error = guest_error(more);
        let position = error.position.unwrap();
        assert_eq!(
            (position.line, position.column),
            (line, column),
            "{more:?}: {error}"
        );
    }
    assert_eq!(
        guest_error("memory =\n  512\n").kind,
        ErrorKind::ExpectedValue {
            found: Found::EndOfLine
        }
    );
}
