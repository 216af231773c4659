//! Domain lifecycle and glue actions, quotas, fairness between
//! connections, and the in-process interface.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{Harness, event};
use xenstore::wire::{Message, MessageType};
use xenstore::{
    Action, BufferLimits, Config, DomainId, Error, GuestFrame, Port, Request, Round, Xenstored,
};

#[test]
fn introduce_and_release_drive_the_glue() {
    let mut store = Xenstored::default();
    let connection = store
        .introduce_domain(DomainId(3), GuestFrame(0xabc), Port(7))
        .unwrap();
    assert_eq!(
        store.take_actions(),
        [Action::ConnectRing {
            domain: DomainId(3),
            connection,
            frame: GuestFrame(0xabc),
            port: Port(7)
        }]
    );
    assert_eq!(store.domain(DomainId(3)).unwrap().connection, connection);
    // Re-introduction (new port after resume) resets the connection.
    let mut local = store.open_local();
    store
        .session(local, None)
        .mkdir("/local/domain/3/data")
        .unwrap();
    store
        .session(local, None)
        .set_permissions(
            "/local/domain/3/data",
            xenstore::Permissions::new(DomainId(3), xenstore::Access::None),
        )
        .unwrap();
    store
        .request(
            connection,
            None,
            Request::Watch {
                path: "data",
                token: b"t",
                depth: None,
            },
        )
        .unwrap();
    store
        .request(connection, None, Request::TransactionStart)
        .unwrap();
    let half = Message::new(2, 1, 0, b"data\0".to_vec())
        .unwrap()
        .to_bytes();
    store.receive(connection, &half[..10]).unwrap();
    let again = store
        .introduce_domain(DomainId(3), GuestFrame(0xabd), Port(8))
        .unwrap();
    assert_eq!(again, connection);
    assert_eq!(store.connection(connection).unwrap().watch_count(), 0);
    assert_eq!(store.transaction_count(connection), 0);
    let actions = store.take_actions();
    assert!(actions.contains(&Action::ConnectRing {
        domain: DomainId(3),
        connection,
        frame: GuestFrame(0xabd),
        port: Port(8)
    }));
    // The partial message was dropped: a fresh one parses.
    store.receive(connection, &half).unwrap();
    assert_eq!(store.process_round(8).processed, 1);
    // Release.
    store.release_domain(DomainId(3)).unwrap();
    assert_eq!(
        store.take_actions(),
        [Action::DisconnectRing {
            domain: DomainId(3)
        }]
    );
    assert!(store.connection(connection).is_none());
    assert_eq!(store.release_domain(DomainId(3)), Err(Error::NotFound));
    assert_eq!(
        store.introduce_domain(DomainId(0), GuestFrame(1), Port(1)),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        store.introduce_domain(DomainId(4), GuestFrame(1), Port(0)),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        store.receive(connection, b"x"),
        Err(xenstore::ReceiveError::UnknownConnection)
    );
    assert_eq!(store.close(local), Ok(()));
    assert_eq!(store.close(local), Err(Error::NotFound));
    local = store.open_local();
    let ring = store
        .introduce_domain(DomainId(4), GuestFrame(1), Port(1))
        .unwrap();
    assert_eq!(store.close(ring), Err(Error::InvalidArgument));
    store.close(local).unwrap();
    store.check().unwrap();
}

#[test]
fn output_ready_actions_name_connections_with_output() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.watch(guest, "data", "t");
    harness.store.take_actions();
    let local = harness.store.open_local();
    harness
        .store
        .session(local, None)
        .write("/local/domain/5/data/x", b"1")
        .unwrap();
    assert_eq!(harness.store.take_actions(), [Action::OutputReady(guest)]);
    assert_eq!(harness.store.take_actions(), []);
    harness.send_raw(dom0, MessageType::Read.raw(), 0, b"/\0");
    harness.store.process_round(1);
    assert_eq!(harness.store.take_actions(), [Action::OutputReady(dom0)]);
}

#[test]
fn node_quota_is_equota() {
    let mut config = Config::default();
    config.quotas.nodes = 5;
    let mut harness = Harness::new(config);
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    // The guest owns "data" already.
    harness.write(guest, "data/a/b", b"").unwrap();
    harness.write(guest, "data/c", b"").unwrap();
    assert_eq!(harness.write(guest, "data/d/e", b""), Err("EQUOTA".into()));
    harness.write(guest, "data/d", b"").unwrap();
    assert_eq!(harness.write(guest, "data/f", b""), Err("EQUOTA".into()));
    assert_eq!(
        harness.error(guest, Request::Mkdir { path: "data/f" }),
        "EQUOTA"
    );
    // Rewriting existing nodes costs nothing.
    harness.write(guest, "data/c", b"again").unwrap();
    // Dom0 has no quota, even when creating nodes the guest will own.
    harness.write(dom0, "/local/domain/5/data/g", b"").unwrap();
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), 6);
    // Raising the domain's quota at run time lets it continue.
    harness
        .call(
            dom0,
            Request::SetQuota {
                domain: Some(DomainId(5)),
                name: "nodes",
                value: 0,
            },
        )
        .expect_ok();
    harness.write(guest, "data/h", b"").unwrap();
    harness.check();
}

#[test]
fn rounds_are_fair() {
    let mut harness = Harness::default();
    let flooder = harness.guest(5);
    let quiet = harness.guest(6);
    let mut flood = Vec::new();
    for index in 0..40u32 {
        flood.extend(
            Message::new(MessageType::Read.raw(), index, 0, b"data\0".to_vec())
                .unwrap()
                .to_bytes(),
        );
    }
    harness.store.receive(flooder, &flood).unwrap();
    let request = Message::new(MessageType::Read.raw(), 999, 0, b"data\0".to_vec()).unwrap();
    harness.store.receive(quiet, &request.to_bytes()).unwrap();
    let round = harness.store.process_round(2);
    assert_eq!(
        round,
        Round {
            processed: 3,
            more: true
        }
    );
    // The quiet guest's reply is already out after one round.
    let mut buffer = [0u8; 64];
    let count = harness.store.read_output(quiet, &mut buffer);
    let reply = xenstore::wire::MessageView::new_checked(&buffer[..count]).unwrap();
    assert_eq!(reply.header().request_id, 999);
    let mut rounds = 1;
    loop {
        let round = harness.store.process_round(2);
        assert!(round.processed <= 2);
        rounds += usize::from(round.processed > 0);
        // Drain so replies never push back.
        let mut sink = [0u8; 4096];
        while harness.store.read_output(flooder, &mut sink) > 0 {}
        if !round.more {
            break;
        }
    }
    assert_eq!(rounds, 20);
}

#[test]
fn request_queue_and_unread_replies_push_back() {
    let config = Config {
        buffers: BufferLimits {
            queued_requests: 4,
            reply_bytes: 64,
            ..BufferLimits::default()
        },
        ..Config::default()
    };
    let mut harness = Harness::new(config);
    let guest = harness.guest(5);
    let one = Message::new(MessageType::Read.raw(), 1, 0, b"data\0".to_vec())
        .unwrap()
        .to_bytes();
    let stream: Vec<u8> = one.iter().cycle().take(one.len() * 10).copied().collect();
    // Only four requests fit; the rest stays with the sender.
    assert_eq!(
        harness.store.receive(guest, &stream).unwrap(),
        one.len() * 4
    );
    assert_eq!(harness.store.receive(guest, &stream).unwrap(), 0);
    // The client does not read its replies: processing stops at the bound.
    let round = harness.store.process_round(10);
    assert_eq!(round.processed, 4);
    let mut total = 4;
    let mut consumed = one.len() * 4;
    // Replies to "data" (empty value) are 16 bytes: four fill 64.
    assert_eq!(
        harness.store.receive(guest, &stream[consumed..]).unwrap(),
        one.len() * 4
    );
    consumed += one.len() * 4;
    assert_eq!(
        harness.store.process_round(10),
        Round {
            processed: 0,
            more: false
        }
    );
    let mut sink = [0u8; 4096];
    harness.store.read_output(guest, &mut sink);
    total += harness.store.process_round(10).processed;
    assert_eq!(total, 8);
    assert!(consumed < stream.len());
}

#[test]
fn local_sessions() {
    let mut store = Xenstored::default();
    let toolstack = store.open_local();
    let backend = store.open_local();
    {
        let mut session = store.session(backend, None);
        session.watch("/local/domain/0/backend", b"be").unwrap();
        assert_eq!(
            session.take_watch_events(),
            [xenstore::WatchEvent {
                path: "/local/domain/0/backend".into(),
                token: b"be".to_vec()
            }]
        );
        // Dom0's relative paths.
        session.watch("device", b"rel").unwrap();
        assert_eq!(session.take_watch_events()[0].path, "device");
    }
    let transaction = store.session(toolstack, None).transaction_start().unwrap();
    {
        let mut session = store.session(toolstack, Some(transaction));
        session
            .write("/local/domain/0/backend/vbd/5/51712/state", b"1")
            .unwrap();
        session
            .write("/local/domain/5/device/vbd/51712/state", b"1")
            .unwrap();
        assert_eq!(
            session
                .read("/local/domain/0/backend/vbd/5/51712/state")
                .unwrap(),
            b"1"
        );
    }
    assert_eq!(
        store
            .session(toolstack, None)
            .read("/local/domain/0/backend/vbd/5/51712/state"),
        Err(Error::NotFound)
    );
    assert!(store.take_watch_events(backend).is_empty());
    store
        .session(toolstack, Some(transaction))
        .transaction_end(true)
        .unwrap();
    let events = store.take_watch_events(backend);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].path, "/local/domain/0/backend/vbd/5/51712/state");
    let mut session = store.session(toolstack, None);
    assert_eq!(session.directory("/local/domain").unwrap(), ["0", "5"]);
    assert_eq!(
        session.get_permissions("/local/domain/5").unwrap().owner(),
        DomainId(0)
    );
    session.mkdir("/local/domain/5/control").unwrap();
    session.remove("/local/domain/5/control").unwrap();
    assert_eq!(
        session.read("/local/domain/5/control"),
        Err(Error::NotFound)
    );
    session.unwatch("x", b"y").unwrap_err();
    assert_eq!(session.transaction_end(true), Err(Error::NotFound));
    store
        .session(backend, None)
        .unwatch("device", b"rel")
        .unwrap();
    // Sessions may introduce domains like the wire's INTRODUCE.
    store
        .request(
            toolstack,
            None,
            Request::Introduce {
                domain: DomainId(5),
                frame: GuestFrame(9),
                port: Port(3),
            },
        )
        .unwrap();
    assert!(store.domain(DomainId(5)).is_some());
    store.check().unwrap();
}

#[test]
fn guest_boot_sequence() {
    // What a Linux PVH guest does at boot, as XEN-ABI.md §5.4 describes.
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let base = "/local/domain/5";
    for (path, value) in [
        ("control/platform-feature-xs_reset_watches", "1"),
        ("memory/target", "524288"),
        ("device/vbd/51712/state", "1"),
        ("device/vbd/51712/backend-id", "0"),
        (
            "device/vbd/51712/backend",
            "/local/domain/0/backend/vbd/5/51712",
        ),
    ] {
        harness
            .write(dom0, &format!("{base}/{path}"), value.as_bytes())
            .unwrap();
    }
    harness
        .write(dom0, "/local/domain/0/backend/vbd/5/51712/state", b"2")
        .unwrap();
    let read_only = xenstore::Permissions::new(DomainId(0), xenstore::Access::None)
        .with(DomainId(5), xenstore::Access::Read);
    let guest_owned = xenstore::Permissions::new(DomainId(5), xenstore::Access::None)
        .with(DomainId(0), xenstore::Access::Read);
    for (path, permissions) in [
        (base.to_string(), read_only.clone()),
        (format!("{base}/memory"), read_only.clone()),
        (format!("{base}/memory/target"), read_only.clone()),
        (format!("{base}/device"), read_only.clone()),
        (format!("{base}/device/vbd"), read_only),
        (format!("{base}/control"), guest_owned.clone()),
        (
            format!("{base}/control/platform-feature-xs_reset_watches"),
            guest_owned.clone(),
        ),
        (format!("{base}/device/vbd/51712"), guest_owned.clone()),
        (
            format!("{base}/device/vbd/51712/state"),
            guest_owned.clone(),
        ),
        (
            format!("{base}/device/vbd/51712/backend"),
            guest_owned.clone(),
        ),
        (format!("{base}/device/vbd/51712/backend-id"), guest_owned),
        (
            "/local/domain/0/backend/vbd/5/51712/state".to_string(),
            xenstore::Permissions::new(DomainId(0), xenstore::Access::None)
                .with(DomainId(5), xenstore::Access::Read),
        ),
    ] {
        harness
            .call(
                dom0,
                Request::SetPermissions {
                    path: &path,
                    permissions,
                },
            )
            .expect_ok();
    }
    let guest = harness
        .store
        .introduce_domain(DomainId(5), GuestFrame(0xfeffc), Port(1))
        .unwrap();
    assert_eq!(
        harness
            .read(guest, "control/platform-feature-xs_reset_watches")
            .unwrap(),
        b"1"
    );
    harness.call(guest, Request::ResetWatches).expect_ok();
    harness.watch(guest, "control/shutdown", "shutdown");
    harness.watch(guest, "memory/target", "balloon");
    harness.watch(guest, "device", "fe");
    assert_eq!(harness.directory(guest, "device").unwrap(), ["vbd"]);
    assert_eq!(harness.directory(guest, "device/vbd").unwrap(), ["51712"]);
    assert_eq!(harness.read(guest, "device/vbd/51712/state").unwrap(), b"1");
    let backend =
        String::from_utf8(harness.read(guest, "device/vbd/51712/backend").unwrap()).unwrap();
    assert!(
        harness
            .directory(guest, &backend)
            .is_err_and(|error| error == "EACCES")
    );
    harness.watch(guest, &format!("{backend}/state"), "be-state");
    assert_eq!(
        harness.read(guest, &format!("{backend}/state")).unwrap(),
        b"2"
    );
    // xenbus_switch_state: read-modify-write in a transaction.
    let transaction = harness.start(guest);
    harness
        .call_in(
            guest,
            transaction,
            Request::Read {
                path: "device/vbd/51712/state",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "device/vbd/51712/state",
                value: b"3",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(guest, transaction, true), None);
    harness
        .write(guest, "control/feature-poweroff", b"1")
        .unwrap();
    let events = harness.events(guest);
    assert!(
        events.contains(&event("device/vbd/51712/state", "fe")),
        "{events:?}"
    );
    assert!(events.contains(&event(
        "/local/domain/0/backend/vbd/5/51712/state",
        "be-state"
    )));
    // The toolstack asks the guest to shut down.
    harness
        .write(dom0, &format!("{base}/control/shutdown"), b"poweroff")
        .unwrap();
    assert_eq!(
        harness.events(guest),
        [event("control/shutdown", "shutdown")]
    );
    harness.check();
}
