//! Watches: which changes a watch hears of, and the events it produces.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;

use crate::operations::Scope;
use crate::path;
use crate::wire::PAYLOAD_MAX;

/// One watch event: the changed path (relative if the watch was registered
/// relative) and the watch's token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The path that changed, as the watcher spells it.
    pub path: String,
    /// The token given at registration.
    pub token: Vec<u8>,
}

impl WatchEvent {
    /// The WATCH_EVENT payload: `path\0token\0`.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.wire_len());
        payload.extend_from_slice(self.path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(&self.token);
        payload.push(0);
        payload
    }

    /// Payload bytes.
    pub fn wire_len(&self) -> usize {
        self.path.len() + self.token.len() + 2
    }

    /// Whether the event fits one message (C xenstored drops those that do
    /// not).
    pub fn fits(&self) -> bool {
        self.wire_len() <= PAYLOAD_MAX
    }
}

/// A registered watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Absolute path or special name.
    pub(crate) path: String,
    pub(crate) token: Vec<u8>,
    pub(crate) depth: Option<u32>,
    /// Bytes to strip from reported paths for a relative registration.
    pub(crate) relative_prefix: usize,
}

impl Watch {
    /// The event for a change at `changed`.
    pub(crate) fn event(&self, changed: &str) -> WatchEvent {
        let reported = changed.get(self.relative_prefix..).unwrap_or(changed);
        WatchEvent {
            path: String::from(reported),
            token: self.token.clone(),
        }
    }

    /// The event fired once at registration.
    pub(crate) fn initial_event(&self) -> WatchEvent {
        self.event(&self.path)
    }

    /// Whether a change at `changed` concerns this watch.
    pub(crate) fn matches(&self, changed: &str, scope: Scope) -> bool {
        match scope {
            Scope::Exact => self.path == changed,
            Scope::Subtree => path::is_within(changed, &self.path, self.depth),
        }
    }

    /// The events for a special name (`@introduceDomain`/`@releaseDomain`)
    /// about `domain`: a plain watch on the name hears the name; a watch
    /// with a depth of at least 1, or on `<name>/<domid>`, hears
    /// `<name>/<domid>` (C xenstored's `fire_special_watches`).
    pub(crate) fn special_event(&self, name: &str, domain: DomainId) -> Option<WatchEvent> {
        if self.path == name && self.depth.is_none() {
            return Some(self.event(name));
        }
        let with_domain = format!("{name}/{}", domain.0);
        let deep = self.depth.is_some_and(|depth| depth > 0)
            && path::is_within(&with_domain, &self.path, self.depth);
        (self.path == with_domain || deep).then(|| self.event(&with_domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(path: &str, depth: Option<u32>, relative_prefix: usize) -> Watch {
        Watch {
            path: String::from(path),
            token: b"tok".to_vec(),
            depth,
            relative_prefix,
        }
    }

    #[test]
    fn relative_watches_report_relative_paths() {
        let watch = watch("/local/domain/5/device", None, "/local/domain/5/".len());
        assert_eq!(watch.initial_event().path, "device");
        assert_eq!(watch.event("/local/domain/5/device/vbd").path, "device/vbd");
        assert_eq!(
            watch.event("/local/domain/5/device").to_payload(),
            b"device\0tok\0"
        );
    }

    #[test]
    fn matching() {
        let plain = watch("/a", None, 0);
        assert!(plain.matches("/a/b/c", Scope::Subtree));
        assert!(!plain.matches("/a/b/c", Scope::Exact));
        assert!(!plain.matches("/", Scope::Subtree));
        let shallow = watch("/a", Some(1), 0);
        assert!(shallow.matches("/a/b", Scope::Subtree));
        assert!(!shallow.matches("/a/b/c", Scope::Subtree));
    }

    #[test]
    fn special_events() {
        let release = DomainId(4);
        let plain = watch("@releaseDomain", None, 0);
        assert_eq!(
            plain.special_event("@releaseDomain", release).unwrap().path,
            "@releaseDomain"
        );
        let deep = watch("@releaseDomain", Some(1), 0);
        assert_eq!(
            deep.special_event("@releaseDomain", release).unwrap().path,
            "@releaseDomain/4"
        );
        let one = watch("@releaseDomain/4", None, 0);
        assert!(one.special_event("@releaseDomain", release).is_some());
        assert!(one.special_event("@releaseDomain", DomainId(5)).is_none());
        assert!(plain.special_event("@introduceDomain", release).is_none());
    }
}
