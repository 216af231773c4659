//! `xenolith`: an xl-like client for Xenolith's management API. The binary
//! is a thin wrapper around [`run`], which integration tests call directly.

pub mod args;
pub mod client;
pub mod table;

use std::io::Write;

use args::{Action, Command, Environment, Options};
use client::{Client, ClientError, Endpoint, HttpResponse};
use mgmt_api::json::{self, Value};

/// Success.
pub const EXIT_OK: i32 = 0;
/// The API answered with an error.
pub const EXIT_API_ERROR: i32 = 1;
/// The command line made no sense.
pub const EXIT_USAGE: i32 = 2;
/// No answer from the API.
pub const EXIT_CONNECTION: i32 = 3;
/// The token was missing or wrong.
pub const EXIT_AUTHENTICATION: i32 = 4;

/// Why a command failed: the message and the exit code.
#[derive(Debug)]
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::new(EXIT_CONNECTION, error.to_string())
    }
}

/// Runs one command line (without the program name) and returns the exit
/// code. `environment` holds `XENOLITH_URL` and `XENOLITH_TOKEN`.
pub fn run(
    arguments: &[String],
    environment: &Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let options = match args::parse(arguments, environment) {
        Ok(options) => options,
        Err(error) => {
            let _ = writeln!(err, "xenolith: {error}\n\n{}", args::USAGE);
            return EXIT_USAGE;
        }
    };
    if options.command == Command::Help {
        let _ = writeln!(out, "{}", args::USAGE);
        return EXIT_OK;
    }
    match execute(&options, out) {
        Ok(()) => EXIT_OK,
        Err(failure) => {
            let _ = writeln!(err, "xenolith: {}", failure.message);
            if failure.code == EXIT_AUTHENTICATION && options.token.is_none() {
                let _ = writeln!(
                    err,
                    "xenolith: no token was sent: set XENOLITH_TOKEN or pass --token \
                     (the appliance config's api_token)"
                );
            }
            failure.code
        }
    }
}

fn execute(options: &Options, out: &mut dyn Write) -> Result<(), Failure> {
    let endpoint =
        Endpoint::parse(&options.url).map_err(|error| Failure::new(EXIT_USAGE, error))?;
    let client = Client::new(endpoint, options.token.clone());
    let write_failed = |error: std::io::Error| Failure::new(EXIT_API_ERROR, error.to_string());
    match &options.command {
        Command::Help => Ok(()),
        Command::List => {
            let (value, raw) = answer(client.request("GET", "/v1/domains", None)?)?;
            let text = if options.json {
                raw
            } else {
                table::domains(&value).map_err(|error| Failure::new(EXIT_API_ERROR, error))?
            };
            out.write_all(text.as_bytes()).map_err(write_failed)
        }
        Command::Info => {
            let (value, raw) = answer(client.request("GET", "/v1/host", None)?)?;
            let text = if options.json {
                raw
            } else {
                table::host(&value).map_err(|error| Failure::new(EXIT_API_ERROR, error))?
            };
            out.write_all(text.as_bytes()).map_err(write_failed)
        }
        Command::Create { file } => {
            let body = std::fs::read(file)
                .map_err(|error| Failure::new(EXIT_USAGE, format!("{file}: {error}")))?;
            let content_type = if file.ends_with(".json") {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let response = client.request("POST", "/v1/domains", Some((content_type, &body)))?;
            let (value, raw) = answer(response)?;
            let text = if options.json {
                raw
            } else {
                // The guest is built after the answer: say so while it is.
                let building = value.get("build").and_then(Value::as_str) == Some("building");
                format!(
                    "created {} (id {}){}\n",
                    value.get("name").and_then(Value::as_str).unwrap_or("?"),
                    value.get("id").and_then(Value::as_u64).unwrap_or(0),
                    if building { ", building" } else { "" }
                )
            };
            out.write_all(text.as_bytes()).map_err(write_failed)
        }
        Command::Act { action, domain } => {
            let path = format!("/v1/domains/{}", path_segment(domain)?);
            let response = match action {
                Action::Destroy => client.request("DELETE", &path, None)?,
                other => client.request("POST", &format!("{path}/{}", other.verb()), None)?,
            };
            let (value, raw) = answer(response)?;
            let text = if options.json {
                raw
            } else {
                let outcome = value
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("done");
                let name = value.get("name").and_then(Value::as_str).unwrap_or(domain);
                format!("{}: {name} ({outcome})\n", action.verb())
            };
            out.write_all(text.as_bytes()).map_err(write_failed)
        }
        Command::Console { domain, once } => {
            let path = format!("/v1/domains/{}/console", path_segment(domain)?);
            let mut since = 0u64;
            loop {
                let response = client.request("GET", &format!("{path}?since={since}"), None)?;
                let (value, raw) = answer(response)?;
                if options.json {
                    out.write_all(raw.as_bytes()).map_err(write_failed)?;
                    out.write_all(b"\n").map_err(write_failed)?;
                } else {
                    let data = value
                        .get("data")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.write_all(data.as_bytes()).map_err(write_failed)?;
                }
                out.flush().map_err(write_failed)?;
                since = value
                    .get("next")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Failure::new(EXIT_API_ERROR, "console answer without next"))?;
                if *once {
                    return Ok(());
                }
            }
        }
    }
}

/// A domain as a path segment: the API's own rule, checked before sending.
fn path_segment(domain: &str) -> Result<&str, Failure> {
    mgmt_api::route::domain_ref(domain)
        .map(|_| domain)
        .map_err(|error| Failure::new(EXIT_USAGE, format!("{domain:?}: {}", error.message())))
}

/// The JSON of a successful answer (and its text), or the failure an error
/// answer means.
fn answer(response: HttpResponse) -> Result<(Value, String), Failure> {
    let raw = String::from_utf8_lossy(&response.body).into_owned();
    let value = json::parse(&response.body);
    if (200..300).contains(&response.status) {
        let value = value.map_err(|error| {
            Failure::new(
                EXIT_API_ERROR,
                format!("the API sent invalid JSON: {}", error.fault.message()),
            )
        })?;
        let mut raw = raw;
        if !raw.ends_with('\n') {
            raw.push('\n');
        }
        return Ok((value, raw));
    }
    let message = value
        .ok()
        .and_then(|value| value.get("error").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let code = if response.status == 401 {
        EXIT_AUTHENTICATION
    } else {
        EXIT_API_ERROR
    };
    Err(Failure::new(
        code,
        format!("{message} (HTTP {})", response.status),
    ))
}
