//! Human-readable output: `list` in the layout of `xl list`, `info` as
//! `key : value` lines like `xl info`.

use mgmt_api::json::Value;

/// xl's header line, tabs included.
pub const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// The `list` table for the API's `{"domains": [...]}`.
pub fn domains(list: &Value) -> Result<String, String> {
    let domains = list
        .get("domains")
        .and_then(Value::as_array)
        .ok_or("the answer has no domain list")?;
    let mut out = String::from(LIST_HEADER);
    out.push('\n');
    for domain in domains {
        let field = |name: &str| {
            domain
                .get(name)
                .and_then(Value::as_u64)
                .ok_or(format!("a domain without {name}"))
        };
        let name = domain
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a domain without a name")?;
        let state = domain
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("------");
        let tenths = field("cpu_time_ns")? / 100_000_000;
        out.push_str(&format!(
            "{name:<40} {:>5} {:>5} {:>5}     {state:<6} {:>8}\n",
            field("id")?,
            field("memory_mib")?,
            field("vcpus")?,
            format!("{}.{}", tenths / 10, tenths % 10),
        ));
    }
    Ok(out)
}

/// The `info` lines for the API's host object.
pub fn host(host: &Value) -> Result<String, String> {
    let text = |name: &str| host.get(name).and_then(Value::as_str).unwrap_or("?");
    let number = |name: &str| {
        host.get(name)
            .and_then(Value::as_u64)
            .map_or_else(|| String::from("?"), |value| value.to_string())
    };
    if !matches!(host, Value::Object(_)) {
        return Err(String::from("the answer is not a host object"));
    }
    let uptime = host.get("uptime_seconds").and_then(Value::as_u64);
    let rows = [
        ("hypervisor_version", text("hypervisor_version").to_string()),
        ("dom0_version", text("dom0_version").to_string()),
        ("api_version", text("api_version").to_string()),
        ("nr_cpus", number("cpus")),
        ("total_memory", number("total_memory_mib")),
        ("free_memory", number("free_memory_mib")),
        ("uptime", uptime.map_or_else(|| String::from("?"), duration)),
    ];
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:<23}: {value}\n"));
    }
    Ok(out)
}

/// Seconds as `1d 02:03:04`.
pub fn duration(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}d {clock}")
    } else {
        clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgmt_api::json;

    #[test]
    fn list_layout() {
        let list = json::parse(
            br#"{"domains":[
                {"id":0,"name":"Domain-0","memory_mib":256,"vcpus":1,"state":"r-----","cpu_time_ns":1550000000},
                {"id":12,"name":"a-very-long-guest-name-that-is-longer-than-forty","memory_mib":4096,"vcpus":16,"state":"-b----","cpu_time_ns":0}
            ]}"#,
        )
        .unwrap();
        let table = domains(&list).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], LIST_HEADER);
        assert_eq!(
            lines[1],
            "Domain-0                                     0   256     1     r-----      1.5"
        );
        assert_eq!(
            lines[2],
            "a-very-long-guest-name-that-is-longer-than-forty    12  4096    16     -b----      0.0"
        );
        assert!(domains(&json::parse(b"{}").unwrap()).is_err());
        assert!(domains(&json::parse(br#"{"domains":[{"name":"x"}]}"#).unwrap()).is_err());
    }

    #[test]
    fn info_layout() {
        let host_value = json::parse(
            br#"{"api_version":"1","hypervisor_version":"xenolith 0.1.0","dom0_version":"d","cpus":4,"total_memory_mib":4096,"free_memory_mib":3840,"uptime_seconds":90061}"#,
        )
        .unwrap();
        let text = host(&host_value).unwrap();
        assert!(text.contains("nr_cpus                : 4\n"), "{text}");
        assert!(
            text.contains("uptime                 : 1d 01:01:01\n"),
            "{text}"
        );
        assert_eq!(duration(59), "00:00:59");
    }
}
