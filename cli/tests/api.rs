//! The CLI's `run` against a real TCP server: `mgmt_api::Server` with the
//! fake backend behind a `std::net` listener on 127.0.0.1 (`common`).

#![allow(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use xenolith_cli::args::Environment;

mod common;

use common::{TOKEN, start_server};

/// Runs the CLI; returns (exit code, stdout, stderr).
fn xenolith(url: &str, token: Option<&str>, words: &[&str]) -> (i32, String, String) {
    let mut arguments = vec![String::from("--url"), url.to_string()];
    arguments.extend(words.iter().map(|word| word.to_string()));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let environment = Environment {
        url: None,
        token: token.map(String::from),
    };
    let code = xenolith_cli::run(&arguments, &environment, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn guest_file(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("xenolith-cli-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn list_create_console_destroy() {
    let (url, backend) = start_server();
    let (code, out, _) = xenolith(&url, Some(TOKEN), &["list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Name "), "{out}");
    assert!(out.contains("Domain-0"), "{out}");

    let config = guest_file(
        "web.cfg",
        "name = 'web'\ntype = 'pvh'\nkernel = 'vmlinuz'\nmemory = 512\nvcpus = 2\n",
    );
    let (code, out, err) = xenolith(&url, Some(TOKEN), &["create", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "created web (id 1), building\n");

    let json_config = guest_file(
        "db.json",
        r#"{"name": "db", "type": "pvh", "kernel": "vmlinuz", "memory": 128}"#,
    );
    let (code, out, err) = xenolith(
        &url,
        Some(TOKEN),
        &["--json", "create", json_config.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\":\"db\""), "{out}");

    let (code, out, _) = xenolith(&url, Some(TOKEN), &["list"]);
    assert_eq!(code, 0);
    let web_line = out.lines().find(|line| line.starts_with("web ")).unwrap();
    assert_eq!(
        web_line,
        "web                                          1   512     2     -b----      0.0"
    );

    let (code, out, _) = xenolith(&url, Some(TOKEN), &["console", "web", "--once"]);
    assert_eq!(code, 0);
    assert_eq!(out, "Booting web\n");

    for verb in ["pause", "unpause", "shutdown", "reboot"] {
        let (code, _, err) = xenolith(&url, Some(TOKEN), &[verb, "web"]);
        assert_eq!(code, 0, "{verb}: {err}");
    }
    let (code, out, _) = xenolith(&url, Some(TOKEN), &["destroy", "1"]);
    assert_eq!(code, 0);
    assert_eq!(out, "destroy: web (done)\n");
    assert!(
        backend
            .lock()
            .unwrap()
            .snapshot()
            .iter()
            .all(|domain| domain.name != "web")
    );

    let (code, _, err) = xenolith(&url, Some(TOKEN), &["destroy", "web"]);
    assert_eq!(code, 1);
    assert_eq!(err, "xenolith: no such domain (HTTP 404)\n");

    let (code, out, _) = xenolith(&url, Some(TOKEN), &["--json", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("{\"domains\":[{\"id\":0,"), "{out}");

    let (code, out, _) = xenolith(&url, Some(TOKEN), &["info"]);
    assert_eq!(code, 0);
    assert!(out.contains("nr_cpus                : 4"), "{out}");

    let broken = guest_file("broken.cfg", "name = \n");
    let (code, _, err) = xenolith(&url, Some(TOKEN), &["create", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid config") && err.contains("(HTTP 422)"),
        "{err}"
    );
    for path in [config, json_config, broken] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn wrong_or_missing_token_is_401_and_exit_4() {
    let (url, _) = start_server();
    let (code, _, err) = xenolith(&url, Some("not-the-token"), &["list"]);
    assert_eq!(code, 4);
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, _, err) = xenolith(&url, None, &["list"]);
    assert_eq!(code, 4);
    assert!(
        err.contains("HTTP 401") && err.contains("set XENOLITH_TOKEN or pass --token"),
        "{err}"
    );
    let (_, _, err) = xenolith(&url, Some("not-the-token"), &["list"]);
    assert!(
        !err.contains("set XENOLITH_TOKEN"),
        "a token was sent: {err}"
    );
}

#[test]
fn the_address_and_token_come_from_the_environment() {
    let (url, _) = start_server();
    let environment = Environment {
        url: Some(url),
        token: Some(String::from(TOKEN)),
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = xenolith_cli::run(&[String::from("list")], &environment, &mut out, &mut err);
    let (out, err) = (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Domain-0"), "{out}");
}

#[test]
fn malformed_http_gets_400_and_the_server_keeps_serving() {
    let (url, _) = start_server();
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(b"BLAH\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#"{"error":"malformed request line","code":400}"#),
        "{answer}"
    );

    let (code, out, _) = xenolith(&url, Some(TOKEN), &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("Domain-0"));
}

#[test]
fn no_server_is_exit_3_and_bad_usage_is_exit_2() {
    // Bind then drop to find a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = xenolith(&format!("http://127.0.0.1:{port}"), Some(TOKEN), &["list"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = xenolith("http://127.0.0.1:1", Some(TOKEN), &["frobnicate"]);
    assert_eq!(code, 2);
    let (code, _, _) = xenolith("ftp://x", Some(TOKEN), &["list"]);
    assert_eq!(code, 2);
    let (code, _, _) = xenolith("http://127.0.0.1:1", Some(TOKEN), &["destroy", "a/b"]);
    assert_eq!(code, 2);
}
