//! The second parsing step: a framed [`Request`] becomes a validated
//! [`ApiRequest`], or a [`RouteError`] naming what was wrong.

use alloc::format;
use alloc::string::String;

use crate::backend::{ConsoleOffset, DomainAction, DomainId, DomainRef};
use crate::create::{CreateError, json_to_xl_config};
use crate::http::{Method, Request};
use crate::json::{self, JsonError};

/// Longest domain name in a path.
pub const MAX_DOMAIN_NAME_BYTES: usize = 64;

/// A request the API understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRequest {
    /// `GET /v1/domains`
    ListDomains,
    /// `GET /v1/domains/{domain}`
    GetDomain(DomainRef),
    /// `POST /v1/domains`, the body as xl.cfg text (JSON bodies converted).
    CreateDomain {
        /// The guest config.
        xl_config: String,
    },
    /// `POST /v1/domains/{domain}/{action}` or `DELETE /v1/domains/{domain}`
    Act {
        /// The domain.
        domain: DomainRef,
        /// What to do.
        action: DomainAction,
    },
    /// `GET /v1/domains/{domain}/console?since=N`
    Console {
        /// The domain.
        domain: DomainRef,
        /// First byte wanted.
        since: ConsoleOffset,
    },
    /// `GET /v1/host`
    Host,
    /// `GET /metrics`
    Metrics,
}

/// Why a request names nothing the API can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (404).
    NotFound,
    /// The path exists, not with this method (405); `allow` lists the
    /// methods that are.
    MethodNotAllowed {
        /// For the `Allow` header.
        allow: &'static str,
    },
    /// The domain segment is neither an id nor a valid name (400).
    InvalidDomain,
    /// `since` is not a decimal number (400).
    InvalidSince,
    /// A create body neither `text/plain` nor `application/json` (415).
    UnsupportedMediaType,
    /// A text body that is not UTF-8 (400).
    BodyNotUtf8,
    /// A JSON body that does not parse (400).
    InvalidJson(JsonError),
    /// A JSON body that is not a config (400).
    InvalidCreateBody(CreateError),
}

impl RouteError {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::UnsupportedMediaType => 415,
            RouteError::InvalidDomain
            | RouteError::InvalidSince
            | RouteError::BodyNotUtf8
            | RouteError::InvalidJson(_)
            | RouteError::InvalidCreateBody(_) => 400,
        }
    }

    /// A message for the error body.
    pub fn message(&self) -> String {
        match self {
            RouteError::NotFound => String::from("no such endpoint"),
            RouteError::MethodNotAllowed { allow } => {
                format!("method not allowed here; allowed: {allow}")
            }
            RouteError::InvalidDomain => String::from(
                "a domain is a numeric id or a name of letters, digits, '.', '-' and '_'",
            ),
            RouteError::InvalidSince => String::from("since must be a decimal byte offset"),
            RouteError::UnsupportedMediaType => {
                String::from("create takes Content-Type text/plain (xl.cfg) or application/json")
            }
            RouteError::BodyNotUtf8 => String::from("the body is not UTF-8"),
            RouteError::InvalidJson(error) => format!(
                "invalid JSON at byte {}: {}",
                error.offset,
                error.fault.message()
            ),
            RouteError::InvalidCreateBody(error) => format!("{error}"),
        }
    }
}

/// Routes a request.
pub fn route(request: &Request) -> Result<ApiRequest, RouteError> {
    let path = request.path.strip_suffix('/').unwrap_or(&request.path);
    let method = request.method;
    let allow = |allow: &'static str| Err(RouteError::MethodNotAllowed { allow });
    if path == "/metrics" {
        return match method {
            Method::Get => Ok(ApiRequest::Metrics),
            _ => allow("GET"),
        };
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(RouteError::NotFound);
    };
    let mut segments = rest.split('/');
    let first = segments.next();
    let second = segments.next();
    let third = segments.next();
    if segments.next().is_some() {
        return Err(RouteError::NotFound);
    }
    match (first, second, third) {
        (Some("host"), None, None) => match method {
            Method::Get => Ok(ApiRequest::Host),
            _ => allow("GET"),
        },
        (Some("domains"), None, None) => match method {
            Method::Get => Ok(ApiRequest::ListDomains),
            Method::Post => create(request),
            _ => allow("GET, POST"),
        },
        (Some("domains"), Some(domain), None) => {
            let domain = domain_ref(domain)?;
            match method {
                Method::Get => Ok(ApiRequest::GetDomain(domain)),
                Method::Delete => Ok(ApiRequest::Act {
                    domain,
                    action: DomainAction::Destroy,
                }),
                _ => allow("GET, DELETE"),
            }
        }
        (Some("domains"), Some(domain), Some(operation)) => {
            let action = match operation {
                "shutdown" => DomainAction::Shutdown,
                "reboot" => DomainAction::Reboot,
                "pause" => DomainAction::Pause,
                "unpause" => DomainAction::Unpause,
                "console" => {
                    let domain = domain_ref(domain)?;
                    return match method {
                        Method::Get => Ok(ApiRequest::Console {
                            domain,
                            since: since(&request.query)?,
                        }),
                        _ => allow("GET"),
                    };
                }
                _ => return Err(RouteError::NotFound),
            };
            let domain = domain_ref(domain)?;
            match method {
                Method::Post => Ok(ApiRequest::Act { domain, action }),
                _ => allow("POST"),
            }
        }
        _ => Err(RouteError::NotFound),
    }
}

/// A path segment naming a domain: all digits is an id (below the reserved
/// range), otherwise a name of `[A-Za-z0-9._-]`.
pub fn domain_ref(segment: &str) -> Result<DomainRef, RouteError> {
    if segment.is_empty() || segment.len() > MAX_DOMAIN_NAME_BYTES {
        return Err(RouteError::InvalidDomain);
    }
    if segment.bytes().all(|byte| byte.is_ascii_digit()) {
        let id: u16 = segment.parse().map_err(|_| RouteError::InvalidDomain)?;
        if id >= DomainId::FIRST_RESERVED.0 {
            return Err(RouteError::InvalidDomain);
        }
        return Ok(DomainRef::Id(DomainId(id)));
    }
    let valid = segment
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'));
    if !valid || segment == "." || segment == ".." {
        return Err(RouteError::InvalidDomain);
    }
    Ok(DomainRef::Name(String::from(segment)))
}

/// `since=N` from a query; absent means 0. Other parameters are ignored.
fn since(query: &str) -> Result<ConsoleOffset, RouteError> {
    let mut since = ConsoleOffset(0);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "since" {
            if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(RouteError::InvalidSince);
            }
            since = ConsoleOffset(value.parse().map_err(|_| RouteError::InvalidSince)?);
        }
    }
    Ok(since)
}

fn create(request: &Request) -> Result<ApiRequest, RouteError> {
    let media_type = request
        .header("content-type")
        .map(|value| value.split(';').next().unwrap_or_default().trim())
        .unwrap_or_default();
    if media_type.eq_ignore_ascii_case("text/plain") {
        let text = core::str::from_utf8(&request.body).map_err(|_| RouteError::BodyNotUtf8)?;
        Ok(ApiRequest::CreateDomain {
            xl_config: String::from(text),
        })
    } else if media_type.eq_ignore_ascii_case("application/json") {
        let value = json::parse(&request.body).map_err(RouteError::InvalidJson)?;
        let xl_config = json_to_xl_config(&value).map_err(RouteError::InvalidCreateBody)?;
        Ok(ApiRequest::CreateDomain { xl_config })
    } else {
        Err(RouteError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Header, Version};
    use alloc::vec::Vec;

    fn request(method: Method, target: &str, content_type: Option<&str>, body: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            method_text: String::from("X"),
            path: path.into(),
            query: query.into(),
            version: Version::Http11,
            headers: content_type
                .map(|value| Header {
                    name: "content-type".into(),
                    value: value.into(),
                })
                .into_iter()
                .collect::<Vec<_>>(),
            body: body.as_bytes().into(),
        }
    }

    fn get(target: &str) -> Result<ApiRequest, RouteError> {
        route(&request(Method::Get, target, None, ""))
    }

    #[test]
    fn routes() {
        assert_eq!(get("/v1/domains"), Ok(ApiRequest::ListDomains));
        assert_eq!(get("/v1/domains/"), Ok(ApiRequest::ListDomains));
        assert_eq!(get("/v1/host"), Ok(ApiRequest::Host));
        assert_eq!(get("/metrics"), Ok(ApiRequest::Metrics));
        assert_eq!(
            get("/v1/domains/7"),
            Ok(ApiRequest::GetDomain(DomainRef::Id(DomainId(7))))
        );
        assert_eq!(
            get("/v1/domains/web-1.a_b"),
            Ok(ApiRequest::GetDomain(DomainRef::Name("web-1.a_b".into())))
        );
        assert_eq!(
            get("/v1/domains/web/console?x=1&since=42"),
            Ok(ApiRequest::Console {
                domain: DomainRef::Name("web".into()),
                since: ConsoleOffset(42)
            })
        );
        assert_eq!(
            route(&request(Method::Delete, "/v1/domains/3", None, "")),
            Ok(ApiRequest::Act {
                domain: DomainRef::Id(DomainId(3)),
                action: DomainAction::Destroy
            })
        );
        for (name, action) in [
            ("shutdown", DomainAction::Shutdown),
            ("reboot", DomainAction::Reboot),
            ("pause", DomainAction::Pause),
            ("unpause", DomainAction::Unpause),
        ] {
            assert_eq!(
                route(&request(
                    Method::Post,
                    &format!("/v1/domains/web/{name}"),
                    None,
                    ""
                )),
                Ok(ApiRequest::Act {
                    domain: DomainRef::Name("web".into()),
                    action
                })
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(get("/"), Err(RouteError::NotFound));
        assert_eq!(get("/v2/domains"), Err(RouteError::NotFound));
        assert_eq!(get("/v1/domains/a/b/c"), Err(RouteError::NotFound));
        assert_eq!(get("/v1/domains/a/explode"), Err(RouteError::NotFound));
        assert_eq!(get("/v1/domains/a%20b"), Err(RouteError::InvalidDomain));
        assert_eq!(get("/v1/domains/.."), Err(RouteError::InvalidDomain));
        assert_eq!(get("/v1/domains/99999"), Err(RouteError::InvalidDomain));
        assert_eq!(get("/v1/domains/32752"), Err(RouteError::InvalidDomain));
        assert_eq!(
            get("/v1/domains/a/console?since=-1"),
            Err(RouteError::InvalidSince)
        );
        assert_eq!(
            get("/v1/domains/a/console?since=99999999999999999999999"),
            Err(RouteError::InvalidSince)
        );
        assert_eq!(
            get("/v1/domains/a/shutdown"),
            Err(RouteError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route(&request(Method::Delete, "/v1/domains", None, "")),
            Err(RouteError::MethodNotAllowed { allow: "GET, POST" })
        );
        assert_eq!(
            route(&request(Method::Other, "/metrics", None, "")),
            Err(RouteError::MethodNotAllowed { allow: "GET" })
        );
    }

    #[test]
    fn create_bodies() {
        let text = "name = 'a'\n";
        assert_eq!(
            route(&request(
                Method::Post,
                "/v1/domains",
                Some("text/plain; charset=utf-8"),
                text
            )),
            Ok(ApiRequest::CreateDomain {
                xl_config: text.into()
            })
        );
        assert_eq!(
            route(&request(
                Method::Post,
                "/v1/domains",
                Some("Application/JSON"),
                r#"{"name":"a","memory":64}"#
            )),
            Ok(ApiRequest::CreateDomain {
                xl_config: "name = \"a\"\nmemory = 64\n".into()
            })
        );
        assert_eq!(
            route(&request(Method::Post, "/v1/domains", None, text)),
            Err(RouteError::UnsupportedMediaType)
        );
        assert!(matches!(
            route(&request(
                Method::Post,
                "/v1/domains",
                Some("application/json"),
                "{"
            )),
            Err(RouteError::InvalidJson(_))
        ));
        assert!(matches!(
            route(&request(
                Method::Post,
                "/v1/domains",
                Some("application/json"),
                "[]"
            )),
            Err(RouteError::InvalidCreateBody(CreateError::NotAnObject))
        ));
    }
}
