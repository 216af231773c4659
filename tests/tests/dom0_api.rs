//! Dom0 on the network and the management API it serves: the appliance
//! boots with an `appliance-config` setting an API token, Dom0 leases an
//! address from QEMU's DHCP server through its own port on `xenbr0`, and
//! the host reaches the API through a forwarded port with plain TCP; a
//! Debian guest created through the API pings Dom0 across the bridge and
//! reads its own entry from the API.

use std::path::Path;
use std::time::{Duration, Instant};

use xenolith_img::VolumeKind;
use xenolith_tests::api::{self, ApiAppliance, HttpResponse, TOKEN};
use xenolith_tests::debian::{DETACH, attach, guest_files, guest_value, linux_timeout};
use xenolith_tests::disks::{appliance_disk, img};
use xenolith_tests::{Failure, Running, TempDir, boot_timeout};

const TROUBLE: &[&str] = &["dom0 crashed", "panic", "dom0: api: cannot listen"];

fn boot(dir: &TempDir) -> Result<ApiAppliance, Failure> {
    api::boot_with_api(dir, &api::appliance_config(""), &[])
}

#[test]
fn dom0_leases_an_address_and_serves_the_api_with_its_token() -> Result<(), Failure> {
    let dir = TempDir::new("dom0-api")?;
    let mut appliance = boot(&dir)?;
    let port = appliance.port;
    let qemu = &mut appliance.qemu;
    // QEMU's DHCP server hands out 10.0.2.15 first: Dom0 asked before any
    // guest could.
    if appliance.address != "10.0.2.15/24" {
        return Err(qemu.failure(format!("odd address {:?}", appliance.address)));
    }
    qemu.assert_serial_contains(&["dom0: address 10.0.2.15/24 via dhcp, gateway 10.0.2.2"])?;
    let waited = api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;
    eprintln!(
        "the API answered {} ms after Dom0 logged its address",
        waited.as_millis()
    );

    // The right token: host facts with memory.
    let host = api::get(port, "/v1/host").map_err(|error| qemu.failure(error))?;
    if host.status != 200 || host.header("content-type") != Some("application/json") {
        return Err(qemu.failure(format!("GET /v1/host: {host:?}")));
    }
    let total = api::json_number(&host.body, "total_memory_mib").unwrap_or(0);
    let free = api::json_number(&host.body, "free_memory_mib").unwrap_or(u64::MAX);
    // QEMU has 1 GiB; the hypervisor manages most of it.
    if !(512..=1024).contains(&total) || free >= total || free == 0 {
        return Err(qemu.failure(format!(
            "GET /v1/host: memory {total}/{free}: {}",
            host.body
        )));
    }
    if api::json_string(&host.body, "api_version").as_deref() != Some("1") {
        return Err(qemu.failure(format!("GET /v1/host: {}", host.body)));
    }

    // A wrong token, and none: 401 with the challenge.
    for token in [Some("xenolith-integration-test-token-0123456788"), None] {
        let refused = api::request(port, "GET", "/v1/host", token, None, boot_timeout())
            .map_err(|error| qemu.failure(error))?;
        if refused.status != 401 || refused.header("www-authenticate").is_none() {
            return Err(qemu.failure(format!("token {token:?}: {refused:?}")));
        }
        if refused.body.contains("total_memory_mib") {
            return Err(qemu.failure("a refused request got the host's facts"));
        }
    }

    // Garbage: 400, and the server goes on answering other connections.
    let garbage = api::exchange(
        port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        boot_timeout(),
    )
    .map_err(|error| qemu.failure(error))?;
    let garbage = api::parse_response(&garbage).map_err(|error| qemu.failure(error))?;
    if garbage.status != 400 {
        return Err(qemu.failure(format!("garbage: {garbage:?}")));
    }
    let after = api::get(port, "/v1/host").map_err(|error| qemu.failure(error))?;
    if after.status != 200 {
        return Err(qemu.failure(format!("after garbage: {after:?}")));
    }

    // The domain list has Dom0; an unknown domain is 404.
    let domains = api::get(port, "/v1/domains").map_err(|error| qemu.failure(error))?;
    if domains.status != 200 || !domains.body.contains("\"name\":\"Domain-0\"") {
        return Err(qemu.failure(format!("GET /v1/domains: {domains:?}")));
    }
    let missing = api::get(port, "/v1/domains/nosuchguest").map_err(|error| qemu.failure(error))?;
    if missing.status != 404 {
        return Err(qemu.failure(format!("GET /v1/domains/nosuchguest: {missing:?}")));
    }

    // Two requests on one kept-alive connection are both answered.
    let pipelined = format!(
        "GET /v1/host HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n\
         GET /v1/domains/0 HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let both = api::exchange(port, pipelined.as_bytes(), boot_timeout())
        .map_err(|error| qemu.failure(error))?;
    let both = String::from_utf8_lossy(&both);
    if both.matches("HTTP/1.1 200 OK").count() != 2 || !both.contains("\"id\":0") {
        return Err(qemu.failure(format!("pipelined: {both:?}")));
    }

    // Connections in a row: sockets are reused as connections end.
    let started = Instant::now();
    for round in 0..12 {
        let host = api::get(port, "/v1/host").map_err(|error| qemu.failure(error))?;
        if host.status != 200 {
            return Err(qemu.failure(format!("request {round} in a row: {host:?}")));
        }
    }
    eprintln!(
        "12 connections in a row, one GET /v1/host each: {} ms per request",
        started.elapsed().as_millis() / 12
    );
    // The serial shell's info says the same.
    qemu.send("info\r")?;
    qemu.wait_for("dom0_address       : 10.0.2.15/24 (dhcp)", boot_timeout())?;
    qemu.wait_for("management_api     : TCP port 8080", boot_timeout())?;

    // Idle with its address, a lease to renew and six sockets listening,
    // Dom0 sleeps until a frame or a deadline: QEMU stays mostly idle.
    let window = Duration::from_secs(3);
    let cpu_before = qemu.cpu_time()?;
    let wall_before = Instant::now();
    std::thread::sleep(window);
    let cpu = qemu.cpu_time()?.saturating_sub(cpu_before);
    let share = cpu.as_secs_f64() / wall_before.elapsed().as_secs_f64();
    eprintln!(
        "idle with the API listening: QEMU used {:.0} % of a CPU",
        share * 100.0
    );
    if share >= 0.5 {
        return Err(qemu.failure(format!(
            "Dom0 with the API listening kept QEMU busy ({:.0} % of a CPU): it must sleep, not poll",
            share * 100.0
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}

#[test]
fn a_static_address_and_another_port_serve_the_api_and_no_token_means_no_api() -> Result<(), Failure>
{
    let dir = TempDir::new("dom0-api-static")?;
    let config = format!(
        "network = \"static\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\
         api_port = 9090\napi_token = \"{TOKEN}\"\n"
    );
    let mut appliance = api::boot_with_api_on(&dir, &config, 9090, &[])?;
    let qemu = &mut appliance.qemu;
    if appliance.address != "10.0.2.15/24" {
        return Err(qemu.failure(format!("odd address {:?}", appliance.address)));
    }
    qemu.assert_serial_contains(&["dom0: address 10.0.2.15/24 static, gateway 10.0.2.2"])?;
    qemu.assert_serial_lacks(&["asking DHCP"])?;
    qemu.send("info\r")?;
    qemu.wait_for("dom0_address       : 10.0.2.15/24 (static)", boot_timeout())?;
    api::wait_for_api(appliance.port, boot_timeout()).map_err(|error| qemu.failure(error))?;
    drop(appliance);

    // No token: Dom0 still takes its address, but nothing listens.
    let dir = TempDir::new("dom0-api-off")?;
    let mut appliance = api::boot_forwarding(&dir, "network = \"dhcp\"\n", api::API_PORT, &[])?;
    let qemu = &mut appliance.qemu;
    qemu.wait_for(
        "dom0: management API off: the appliance config sets no api_token",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: address 10.0.2.15/24 via dhcp", boot_timeout())?;
    qemu.send("info\r")?;
    qemu.wait_for("management_api     : off (no api_token)", boot_timeout())?;
    // QEMU accepts on the host and gets reset by Dom0: no answer comes.
    let answer = api::exchange(
        appliance.port,
        format!("GET /v1/host HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    if let Ok(bytes) = &answer
        && !bytes.is_empty()
    {
        return Err(qemu.failure(format!(
            "an API without a token answered: {:?}",
            String::from_utf8_lossy(bytes)
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}

/// A Debian guest with a vif on `xenbr0`, as the API creates it.
fn web_config(kernel: &str) -> String {
    format!(
        "name = \"web\"\ntype = \"pvh\"\nmemory = 192\nkernel = \"{kernel}\"\n\
         ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
         vif = [ \"mac=00:16:3e:00:00:2a, bridge=xenbr0\" ]\non_poweroff = \"destroy\"\n"
    )
}

fn send(
    qemu: &Running,
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Result<HttpResponse, Failure> {
    // A create is answered once the domain exists; the long timeout is for
    // console long-polls and for a Dom0 slowed by a heavily loaded host.
    api::request(port, method, path, Some(TOKEN), body, linux_timeout())
        .map_err(|error| qemu.failure(error))
}

/// `POST /v1/domains` with an xl.cfg body: a create.
fn create(qemu: &Running, port: u16, config: &str) -> Result<HttpResponse, Failure> {
    send(
        qemu,
        port,
        "POST",
        "/v1/domains",
        Some(("text/plain", config)),
    )
}

/// Expects a create of `config` refused as unprocessable (422), the
/// refusal naming `name`, the file or volume it could not use.
fn expect_create_refused(
    qemu: &Running,
    port: u16,
    what: &str,
    config: &str,
    name: &str,
) -> Result<(), Failure> {
    let refused = create(qemu, port, config)?;
    expect(qemu, what, &refused, 422)?;
    if !refused.body.contains(name) {
        return Err(qemu.failure(format!(
            "{what}: the refusal does not name {name}: {}",
            refused.body
        )));
    }
    Ok(())
}

fn expect(qemu: &Running, what: &str, response: &HttpResponse, status: u16) -> Result<(), Failure> {
    if response.status != status {
        return Err(qemu.failure(format!("{what}: expected {status}, got {response:?}")));
    }
    Ok(())
}

/// The `state` flags of domain `name` as `GET /v1/domains/{name}` gives them.
fn state_of(qemu: &Running, port: u16, name: &str) -> Result<String, Failure> {
    let domain = send(qemu, port, "GET", &format!("/v1/domains/{name}"), None)?;
    expect(qemu, "GET domain", &domain, 200)?;
    api::json_string(&domain.body, "state")
        .ok_or_else(|| qemu.failure(format!("no state in {}", domain.body)))
}

#[test]
fn a_guest_created_through_the_api_pings_dom0_reboots_and_powers_off_through_it()
-> Result<(), Failure> {
    let dir = TempDir::new("dom0-api-guest")?;
    let (kernel, initramfs) = guest_files()?;
    // Only files: the guest's config arrives through the API.
    let modules: [(&Path, &str); 2] = [
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let mut appliance = api::boot_with_api(&dir, &api::appliance_config(""), &modules)?;
    let port = appliance.port;
    let dom0_address = appliance
        .address
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let qemu = &mut appliance.qemu;
    api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;

    // A kernel no boot module carries: refused, nothing created.
    expect_create_refused(
        qemu,
        port,
        "create with an unknown kernel",
        &web_config("bzImage-nowhere"),
        "bzImage-nowhere",
    )?;

    let started = Instant::now();
    let created = create(qemu, port, &web_config("vmlinuz"))?;
    expect(qemu, "create", &created, 201)?;
    eprintln!(
        "POST /v1/domains answered in {} ms",
        started.elapsed().as_millis()
    );
    // Answered before the guest is built: it decompresses the kernel after.
    if api::json_number(&created.body, "id") != Some(1)
        || created.header("location") != Some("/v1/domains/1")
        || api::json_string(&created.body, "build").as_deref() != Some("building")
    {
        return Err(qemu.failure(format!("create: {created:?}")));
    }
    qemu.wait_for("dom0: created domain 1 (web)", boot_timeout())?;
    let again = create(qemu, port, &web_config("vmlinuz"))?;
    expect(qemu, "a second guest named web", &again, 409)?;

    qemu.wait_for("dom0: domain 1: vif1.0 connected", linux_timeout())?;
    qemu.wait_for("[web] XENOLITH-GUEST: shell", linux_timeout())?;

    // Its console through the API: the same output the serial line mirrors.
    let console = send(qemu, port, "GET", "/v1/domains/web/console?since=0", None)?;
    expect(qemu, "console", &console, 200)?;
    if !console.body.contains("XENOLITH-GUEST: shell") {
        return Err(qemu.failure(format!("console: {}", console.body)));
    }

    // A read from the end waits for output (long-poll) and answers as
    // soon as the guest prints: here, the echo of what is typed next.
    // Reads that answer at once are still catching up with boot output.
    let mut since = api::json_number(&console.body, "next")
        .ok_or_else(|| qemu.failure(format!("console: no next in {}", console.body)))?;
    let long_poll = std::thread::spawn(move || {
        for _ in 0..20 {
            let started = Instant::now();
            let answer = api::request(
                port,
                "GET",
                &format!("/v1/domains/web/console?since={since}"),
                Some(TOKEN),
                None,
                linux_timeout(),
            )?;
            let waited = started.elapsed();
            if answer.status != 200 || waited >= Duration::from_millis(500) {
                return Ok((since, waited, answer));
            }
            since = api::json_number(&answer.body, "next")
                .ok_or_else(|| Failure::new(format!("no next in {}", answer.body)))?;
        }
        Err(Failure::new("the guest's console never went quiet"))
    });
    std::thread::sleep(Duration::from_secs(3));

    // The guest leases the next address and pings Dom0's.
    attach(qemu, "web", 1)?;
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: lease of 10.0.2.", linux_timeout())?;
    let status = guest_value(
        qemu,
        &format!("ping -c 3 -W 10 {dom0_address}; echo \"PI\"\"NG=$?\""),
        "PING",
    )?;
    if status != "0" {
        return Err(qemu.failure(format!(
            "the guest could not ping Dom0 at {dom0_address}: {status}"
        )));
    }
    let (since, waited, answer) = long_poll
        .join()
        .map_err(|_| qemu.failure("the long-poll thread panicked"))?
        .map_err(|error| qemu.failure(error))?;
    expect(qemu, "console long-poll", &answer, 200)?;
    let data = api::json_string(&answer.body, "data").unwrap_or_default();
    // Nothing lost: it starts where it was asked to. The console wait is
    // 25 s; input came about 3 s in.
    if api::json_number(&answer.body, "start") != Some(since)
        || data.is_empty()
        || waited >= Duration::from_secs(20)
    {
        return Err(qemu.failure(format!(
            "console long-poll after {} ms: {}",
            waited.as_millis(),
            answer.body
        )));
    }
    eprintln!(
        "the console long-poll waited {} ms for output",
        waited.as_millis()
    );

    // And reaches Dom0's API over TCP across the bridge (its TCP
    // checksums left to the back end, which finishes them for Dom0).
    let fetched = guest_value(
        qemu,
        &format!(
            "echo \"WG\"\"ET=$(wget -q -O - --header 'Authorization: Bearer {TOKEN}' \
             http://{dom0_address}:{}/v1/domains/web)\"",
            api::API_PORT
        ),
        "WGET",
    )?;
    if !fetched.contains("\"name\":\"web\"") || !fetched.contains("\"id\":1") {
        return Err(qemu.failure(format!("the guest fetched {fetched:?} from Dom0's API")));
    }
    qemu.send(DETACH)?;

    // Pause and unpause show in its state.
    let paused = send(qemu, port, "POST", "/v1/domains/web/pause", None)?;
    expect(qemu, "pause", &paused, 200)?;
    let state = state_of(qemu, port, "web")?;
    if state.as_bytes().get(2) != Some(&b'p') {
        return Err(qemu.failure(format!("paused, yet state {state:?}")));
    }
    let twice = send(qemu, port, "POST", "/v1/domains/web/pause", None)?;
    expect(qemu, "pause twice", &twice, 409)?;
    let unpaused = send(qemu, port, "POST", "/v1/domains/1/unpause", None)?;
    expect(qemu, "unpause", &unpaused, 200)?;
    let state = state_of(qemu, port, "web")?;
    if state.as_bytes().get(2) != Some(&b'-') {
        return Err(qemu.failure(format!("unpaused, yet state {state:?}")));
    }

    let metrics = send(qemu, port, "GET", "/metrics", None)?;
    expect(qemu, "metrics", &metrics, 200)?;
    if !metrics
        .body
        .contains("xenolith_domain_memory_bytes{domain=\"web\",id=\"1\"} 201326592")
    {
        return Err(qemu.failure(format!("metrics: {}", metrics.body)));
    }
    // Dom0's own port on the bridge carried the ping and the wget; the
    // guest's vif is a port too.
    let counter = |name: &str| {
        metrics
            .body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let dom0_frames = counter("xenolith_bridge_received_frames_total{port=\"dom0\"}");
    let vif_frames = counter("xenolith_bridge_transmitted_frames_total{port=\"vif1.0\"}");
    if dom0_frames.is_none_or(|frames| frames < 6) || vif_frames.is_none_or(|frames| frames < 6) {
        return Err(qemu.failure(format!("bridge metrics: {}", metrics.body)));
    }

    // Reboot through control/shutdown: Dom0 restarts it (on_reboot's
    // default) as domain 2, which then powers off when asked and is
    // destroyed (on_poweroff).
    let reboot = send(qemu, port, "POST", "/v1/domains/web/reboot", None)?;
    expect(qemu, "reboot", &reboot, 202)?;
    qemu.wait_for("dom0: domain 1 (web) shut down (reboot)", linux_timeout())?;
    qemu.wait_for("dom0: restarted as domain 2", linux_timeout())?;
    qemu.wait_for("[web] XENOLITH-GUEST: shell", linux_timeout())?;
    if api::json_number(
        &send(qemu, port, "GET", "/v1/domains/web", None)?.body,
        "id",
    ) != Some(2)
    {
        return Err(qemu.failure("after the reboot, web is not domain 2"));
    }
    let shutdown = send(qemu, port, "POST", "/v1/domains/web/shutdown", None)?;
    expect(qemu, "shutdown", &shutdown, 202)?;
    qemu.wait_for("dom0: domain 2 (web) shut down (poweroff)", linux_timeout())?;
    qemu.wait_for("dom0: destroyed domain 2 (web)", boot_timeout())?;
    let domains = send(qemu, port, "GET", "/v1/domains", None)?;
    expect(qemu, "list after the power-off", &domains, 200)?;
    if domains.body.contains("\"web\"") || !domains.body.contains("Domain-0") {
        return Err(qemu.failure(format!("list after the power-off: {}", domains.body)));
    }
    let gone = send(qemu, port, "DELETE", "/v1/domains/web", None)?;
    expect(qemu, "destroying the guest that is gone", &gone, 404)?;

    // The same kernel in 64 MiB: it does not fit, and the answer says
    // where it ends and how much RAM there is (not an error number).
    let small = "name = \"small\"\ntype = \"pvh\"\nmemory = 64\nkernel = \"vmlinuz\"\n";
    let too_small = create(qemu, port, small)?;
    expect(
        qemu,
        "a kernel beyond a 64 MiB guest's RAM",
        &too_small,
        422,
    )?;
    if !(too_small.body.contains("guest image ends at 0x")
        && too_small.body.contains("beyond its 0x4000000 bytes of RAM"))
    {
        return Err(qemu.failure(format!(
            "the refusal does not name the image's end and the RAM: {}",
            too_small.body
        )));
    }
    let nothing = send(qemu, port, "GET", "/v1/domains/small", None)?;
    expect(qemu, "the guest that did not fit", &nothing, 404)?;
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}

#[test]
fn an_appliance_disk_enables_the_api_and_creates_take_kernels_from_its_store() -> Result<(), Failure>
{
    // The disk alone: its appliance config turns the API on, its kernel
    // volume is what a create names. The ISO carries no modules.
    let dir = TempDir::new("dom0-api-store")?;
    let disk = appliance_disk(&dir, 64 << 20)?;
    let images = xenolith_tests::images()?;
    img(xenolith_img::import(
        &disk,
        "tg-kernel",
        &images.test_guest,
        VolumeKind::Kernel,
        false,
    ))?;
    let (_, initramfs) = guest_files()?;
    img(xenolith_img::import(
        &disk,
        "an-initrd",
        &initramfs,
        VolumeKind::Initrd,
        false,
    ))?;
    let appliance = dir.write("appliance", api::appliance_config("").as_bytes())?;
    img(xenolith_img::import(
        &disk,
        "appliance",
        &appliance,
        VolumeKind::Config,
        false,
    ))?;
    let iso = xenolith_tests::make_iso(&dir, "")?;
    let (qemu, port) = api::qemu_forwarding(iso, api::API_PORT)?;
    let mut qemu = qemu.virtio_disk(&disk).spawn()?;
    qemu.wait_for("dom0: management API on TCP port 8080", boot_timeout())?;
    api::wait_for_api(port, boot_timeout()).map_err(|error| qemu.failure(error))?;

    let config = |kernel: &str| {
        format!("name = \"tg\"\ntype = \"pvh\"\nmemory = 32\nkernel = \"{kernel}\"\n")
    };
    // A volume of the wrong kind, and a name nothing has: 422, named.
    expect_create_refused(
        &qemu,
        port,
        "an initrd volume as the kernel",
        &config("an-initrd"),
        "an-initrd",
    )?;
    let missing = create(&qemu, port, &config("nowhere"))?;
    expect(&qemu, "a kernel nothing has", &missing, 422)?;

    let created = create(&qemu, port, &config("tg-kernel"))?;
    expect(&qemu, "create from the store's kernel", &created, 201)?;
    qemu.wait_for("dom0: created domain 1 (tg)", boot_timeout())?;
    // The test guest runs its checks and powers itself off.
    qemu.wait_for("dom0: domain 1 (tg) shut down (poweroff)", boot_timeout())?;
    // The same as JSON: the keys are xl.cfg's.
    let json = r#"{"name": "tg-json", "type": "pvh", "memory": 32, "kernel": "tg-kernel"}"#;
    let created = send(
        &qemu,
        port,
        "POST",
        "/v1/domains",
        Some(("application/json", json)),
    )?;
    expect(&qemu, "create from JSON", &created, 201)?;
    if api::json_string(&created.body, "name").as_deref() != Some("tg-json") {
        return Err(qemu.failure(format!("create from JSON: {}", created.body)));
    }
    qemu.wait_for("dom0: created domain 2 (tg-json)", boot_timeout())?;
    qemu.wait_for(
        "dom0: domain 2 (tg-json) shut down (poweroff)",
        boot_timeout(),
    )?;
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}
