//! Transactions: isolation, commit and abort, conflicts (EAGAIN), limits,
//! and watches firing only on commit.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{Harness, event};
use xenstore::{Config, DomainId, Request};

#[test]
fn changes_are_private_until_commit() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/x", b"old").unwrap();
    let transaction = harness.start(guest);
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/x",
                value: b"new",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/y/z",
                value: b"1",
            },
        )
        .expect_ok();
    harness
        .call_in(guest, transaction, Request::Mkdir { path: "data/m" })
        .expect_ok();
    assert_eq!(
        harness
            .call_in(guest, transaction, Request::Read { path: "data/x" })
            .payload,
        b"new"
    );
    assert_eq!(
        harness
            .call_in(guest, transaction, Request::Directory { path: "data" })
            .strings(),
        ["x", "y", "m"]
    );
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/x").unwrap(),
        b"old"
    );
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/y"),
        Err("ENOENT".into())
    );
    assert_eq!(harness.end(guest, transaction, true), None);
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/x").unwrap(),
        b"new"
    );
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/y/z").unwrap(),
        b"1"
    );
    assert_eq!(
        harness.directory(dom0, "/local/domain/5/data").unwrap(),
        ["x", "y", "m"]
    );
    // The id is gone after the end.
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("ENOENT")
    );
    harness.check();
}

#[test]
fn abort_discards() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    harness.write(guest, "data/x", b"old").unwrap();
    let transaction = harness.start(guest);
    harness
        .call_in(guest, transaction, Request::Remove { path: "data/x" })
        .expect_ok();
    assert_eq!(
        harness
            .call_in(guest, transaction, Request::Read { path: "data/x" })
            .error()
            .as_deref(),
        Some("ENOENT")
    );
    assert_eq!(harness.end(guest, transaction, false), None);
    assert_eq!(harness.read(guest, "data/x").unwrap(), b"old");
    harness.check();
}

#[test]
fn conflicting_write_is_eagain() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/state", b"1").unwrap();
    let transaction = harness.start(guest);
    assert_eq!(
        harness
            .call_in(guest, transaction, Request::Read { path: "data/state" })
            .payload,
        b"1"
    );
    harness
        .write(dom0, "/local/domain/5/data/state", b"5")
        .unwrap();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/state",
                value: b"4",
            },
        )
        .expect_ok();
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("EAGAIN")
    );
    assert_eq!(harness.read(guest, "data/state").unwrap(), b"5");
    // The client retries, as Linux's xenbus_switch_state does.
    let transaction = harness.start(guest);
    let current = harness
        .call_in(guest, transaction, Request::Read { path: "data/state" })
        .payload;
    assert_eq!(current, b"5");
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/state",
                value: b"4",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(guest, transaction, true), None);
    assert_eq!(harness.read(guest, "data/state").unwrap(), b"4");
    harness.check();
}

#[test]
fn conflicting_delete_and_create_are_eagain() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/a", b"").unwrap();
    // Read a node; someone deletes it.
    let transaction = harness.start(guest);
    harness
        .call_in(guest, transaction, Request::Read { path: "data/a" })
        .expect_ok();
    harness
        .call(
            dom0,
            Request::Remove {
                path: "/local/domain/5/data/a",
            },
        )
        .expect_ok();
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("EAGAIN")
    );
    // Saw a node missing; someone creates it.
    let transaction = harness.start(guest);
    let reply = harness.call_in(guest, transaction, Request::Read { path: "data/b" });
    assert_eq!(reply.error().as_deref(), Some("ENOENT"));
    harness.write(dom0, "/local/domain/5/data/b", b"").unwrap();
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("EAGAIN")
    );
    // Two transactions creating siblings both change the parent.
    let first = harness.start(guest);
    let second = harness.start(guest);
    harness
        .call_in(
            guest,
            first,
            Request::Write {
                path: "data/c",
                value: b"",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            second,
            Request::Write {
                path: "data/d",
                value: b"",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(guest, first, true), None);
    assert_eq!(harness.end(guest, second, true).as_deref(), Some("EAGAIN"));
    assert_eq!(harness.directory(guest, "data").unwrap(), ["b", "c"]);
    harness.check();
}

#[test]
fn disjoint_transactions_both_commit() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    let other = harness.guest(6);
    harness.write(guest, "data/a", b"").unwrap();
    harness.write(guest, "data/b", b"").unwrap();
    let first = harness.start(guest);
    let second = harness.start(other);
    // Guest 6 cannot touch guest 5's nodes; use its own.
    harness.write(other, "data/c", b"").unwrap();
    harness
        .call_in(
            guest,
            first,
            Request::Write {
                path: "data/a",
                value: b"1",
            },
        )
        .expect_ok();
    harness
        .call_in(
            other,
            second,
            Request::Write {
                path: "data/c",
                value: b"2",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            first,
            Request::Write {
                path: "data/b",
                value: b"1",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(other, second, true), None);
    assert_eq!(harness.end(guest, first, true), None);
    assert_eq!(harness.read(guest, "data/b").unwrap(), b"1");
}

#[test]
fn interfering_transactions_follow_the_c_example() {
    // Transaction 1 reads A and writes B; transaction 2 reads B and writes
    // A. The first to commit wins, the other gets EAGAIN.
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    harness.write(dom0, "/a", b"a").unwrap();
    harness.write(dom0, "/b", b"b").unwrap();
    let first = harness.start(dom0);
    let second = harness.start(dom0);
    harness
        .call_in(dom0, first, Request::Read { path: "/a" })
        .expect_ok();
    harness
        .call_in(dom0, second, Request::Read { path: "/b" })
        .expect_ok();
    harness
        .call_in(
            dom0,
            first,
            Request::Write {
                path: "/b",
                value: b"1",
            },
        )
        .expect_ok();
    harness
        .call_in(
            dom0,
            second,
            Request::Write {
                path: "/a",
                value: b"2",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(dom0, first, true), None);
    assert_eq!(harness.end(dom0, second, true).as_deref(), Some("EAGAIN"));
    assert_eq!(harness.read(dom0, "/a").unwrap(), b"a");
    assert_eq!(harness.read(dom0, "/b").unwrap(), b"1");
}

#[test]
fn transaction_errors() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    let transaction = harness.start(guest);
    let nested = harness.call_in(guest, transaction, Request::TransactionStart);
    assert_eq!(nested.error().as_deref(), Some("EBUSY"));
    assert_eq!(harness.end(guest, 0, true).as_deref(), Some("ENOENT"));
    assert_eq!(harness.end(guest, 4242, true).as_deref(), Some("ENOENT"));
    let unknown = harness.call_in(guest, 4242, Request::Read { path: "data" });
    assert_eq!(unknown.error().as_deref(), Some("ENOENT"));
    // Another connection's transaction id is not ours.
    let other = harness.guest(6);
    assert_eq!(
        harness.end(other, transaction, true).as_deref(),
        Some("ENOENT")
    );
    // Permission errors inside a transaction are the same as outside.
    let denied = harness.call_in(
        guest,
        transaction,
        Request::Write {
            path: "/tool/x",
            value: b"",
        },
    );
    assert_eq!(denied.error().as_deref(), Some("EACCES"));
    assert_eq!(harness.end(guest, transaction, true), None);
    // WATCH ignores the transaction id, even an unknown one.
    let reply = harness.call_in(
        guest,
        4242,
        Request::Watch {
            path: "data",
            token: b"t",
            depth: None,
        },
    );
    assert_eq!(reply.payload, b"OK\0");
}

#[test]
fn transaction_quotas() {
    let mut config = Config::default();
    config.quotas.transactions = 2;
    config.quotas.transaction_nodes = 8;
    config.quotas.nodes = 12;
    let mut harness = Harness::new(config);
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    let first = harness.start(guest);
    let second = harness.start(guest);
    let third = harness.call(guest, Request::TransactionStart);
    assert_eq!(third.error().as_deref(), Some("EQUOTA"));
    // Dom0 has no transaction quota.
    for _ in 0..5 {
        harness.start(dom0);
    }
    // Touching too many nodes fails the operation and dooms the transaction.
    let deep = harness.call_in(
        guest,
        first,
        Request::Write {
            path: "data/a/b/c/d/e/f/g/h",
            value: b"",
        },
    );
    assert_eq!(deep.error().as_deref(), Some("EQUOTA"));
    assert_eq!(harness.end(guest, first, true).as_deref(), Some("EQUOTA"));
    // Node quota: each transaction alone fits, together they do not.
    let owned = harness.store.tree().owned_by(DomainId(5));
    assert_eq!(owned, 1);
    let third = harness.start(guest);
    for name in ["a", "b", "c", "d", "e", "f"] {
        let path = format!("data/{name}");
        harness
            .call_in(
                guest,
                second,
                Request::Write {
                    path: &path,
                    value: b"",
                },
            )
            .expect_ok();
        let path = format!("data/x{name}");
        harness
            .call_in(
                guest,
                third,
                Request::Write {
                    path: &path,
                    value: b"",
                },
            )
            .expect_ok();
    }
    assert_eq!(harness.end(guest, second, true), None);
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), 7);
    // (It would also conflict on data; the quota is checked first only if
    // nothing conflicts, so check the quota with a fresh transaction.)
    assert_eq!(harness.end(guest, third, true).as_deref(), Some("EAGAIN"));
    let fourth = harness.start(guest);
    for name in ["p", "q", "r", "s", "t"] {
        let path = format!("data/{name}");
        let reply = harness.call_in(
            guest,
            fourth,
            Request::Write {
                path: &path,
                value: b"",
            },
        );
        assert_eq!(reply.error(), None, "{name}");
    }
    let over = harness.call_in(
        guest,
        fourth,
        Request::Write {
            path: "data/u",
            value: b"",
        },
    );
    assert_eq!(over.error().as_deref(), Some("EQUOTA"));
    assert_eq!(harness.end(guest, fourth, false), None);
    harness.check();
}

#[test]
fn node_quota_is_checked_again_at_commit() {
    let mut config = Config::default();
    config.quotas.nodes = 4;
    let mut harness = Harness::new(config);
    let guest = harness.guest(5);
    harness.write(guest, "data/keep", b"").unwrap();
    let transaction = harness.start(guest);
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/t1",
                value: b"",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/t2",
                value: b"",
            },
        )
        .expect_ok();
    // Meanwhile, outside the transaction, the guest uses its last node on
    // a path the transaction never touched.
    harness.write(guest, "data/keep/n", b"").unwrap();
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("EQUOTA")
    );
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), 3);
    harness.check();
}

#[test]
fn watches_fire_at_commit_only() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.watch(dom0, "/local/domain/5/data", "w");
    assert_eq!(harness.events(dom0), [event("/local/domain/5/data", "w")]);
    let transaction = harness.start(guest);
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/x",
                value: b"1",
            },
        )
        .expect_ok();
    assert_eq!(harness.events(dom0), []);
    assert_eq!(harness.end(guest, transaction, false), None);
    assert_eq!(harness.events(dom0), []);
    let transaction = harness.start(guest);
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/x",
                value: b"1",
            },
        )
        .expect_ok();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/y",
                value: b"1",
            },
        )
        .expect_ok();
    assert_eq!(harness.end(guest, transaction, true), None);
    assert_eq!(
        harness.events(dom0),
        [
            event("/local/domain/5/data/x", "w"),
            event("/local/domain/5/data/y", "w")
        ]
    );
    // A failed commit fires nothing.
    let transaction = harness.start(guest);
    harness
        .call_in(guest, transaction, Request::Read { path: "data/x" })
        .expect_ok();
    harness
        .call_in(
            guest,
            transaction,
            Request::Write {
                path: "data/y",
                value: b"2",
            },
        )
        .expect_ok();
    harness.write(dom0, "/local/domain/5/data/x", b"3").unwrap();
    assert_eq!(harness.events(dom0), [event("/local/domain/5/data/x", "w")]);
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("EAGAIN")
    );
    assert_eq!(harness.events(dom0), []);
}

#[test]
fn reset_watches_drops_transactions() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    let transaction = harness.start(guest);
    harness.watch(guest, "data", "t");
    harness.call(guest, Request::ResetWatches).expect_ok();
    assert_eq!(
        harness.end(guest, transaction, true).as_deref(),
        Some("ENOENT")
    );
    assert_eq!(harness.store.connection(guest).unwrap().watch_count(), 0);
    harness.write(guest, "data/x", b"").unwrap();
    assert_eq!(harness.events(guest), [event("data", "t")]);
}
