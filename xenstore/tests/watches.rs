//! Watch firing rules: the first event, subtree and depth matching, removal,
//! relative paths, permission filtering, special watches, limits.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{Harness, event};
use xenstore::wire::{Message, MessageType};
use xenstore::{BufferLimits, Config, DomainId, GuestFrame, Permissions, Port, Request};

fn permissions(entries: &[&str]) -> Permissions {
    Permissions::parse_strings(entries.iter().map(|entry| entry.as_bytes())).unwrap()
}

#[test]
fn fires_once_on_registration_after_the_reply() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    // The raw stream: OK first, then the event, whether or not the path
    // exists or is readable.
    let request = Message::new(
        MessageType::Watch.raw(),
        77,
        0,
        b"/tool/nothing\0tok\0".to_vec(),
    )
    .unwrap();
    harness.store.receive(guest, &request.to_bytes()).unwrap();
    harness.store.process_round(1);
    let mut bytes = vec![0u8; 4096];
    let count = harness.store.read_output(guest, &mut bytes);
    let mut expected = Message::new(MessageType::Watch.raw(), 77, 0, b"OK\0".to_vec())
        .unwrap()
        .to_bytes();
    expected.extend(
        Message::new(
            MessageType::WatchEvent.raw(),
            0,
            0,
            b"/tool/nothing\0tok\0".to_vec(),
        )
        .unwrap()
        .to_bytes(),
    );
    assert_eq!(&bytes[..count], expected.as_slice());
    harness.watch(dom0, "/x/y", "t");
    assert_eq!(harness.events(dom0), [event("/x/y", "t")]);
}

#[test]
fn subtree_matching_and_relative_paths() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.watch(guest, "data/dev", "rel");
    harness.watch(dom0, "/local/domain/5/data/dev", "abs");
    assert_eq!(harness.events(guest), [event("data/dev", "rel")]);
    harness.events(dom0);
    harness.write(guest, "data/dev/vbd/state", b"1").unwrap();
    harness.write(guest, "data/dev", b"").unwrap();
    harness.write(guest, "data/devx", b"").unwrap();
    harness.write(guest, "data", b"").unwrap();
    assert_eq!(
        harness.events(guest),
        [event("data/dev/vbd/state", "rel"), event("data/dev", "rel")]
    );
    assert_eq!(
        harness.events(dom0),
        [
            event("/local/domain/5/data/dev/vbd/state", "abs"),
            event("/local/domain/5/data/dev", "abs")
        ]
    );
    // MKDIR of an existing node changes nothing and fires nothing.
    harness
        .call(guest, Request::Mkdir { path: "data/dev" })
        .expect_ok();
    assert_eq!(harness.events(guest), []);
    // SET_PERMS fires.
    harness
        .call(
            guest,
            Request::SetPermissions {
                path: "data/dev",
                permissions: permissions(&["n5", "r0"]),
            },
        )
        .expect_ok();
    assert_eq!(harness.events(guest), [event("data/dev", "rel")]);
}

#[test]
fn depth_limits_matching() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let reply = harness.call(
        dom0,
        Request::Watch {
            path: "/a",
            token: b"d0",
            depth: Some(0),
        },
    );
    reply.expect_ok();
    harness
        .call(
            dom0,
            Request::Watch {
                path: "/a",
                token: b"d1",
                depth: Some(1),
            },
        )
        .expect_ok();
    harness.events(dom0);
    harness.write(dom0, "/a", b"").unwrap();
    harness.write(dom0, "/a/b", b"").unwrap();
    harness.write(dom0, "/a/b/c", b"").unwrap();
    assert_eq!(
        harness.events(dom0),
        [event("/a", "d0"), event("/a", "d1"), event("/a/b", "d1")]
    );
}

#[test]
fn removal_events() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    harness.write(dom0, "/a/b/c", b"").unwrap();
    harness.watch(dom0, "/", "root");
    harness.watch(dom0, "/a/b/c", "leaf");
    harness.watch(dom0, "/a/b/c/none", "missing");
    harness.watch(dom0, "/a", "top");
    harness.events(dom0);
    harness
        .call(dom0, Request::Remove { path: "/a/b" })
        .expect_ok();
    let mut events = harness.events(dom0);
    events.sort();
    // Ancestors hear of the removed root; watches on removed descendants
    // hear of their own path; a watch below on a node that never existed
    // hears nothing.
    assert_eq!(
        events,
        [
            event("/a/b", "root"),
            event("/a/b", "top"),
            event("/a/b/c", "leaf")
        ]
    );
    // Removing something already gone changes nothing.
    harness
        .call(dom0, Request::Remove { path: "/a/b" })
        .expect_ok();
    assert_eq!(harness.events(dom0), []);
}

#[test]
fn events_are_filtered_by_permissions() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let five = harness.guest(5);
    let seven = harness.guest(7);
    // Guest 7 watches guest 5's data and the whole store.
    harness.watch(seven, "/local/domain/5/data", "theirs");
    harness.watch(seven, "/", "all");
    assert_eq!(harness.events(seven).len(), 2);
    harness.write(five, "data/secret", b"").unwrap();
    harness.write(dom0, "/tool/private", b"").unwrap();
    assert_eq!(harness.events(seven), []);
    // Readable node: heard.
    harness.write(dom0, "/public", b"").unwrap();
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "/public",
                permissions: permissions(&["n0", "r7"]),
            },
        )
        .expect_ok();
    harness.write(dom0, "/public", b"x").unwrap();
    assert_eq!(
        harness.events(seven),
        [event("/public", "all"), event("/public", "all")]
    );
    // A node whose parent is readable is heard too (its creation under a
    // readable directory, for instance).
    harness.write(dom0, "/public/child", b"").unwrap();
    assert_eq!(harness.events(seven), [event("/public/child", "all")]);
    // Losing read access is still heard, once.
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "/public",
                permissions: permissions(&["n0"]),
            },
        )
        .expect_ok();
    assert_eq!(harness.events(seven), [event("/public", "all")]);
    harness.write(dom0, "/public", b"y").unwrap();
    assert_eq!(harness.events(seven), []);
    // Guest 5 sharing with 7 makes 7 hear of it.
    harness
        .call(
            five,
            Request::SetPermissions {
                path: "data/secret",
                permissions: permissions(&["n5", "r7"]),
            },
        )
        .expect_ok();
    assert_eq!(
        harness.events(seven),
        [
            event("/local/domain/5/data/secret", "theirs"),
            event("/local/domain/5/data/secret", "all")
        ]
    );
}

#[test]
fn special_watches() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.watch(dom0, "@introduceDomain", "intro");
    harness.watch(dom0, "@releaseDomain", "release");
    harness
        .call(
            dom0,
            Request::Watch {
                path: "@releaseDomain",
                token: b"deep",
                depth: Some(1),
            },
        )
        .expect_ok();
    harness.watch(dom0, "@releaseDomain/9", "nine");
    harness.watch(guest, "@introduceDomain", "intro");
    harness.watch(guest, "@releaseDomain", "release");
    harness.events(dom0);
    assert_eq!(
        harness.events(guest),
        [
            event("@introduceDomain", "intro"),
            event("@releaseDomain", "release")
        ]
    );
    harness
        .store
        .introduce_domain(DomainId(9), GuestFrame(1), Port(2))
        .unwrap();
    assert_eq!(harness.events(dom0), [event("@introduceDomain", "intro")]);
    // @introduceDomain is Dom0's alone by default.
    assert_eq!(harness.events(guest), []);
    assert!(harness.store.domain_shut_down(DomainId(9)));
    assert!(!harness.store.domain_shut_down(DomainId(9)));
    let expected = [
        event("@releaseDomain", "release"),
        event("@releaseDomain/9", "deep"),
        event("@releaseDomain/9", "nine"),
    ];
    assert_eq!(harness.events(dom0), expected);
    // Any domain may read @releaseDomain (C xenstored's default).
    assert_eq!(harness.events(guest), [event("@releaseDomain", "release")]);
    harness
        .call(
            dom0,
            Request::Resume {
                domain: DomainId(9),
            },
        )
        .expect_ok();
    harness
        .call(
            dom0,
            Request::Release {
                domain: DomainId(9),
            },
        )
        .expect_ok();
    assert_eq!(harness.events(dom0), expected);
    // Releasing guest 5 does not tell guest 5 (its watches are gone).
    harness.watch(dom0, "@releaseDomain/5", "five");
    harness.events(dom0);
    harness
        .call(
            dom0,
            Request::Release {
                domain: DomainId(5),
            },
        )
        .expect_ok();
    let events = harness.events(dom0);
    assert!(
        events.contains(&event("@releaseDomain/5", "five")),
        "{events:?}"
    );
    // SET_PERMS on the special node grants a guest @introduceDomain.
    let six = harness.guest(6);
    harness.watch(six, "@introduceDomain", "intro");
    harness.events(six);
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "@introduceDomain",
                permissions: permissions(&["n0", "r6"]),
            },
        )
        .expect_ok();
    // Changing the special node's permissions is itself a change to it
    // (C xenstored fires here too).
    assert_eq!(harness.events(six), [event("@introduceDomain", "intro")]);
    harness
        .store
        .introduce_domain(DomainId(10), GuestFrame(1), Port(2))
        .unwrap();
    assert_eq!(harness.events(six), [event("@introduceDomain", "intro")]);
}

#[test]
fn unwatch_duplicates_and_quota() {
    let mut config = Config::default();
    config.quotas.watches = 3;
    let mut harness = Harness::new(config);
    let guest = harness.guest(5);
    harness.watch(guest, "data", "a");
    harness.watch(guest, "data", "b");
    harness.watch(guest, "/local/domain/5/data/x", "a");
    // Duplicates are found by the resolved path, however spelt.
    for path in ["data", "/local/domain/5/data"] {
        let duplicate = harness.call(
            guest,
            Request::Watch {
                path,
                token: b"a",
                depth: None,
            },
        );
        assert_eq!(duplicate.error().as_deref(), Some("EEXIST"));
    }
    let over = harness.call(
        guest,
        Request::Watch {
            path: "data/y",
            token: b"a",
            depth: None,
        },
    );
    assert_eq!(over.error().as_deref(), Some("EQUOTA"));
    harness
        .call(
            guest,
            Request::Unwatch {
                path: "data",
                token: b"b",
            },
        )
        .expect_ok();
    let missing = harness.call(
        guest,
        Request::Unwatch {
            path: "data",
            token: b"b",
        },
    );
    assert_eq!(missing.error().as_deref(), Some("ENOENT"));
    // Unwatch with the absolute spelling of a relative watch finds it.
    harness
        .call(
            guest,
            Request::Unwatch {
                path: "/local/domain/5/data",
                token: b"a",
            },
        )
        .expect_ok();
    harness
        .call(
            guest,
            Request::Unwatch {
                path: "data/x",
                token: b"a",
            },
        )
        .expect_ok();
    harness.watch(guest, "data", "c");
    harness.events(guest);
    harness.write(guest, "data/x", b"").unwrap();
    assert_eq!(harness.events(guest), [event("data/x", "c")]);
    let invalid = harness.call(
        guest,
        Request::Watch {
            path: "data//x",
            token: b"a",
            depth: None,
        },
    );
    assert_eq!(invalid.error().as_deref(), Some("EINVAL"));
}

#[test]
fn unread_events_coalesce_and_are_bounded() {
    let config = Config {
        buffers: BufferLimits {
            queued_watch_events: 4,
            ..BufferLimits::default()
        },
        ..Config::default()
    };
    let mut harness = Harness::new(config);
    let dom0 = harness.dom0();
    let watcher = harness.store.open_local();
    harness
        .store
        .session(watcher, None)
        .watch("/w", b"t")
        .unwrap();
    for round in 0..10 {
        harness
            .write(dom0, "/w/same", format!("{round}").as_bytes())
            .unwrap();
    }
    for index in 0..10 {
        harness.write(dom0, &format!("/w/n{index}"), b"").unwrap();
    }
    let events = harness.store.take_watch_events(watcher);
    let paths: Vec<&str> = events.iter().map(|event| event.path.as_str()).collect();
    assert_eq!(paths, ["/w", "/w/same", "/w/n0", "/w/n1"]);
    assert_eq!(
        harness
            .store
            .connection(watcher)
            .unwrap()
            .dropped_watch_events(),
        8
    );
    // Once read, events flow again.
    harness.write(dom0, "/w/same", b"").unwrap();
    assert_eq!(harness.store.take_watch_events(watcher).len(), 1);
}

#[test]
fn events_too_big_for_a_message_are_dropped() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let token = "t".repeat(1100);
    harness.watch(dom0, "/a", &token);
    harness.events(dom0);
    let long = format!("/a/{}", "x".repeat(3000));
    harness.write(dom0, &long, b"").unwrap();
    assert_eq!(harness.events(dom0), []);
    harness.write(dom0, "/a/short", b"").unwrap();
    assert_eq!(harness.events(dom0).len(), 1);
}

#[test]
fn release_removes_owned_nodes_and_fires() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/dev/x", b"").unwrap();
    harness.write(dom0, "/shared", b"").unwrap();
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "/shared",
                permissions: permissions(&["n0", "b5", "r6"]),
            },
        )
        .expect_ok();
    harness.watch(dom0, "/local/domain/5", "dom");
    harness.events(dom0);
    harness
        .call(
            dom0,
            Request::Release {
                domain: DomainId(5),
            },
        )
        .expect_ok();
    assert_eq!(harness.events(dom0), [event("/local/domain/5/data", "dom")]);
    assert_eq!(
        harness.directory(dom0, "/local/domain/5").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), 0);
    let shared = harness.call(dom0, Request::GetPermissions { path: "/shared" });
    assert_eq!(shared.strings(), ["n0", "r6"]);
    assert!(harness.store.connection(guest).is_none());
    harness.check();
}
