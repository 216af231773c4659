//! The management API end to end through the `xenolith` CLI: the
//! appliance boots with an appliance config holding an `api_token`, QEMU
//! forwards a port on the host's 127.0.0.1 to Dom0's API port on its user
//! network (`xenolith_tests::api`), and the real `xenolith` binary (built
//! with cargo, as a user would; address and token from `XENOLITH_URL` and
//! `XENOLITH_TOKEN`) lists Domain-0, shows host info, creates a test guest
//! from an xl.cfg whose kernel names a `guest-file` boot module, sees it in
//! `list --json`, pauses and unpauses it, and destroys it. A wrong token
//! gets the 401 message and exit code 4; a second create of the same name
//! 409 and exit code 1; malformed HTTP a 400 while a connection opened
//! before it is still served afterwards. And `scripts/run --api-port`, as
//! a user starts it, serves the CLI with the token from `XENOLITH_TOKEN`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use xenolith_tests::api::{self, ApiAppliance, TOKEN};
use xenolith_tests::{Failure, Running, TempDir, boot_timeout, images, repo_root};

/// What the test guest's kernel module is called.
const KERNEL: &str = "test-guest.elf";

/// Lines that must never appear.
const TROUBLE: &[&str] = &["dom0 crashed", "dom0: panic", "dom0 triple fault", "fatal:"];

/// Builds the `xenolith` binary with cargo and returns its path (from
/// cargo's own report, so `CARGO_TARGET_DIR` and profiles are honoured).
fn xenolith_binary() -> Result<PathBuf, Failure> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let output = Command::new(&cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "xenolith-cli",
            "--bin",
            "xenolith",
            "--message-format=json",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Failure::new(format!("cannot run {cargo}: {error}")))?;
    if !output.status.success() {
        return Err(Failure::new(format!(
            "cargo build -p xenolith-cli failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let messages = String::from_utf8_lossy(&output.stdout);
    let executable = messages
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .find_map(|line| {
            let rest = &line[line.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            let path = &rest[..rest.find('"')?];
            (path.ends_with("/xenolith") && !path.contains('\\')).then(|| PathBuf::from(path))
        })
        .ok_or_else(|| Failure::new(format!("cargo named no xenolith executable:\n{messages}")))?;
    Ok(executable)
}

/// What one run of the CLI did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The CLI pointed at the appliance through `XENOLITH_URL`.
struct Cli {
    binary: PathBuf,
    url: String,
}

impl Cli {
    /// Runs `xenolith WORDS...` with `XENOLITH_TOKEN` = `token`.
    fn run(&self, token: &str, words: &[&str]) -> Result<Outcome, Failure> {
        let output = Command::new(&self.binary)
            .args(words)
            .env("XENOLITH_URL", &self.url)
            .env("XENOLITH_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| {
                Failure::new(format!("cannot run {}: {error}", self.binary.display()))
            })?;
        Ok(Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `xenolith WORDS...` with the right token and fails unless it
    /// exits 0; returns its standard output.
    fn ok(&self, qemu: &Running, words: &[&str]) -> Result<String, Failure> {
        let outcome = self.run(TOKEN, words)?;
        if outcome.code != Some(0) {
            return Err(qemu.failure(format!("xenolith {words:?} failed: {outcome:?}")));
        }
        Ok(outcome.stdout)
    }
}

/// Boots the appliance with the API on (`api::boot_with_api`: an
/// appliance config with [`TOKEN`], a host port forwarded to Dom0's API
/// port). Nothing starts at boot; the test guest's kernel is packed after a
/// config that defines (but does not start) `seed`, so configs sent
/// through the API can name it.
fn boot(dir: &TempDir) -> Result<ApiAppliance, Failure> {
    let seed = dir.write("seed.cfg", test_guest_config("seed").as_bytes())?;
    let kernel = images()?.test_guest;
    let kernel_line = format!("guest-file {KERNEL}");
    let modules: [(&Path, &str); 2] = [(&seed, "guest-config seed.cfg"), (&kernel, &kernel_line)];
    api::boot_with_api(dir, &api::appliance_config("guests = []\n"), &modules)
}

/// A test guest that waits for a byte on its console before its verdict,
/// so it stays up until the test destroys it.
fn test_guest_config(name: &str) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = 32\nkernel = \"{KERNEL}\"\n\
         extra = \"await-input\"\non_poweroff = \"destroy\"\n"
    )
}

/// Sends `request` on `stream` and reads one response (by its
/// Content-Length); returns its status line and body.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<(String, String)> {
    stream.write_all(request)?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]);
                let status = head.lines().next().unwrap_or_default().to_string();
                return Ok((status, body.into_owned()));
            }
        }
        let count = stream.read(&mut chunk)?;
        if count == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed after {:?}",
                    String::from_utf8_lossy(&bytes).into_owned()
                ),
            ));
        }
        bytes.extend_from_slice(&chunk[..count]);
    }
}

fn connect(qemu: &Running, port: u16) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|error| qemu.failure(format!("cannot connect to the API: {error}")))?;
    stream.set_read_timeout(Some(boot_timeout()))?;
    Ok(stream)
}

/// The domain named `name` in `list --json`'s answer: its `"id"`, or `None`
/// when absent.
fn listed_id(json: &str, name: &str) -> Option<u64> {
    let entry = &json[json.find(&format!("\"name\":\"{name}\""))?..];
    let before = &json[..json.len() - entry.len()];
    let id_text = &before[before.rfind("\"id\":")? + "\"id\":".len()..];
    let digits: String = id_text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn the_cli_lists_creates_and_destroys_through_the_api() -> Result<(), Failure> {
    let binary = xenolith_binary()?;
    let dir = TempDir::new("cli")?;
    let appliance = boot(&dir)?;
    let port = appliance.port;
    let mut qemu = appliance.qemu;
    let cli = Cli {
        binary,
        url: format!("http://127.0.0.1:{port}"),
    };
    api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;

    // Domain 0 in xl's table.
    let table = cli.ok(&qemu, &["list"])?;
    eprintln!("xenolith list:\n{table}");
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("Name ") || !header.contains("ID") || !header.contains("State") {
        return Err(qemu.failure(format!("xenolith list printed no table header:\n{table}")));
    }
    let dom0 = lines
        .find(|line| line.split_whitespace().nth(1) == Some("0"))
        .ok_or_else(|| qemu.failure(format!("xenolith list shows no domain 0:\n{table}")))?;
    if !dom0.starts_with("Domain-0 ") {
        return Err(qemu.failure(format!("domain 0 is not called Domain-0: {dom0:?}")));
    }
    let given = qemu.dom0_memory_mib()?;
    if dom0.split_whitespace().nth(2) != Some(given.to_string().as_str()) {
        return Err(qemu.failure(format!(
            "Dom0 was given {given} MiB, xenolith list shows {dom0:?}"
        )));
    }

    let info = cli.ok(&qemu, &["info"])?;
    if !info.contains("nr_cpus                : 1\n") || !info.contains("total_memory") {
        return Err(qemu.failure(format!("xenolith info:\n{info}")));
    }

    // A wrong token: the 401's message and exit code 4, and nothing done.
    let refused = cli.run("wrong-token-wrong-token-wrong-token", &["list"])?;
    if refused.code != Some(4) || !refused.stderr.contains("(HTTP 401)") {
        return Err(qemu.failure(format!("a wrong token: {refused:?}")));
    }

    // Create a guest from an xl.cfg; it shows in list --json.
    let config = dir.write("web.cfg", test_guest_config("web").as_bytes())?;
    let config_path = config
        .to_str()
        .ok_or_else(|| Failure::new("temporary path is not UTF-8"))?;
    let created = cli.ok(&qemu, &["create", config_path])?;
    let created_id = created
        .strip_prefix("created web (id ")
        .and_then(|rest| rest.strip_suffix("), building\n"))
        .and_then(|id| id.parse::<u64>().ok())
        .ok_or_else(|| qemu.failure(format!("xenolith create printed {created:?}")))?;
    qemu.wait_for(
        &format!("dom0: created domain {created_id} (web)"),
        boot_timeout(),
    )?;
    let listed = cli.ok(&qemu, &["--json", "list"])?;
    eprintln!("xenolith create: {created}xenolith --json list: {listed}");
    if listed_id(&listed, "web") != Some(created_id) {
        return Err(qemu.failure(format!(
            "list --json lacks web as domain {created_id}: {listed}"
        )));
    }
    // Pause and unpause: the state flags in the table follow.
    for (verb, paused) in [("pause", true), ("unpause", false)] {
        let done = cli.ok(&qemu, &[verb, "web"])?;
        if done != format!("{verb}: web (done)\n") {
            return Err(qemu.failure(format!("xenolith {verb} printed {done:?}")));
        }
        let table = cli.ok(&qemu, &["list"])?;
        let web: Vec<&str> = table
            .lines()
            .find(|line| line.starts_with("web "))
            .map(|line| line.split_whitespace().collect())
            .unwrap_or_default();
        let state = web.get(4).copied().unwrap_or_default();
        if state.len() != 6 || state.contains('p') != paused {
            return Err(qemu.failure(format!("after {verb}, web's state is {state:?}:\n{table}")));
        }
        // Its config's `memory = 32`.
        if web.get(2) != Some(&"32") {
            return Err(qemu.failure(format!("web was given 32 MiB:\n{table}")));
        }
    }
    // Waiting for console input, web is blocked (it wakes every 10 ms, so
    // one listing may catch it running).
    let mut states = Vec::new();
    while !states.iter().any(|state| state == "-b----") && states.len() < 10 {
        let table = cli.ok(&qemu, &["list"])?;
        let state = table
            .lines()
            .find(|line| line.starts_with("web "))
            .and_then(|line| line.split_whitespace().nth(4))
            .unwrap_or_default()
            .to_string();
        states.push(state);
    }
    if !states.iter().any(|state| state == "-b----") {
        return Err(qemu.failure(format!("idle web was never listed blocked: {states:?}")));
    }
    let same_name = cli.run(TOKEN, &["create", config_path])?;
    if same_name.code != Some(1) || !same_name.stderr.contains("(HTTP 409)") {
        return Err(qemu.failure(format!("creating web twice: {same_name:?}")));
    }

    // Malformed HTTP: a 400 and a close, while a connection opened before
    // it is still served, and so are new ones.
    let mut waiting = connect(&qemu, port)?;
    let mut garbage = connect(&qemu, port)?;
    garbage.write_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n")?;
    let mut answer = Vec::new();
    garbage
        .read_to_end(&mut answer)
        .map_err(|error| qemu.failure(format!("reading the 400: {error}")))?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 400 ") || !answer.contains("\"code\":400") {
        return Err(qemu.failure(format!("malformed HTTP got {answer:?}")));
    }
    let (status, body) = exchange(
        &mut waiting,
        format!("GET /v1/domains/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|error| qemu.failure(format!("the earlier connection after the 400: {error}")))?;
    if !status.starts_with("HTTP/1.1 200 ") || !body.contains("\"name\":\"web\"") {
        return Err(qemu.failure(format!(
            "the earlier connection after the 400: {status:?} {body:?}"
        )));
    }
    drop(waiting);

    // Destroy it: gone from the list.
    let destroyed = cli.ok(&qemu, &["destroy", "web"])?;
    if destroyed != "destroy: web (done)\n" {
        return Err(qemu.failure(format!("xenolith destroy printed {destroyed:?}")));
    }
    qemu.wait_for(
        &format!("dom0: destroyed domain {created_id} (web)"),
        boot_timeout(),
    )?;
    let listed = cli.ok(&qemu, &["--json", "list"])?;
    if listed_id(&listed, "web").is_some() || listed_id(&listed, "Domain-0") != Some(0) {
        return Err(qemu.failure(format!("after destroy, list --json: {listed}")));
    }
    let gone = cli.run(TOKEN, &["destroy", "web"])?;
    if gone.code != Some(1) || !gone.stderr.contains("(HTTP 404)") {
        return Err(qemu.failure(format!("destroying web again: {gone:?}")));
    }

    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}

#[test]
fn listed_ids_are_read_from_list_json() {
    let json = r#"{"domains":[{"id":0,"name":"Domain-0","memory_mib":1},{"id":12,"name":"web","memory_mib":32}]}"#;
    assert_eq!(listed_id(json, "web"), Some(12));
    assert_eq!(listed_id(json, "Domain-0"), Some(0));
    assert_eq!(listed_id(json, "db"), None);
}

/// `scripts/run` started headless in the background; on drop it gets
/// SIGTERM (its trap stops QEMU) and is waited for.
struct ScriptsRun {
    child: std::process::Child,
    serial: PathBuf,
    messages: PathBuf,
}

impl ScriptsRun {
    fn read(path: &Path) -> String {
        std::fs::read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn failure(&self, what: impl std::fmt::Display) -> Failure {
        Failure::new(format!(
            "{what}\n--- scripts/run's messages ---\n{}\n--- serial ---\n{}",
            Self::read(&self.messages),
            Self::read(&self.serial)
        ))
    }

    /// Waits until the serial console (scripts/run's stdout) shows `needle`.
    fn wait_for(&mut self, needle: &str) -> Result<(), Failure> {
        let deadline = std::time::Instant::now() + boot_timeout();
        while !Self::read(&self.serial).contains(needle) {
            let exited = self.child.try_wait()?;
            if exited.is_some() || std::time::Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "waiting for {needle:?}: scripts/run {}",
                    exited.map_or("still runs".into(), |status| format!("exited ({status})"))
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok(())
    }
}

impl Drop for ScriptsRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while let Ok(None) = self.child.try_wait() {
                if std::time::Instant::now() >= deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = self.child.wait();
        }
    }
}

#[test]
fn scripts_run_api_port_serves_the_cli_with_the_token_from_the_environment() -> Result<(), Failure>
{
    let binary = xenolith_binary()?;
    images()?;
    let dir = TempDir::new("cli-scripts-run")?;
    let port = api::free_port()?;
    let serial = dir.path().join("serial.log");
    let messages = dir.path().join("messages.log");
    let child = Command::new(repo_root().join("scripts").join("run"))
        .args(["--no-build", "--headless", "--no-guest", "--api-port"])
        .arg(port.to_string())
        .env("XENOLITH_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&serial)?)
        .stderr(std::fs::File::create(&messages)?)
        .spawn()
        .map_err(|error| Failure::new(format!("cannot start scripts/run: {error}")))?;
    let mut run = ScriptsRun {
        child,
        serial,
        messages,
    };
    run.wait_for("dom0: address ")?;
    let url = format!("http://127.0.0.1:{port}");
    let told = ScriptsRun::read(&run.messages);
    if !told.contains(&format!("export XENOLITH_URL={url}")) {
        return Err(run.failure("scripts/run did not say which XENOLITH_URL to export"));
    }
    api::wait_for_api(port, boot_timeout()).map_err(|error| run.failure(error))?;
    let cli = Cli { binary, url };
    let outcome = cli.run(TOKEN, &["list"])?;
    let dom0_listed = outcome
        .stdout
        .lines()
        .any(|line| line.starts_with("Domain-0 "));
    if outcome.code != Some(0) || !dom0_listed {
        return Err(run.failure(format!("xenolith list: {outcome:?}")));
    }
    Ok(())
}
