//! Every sample in `examples/` parses, means what its comments say, and
//! keeps the parser's promises.

use crate::invariants::check_all;
use crate::{
    ApplianceConfig, DiskAccess, DiskFormat, Document, DomainConfig, GuestType, LogLevel,
    NetworkConfig, ShutdownAction,
};

pub(super) const DEBIAN: &str = include_str!("../../examples/debian-pvh.cfg");
pub(super) const MINIMAL: &str = include_str!("../../examples/minimal.cfg");
pub(super) const APPLIANCE: &str = include_str!("../../examples/appliance.cfg");

pub(super) const ALL: [(&str, &str); 3] = [
    ("debian-pvh.cfg", DEBIAN),
    ("minimal.cfg", MINIMAL),
    ("appliance.cfg", APPLIANCE),
];

#[test]
fn every_sample_parses_and_keeps_the_promises() {
    for (file, text) in ALL {
        let document = Document::parse(text).unwrap_or_else(|error| panic!("{file}:{error}"));
        assert!(
            document.warnings().is_empty(),
            "{file}: {:?}",
            document.warnings()
        );
        assert_eq!(check_all(text.as_bytes()), Ok(()), "{file}");
    }
}

#[test]
fn debian_sample() {
    let config = DomainConfig::parse(DEBIAN).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.name, "debian");
    assert_eq!(config.guest_type, GuestType::Pvh);
    assert_eq!(
        config.uuid.unwrap().to_string(),
        "3f2a6c1e-8b4d-4e5f-9a7b-0c1d2e3f4a5b"
    );
    assert_eq!((config.memory.0, config.max_memory.0), (1024, 2048));
    assert_eq!((config.vcpus, config.max_vcpus), (2, 4));
    assert_eq!(config.kernel.as_deref(), Some("debian/vmlinuz-6.1.0-amd64"));
    assert_eq!(
        config.ramdisk.as_deref(),
        Some("debian/initrd.img-6.1.0-amd64")
    );
    assert_eq!(
        config.command_line.as_deref(),
        Some("root=/dev/xvda1 ro console=hvc0")
    );
    assert_eq!(config.vifs.len(), 1);
    assert_eq!(config.vifs[0].mac.unwrap().to_string(), "00:16:3e:5a:10:01");
    assert_eq!(config.vifs[0].bridge.as_deref(), Some("xenbr0"));
    assert_eq!(config.disks.len(), 1);
    let disk = &config.disks[0];
    assert_eq!(disk.target, "guests/debian");
    assert_eq!(disk.format, DiskFormat::Qcow2);
    assert_eq!(disk.vdev, "xvda");
    assert_eq!(disk.access, DiskAccess::ReadWrite);
    assert_eq!(config.on_poweroff, ShutdownAction::Destroy);
    assert_eq!(config.on_reboot, ShutdownAction::Restart);
    assert_eq!(config.on_crash, ShutdownAction::Preserve);
}

#[test]
fn minimal_sample() {
    let config = DomainConfig::parse(MINIMAL).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.name, "minimal");
    assert_eq!(config.memory.0, 64);
    assert_eq!(config.max_memory.0, 64);
    assert_eq!((config.vcpus, config.max_vcpus), (1, 1));
    assert!(config.vifs.is_empty() && config.disks.is_empty());
    assert_eq!(config.command_line, None);
    assert_eq!(config.uuid, None);
}

#[test]
fn appliance_sample_starts_the_sample_guests() {
    let config = ApplianceConfig::parse(APPLIANCE).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let NetworkConfig::Static { address, gateway } = config.network else {
        panic!("expected a static address");
    };
    assert_eq!(address.to_string(), "192.168.1.10/24");
    assert_eq!(gateway.unwrap().to_string(), "192.168.1.1");
    assert_eq!(config.storage.disk.as_deref(), Some("virtio0"));
    assert_eq!(config.storage.volume_store, "xenolith");
    assert_eq!(config.api.as_ref().unwrap().port, 8080);
    assert_eq!(config.log_level, LogLevel::Info);
    let names: Vec<String> = [DEBIAN, MINIMAL]
        .iter()
        .map(|text| DomainConfig::parse(text).unwrap().name)
        .collect();
    assert_eq!(config.boot_guests, names);
}

#[test]
fn guest_samples_warn_as_appliance_and_back() {
    // Each config type reads the other's keys as unknown: warnings, not errors.
    let guest_as_appliance = ApplianceConfig::parse(MINIMAL).unwrap();
    assert_eq!(guest_as_appliance.warnings.len(), 4);
    let appliance_as_guest =
        DomainConfig::parse(&format!("{APPLIANCE}\nname = 'x'\nkernel = 'k'\n")).unwrap();
    assert!(appliance_as_guest.warnings.len() >= 9);
}
