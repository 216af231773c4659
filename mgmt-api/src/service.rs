//! Answers one routed request: authentication, the backend call and the
//! JSON it returns. Shared by all connections of a [`crate::Server`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::auth::Access;
use crate::backend::{
    Backend, BackendError, BuildStatus, ConsoleChunk, ConsoleOffset, DomainAction, DomainInfo,
    DomainRef, HostInfo,
};
use crate::http::Request;
use crate::json::Value;
use crate::limits::Limits;
use crate::metrics::{self, MetricFamily, MetricKind, Sample};
use crate::response::{self, Response};
use crate::route::{self, ApiRequest};

/// Distinct status codes counted for `/metrics`; the API uses fewer.
const MAX_COUNTED_STATUSES: usize = 32;

/// Who may connect and the bounds they get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Authentication.
    pub access: Access,
    /// Bounds.
    pub limits: Limits,
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Responses sent, by status code.
    pub responses: Vec<(u16, u64)>,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections refused because the server was full.
    pub refused_connections: u64,
    /// Requests that did not arrive in time.
    pub timeouts: u64,
}

/// What a request leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Send this now.
    Respond(Response),
    /// A console read with nothing new yet: wait for bytes or the timeout.
    WaitForConsole {
        /// The domain.
        domain: DomainRef,
        /// The offset asked for.
        since: ConsoleOffset,
    },
}

/// The state all connections share.
#[derive(Debug)]
pub struct Service {
    /// Configuration.
    pub config: ServerConfig,
    /// Counters.
    pub statistics: Statistics,
}

impl Service {
    /// A service with zeroed counters.
    pub fn new(config: ServerConfig) -> Service {
        Service {
            config,
            statistics: Statistics::default(),
        }
    }

    /// Counts a response with `status`.
    pub fn record(&mut self, status: u16) {
        let responses = &mut self.statistics.responses;
        if let Some(entry) = responses.iter_mut().find(|(code, _)| *code == status) {
            entry.1 = entry.1.saturating_add(1);
        } else if responses.len() < MAX_COUNTED_STATUSES {
            responses.push((status, 1));
        }
    }

    /// Answers a complete request.
    pub fn handle(&mut self, request: &Request, backend: &mut dyn Backend) -> Handled {
        if !self.config.access.allows(request.header("authorization")) {
            let response = Response::error(401, "missing or wrong bearer token").with_header(
                "WWW-Authenticate",
                String::from("Bearer realm=\"xenolith\""),
            );
            return Handled::Respond(response);
        }
        let api_request = match route::route(request) {
            Ok(api_request) => api_request,
            Err(error) => {
                let mut response = Response::error(error.status(), &error.message());
                if let route::RouteError::MethodNotAllowed { allow } = error {
                    response = response.with_header("Allow", String::from(allow));
                }
                return Handled::Respond(response);
            }
        };
        match api_request {
            ApiRequest::Console { domain, since } => {
                let limit = self.config.limits.max_console_bytes;
                match backend.console(&domain, since, limit) {
                    Ok(chunk) if chunk.data.is_empty() && chunk.start <= since => {
                        if self.config.limits.console_wait.millis == 0 {
                            Handled::Respond(console_response(since, chunk))
                        } else {
                            Handled::WaitForConsole { domain, since }
                        }
                    }
                    Ok(chunk) => Handled::Respond(console_response(since, chunk)),
                    Err(error) => Handled::Respond(backend_error(&error)),
                }
            }
            other => Handled::Respond(self.answer(other, backend)),
        }
    }

    /// Re-reads a waiting console: `Some` once there are bytes, or with
    /// whatever there is when `expired`.
    pub fn console_again(
        &mut self,
        domain: &DomainRef,
        since: ConsoleOffset,
        expired: bool,
        backend: &mut dyn Backend,
    ) -> Option<Response> {
        let limit = self.config.limits.max_console_bytes;
        match backend.console(domain, since, limit) {
            Ok(chunk) if chunk.data.is_empty() && chunk.start <= since && !expired => None,
            Ok(chunk) => Some(console_response(since, chunk)),
            Err(error) => Some(backend_error(&error)),
        }
    }

    fn answer(&mut self, request: ApiRequest, backend: &mut dyn Backend) -> Response {
        let result = match request {
            ApiRequest::ListDomains => backend.list_domains().map(|domains| {
                let domains = domains.iter().map(domain_json).collect();
                Response::json(200, &Value::object([("domains", Value::Array(domains))]))
            }),
            ApiRequest::GetDomain(domain) => backend
                .domain(&domain)
                .map(|info| Response::json(200, &domain_json(&info))),
            ApiRequest::CreateDomain { xl_config } => {
                backend.create_domain(&xl_config).map(|info| {
                    Response::json(201, &domain_json(&info))
                        .with_header("Location", format!("/v1/domains/{}", info.id.0))
                })
            }
            ApiRequest::Act { domain, action } => backend
                .act(&domain, action)
                .map(|info| action_response(&info, action)),
            ApiRequest::Host => backend
                .host()
                .map(|host| Response::json(200, &host_json(&host))),
            ApiRequest::Metrics => Ok(self.metrics(backend)),
            // Answered in `handle`, which may wait.
            ApiRequest::Console { .. } => Err(BackendError::Internal(String::from(
                "console read routed wrongly",
            ))),
        };
        result.unwrap_or_else(|error| backend_error(&error))
    }

    fn metrics(&mut self, backend: &mut dyn Backend) -> Response {
        let mut families = backend.metrics();
        let mut responses = self.statistics.responses.clone();
        responses.sort_unstable();
        families.push(MetricFamily {
            name: String::from("xenolith_api_responses_total"),
            help: String::from("Management API responses by status code."),
            kind: MetricKind::Counter,
            samples: responses
                .iter()
                .map(|(code, count)| Sample {
                    labels: alloc::vec![(String::from("code"), format!("{code}"))],
                    value: *count,
                })
                .collect(),
        });
        families.push(MetricFamily::single(
            "xenolith_api_connections_open",
            "Management API connections open now.",
            MetricKind::Gauge,
            self.statistics.open_connections,
        ));
        families.push(MetricFamily::single(
            "xenolith_api_connections_refused_total",
            "Management API connections refused because the server was full.",
            MetricKind::Counter,
            self.statistics.refused_connections,
        ));
        families.push(MetricFamily::single(
            "xenolith_api_request_timeouts_total",
            "Management API requests that did not arrive in time.",
            MetricKind::Counter,
            self.statistics.timeouts,
        ));
        let mut text = String::new();
        metrics::encode(&families, &mut text);
        Response {
            status: 200,
            content_type: response::PROMETHEUS_TEXT,
            headers: Vec::new(),
            body: text.into_bytes(),
        }
    }
}

/// The JSON for one domain.
pub fn domain_json(info: &DomainInfo) -> Value {
    let flags = info.state.flags();
    let state = core::str::from_utf8(&flags).unwrap_or("------");
    let mut fields = alloc::vec![
        ("id", Value::unsigned(u64::from(info.id.0))),
        ("name", Value::string(&info.name)),
        ("memory_mib", Value::unsigned(info.memory_mib)),
        ("vcpus", Value::unsigned(u64::from(info.vcpus))),
        ("state", Value::string(state)),
        ("cpu_time_ns", Value::unsigned(info.cpu_time_ns)),
        ("build", Value::string(info.build.name())),
    ];
    if let BuildStatus::Failed(error) = &info.build {
        fields.push(("error", Value::string(error)));
    }
    Value::Object(
        fields
            .into_iter()
            .map(|(key, value)| (String::from(key), value))
            .collect(),
    )
}

fn host_json(host: &HostInfo) -> Value {
    Value::object([
        ("api_version", Value::string(crate::API_VERSION)),
        (
            "hypervisor_version",
            Value::string(&host.hypervisor_version),
        ),
        ("dom0_version", Value::string(&host.dom0_version)),
        ("cpus", Value::unsigned(u64::from(host.cpus))),
        ("total_memory_mib", Value::unsigned(host.total_memory_mib)),
        ("free_memory_mib", Value::unsigned(host.free_memory_mib)),
        ("uptime_seconds", Value::unsigned(host.uptime_seconds)),
    ])
}

fn action_response(info: &DomainInfo, action: DomainAction) -> Response {
    // Shutdown and reboot are requests the guest carries out in its own
    // time; the others are done when the call returns.
    let (status, outcome) = match action {
        DomainAction::Shutdown | DomainAction::Reboot => (202, "requested"),
        _ => (200, "done"),
    };
    Response::json(
        status,
        &Value::object([
            ("id", Value::unsigned(u64::from(info.id.0))),
            ("name", Value::string(&info.name)),
            ("action", Value::string(action.name())),
            ("status", Value::string(outcome)),
        ]),
    )
}

fn backend_error(error: &BackendError) -> Response {
    Response::error(error.status(), &format!("{error}"))
}

/// A console answer. Text is sent as a JSON string; a UTF-8 sequence cut
/// at the chunk's end is held back for the next read rather than mangled.
fn console_response(since: ConsoleOffset, mut chunk: ConsoleChunk) -> Response {
    if let Err(error) = core::str::from_utf8(&chunk.data)
        && error.error_len().is_none()
        && error.valid_up_to() > 0
    {
        chunk.data.truncate(error.valid_up_to());
    }
    let next = chunk.next();
    let text = String::from_utf8_lossy(&chunk.data);
    Response::json(
        200,
        &Value::object([
            ("since", Value::unsigned(since.0)),
            ("start", Value::unsigned(chunk.start.0)),
            ("next", Value::unsigned(next.0)),
            ("data", Value::string(&text)),
        ]),
    )
}
