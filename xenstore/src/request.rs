//! Validated requests and typed responses: the second parsing step after
//! [`MessageView`] has bounded the message, and the encoding of replies.
//! The in-process interface builds [`Request`]s directly.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;

use crate::Error;
use crate::domain::GuestFrame;
use crate::permissions::{Permissions, parse_decimal, parse_domain_id};
use crate::transaction::TransactionId;
use crate::wire::{MessageType, MessageView};

/// One request, its arguments checked for shape (paths are checked against
/// the caller later, when they are resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// CONTROL: `<command>|[<parameters>|]`, kept raw.
    Control {
        /// The raw payload.
        arguments: &'a [u8],
    },
    /// DIRECTORY.
    Directory {
        /// The node.
        path: &'a str,
    },
    /// DIRECTORY_PART: the child list from a byte offset.
    DirectoryPart {
        /// The node.
        path: &'a str,
        /// Byte offset into the NUL-separated child list.
        offset: u32,
    },
    /// READ.
    Read {
        /// The node.
        path: &'a str,
    },
    /// GET_PERMS.
    GetPermissions {
        /// The node or special name.
        path: &'a str,
    },
    /// WATCH.
    Watch {
        /// The watched path or special name.
        path: &'a str,
        /// The client's token, echoed in events.
        token: &'a [u8],
        /// Levels below `path` to report (`XENSTORE_SERVER_FEATURE_WATCHDEPTH`).
        depth: Option<u32>,
    },
    /// UNWATCH.
    Unwatch {
        /// The watched path, spelled as for WATCH.
        path: &'a str,
        /// The token given to WATCH.
        token: &'a [u8],
    },
    /// TRANSACTION_START.
    TransactionStart,
    /// TRANSACTION_END: `T` commits, `F` aborts.
    TransactionEnd {
        /// Whether to commit.
        commit: bool,
    },
    /// INTRODUCE: start serving a domain's ring (privileged only).
    Introduce {
        /// The domain.
        domain: DomainId,
        /// Its ring page.
        frame: GuestFrame,
        /// Its unbound event channel for xenstore.
        port: Port,
    },
    /// RELEASE: stop serving a domain (privileged only).
    Release {
        /// The domain.
        domain: DomainId,
    },
    /// GET_DOMAIN_PATH.
    GetDomainPath {
        /// The domain.
        domain: DomainId,
    },
    /// WRITE.
    Write {
        /// The node.
        path: &'a str,
        /// The new value: any bytes, not NUL-terminated.
        value: &'a [u8],
    },
    /// MKDIR.
    Mkdir {
        /// The node.
        path: &'a str,
    },
    /// RM.
    Remove {
        /// The node.
        path: &'a str,
    },
    /// SET_PERMS.
    SetPermissions {
        /// The node or special name.
        path: &'a str,
        /// The new list, owner first.
        permissions: Permissions,
    },
    /// IS_DOMAIN_INTRODUCED (privileged only).
    IsDomainIntroduced {
        /// The domain.
        domain: DomainId,
    },
    /// RESUME: re-arm `@releaseDomain` for a domain (privileged only).
    Resume {
        /// The domain.
        domain: DomainId,
    },
    /// SET_TARGET: `domain` acts with `target`'s rights (privileged only).
    SetTarget {
        /// The device-model domain.
        domain: DomainId,
        /// The domain it serves.
        target: DomainId,
    },
    /// RESET_WATCHES: drop the caller's watches and transactions.
    ResetWatches,
    /// GET_FEATURE.
    GetFeature {
        /// Another domain (privileged only), or the caller.
        domain: Option<DomainId>,
    },
    /// GET_QUOTA (privileged only).
    GetQuota {
        /// A domain, or the defaults.
        domain: Option<DomainId>,
        /// A quota name, or `None` to list the names.
        name: Option<&'a str>,
    },
    /// SET_QUOTA (privileged only).
    SetQuota {
        /// A domain, or the defaults.
        domain: Option<DomainId>,
        /// The quota name.
        name: &'a str,
        /// The new value; 0 disables the quota.
        value: u32,
    },
}

/// Splits a payload of NUL-terminated strings. A payload with bytes after
/// its last NUL is malformed (C xenstored silently ignores them; nothing
/// legitimate sends them).
fn strings(payload: &[u8]) -> Result<Vec<&[u8]>, Error> {
    match payload.split_last() {
        None => Ok(Vec::new()),
        Some((0, body)) => Ok(body.split(|&byte| byte == 0).collect()),
        Some(_) => Err(Error::InvalidArgument),
    }
}

/// Exactly one NUL-terminated string (C xenstored's `onearg`).
fn one_string(payload: &[u8]) -> Result<&[u8], Error> {
    match payload.split_last() {
        Some((0, body)) if !body.contains(&0) => Ok(body),
        _ => Err(Error::InvalidArgument),
    }
}

fn text(bytes: &[u8]) -> Result<&str, Error> {
    core::str::from_utf8(bytes).map_err(|_| Error::InvalidArgument)
}

fn decimal_u32(bytes: &[u8]) -> Result<u32, Error> {
    parse_decimal(bytes, u64::from(u32::MAX)).map(|value| value as u32)
}

impl<'a> Request<'a> {
    /// Validates a checked message. Types a client may not send (WATCH_EVENT,
    /// ERROR, the removed RESTRICT, unknown numbers) and the unsupported
    /// SET_FEATURE answer `ENOSYS`; malformed payloads `EINVAL`.
    pub fn parse(message: &MessageView<'a>) -> Result<Self, Error> {
        let kind = message.message_type().ok_or(Error::NotImplemented)?;
        Self::parse_payload(kind, message.payload())
    }

    /// Validates a payload for a known type.
    pub fn parse_payload(kind: MessageType, payload: &'a [u8]) -> Result<Self, Error> {
        let path = || one_string(payload).and_then(text);
        let domain = || one_string(payload).and_then(parse_domain_id);
        Ok(match kind {
            MessageType::Control => Self::Control { arguments: payload },
            MessageType::Directory => Self::Directory { path: path()? },
            MessageType::Read => Self::Read { path: path()? },
            MessageType::GetPermissions => Self::GetPermissions { path: path()? },
            MessageType::Mkdir => Self::Mkdir { path: path()? },
            MessageType::Remove => Self::Remove { path: path()? },
            MessageType::DirectoryPart => match strings(payload)?.as_slice() {
                [path, offset] => Self::DirectoryPart {
                    path: text(path)?,
                    offset: decimal_u32(offset)?,
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::Watch => match strings(payload)?.as_slice() {
                [path, token] => Self::Watch {
                    path: text(path)?,
                    token,
                    depth: None,
                },
                [path, token, depth] => Self::Watch {
                    path: text(path)?,
                    token,
                    depth: Some(decimal_u32(depth)?),
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::Unwatch => match strings(payload)?.as_slice() {
                [path, token] => Self::Unwatch {
                    path: text(path)?,
                    token,
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::TransactionStart => Self::TransactionStart,
            MessageType::TransactionEnd => match one_string(payload)? {
                b"T" => Self::TransactionEnd { commit: true },
                b"F" => Self::TransactionEnd { commit: false },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::Introduce => match strings(payload)?.as_slice() {
                [domain, frame, port, ..] => {
                    let port = decimal_u32(port)?;
                    if port == 0 {
                        return Err(Error::InvalidArgument);
                    }
                    Self::Introduce {
                        domain: parse_domain_id(domain)?,
                        frame: GuestFrame(parse_decimal(frame, u64::MAX)?),
                        port: Port(port),
                    }
                }
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::Release => Self::Release { domain: domain()? },
            MessageType::GetDomainPath => Self::GetDomainPath { domain: domain()? },
            MessageType::IsDomainIntroduced => Self::IsDomainIntroduced { domain: domain()? },
            MessageType::Resume => Self::Resume { domain: domain()? },
            MessageType::SetTarget => match strings(payload)?.as_slice() {
                [domain, target, ..] => Self::SetTarget {
                    domain: parse_domain_id(domain)?,
                    target: parse_domain_id(target)?,
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::Write => {
                let nul = payload
                    .iter()
                    .position(|&byte| byte == 0)
                    .ok_or(Error::InvalidArgument)?;
                let (path, rest) = payload.split_at(nul);
                Self::Write {
                    path: text(path)?,
                    value: rest.get(1..).unwrap_or_default(),
                }
            }
            MessageType::SetPermissions => match strings(payload)?.split_first() {
                Some((path, entries)) if !entries.is_empty() => Self::SetPermissions {
                    path: text(path)?,
                    permissions: Permissions::parse_strings(entries.iter().copied())?,
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::ResetWatches => Self::ResetWatches,
            MessageType::GetFeature => match strings(payload)?.as_slice() {
                [] => Self::GetFeature { domain: None },
                [domain] => Self::GetFeature {
                    domain: Some(parse_domain_id(domain)?),
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::GetQuota => match strings(payload)?.as_slice() {
                [] => Self::GetQuota {
                    domain: None,
                    name: None,
                },
                [name] => Self::GetQuota {
                    domain: None,
                    name: Some(text(name)?),
                },
                [domain, name] => Self::GetQuota {
                    domain: Some(parse_domain_id(domain)?),
                    name: Some(text(name)?),
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::SetQuota => match strings(payload)?.as_slice() {
                [name, value] => Self::SetQuota {
                    domain: None,
                    name: text(name)?,
                    value: decimal_u32(value)?,
                },
                [domain, name, value] => Self::SetQuota {
                    domain: Some(parse_domain_id(domain)?),
                    name: text(name)?,
                    value: decimal_u32(value)?,
                },
                _ => return Err(Error::InvalidArgument),
            },
            MessageType::SetFeature | MessageType::WatchEvent | MessageType::Error => {
                return Err(Error::NotImplemented);
            }
        })
    }

    /// The message type a reply to this request carries.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Control { .. } => MessageType::Control,
            Self::Directory { .. } => MessageType::Directory,
            Self::DirectoryPart { .. } => MessageType::DirectoryPart,
            Self::Read { .. } => MessageType::Read,
            Self::GetPermissions { .. } => MessageType::GetPermissions,
            Self::Watch { .. } => MessageType::Watch,
            Self::Unwatch { .. } => MessageType::Unwatch,
            Self::TransactionStart => MessageType::TransactionStart,
            Self::TransactionEnd { .. } => MessageType::TransactionEnd,
            Self::Introduce { .. } => MessageType::Introduce,
            Self::Release { .. } => MessageType::Release,
            Self::GetDomainPath { .. } => MessageType::GetDomainPath,
            Self::Write { .. } => MessageType::Write,
            Self::Mkdir { .. } => MessageType::Mkdir,
            Self::Remove { .. } => MessageType::Remove,
            Self::SetPermissions { .. } => MessageType::SetPermissions,
            Self::IsDomainIntroduced { .. } => MessageType::IsDomainIntroduced,
            Self::Resume { .. } => MessageType::Resume,
            Self::SetTarget { .. } => MessageType::SetTarget,
            Self::ResetWatches => MessageType::ResetWatches,
            Self::GetFeature { .. } => MessageType::GetFeature,
            Self::GetQuota { .. } => MessageType::GetQuota,
            Self::SetQuota { .. } => MessageType::SetQuota,
        }
    }

    /// The request's payload as a client would send it: the inverse of
    /// [`Request::parse_payload`], for clients, tests and fuzzing.
    pub fn to_payload(&self) -> Vec<u8> {
        fn joined(parts: &[&[u8]]) -> Vec<u8> {
            let mut payload = Vec::new();
            for part in parts {
                payload.extend_from_slice(part);
                payload.push(0);
            }
            payload
        }
        let number = |value: u64| format!("{value}");
        match self {
            Self::Control { arguments } => arguments.to_vec(),
            Self::Directory { path }
            | Self::Read { path }
            | Self::GetPermissions { path }
            | Self::Mkdir { path }
            | Self::Remove { path } => joined(&[path.as_bytes()]),
            Self::DirectoryPart { path, offset } => {
                joined(&[path.as_bytes(), number(u64::from(*offset)).as_bytes()])
            }
            Self::Watch { path, token, depth } => match depth {
                None => joined(&[path.as_bytes(), token]),
                Some(depth) => {
                    joined(&[path.as_bytes(), token, number(u64::from(*depth)).as_bytes()])
                }
            },
            Self::Unwatch { path, token } => joined(&[path.as_bytes(), token]),
            Self::TransactionStart | Self::ResetWatches => joined(&[b""]),
            Self::TransactionEnd { commit } => joined(&[if *commit { b"T" } else { b"F" }]),
            Self::Introduce {
                domain,
                frame,
                port,
            } => joined(&[
                number(u64::from(domain.0)).as_bytes(),
                number(frame.0).as_bytes(),
                number(u64::from(port.0)).as_bytes(),
            ]),
            Self::Release { domain }
            | Self::GetDomainPath { domain }
            | Self::IsDomainIntroduced { domain }
            | Self::Resume { domain } => joined(&[number(u64::from(domain.0)).as_bytes()]),
            Self::SetTarget { domain, target } => joined(&[
                number(u64::from(domain.0)).as_bytes(),
                number(u64::from(target.0)).as_bytes(),
            ]),
            Self::Write { path, value } => {
                let mut payload = joined(&[path.as_bytes()]);
                payload.extend_from_slice(value);
                payload
            }
            Self::SetPermissions { path, permissions } => {
                let mut payload = joined(&[path.as_bytes()]);
                payload.extend_from_slice(&permissions.to_wire());
                payload
            }
            Self::GetFeature { domain } => match domain {
                None => Vec::new(),
                Some(domain) => joined(&[number(u64::from(domain.0)).as_bytes()]),
            },
            Self::GetQuota { domain, name } => match (domain, name) {
                (_, None) => Vec::new(),
                (None, Some(name)) => joined(&[name.as_bytes()]),
                (Some(domain), Some(name)) => {
                    joined(&[number(u64::from(domain.0)).as_bytes(), name.as_bytes()])
                }
            },
            Self::SetQuota {
                domain,
                name,
                value,
            } => {
                let value = number(u64::from(*value));
                match domain {
                    None => joined(&[name.as_bytes(), value.as_bytes()]),
                    Some(domain) => joined(&[
                        number(u64::from(domain.0)).as_bytes(),
                        name.as_bytes(),
                        value.as_bytes(),
                    ]),
                }
            }
        }
    }
}

/// A successful answer, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `OK`.
    Ok,
    /// READ: the value.
    Value(Vec<u8>),
    /// DIRECTORY: child names.
    Names(Vec<String>),
    /// A payload built by the operation itself (DIRECTORY_PART).
    Raw(Vec<u8>),
    /// GET_PERMS.
    Permissions(Permissions),
    /// TRANSACTION_START.
    TransactionStarted(TransactionId),
    /// GET_DOMAIN_PATH.
    DomainPath(String),
    /// IS_DOMAIN_INTRODUCED.
    Introduced(bool),
    /// GET_FEATURE, GET_QUOTA of one quota.
    Number(u64),
    /// GET_QUOTA's list of names, CONTROL output.
    Text(String),
}

impl Response {
    /// The reply payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let terminated = |text: &str| {
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0);
            bytes
        };
        match self {
            Self::Ok => terminated("OK"),
            Self::Value(value) | Self::Raw(value) => value.clone(),
            Self::Names(names) => {
                let mut bytes = Vec::new();
                for name in names {
                    bytes.extend_from_slice(name.as_bytes());
                    bytes.push(0);
                }
                bytes
            }
            Self::Permissions(permissions) => permissions.to_wire(),
            Self::TransactionStarted(id) => terminated(&format!("{id}")),
            Self::DomainPath(path) => terminated(path),
            Self::Introduced(yes) => terminated(if *yes { "T" } else { "F" }),
            Self::Number(value) => terminated(&format!("{value}")),
            Self::Text(text) => terminated(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    fn parse(kind: MessageType, payload: &[u8]) -> Result<Request<'_>, Error> {
        Request::parse_payload(kind, payload)
    }

    #[test]
    fn paths_need_exactly_one_terminated_string() {
        assert_eq!(
            parse(MessageType::Read, b"device\0"),
            Ok(Request::Read { path: "device" })
        );
        for bad in [&b""[..], b"device", b"a\0b\0", b"\xff\0"] {
            assert_eq!(parse(MessageType::Read, bad), Err(Error::InvalidArgument));
        }
    }

    #[test]
    fn write_value_is_the_rest() {
        assert_eq!(
            parse(MessageType::Write, b"a/b\0va\0lue"),
            Ok(Request::Write {
                path: "a/b",
                value: b"va\0lue"
            })
        );
        assert_eq!(
            parse(MessageType::Write, b"a\0"),
            Ok(Request::Write {
                path: "a",
                value: b""
            })
        );
        assert_eq!(parse(MessageType::Write, b"a"), Err(Error::InvalidArgument));
    }

    #[test]
    fn watch_arguments() {
        assert_eq!(
            parse(MessageType::Watch, b"p\0t\0"),
            Ok(Request::Watch {
                path: "p",
                token: b"t",
                depth: None
            })
        );
        assert_eq!(
            parse(MessageType::Watch, b"p\0t\x001\0"),
            Ok(Request::Watch {
                path: "p",
                token: b"t",
                depth: Some(1)
            })
        );
        for bad in [
            &b"p\0"[..],
            b"p\0t",
            b"p\0t\0x\0",
            b"p\0t\0-1\0",
            b"p\0t\0\0\0",
        ] {
            assert_eq!(parse(MessageType::Watch, bad), Err(Error::InvalidArgument));
        }
    }

    #[test]
    fn domain_arguments() {
        assert_eq!(
            parse(MessageType::Introduce, b"5\x00123\x00"),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            parse(MessageType::Introduce, b"5\x00123\x009\x00"),
            Ok(Request::Introduce {
                domain: DomainId(5),
                frame: GuestFrame(123),
                port: Port(9)
            })
        );
        assert_eq!(
            parse(MessageType::Introduce, b"5\x00123\x000\x00"),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            parse(MessageType::GetDomainPath, b"65536\0"),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            parse(MessageType::GetDomainPath, b"7\0"),
            Ok(Request::GetDomainPath {
                domain: DomainId(7)
            })
        );
    }

    #[test]
    fn client_must_not_send_server_types() {
        for kind in [
            MessageType::WatchEvent,
            MessageType::Error,
            MessageType::SetFeature,
        ] {
            assert_eq!(parse(kind, b""), Err(Error::NotImplemented));
        }
        let message = Message::new(20, 1, 0, Vec::new()).unwrap();
        assert_eq!(Request::parse(&message.view()), Err(Error::NotImplemented));
    }

    #[test]
    fn payloads_round_trip() {
        let permissions = Permissions::parse_strings([&b"n5"[..], b"r0"]).unwrap();
        let requests = [
            Request::Control {
                arguments: b"check\0",
            },
            Request::Directory { path: "a" },
            Request::DirectoryPart {
                path: "a",
                offset: 9,
            },
            Request::Read { path: "a" },
            Request::GetPermissions { path: "a" },
            Request::Watch {
                path: "a",
                token: b"t",
                depth: Some(2),
            },
            Request::Watch {
                path: "a",
                token: b"t",
                depth: None,
            },
            Request::Unwatch {
                path: "a",
                token: b"t",
            },
            Request::TransactionStart,
            Request::TransactionEnd { commit: true },
            Request::TransactionEnd { commit: false },
            Request::Introduce {
                domain: DomainId(3),
                frame: GuestFrame(0xfeff),
                port: Port(4),
            },
            Request::Release {
                domain: DomainId(3),
            },
            Request::GetDomainPath {
                domain: DomainId(3),
            },
            Request::Write {
                path: "a",
                value: b"x\0y",
            },
            Request::Mkdir { path: "a" },
            Request::Remove { path: "a" },
            Request::SetPermissions {
                path: "a",
                permissions,
            },
            Request::IsDomainIntroduced {
                domain: DomainId(3),
            },
            Request::Resume {
                domain: DomainId(3),
            },
            Request::SetTarget {
                domain: DomainId(3),
                target: DomainId(4),
            },
            Request::ResetWatches,
            Request::GetFeature { domain: None },
            Request::GetFeature {
                domain: Some(DomainId(1)),
            },
            Request::GetQuota {
                domain: None,
                name: None,
            },
            Request::GetQuota {
                domain: Some(DomainId(1)),
                name: Some("nodes"),
            },
            Request::GetQuota {
                domain: None,
                name: Some("nodes"),
            },
            Request::SetQuota {
                domain: None,
                name: "nodes",
                value: 5,
            },
            Request::SetQuota {
                domain: Some(DomainId(1)),
                name: "nodes",
                value: 5,
            },
        ];
        for request in requests {
            let payload = request.to_payload();
            let parsed = Request::parse_payload(request.message_type(), &payload);
            assert_eq!(parsed.as_ref(), Ok(&request), "{request:?}");
        }
    }

    #[test]
    fn responses_encode() {
        assert_eq!(Response::Ok.to_payload(), b"OK\0");
        assert_eq!(Response::Introduced(false).to_payload(), b"F\0");
        assert_eq!(
            Response::Names(alloc::vec![String::from("a"), String::from("b")]).to_payload(),
            b"a\0b\0"
        );
        assert_eq!(Response::Value(b"x".to_vec()).to_payload(), b"x");
        assert_eq!(
            Response::TransactionStarted(TransactionId(12)).to_payload(),
            b"12\0"
        );
    }
}
