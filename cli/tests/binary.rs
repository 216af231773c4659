//! The `xenolith` executable itself, as a user runs it: the address from
//! `XENOLITH_URL`, the token from `XENOLITH_TOKEN`, tables on stdout,
//! messages on stderr and the documented exit codes, against the fake
//! back end behind a real TCP server (`common`).

#![allow(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use std::process::{Command, Stdio};

mod common;

use common::{TOKEN, start_server};

/// Runs the binary with `words` and exactly the given environment
/// variables (the test's own XENOLITH_* are removed); returns (exit code,
/// stdout, stderr).
fn xenolith(environment: &[(&str, &str)], words: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xenolith"));
    command
        .args(words)
        .env_remove("XENOLITH_URL")
        .env_remove("XENOLITH_TOKEN")
        .stdin(Stdio::null());
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn address_and_token_from_the_environment() {
    let (url, _) = start_server();
    let (code, out, err) = xenolith(
        &[("XENOLITH_URL", &url), ("XENOLITH_TOKEN", TOKEN)],
        &["list"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().starts_with("Name "), "{out}");
    assert!(
        out.lines().any(|line| line.starts_with("Domain-0 ")),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");

    // --url beats XENOLITH_URL: an address nobody serves is exit 3.
    let (code, _, err) = xenolith(
        &[("XENOLITH_URL", &url), ("XENOLITH_TOKEN", TOKEN)],
        &["--url", "http://127.0.0.1:1", "list"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with("xenolith: cannot connect"), "{err}");
}

#[test]
fn create_then_list_json_then_destroy() {
    let (url, backend) = start_server();
    let environment = [("XENOLITH_URL", url.as_str()), ("XENOLITH_TOKEN", TOKEN)];
    let config = std::env::temp_dir().join(format!("xenolith-binary-{}.cfg", std::process::id()));
    std::fs::write(
        &config,
        "name = \"web\"\ntype = \"pvh\"\nkernel = \"vmlinuz\"\nmemory = 64\n",
    )
    .unwrap();
    let (code, out, err) = xenolith(&environment, &["create", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    assert_eq!(
        (code, out.as_str()),
        (0, "created web (id 1), building\n"),
        "{err}"
    );
    let (code, out, _) = xenolith(&environment, &["--json", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(r#""id":1,"name":"web","memory_mib":64"#),
        "{out}"
    );
    let (code, out, _) = xenolith(&environment, &["destroy", "web"]);
    assert_eq!((code, out.as_str()), (0, "destroy: web (done)\n"));
    assert!(
        backend
            .lock()
            .unwrap()
            .snapshot()
            .iter()
            .all(|domain| domain.name != "web")
    );
}

#[test]
fn exit_codes_and_messages() {
    let (url, _) = start_server();
    let (code, out, err) = xenolith(
        &[
            ("XENOLITH_URL", &url),
            ("XENOLITH_TOKEN", "wrong-token-wrong-token-wrong-token"),
        ],
        &["list"],
    );
    assert_eq!(code, 4);
    assert!(out.is_empty());
    assert_eq!(err, "xenolith: missing or wrong bearer token (HTTP 401)\n");

    let (code, _, err) = xenolith(&[("XENOLITH_URL", &url)], &["info"]);
    assert_eq!(code, 4);
    assert!(err.contains("set XENOLITH_TOKEN or pass --token"), "{err}");

    let (code, _, err) = xenolith(
        &[("XENOLITH_URL", &url), ("XENOLITH_TOKEN", TOKEN)],
        &["destroy", "ghost"],
    );
    assert_eq!(code, 1);
    assert_eq!(err, "xenolith: no such domain (HTTP 404)\n");

    let (code, _, err) = xenolith(&[("XENOLITH_URL", "ftp://x")], &["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("must start with http://"), "{err}");

    let (code, _, err) = xenolith(&[], &["frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown verb") && err.contains("usage: xenolith"),
        "{err}"
    );

    let (code, out, _) = xenolith(&[], &["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("XENOLITH_URL") && out.contains("XENOLITH_TOKEN"),
        "{out}"
    );
}
