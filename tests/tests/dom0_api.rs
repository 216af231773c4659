//! Dom0 on the network and the management API it serves: the appliance
//! boots with an `appliance-config` setting an API token, Dom0 leases an
//! address from QEMU's DHCP server through its own port on `xenbr0`, and
//! the host reaches the API through a forwarded port with plain TCP.

use std::time::Duration;

use xenolith_tests::api::{self, ApiAppliance, TOKEN};
use xenolith_tests::{Failure, TempDir, boot_timeout};

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
    for round in 0..12 {
        let host = api::get(port, "/v1/host").map_err(|error| qemu.failure(error))?;
        if host.status != 200 {
            return Err(qemu.failure(format!("request {round} in a row: {host:?}")));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    qemu.assert_serial_lacks(TROUBLE)?;
    Ok(())
}
