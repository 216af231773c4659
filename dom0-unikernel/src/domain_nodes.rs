//! A guest's xenstore nodes, as libxl lays them out: the toolstack writes
//! them before introducing the domain and removes them when it is gone.
//! `/local/domain/<id>` is the guest's to read but not to change, except
//! the subtrees a PV guest writes into (`control/*`, `data`, `device`'s
//! children come later with the back ends); other guests see none of it.

use alloc::format;
use alloc::string::String;

use xenstore::{Access, ConnectionId, DomainId, Error, GuestFrame, Permissions, Port, Xenstored};

/// What the toolstack knows of a guest when it introduces it.
#[derive(Clone, Debug)]
pub struct GuestRecord<'a> {
    pub domain: DomainId,
    pub name: &'a str,
    /// The hyphenated UUID.
    pub uuid: &'a str,
    pub memory_kib: u64,
    pub max_memory_kib: u64,
    pub vcpus: u32,
    /// The console ring's frame and the guest's console port.
    pub console: (GuestFrame, Port),
}

/// `/local/domain/<id>`.
pub fn domain_path(domain: DomainId) -> String {
    format!("/local/domain/{}", domain.0)
}

/// Nodes the guest may write (libxl's `rwperms`).
const GUEST_WRITABLE: [&str; 11] = [
    "control/shutdown",
    "control/feature-poweroff",
    "control/feature-reboot",
    "control/feature-suspend",
    "control/sysrq",
    "data",
    "drivers",
    "feature",
    "attr",
    "error",
    "device",
];

/// Writes the guest's nodes, then introduces it so its ring is served.
pub fn introduce(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    guest: &GuestRecord<'_>,
    ring: (GuestFrame, Port),
) -> Result<(), Error> {
    let home = domain_path(guest.domain);
    let vm = format!("/vm/{}", guest.uuid);
    // Read-only for the guest, invisible to everyone else.
    let read_only = Permissions::new(DomainId::DOM0, Access::None).with(guest.domain, Access::Read);
    let writable = Permissions::new(guest.domain, Access::None);
    {
        let mut session = store.session(toolstack, None);
        // A stale tree from an earlier domain with this id goes first.
        session.remove(&home)?;
        session.mkdir(&home)?;
        session.set_permissions(&home, read_only.clone())?;
        session.mkdir(&vm)?;
        session.set_permissions(&vm, read_only)?;
        // New nodes inherit their parent's permissions.
        let id = format!("{}", guest.domain.0);
        let values: [(&str, String); 17] = [
            ("name", guest.name.into()),
            ("domid", id),
            ("vm", vm.clone()),
            ("memory/static-max", format!("{}", guest.max_memory_kib)),
            ("memory/target", format!("{}", guest.memory_kib)),
            ("memory/videoram", "-1".into()),
            ("cpu/0/availability", "online".into()),
            ("console/ring-ref", format!("{}", guest.console.0.0)),
            ("console/port", format!("{}", guest.console.1.0)),
            ("console/type", "xenconsoled".into()),
            ("console/limit", format!("{}", 1 << 20)),
            ("console/tty", String::new()),
            (
                "control/platform-feature-multiprocessor-suspend",
                "1".into(),
            ),
            ("control/platform-feature-xs_reset_watches", "1".into()),
            ("image/ostype", "linux".into()),
            ("store/ring-ref", format!("{}", ring.0.0)),
            ("store/port", format!("{}", ring.1.0)),
        ];
        for (key, value) in values {
            session.write(&format!("{home}/{key}"), value.as_bytes())?;
        }
        for cpu in 1..guest.vcpus.min(128) {
            session.write(&format!("{home}/cpu/{cpu}/availability"), b"online")?;
        }
        for key in GUEST_WRITABLE {
            let path = format!("{home}/{key}");
            if key.starts_with("control/") {
                session.write(&path, b"")?;
            } else {
                session.mkdir(&path)?;
            }
            session.set_permissions(&path, writable.clone())?;
        }
        for (key, value) in [("name", guest.name), ("uuid", guest.uuid)] {
            session.write(&format!("{vm}/{key}"), value.as_bytes())?;
        }
    }
    store.introduce_domain(guest.domain, ring.0, ring.1)?;
    Ok(())
}

/// Asks the guest to stop or restart by writing `control/shutdown`
/// (`"poweroff"`, `"reboot"`); Linux's watch on it does the rest.
pub fn request_shutdown(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    domain: DomainId,
    request: &str,
) -> Result<(), Error> {
    let path = format!("{}/control/shutdown", domain_path(domain));
    let mut session = store.session(toolstack, None);
    // Only a guest that set up its watch answers; a missing node means it
    // never came that far.
    session.read(&path)?;
    session.write(&path, request.as_bytes())
}

/// Whether the guest said it acts on `control/shutdown` requests.
pub fn handles_shutdown_requests(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    domain: DomainId,
) -> bool {
    let path = format!("{}/control/feature-poweroff", domain_path(domain));
    store
        .session(toolstack, None)
        .read(&path)
        .is_ok_and(|value| value == b"1")
}

/// Forgets a destroyed guest: its connection, watches and nodes.
pub fn release(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    domain: DomainId,
    uuid: &str,
) -> Result<(), Error> {
    let released = store.release_domain(domain);
    let mut session = store.session(toolstack, None);
    session.remove(&domain_path(domain))?;
    session.remove(&format!("/vm/{uuid}"))?;
    // A domain never introduced has nothing to release.
    match released {
        Ok(()) | Err(Error::NotFound) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The xenbus device id Linux derives from a disk name (`xvda` → 51712):
/// `xvd` disks 0–15 with partitions 0–15 as `(202 << 8) | disk << 4 |
/// partition`, larger ones in the extended form `1 << 28 | disk << 8 |
/// partition`; `sd` likewise with major 8. `None` for other names.
pub fn vbd_device_id(vdev: &str) -> Option<u32> {
    let (major, rest) = if let Some(rest) = vdev.strip_prefix("xvd") {
        (202, rest)
    } else if let Some(rest) = vdev.strip_prefix("sd") {
        (8, rest)
    } else {
        return None;
    };
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let (name, digits) = rest.split_at(letters);
    if name.is_empty() || name.len() > 3 {
        return None;
    }
    // Bijective base 26: a = 0, z = 25, aa = 26.
    let disk = name.bytes().fold(0u32, |total, letter| {
        total * 26 + u32::from(letter - b'a') + 1
    }) - 1;
    let partition = match digits {
        "" => 0,
        _ if digits.starts_with('0') || digits.len() > 3 => return None,
        _ => digits.parse::<u32>().ok()?,
    };
    if disk < 16 && partition < 16 {
        Some((major << 8) | (disk << 4) | partition)
    } else if disk < (1 << 20) && partition < 256 {
        Some((1 << 28) | (disk << 8) | partition)
    } else {
        None
    }
}

/// One virtual disk as the toolstack describes it to both ends.
#[derive(Clone, Debug)]
pub struct VirtualDisk<'a> {
    /// The guest (front end).
    pub domain: DomainId,
    /// From [`vbd_device_id`].
    pub device_id: u32,
    /// The name the guest sees (`xvda`).
    pub vdev: &'a str,
    /// What backs it, for the `params` key.
    pub target: &'a str,
    pub read_only: bool,
}

impl VirtualDisk<'_> {
    /// `/local/domain/<guest>/device/vbd/<id>`.
    pub fn frontend_path(&self) -> String {
        frontend_path(self.domain, "vbd", self.device_id)
    }

    /// `/local/domain/0/backend/vbd/<guest>/<id>`.
    pub fn backend_path(&self) -> String {
        backend_path(self.domain, "vbd", self.device_id)
    }
}

/// Writes a disk's back-end and front-end directories as libxl does, both
/// in state 1 (Initialising): the back end's owned by Dom0 and readable by
/// the guest, the front end's owned by the guest and readable by Dom0.
pub fn add_vbd(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    disk: &VirtualDisk<'_>,
) -> Result<(), Error> {
    let frontend = disk.frontend_path();
    let backend = disk.backend_path();
    let id = format!("{}", disk.device_id);
    let guest = format!("{}", disk.domain.0);
    let mode = if disk.read_only { "r" } else { "w" };
    let ends = DeviceEnds {
        guest: disk.domain,
        backend: &backend,
        frontend: &frontend,
    };
    ends.write(
        &mut store.session(toolstack, None),
        &[
            ("frontend", frontend.as_str()),
            ("frontend-id", guest.as_str()),
            ("online", "1"),
            ("removable", "0"),
            ("bootable", "1"),
            ("type", "phy"),
            ("params", disk.target),
            ("mode", mode),
            ("dev", disk.vdev),
            ("device-type", "disk"),
            ("state", "1"),
        ],
        &[
            ("backend", backend.as_str()),
            ("backend-id", "0"),
            ("virtual-device", id.as_str()),
            ("device-type", "disk"),
            ("state", "1"),
        ],
    )
}

/// Removes a disk's back-end directory (the front end's goes with the
/// guest's home in [`release`]).
pub fn remove_vbd(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    disk: &VirtualDisk<'_>,
) -> Result<(), Error> {
    remove_ends(
        store,
        toolstack,
        &disk.backend_path(),
        &disk.frontend_path(),
    )
}

/// One network interface as the toolstack describes it to both ends.
#[derive(Clone, Debug)]
pub struct VirtualNic<'a> {
    /// The guest (front end).
    pub domain: DomainId,
    /// The vif's number (`devid`, or its place in the `vif` list).
    pub device_id: u32,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// The bridge it joins.
    pub bridge: &'a str,
}

impl VirtualNic<'_> {
    /// `/local/domain/<guest>/device/vif/<id>`.
    pub fn frontend_path(&self) -> String {
        frontend_path(self.domain, "vif", self.device_id)
    }

    /// `/local/domain/0/backend/vif/<guest>/<id>`.
    pub fn backend_path(&self) -> String {
        backend_path(self.domain, "vif", self.device_id)
    }

    /// The MAC address as xenstore spells it: `00:16:3e:01:02:03`.
    pub fn mac_text(&self) -> String {
        let [a, b, c, d, e, f] = self.mac;
        format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}

/// A MAC address for a vif whose config gives none: Xen's OUI
/// (00:16:3e) and 24 bits from `serial` (the toolstack's count of vifs
/// made, so unique within a boot up to 2^23 of them) with the top bit set,
/// which keeps generated addresses apart from the low half where
/// hand-written ones usually sit.
pub fn generated_mac(serial: u32) -> [u8; 6] {
    let low = (serial & 0x7f_ffff) | 0x80_0000;
    let [_, high, middle, last] = low.to_be_bytes();
    [0x00, 0x16, 0x3e, high, middle, last]
}

/// Writes a vif's back-end and front-end directories as libxl does, both
/// in state 1 (Initialising), with the permissions of [`add_vbd`].
pub fn add_vif(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    nic: &VirtualNic<'_>,
) -> Result<(), Error> {
    let frontend = nic.frontend_path();
    let backend = nic.backend_path();
    let handle = format!("{}", nic.device_id);
    let guest = format!("{}", nic.domain.0);
    let mac = nic.mac_text();
    let ends = DeviceEnds {
        guest: nic.domain,
        backend: &backend,
        frontend: &frontend,
    };
    ends.write(
        &mut store.session(toolstack, None),
        &[
            ("frontend", frontend.as_str()),
            ("frontend-id", guest.as_str()),
            ("online", "1"),
            ("state", "1"),
            ("script", ""),
            ("mac", mac.as_str()),
            ("bridge", nic.bridge),
            ("handle", handle.as_str()),
            ("type", "vif"),
        ],
        &[
            ("backend", backend.as_str()),
            ("backend-id", "0"),
            ("state", "1"),
            ("handle", handle.as_str()),
            ("mac", mac.as_str()),
        ],
    )
}

/// Removes a vif's directories.
pub fn remove_vif(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    nic: &VirtualNic<'_>,
) -> Result<(), Error> {
    remove_ends(store, toolstack, &nic.backend_path(), &nic.frontend_path())
}

/// `/local/domain/<guest>/device/<kind>/<id>`: a split device's front end.
fn frontend_path(guest: DomainId, kind: &str, device_id: u32) -> String {
    format!("{}/device/{kind}/{device_id}", domain_path(guest))
}

/// `/local/domain/0/backend/<kind>/<guest>/<id>`: its back end.
fn backend_path(guest: DomainId, kind: &str, device_id: u32) -> String {
    format!(
        "{}/backend/{kind}/{}/{device_id}",
        domain_path(DomainId::DOM0),
        guest.0
    )
}

/// A split device's two directories.
struct DeviceEnds<'a> {
    /// The front end's domain.
    guest: DomainId,
    backend: &'a str,
    frontend: &'a str,
}

impl DeviceEnds<'_> {
    /// Writes both directories afresh (whatever was there goes) as libxl
    /// does: the back end's owned by Dom0 and readable by the guest, the
    /// front end's owned by the guest and readable by Dom0.
    fn write(
        &self,
        session: &mut xenstore::local::Session<'_>,
        backend_keys: &[(&str, &str)],
        frontend_keys: &[(&str, &str)],
    ) -> Result<(), Error> {
        remove_if_there(session, self.backend)?;
        remove_if_there(session, self.frontend)?;
        let ends = [
            (self.backend, DomainId::DOM0, self.guest, backend_keys),
            (self.frontend, self.guest, DomainId::DOM0, frontend_keys),
        ];
        for (directory, owner, reader, keys) in ends {
            // New nodes inherit the directory's permissions.
            session.mkdir(directory)?;
            session.set_permissions(
                directory,
                Permissions::new(owner, Access::None).with(reader, Access::Read),
            )?;
            for (key, value) in keys {
                session.write(&format!("{directory}/{key}"), value.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Removes a split device's two directories, where they are.
fn remove_ends(
    store: &mut Xenstored,
    toolstack: ConnectionId,
    backend: &str,
    frontend: &str,
) -> Result<(), Error> {
    let mut session = store.session(toolstack, None);
    remove_if_there(&mut session, backend)?;
    remove_if_there(&mut session, frontend)
}

/// RM, where a missing parent (ENOENT) means there is nothing to remove.
fn remove_if_there(session: &mut xenstore::local::Session<'_>, path: &str) -> Result<(), Error> {
    match session.remove(path) {
        Ok(()) | Err(Error::NotFound) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::{Caller, Request, Response};

    const GUEST: DomainId = DomainId(3);
    const OTHER: DomainId = DomainId(4);

    fn record(domain: DomainId, uuid: &str) -> GuestRecord<'_> {
        GuestRecord {
            domain,
            name: "web",
            uuid,
            memory_kib: 262_144,
            max_memory_kib: 262_144,
            vcpus: 2,
            console: (GuestFrame(0xfff), Port(2)),
        }
    }

    fn store_with_guests() -> (Xenstored, ConnectionId) {
        let mut store = Xenstored::default();
        let toolstack = store.open_local();
        introduce(
            &mut store,
            toolstack,
            &record(GUEST, "00000000-0000-0000-0000-000000000003"),
            (GuestFrame(0xffe), Port(1)),
        )
        .expect("introduce");
        introduce(
            &mut store,
            toolstack,
            &record(OTHER, "00000000-0000-0000-0000-000000000004"),
            (GuestFrame(0xffe), Port(1)),
        )
        .expect("introduce");
        (store, toolstack)
    }

    /// Runs `request` as the guest itself (its ring connection).
    fn as_guest(
        store: &mut Xenstored,
        domain: DomainId,
        request: Request<'_>,
    ) -> Result<Response, Error> {
        let connection = store.domain(domain).expect("introduced").connection;
        assert_eq!(
            store.connection(connection).unwrap().caller(),
            Caller::guest(domain)
        );
        store.request(connection, None, request)
    }

    #[test]
    fn the_guest_reads_its_nodes_through_relative_paths() {
        let (mut store, _) = store_with_guests();
        assert_eq!(
            as_guest(&mut store, GUEST, Request::Read { path: "name" }),
            Ok(Response::Value(b"web".to_vec()))
        );
        assert_eq!(
            as_guest(
                &mut store,
                GUEST,
                Request::Read {
                    path: "memory/target"
                }
            ),
            Ok(Response::Value(b"262144".to_vec()))
        );
        assert_eq!(
            as_guest(
                &mut store,
                GUEST,
                Request::Read {
                    path: "cpu/1/availability"
                }
            ),
            Ok(Response::Value(b"online".to_vec()))
        );
    }

    #[test]
    fn the_guest_writes_control_nodes_but_not_its_name() {
        let (mut store, _) = store_with_guests();
        for path in ["control/feature-poweroff", "data/anything", "device/vbd"] {
            assert_eq!(
                as_guest(&mut store, GUEST, Request::Write { path, value: b"1" }),
                Ok(Response::Ok),
                "{path}"
            );
        }
        for path in ["name", "memory/target", "newnode"] {
            assert_eq!(
                as_guest(&mut store, GUEST, Request::Write { path, value: b"x" }),
                Err(Error::AccessDenied),
                "{path}"
            );
        }
    }

    #[test]
    fn a_guest_cannot_see_another_guests_nodes() {
        let (mut store, _) = store_with_guests();
        for path in [
            "/local/domain/3/name",
            "/local/domain/3/data",
            "/vm/00000000-0000-0000-0000-000000000003",
        ] {
            assert_eq!(
                as_guest(&mut store, OTHER, Request::Read { path }),
                Err(Error::AccessDenied),
                "{path}"
            );
        }
        assert_eq!(
            as_guest(
                &mut store,
                OTHER,
                Request::Write {
                    path: "/local/domain/3/control/shutdown",
                    value: b"poweroff"
                }
            ),
            Err(Error::AccessDenied)
        );
    }

    #[test]
    fn a_shutdown_request_needs_a_guest_that_listens() {
        let (mut store, toolstack) = store_with_guests();
        assert!(!handles_shutdown_requests(&mut store, toolstack, GUEST));
        as_guest(
            &mut store,
            GUEST,
            Request::Write {
                path: "control/feature-poweroff",
                value: b"1",
            },
        )
        .unwrap();
        assert!(handles_shutdown_requests(&mut store, toolstack, GUEST));
        request_shutdown(&mut store, toolstack, GUEST, "poweroff").unwrap();
        assert_eq!(
            as_guest(
                &mut store,
                GUEST,
                Request::Read {
                    path: "control/shutdown"
                }
            ),
            Ok(Response::Value(b"poweroff".to_vec()))
        );
        assert_eq!(
            request_shutdown(&mut store, toolstack, DomainId(9), "poweroff"),
            Err(Error::NotFound)
        );
    }

    #[test]
    fn release_removes_everything_and_a_new_domain_starts_clean() {
        let (mut store, toolstack) = store_with_guests();
        as_guest(
            &mut store,
            GUEST,
            Request::Write {
                path: "data/x",
                value: b"1",
            },
        )
        .unwrap();
        release(
            &mut store,
            toolstack,
            GUEST,
            "00000000-0000-0000-0000-000000000003",
        )
        .unwrap();
        let mut session = store.session(toolstack, None);
        assert_eq!(session.read("/local/domain/3/name"), Err(Error::NotFound));
        assert_eq!(
            session.read("/vm/00000000-0000-0000-0000-000000000003/name"),
            Err(Error::NotFound)
        );
        assert!(store.domain(GUEST).is_none());
        // Releasing twice, or a domain never introduced, is harmless.
        release(
            &mut store,
            toolstack,
            GUEST,
            "00000000-0000-0000-0000-000000000003",
        )
        .unwrap();
        introduce(
            &mut store,
            toolstack,
            &record(GUEST, "00000000-0000-0000-0000-000000000005"),
            (GuestFrame(1), Port(1)),
        )
        .unwrap();
        assert_eq!(
            as_guest(&mut store, GUEST, Request::Read { path: "data/x" }),
            Err(Error::NotFound)
        );
        store.check().expect("consistent store");
    }

    fn disk(domain: DomainId) -> VirtualDisk<'static> {
        VirtualDisk {
            domain,
            device_id: 51712,
            vdev: "xvda",
            target: "virtio0",
            read_only: false,
        }
    }

    #[test]
    fn vbd_device_ids_follow_linux() {
        assert_eq!(vbd_device_id("xvda"), Some(51712));
        assert_eq!(vbd_device_id("xvdb"), Some(51728));
        assert_eq!(vbd_device_id("xvda1"), Some(51713));
        assert_eq!(vbd_device_id("xvdp"), Some(51952));
        assert_eq!(vbd_device_id("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(vbd_device_id("xvdaa"), Some((1 << 28) | (26 << 8)));
        assert_eq!(vbd_device_id("sda"), Some(2048));
        for bad in [
            "",
            "xvd",
            "hda",
            "xvdA",
            "xvda01",
            "xvda1x",
            "xvdaaaa",
            "xvda99999",
        ] {
            assert_eq!(vbd_device_id(bad), None, "{bad}");
        }
    }

    /// Each `key` under `directory` holds its `value`.
    fn assert_keys(
        session: &mut xenstore::local::Session<'_>,
        directory: &str,
        keys: &[(&str, &str)],
    ) {
        for (key, value) in keys {
            let read = session.read(&format!("{directory}/{key}")).unwrap();
            assert_eq!(String::from_utf8(read).unwrap(), *value, "{key}");
        }
    }

    /// libxl's permissions on a split device's two ends, as the guests
    /// see them: [`GUEST`] reads the back end (`backend`) but cannot write
    /// it, writes its own `frontend_key` (relative to its home), and
    /// [`OTHER`] sees neither end.
    fn assert_guest_access(
        store: &mut Xenstored,
        toolstack: ConnectionId,
        (backend, frontend): (&str, &str),
        frontend_key: &str,
    ) {
        let mut session = store.session(toolstack, None);
        assert_eq!(
            session
                .get_permissions(&format!("{backend}/state"))
                .unwrap(),
            Permissions::new(DomainId::DOM0, Access::None).with(GUEST, Access::Read)
        );
        assert_eq!(
            session
                .get_permissions(&format!("{frontend}/state"))
                .unwrap(),
            Permissions::new(GUEST, Access::None).with(DomainId::DOM0, Access::Read)
        );
        let path = format!("{backend}/state");
        assert_eq!(
            as_guest(store, GUEST, Request::Read { path: &path }),
            Ok(Response::Value(b"1".to_vec()))
        );
        let write = |path| Request::Write { path, value: b"4" };
        assert_eq!(
            as_guest(store, GUEST, write(&path)),
            Err(Error::AccessDenied)
        );
        assert_eq!(
            as_guest(store, GUEST, write(frontend_key)),
            Ok(Response::Ok)
        );
        let frontend_state = format!("{frontend}/state");
        for path in [path.as_str(), frontend_state.as_str()] {
            assert_eq!(
                as_guest(store, OTHER, Request::Read { path }),
                Err(Error::AccessDenied),
                "{path}"
            );
        }
    }

    /// Both ends are gone and the store is consistent.
    fn assert_removed(store: &mut Xenstored, toolstack: ConnectionId, ends: [&str; 2]) {
        let mut session = store.session(toolstack, None);
        for end in ends {
            assert_eq!(session.read(end), Err(Error::NotFound), "{end}");
        }
        store.check().expect("consistent store");
    }

    #[test]
    fn a_vbd_has_both_ends_with_libxls_permissions() {
        let (mut store, toolstack) = store_with_guests();
        add_vbd(&mut store, toolstack, &disk(GUEST)).unwrap();
        let mut session = store.session(toolstack, None);
        let backend = "/local/domain/0/backend/vbd/3/51712";
        let frontend = "/local/domain/3/device/vbd/51712";
        assert_keys(
            &mut session,
            backend,
            &[
                ("frontend", frontend),
                ("frontend-id", "3"),
                ("online", "1"),
                ("state", "1"),
                ("params", "virtio0"),
                ("mode", "w"),
                ("dev", "xvda"),
                ("device-type", "disk"),
            ],
        );
        assert_keys(
            &mut session,
            frontend,
            &[
                ("backend", backend),
                ("backend-id", "0"),
                ("state", "1"),
                ("virtual-device", "51712"),
                ("device-type", "disk"),
            ],
        );
        assert_guest_access(
            &mut store,
            toolstack,
            (backend, frontend),
            "device/vbd/51712/state",
        );
        remove_vbd(&mut store, toolstack, &disk(GUEST)).unwrap();
        assert_removed(&mut store, toolstack, [backend, frontend]);
    }

    fn nic(domain: DomainId) -> VirtualNic<'static> {
        VirtualNic {
            domain,
            device_id: 0,
            mac: [0x00, 0x16, 0x3e, 0x0a, 0x0b, 0x0c],
            bridge: "xenbr0",
        }
    }

    #[test]
    fn generated_macs_are_xens_locally_unique_ones() {
        assert_eq!(generated_mac(0), [0x00, 0x16, 0x3e, 0x80, 0x00, 0x00]);
        assert_eq!(generated_mac(0x1234), [0x00, 0x16, 0x3e, 0x80, 0x12, 0x34]);
        let made: alloc::collections::BTreeSet<[u8; 6]> = (0..1000).map(generated_mac).collect();
        assert_eq!(made.len(), 1000);
        // Unicast, and never all zero.
        assert!(made.iter().all(|mac| mac[0] & 1 == 0 && mac[3] & 0x80 != 0));
    }

    #[test]
    fn a_vif_has_both_ends_with_libxls_permissions() {
        let (mut store, toolstack) = store_with_guests();
        add_vif(&mut store, toolstack, &nic(GUEST)).unwrap();
        let mut session = store.session(toolstack, None);
        let backend = "/local/domain/0/backend/vif/3/0";
        let frontend = "/local/domain/3/device/vif/0";
        assert_keys(
            &mut session,
            backend,
            &[
                ("frontend", frontend),
                ("frontend-id", "3"),
                ("online", "1"),
                ("state", "1"),
                ("script", ""),
                ("mac", "00:16:3e:0a:0b:0c"),
                ("bridge", "xenbr0"),
                ("handle", "0"),
                ("type", "vif"),
            ],
        );
        assert_keys(
            &mut session,
            frontend,
            &[
                ("backend", backend),
                ("backend-id", "0"),
                ("state", "1"),
                ("handle", "0"),
                ("mac", "00:16:3e:0a:0b:0c"),
            ],
        );
        assert_guest_access(
            &mut store,
            toolstack,
            (backend, frontend),
            "device/vif/0/tx-ring-ref",
        );
        remove_vif(&mut store, toolstack, &nic(GUEST)).unwrap();
        assert_removed(&mut store, toolstack, [backend, frontend]);
    }
}
