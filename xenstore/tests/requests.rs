//! Every request type over the wire, its success and its error paths, and
//! the permission rules between domains.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::Harness;
use xenstore::wire::MessageType;
use xenstore::{Access, Config, DomainId, GuestFrame, Permissions, Port, Quotas, Request};

fn permissions(entries: &[&str]) -> Permissions {
    Permissions::parse_strings(entries.iter().map(|entry| entry.as_bytes())).unwrap()
}

#[test]
fn read_write_and_relative_paths() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/x", b"hello").unwrap();
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/x").unwrap(),
        b"hello"
    );
    assert_eq!(
        harness.read(guest, "/local/domain/5/data/x").unwrap(),
        b"hello"
    );
    // Values are binary and may be empty; no NUL is added.
    harness.write(guest, "data/bin", b"a\0b\xff").unwrap();
    assert_eq!(harness.read(guest, "data/bin").unwrap(), b"a\0b\xff");
    harness.write(guest, "data/empty", b"").unwrap();
    assert_eq!(harness.read(guest, "data/empty").unwrap(), b"");
    assert_eq!(harness.read(guest, "data/missing"), Err("ENOENT".into()));
    // Dom0's relative paths resolve against /local/domain/0.
    harness.write(dom0, "name", b"Domain-0").unwrap();
    assert_eq!(
        harness.read(dom0, "/local/domain/0/name").unwrap(),
        b"Domain-0"
    );
    harness.check();
}

#[test]
fn write_creates_parents_with_inherited_permissions() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "/local/domain/5/data",
                permissions: permissions(&["n5", "r0", "b9"]),
            },
        )
        .expect_ok();
    harness.write(guest, "data/a/b/c", b"v").unwrap();
    for path in ["data/a", "data/a/b", "data/a/b/c"] {
        let reply = harness.call(guest, Request::GetPermissions { path });
        assert_eq!(reply.strings(), ["n5", "r0", "b9"], "{path}");
        assert_eq!(
            harness.read(guest, path).unwrap(),
            if path.ends_with('c') {
                b"v".to_vec()
            } else {
                Vec::new()
            }
        );
    }
    // Dom0 creating below a guest's node keeps the inherited owner.
    harness
        .write(dom0, "/local/domain/5/data/a/d", b"")
        .unwrap();
    assert_eq!(
        harness
            .call(
                dom0,
                Request::GetPermissions {
                    path: "/local/domain/5/data/a/d"
                }
            )
            .strings()[0],
        "n5"
    );
    // An unprivileged creator becomes the owner but keeps the default access.
    harness
        .call(
            dom0,
            Request::SetPermissions {
                path: "/local/domain/5/data",
                permissions: permissions(&["r0", "b5"]),
            },
        )
        .expect_ok();
    harness.write(guest, "data/shared/x", b"").unwrap();
    assert_eq!(
        harness
            .call(
                guest,
                Request::GetPermissions {
                    path: "data/shared"
                }
            )
            .strings(),
        ["r5", "b5"]
    );
    assert_eq!(harness.directory(guest, "data/a").unwrap(), ["b", "d"]);
    harness.check();
}

#[test]
fn mkdir_semantics() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/x", b"keep").unwrap();
    harness
        .call(guest, Request::Mkdir { path: "data/x" })
        .expect_ok();
    assert_eq!(harness.read(guest, "data/x").unwrap(), b"keep");
    harness
        .call(guest, Request::Mkdir { path: "data/y/z" })
        .expect_ok();
    assert_eq!(harness.read(guest, "data/y/z").unwrap(), b"");
    // The domain directory is read-only for its guest.
    assert_eq!(
        harness.error(
            guest,
            Request::Mkdir {
                path: "/local/domain/5"
            }
        ),
        "EACCES"
    );
    assert_eq!(
        harness.error(guest, Request::Mkdir { path: "device" }),
        "EACCES"
    );
    assert_eq!(
        harness.error(guest, Request::Mkdir { path: "/tool/x" }),
        "EACCES"
    );
    harness
        .call(dom0, Request::Mkdir { path: "/tool/x" })
        .expect_ok();
    harness.check();
}

#[test]
fn remove_semantics() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/a/b/c", b"1").unwrap();
    harness.write(guest, "data/a/d", b"2").unwrap();
    harness
        .call(guest, Request::Remove { path: "data/a" })
        .expect_ok();
    assert_eq!(harness.read(guest, "data/a/b/c"), Err("ENOENT".into()));
    assert_eq!(
        harness.directory(guest, "data").unwrap(),
        Vec::<String>::new()
    );
    // Missing node, existing parent: fine. Missing parent: ENOENT.
    harness
        .call(guest, Request::Remove { path: "data/gone" })
        .expect_ok();
    assert_eq!(
        harness.error(
            guest,
            Request::Remove {
                path: "data/gone/deeper"
            }
        ),
        "ENOENT"
    );
    // Not writable: EACCES, whether or not the node exists.
    assert_eq!(
        harness.error(
            guest,
            Request::Remove {
                path: "/local/domain/5"
            }
        ),
        "EACCES"
    );
    assert_eq!(
        harness.error(
            guest,
            Request::Remove {
                path: "/tool/nothing"
            }
        ),
        "EACCES"
    );
    assert_eq!(
        harness.error(guest, Request::Remove { path: "/" }),
        "EACCES"
    );
    assert_eq!(harness.error(dom0, Request::Remove { path: "/" }), "EINVAL");
    // Removing owned nodes gives the quota back.
    let before = harness.store.tree().owned_by(DomainId(5));
    harness.write(guest, "data/q/r", b"").unwrap();
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), before + 2);
    harness
        .call(guest, Request::Remove { path: "data/q" })
        .expect_ok();
    assert_eq!(harness.store.tree().owned_by(DomainId(5)), before);
    harness.check();
}

#[test]
fn directory_and_directory_part() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    assert_eq!(harness.directory(dom0, "/").unwrap(), ["local", "tool"]);
    assert_eq!(harness.directory(dom0, "/nothing"), Err("ENOENT".into()));
    // A directory too big for one reply.
    let mut expected = Vec::new();
    for index in 0..300 {
        let name = format!("child-with-a-long-name-{index:04}");
        harness.write(dom0, &format!("/big/{name}"), b"").unwrap();
        expected.push(name);
    }
    assert_eq!(harness.directory(dom0, "/big"), Err("E2BIG".into()));
    let mut names = Vec::new();
    let mut offset = 0u32;
    let mut generation = None;
    loop {
        let reply = harness.call(
            dom0,
            Request::DirectoryPart {
                path: "/big",
                offset,
            },
        );
        let payload = reply.expect_ok().to_vec();
        assert!(payload.len() <= 4096);
        let nul = payload.iter().position(|&byte| byte == 0).unwrap();
        let this_generation = String::from_utf8(payload[..nul].to_vec()).unwrap();
        assert_eq!(
            *generation.get_or_insert(this_generation.clone()),
            this_generation
        );
        let list = &payload[nul + 1..];
        let done = list.ends_with(b"\0\0") || list == b"\0";
        let body = if done { &list[..list.len() - 1] } else { list };
        offset += body.len() as u32;
        names.extend(
            body.split(|&byte| byte == 0)
                .filter(|name| !name.is_empty())
                .map(|name| String::from_utf8(name.to_vec()).unwrap()),
        );
        if done {
            break;
        }
    }
    assert_eq!(names, expected);
    // Past the end: the generation and an empty string.
    let reply = harness.call(
        dom0,
        Request::DirectoryPart {
            path: "/big",
            offset: 1_000_000,
        },
    );
    assert!(reply.expect_ok().ends_with(b"\0\0"));
    // The generation changes when the directory does.
    harness.write(dom0, "/big/another", b"").unwrap();
    let reply = harness.call(
        dom0,
        Request::DirectoryPart {
            path: "/big",
            offset: 0,
        },
    );
    assert_ne!(reply.strings()[0], generation.unwrap());
    assert_eq!(
        harness
            .call_raw(dom0, MessageType::DirectoryPart.raw(), 0, b"/big\0")
            .error()
            .as_deref(),
        Some("EINVAL")
    );
}

#[test]
fn permissions_between_guests() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let five = harness.guest(5);
    let seven = harness.guest(7);
    harness.write(five, "data/secret", b"s").unwrap();
    // Another guest can neither read, list, write nor remove it, and cannot
    // even learn whether a node exists there.
    assert_eq!(
        harness.read(seven, "/local/domain/5/data/secret"),
        Err("EACCES".into())
    );
    assert_eq!(
        harness.read(seven, "/local/domain/5/data/missing"),
        Err("EACCES".into())
    );
    assert_eq!(
        harness.directory(seven, "/local/domain/5/data"),
        Err("EACCES".into())
    );
    assert_eq!(
        harness.write(seven, "/local/domain/5/data/secret", b"x"),
        Err("EACCES".into())
    );
    assert_eq!(
        harness.write(seven, "/local/domain/5/data/new", b"x"),
        Err("EACCES".into())
    );
    assert_eq!(
        harness.error(
            seven,
            Request::Remove {
                path: "/local/domain/5/data/secret"
            }
        ),
        "EACCES"
    );
    assert_eq!(
        harness.error(
            seven,
            Request::GetPermissions {
                path: "/local/domain/5/data/secret"
            }
        ),
        "EACCES"
    );
    // Nor the domain directories or the root.
    assert_eq!(
        harness.directory(seven, "/local/domain"),
        Err("EACCES".into())
    );
    assert_eq!(harness.directory(seven, "/"), Err("EACCES".into()));
    assert_eq!(harness.read(seven, "/local/domain/5"), Err("EACCES".into()));
    // Its own domain directory it may read but not write.
    assert_eq!(harness.read(five, "/local/domain/5").unwrap(), b"");
    assert_eq!(
        harness.write(five, "/local/domain/5/name", b"x"),
        Err("EACCES".into())
    );
    // The owner grants read access to the other guest.
    harness
        .call(
            five,
            Request::SetPermissions {
                path: "data/secret",
                permissions: permissions(&["n5", "r7"]),
            },
        )
        .expect_ok();
    harness
        .call(
            five,
            Request::SetPermissions {
                path: "data",
                permissions: permissions(&["n5", "r7"]),
            },
        )
        .expect_ok();
    assert_eq!(
        harness.read(seven, "/local/domain/5/data/secret").unwrap(),
        b"s"
    );
    assert_eq!(
        harness.write(seven, "/local/domain/5/data/secret", b"x"),
        Err("EACCES".into())
    );
    // Where the parent is readable, a missing node is reported as missing.
    assert_eq!(
        harness.read(seven, "/local/domain/5/data/missing"),
        Err("ENOENT".into())
    );
    // Dom0 bypasses everything.
    assert_eq!(
        harness.read(dom0, "/local/domain/5/data/secret").unwrap(),
        b"s"
    );
    harness
        .write(dom0, "/local/domain/5/data/secret", b"d")
        .unwrap();
}

#[test]
fn set_permissions_rules() {
    let mut config = Config::default();
    config.quotas.permissions = 3;
    let mut harness = Harness::new(config);
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/x", b"").unwrap();
    let reply = harness.call(guest, Request::GetPermissions { path: "data/x" });
    assert_eq!(reply.payload, b"n5\0");
    // Only Dom0 changes owners.
    let set = |path: &'static str, entries: &[&str]| Request::SetPermissions {
        path,
        permissions: permissions(entries),
    };
    assert_eq!(harness.error(guest, set("data/x", &["n7"])), "EPERM");
    harness
        .call(dom0, set("/local/domain/5/data/x", &["n7"]))
        .expect_ok();
    assert_eq!(harness.error(guest, set("data/x", &["n5"])), "EACCES");
    // Not owner of the domain directory.
    assert_eq!(
        harness.error(guest, set("/local/domain/5", &["b5"])),
        "EACCES"
    );
    // Missing node: ENOENT where the parent is writable, else EACCES.
    assert_eq!(harness.error(guest, set("data/missing", &["n5"])), "ENOENT");
    assert_eq!(
        harness.error(guest, set("/tool/missing", &["n5"])),
        "EACCES"
    );
    // Too many entries for the quota; Dom0 has none.
    assert_eq!(
        harness.error(guest, set("data", &["n5", "r1", "r2", "r3"])),
        "EQUOTA"
    );
    harness
        .call(dom0, set("/local/domain/5/data", &["n5", "r1", "r2", "r3"]))
        .expect_ok();
    // Malformed permission strings.
    for payload in [
        &b"data\0"[..],
        b"data\0x5\0",
        b"data\0r\0",
        b"data\0r5",
        b"data\0r99999\0",
    ] {
        let reply = harness.call_raw(guest, MessageType::SetPermissions.raw(), 0, payload);
        assert_eq!(reply.error().as_deref(), Some("EINVAL"), "{payload:?}");
    }
    // The special nodes have permissions too.
    let reply = harness.call(
        dom0,
        Request::GetPermissions {
            path: "@releaseDomain",
        },
    );
    assert_eq!(reply.strings(), ["n0", "r32757"]);
    assert_eq!(
        harness.error(
            guest,
            Request::GetPermissions {
                path: "@introduceDomain"
            }
        ),
        "EACCES"
    );
    assert_eq!(
        harness.error(dom0, Request::GetPermissions { path: "@other" }),
        "ENOENT"
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::Read {
                path: "@releaseDomain"
            }
        ),
        "EINVAL"
    );
    harness.check();
}

#[test]
fn invalid_paths_and_payloads() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    for path in ["", "data//x", "data/x/", "data/x y", "data/ü", "/a.b", "@x"] {
        assert_eq!(harness.read(guest, path), Err("EINVAL".into()), "{path:?}");
    }
    let long = format!("data/{}", "x".repeat(2048));
    assert_eq!(harness.write(guest, &long, b""), Err("EINVAL".into()));
    let fits = format!("data/{}", "x".repeat(2000));
    harness.write(guest, &fits, b"").unwrap();
    // Unterminated or doubled strings.
    for (kind, payload) in [
        (MessageType::Read, &b"data"[..]),
        (MessageType::Read, b"data\0x\0"),
        (MessageType::Read, b""),
        (MessageType::Directory, b"data"),
        (MessageType::Write, b"data"),
        (MessageType::Mkdir, b"a\0b"),
        (MessageType::Remove, b"\0"),
        (MessageType::Watch, b"data\0"),
        (MessageType::Watch, b"data\0tok"),
        (MessageType::Unwatch, b"data\0tok\0x\0"),
        (MessageType::TransactionEnd, b"X\0"),
        (MessageType::TransactionEnd, b"T"),
        (MessageType::GetDomainPath, b"abc\0"),
        (MessageType::GetDomainPath, b"1"),
        (MessageType::Read, b"\xff\xfe\0"),
    ] {
        let reply = harness.call_raw(guest, kind.raw(), 0, payload);
        assert_eq!(
            reply.error().as_deref(),
            Some("EINVAL"),
            "{kind:?} {payload:?}"
        );
    }
}

#[test]
fn unknown_and_server_only_types() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    for kind in [15, 16, 20, 27, 1000, MessageType::INVALID, u32::MAX] {
        for connection in [dom0, guest] {
            let reply = harness.call_raw(connection, kind, 0, b"x\0");
            assert_eq!(reply.error().as_deref(), Some("ENOSYS"), "type {kind}");
        }
    }
    let reply = harness.call_raw(dom0, MessageType::SetFeature.raw(), 0, b"5\x001\0");
    assert_eq!(reply.error().as_deref(), Some("ENOSYS"));
}

#[test]
fn privileged_only_types() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    for (kind, payload) in [
        (MessageType::Control, &b"check\0"[..]),
        (MessageType::Introduce, b"9\x001\x002\0"),
        (MessageType::Release, b"5\0"),
        (MessageType::IsDomainIntroduced, b"5\0"),
        (MessageType::Resume, b"5\0"),
        (MessageType::SetTarget, b"5\x005\0"),
        (MessageType::SetFeature, b"5\x001\0"),
        (MessageType::GetQuota, b""),
        (MessageType::SetQuota, b"nodes\x001\0"),
        // Checked before the payload, as C xenstored does.
        (MessageType::Introduce, b"garbage"),
    ] {
        let reply = harness.call_raw(guest, kind.raw(), 0, payload);
        assert_eq!(reply.error().as_deref(), Some("EACCES"), "{kind:?}");
    }
    assert_eq!(
        harness.error(
            guest,
            Request::GetFeature {
                domain: Some(DomainId(5))
            }
        ),
        "EACCES"
    );
    assert!(harness.store.domain(DomainId(5)).is_some());
}

#[test]
fn domain_requests() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    let reply = harness.call(
        guest,
        Request::GetDomainPath {
            domain: DomainId(7),
        },
    );
    assert_eq!(reply.payload, b"/local/domain/7\0");
    let introduced = |harness: &mut Harness, domain| {
        harness
            .call(
                dom0,
                Request::IsDomainIntroduced {
                    domain: DomainId(domain),
                },
            )
            .payload
    };
    assert_eq!(introduced(&mut harness, 5), b"T\0");
    assert_eq!(introduced(&mut harness, 0), b"T\0");
    assert_eq!(introduced(&mut harness, 0x7ff0), b"T\0");
    assert_eq!(introduced(&mut harness, 9), b"F\0");
    let introduce = |domain, port| Request::Introduce {
        domain: DomainId(domain),
        frame: GuestFrame(0xfeed),
        port: Port(port),
    };
    harness.call(dom0, introduce(9, 3)).expect_ok();
    assert_eq!(introduced(&mut harness, 9), b"T\0");
    assert_eq!(harness.error(dom0, introduce(0, 3)), "EINVAL");
    assert_eq!(harness.error(dom0, introduce(0x7ff0, 3)), "EINVAL");
    let reply = harness.call_raw(dom0, MessageType::Introduce.raw(), 0, b"9\x00123\x000\0");
    assert_eq!(reply.error().as_deref(), Some("EINVAL"));
    let reply = harness.call_raw(dom0, MessageType::Introduce.raw(), 0, b"9\x00123\0");
    assert_eq!(reply.error().as_deref(), Some("EINVAL"));
    harness
        .call(
            dom0,
            Request::Release {
                domain: DomainId(9),
            },
        )
        .expect_ok();
    assert_eq!(introduced(&mut harness, 9), b"F\0");
    assert_eq!(
        harness.error(
            dom0,
            Request::Release {
                domain: DomainId(9)
            }
        ),
        "ENOENT"
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::Release {
                domain: DomainId(0)
            }
        ),
        "EINVAL"
    );
    harness
        .call(
            dom0,
            Request::Resume {
                domain: DomainId(5),
            },
        )
        .expect_ok();
    assert_eq!(
        harness.error(
            dom0,
            Request::Resume {
                domain: DomainId(9)
            }
        ),
        "ENOENT"
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::SetTarget {
                domain: DomainId(5),
                target: DomainId(9)
            }
        ),
        "ENOENT"
    );
    let _ = guest;
}

#[test]
fn set_target_grants_the_target_rights() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    let stubdom = harness.guest(6);
    harness.write(guest, "data/x", b"v").unwrap();
    assert_eq!(
        harness.read(stubdom, "/local/domain/5/data/x"),
        Err("EACCES".into())
    );
    harness
        .call(
            dom0,
            Request::SetTarget {
                domain: DomainId(6),
                target: DomainId(5),
            },
        )
        .expect_ok();
    assert_eq!(
        harness.read(stubdom, "/local/domain/5/data/x").unwrap(),
        b"v"
    );
    harness
        .write(stubdom, "/local/domain/5/data/x", b"w")
        .unwrap();
    assert_eq!(harness.read(stubdom, "/local/domain/5").unwrap(), b"");
    // The target's release ends the grant, so a reused id gives nothing.
    harness
        .call(
            dom0,
            Request::Release {
                domain: DomainId(5),
            },
        )
        .expect_ok();
    harness.guest(5);
    harness.write(dom0, "/local/domain/5/data/y", b"").unwrap();
    assert_eq!(
        harness.read(stubdom, "/local/domain/5/data/y"),
        Err("EACCES".into())
    );
}

#[test]
fn features_quotas_and_control() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    let features = harness.call(guest, Request::GetFeature { domain: None });
    assert_eq!(features.strings(), ["6"]);
    assert_eq!(
        harness
            .call(
                dom0,
                Request::GetFeature {
                    domain: Some(DomainId(5))
                }
            )
            .strings(),
        ["6"]
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::GetFeature {
                domain: Some(DomainId(8))
            }
        ),
        "ENOENT"
    );
    let names = harness.call(
        dom0,
        Request::GetQuota {
            domain: None,
            name: None,
        },
    );
    assert_eq!(names.strings()[0], Quotas::NAMES.join(" "));
    let get = |harness: &mut Harness, domain: Option<u16>| {
        harness
            .call(
                dom0,
                Request::GetQuota {
                    domain: domain.map(DomainId),
                    name: Some("watches"),
                },
            )
            .strings()[0]
            .clone()
    };
    assert_eq!(get(&mut harness, None), "512");
    harness
        .call(
            dom0,
            Request::SetQuota {
                domain: Some(DomainId(5)),
                name: "watches",
                value: 3,
            },
        )
        .expect_ok();
    assert_eq!(get(&mut harness, Some(5)), "3");
    assert_eq!(get(&mut harness, None), "512");
    harness
        .call(
            dom0,
            Request::SetQuota {
                domain: None,
                name: "watches",
                value: 4,
            },
        )
        .expect_ok();
    assert_eq!(get(&mut harness, None), "4");
    assert_eq!(
        harness.error(
            dom0,
            Request::GetQuota {
                domain: None,
                name: Some("memory")
            }
        ),
        "EINVAL"
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::GetQuota {
                domain: Some(DomainId(8)),
                name: Some("nodes")
            }
        ),
        "ENOENT"
    );
    harness
        .call(
            dom0,
            Request::Control {
                arguments: b"check\0",
            },
        )
        .expect_ok();
    assert!(
        !harness
            .call(
                dom0,
                Request::Control {
                    arguments: b"help\0"
                }
            )
            .payload
            .is_empty()
    );
    assert_eq!(
        harness.error(
            dom0,
            Request::Control {
                arguments: b"live-update\0"
            }
        ),
        "EINVAL"
    );
}

#[test]
fn value_size_quota_is_e2big() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let guest = harness.guest(5);
    harness.write(guest, "data/big", &[b'x'; 2048]).unwrap();
    assert_eq!(
        harness.write(guest, "data/big", &[b'x'; 2049]),
        Err("E2BIG".into())
    );
    assert_eq!(
        harness.write(guest, "data/new", &[b'x'; 2049]),
        Err("E2BIG".into())
    );
    assert_eq!(harness.read(guest, "data/new"), Err("ENOENT".into()));
    // Dom0 is bounded by the payload only.
    harness.write(dom0, "/big", &[b'x'; 4000]).unwrap();
    assert_eq!(harness.read(guest, "/big"), Err("EACCES".into()));
    harness.check();
}

#[test]
fn replies_echo_ids() {
    let mut harness = Harness::default();
    let dom0 = harness.dom0();
    let reply = harness.call(dom0, Request::Read { path: "/" });
    assert_eq!(reply.kind, MessageType::Read.raw());
    let transaction = harness.start(dom0);
    let reply = harness.call_in(dom0, transaction, Request::Read { path: "/nothing" });
    assert_eq!(
        (reply.kind, reply.transaction_id),
        (MessageType::Error.raw(), transaction)
    );
    let reply = harness.call_in(dom0, 999, Request::Read { path: "/" });
    assert_eq!(reply.error().as_deref(), Some("ENOENT"));
    let _ = Access::Read;
}
