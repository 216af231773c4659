//! Paths: validation, resolution of relative paths against
//! `/local/domain/<id>`, parents and the child relation watches use.

use alloc::format;
use alloc::string::String;

use xenolith_abi::domain::DomainId;

use crate::Error;
use crate::wire::ABSOLUTE_PATH_MAX;

/// The special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain is released or shuts down.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// The base of relative paths for `domain`: `/local/domain/<id>`.
pub fn domain_path(domain: DomainId) -> String {
    format!("/local/domain/{}", domain.0)
}

/// A validated absolute path (or special `@...` name), and how much of it
/// to strip to give a relative client its own spelling back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalPath {
    /// The absolute path, or the special name.
    pub absolute: String,
    /// Bytes of `absolute` the client did not write (`/local/domain/<id>/`),
    /// or 0 if it gave an absolute path.
    pub relative_prefix: usize,
}

impl CanonicalPath {
    /// Whether this is a special `@...` name rather than a tree path.
    pub fn is_special(&self) -> bool {
        self.absolute.starts_with('@')
    }
}

/// Whether every byte is one of xenstore's path characters:
/// ASCII letters, digits and `-/_@`.
pub fn has_valid_characters(path: &str) -> bool {
    path.bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_' | b'@'))
}

/// Resolves and validates a path a client sent (C xenstored's
/// `canonicalize`): allowed characters only, `@` first only for special
/// names, relative paths resolved against the caller's domain path, no
/// `//`, no trailing `/` except the root, at most [`ABSOLUTE_PATH_MAX`]
/// bytes, and, when `path_max` is given (an unprivileged caller's quota),
/// at most that many bytes after any `/local/domain/<id>/` prefix.
pub fn canonicalize(
    raw: &str,
    caller: DomainId,
    path_max: Option<usize>,
    allow_special: bool,
) -> Result<CanonicalPath, Error> {
    if raw.is_empty() || !has_valid_characters(raw) {
        return Err(Error::InvalidArgument);
    }
    let special = raw.starts_with('@');
    if special && !allow_special {
        return Err(Error::InvalidArgument);
    }
    let (absolute, relative_prefix) = if special || raw.starts_with('/') {
        (String::from(raw), 0)
    } else {
        let base = domain_path(caller);
        let prefix = base.len() + 1;
        if raw.len() > ABSOLUTE_PATH_MAX {
            return Err(Error::InvalidArgument);
        }
        (format!("{base}/{raw}"), prefix)
    };
    let trailing_slash = absolute.len() > 1 && absolute.ends_with('/');
    if trailing_slash || absolute.contains("//") || absolute.len() > ABSOLUTE_PATH_MAX {
        return Err(Error::InvalidArgument);
    }
    if let Some(maximum) = path_max {
        let local = local_part_offset(&absolute);
        if absolute.len() - local > maximum {
            return Err(Error::InvalidArgument);
        }
    }
    Ok(CanonicalPath {
        absolute,
        relative_prefix,
    })
}

/// Where the part after `/local/domain/<id>/` starts, or 0.
fn local_part_offset(path: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 5 || rest.as_bytes().get(digits) != Some(&b'/') {
        return 0;
    }
    PREFIX.len() + digits + 1
}

/// The parent of an absolute path; `None` for `/` and special names.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" || !path.starts_with('/') {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(slash) => path.get(..slash),
        None => None,
    }
}

/// The last component of an absolute path (empty for `/`).
pub fn base_name(path: &str) -> &str {
    path.rfind('/')
        .and_then(|slash| path.get(slash + 1..))
        .unwrap_or(path)
}

/// The absolute path of `name` under `parent`.
pub fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it, at most `depth` levels down
/// when a depth is given (C xenstored's `is_child`). `/` contains every
/// path.
pub fn is_within(path: &str, ancestor: &str, depth: Option<u32>) -> bool {
    let Some(rest) = path.strip_prefix(ancestor) else {
        return false;
    };
    let rest = if ancestor == "/" {
        if !path.starts_with('/') {
            return false;
        }
        // "/a/b" below "/" is one level more than its slashes after the
        // first: count it as if the root were "" followed by "/a/b".
        path
    } else if rest.is_empty() {
        return true;
    } else if rest.starts_with('/') {
        rest
    } else {
        return false;
    };
    match depth {
        None => true,
        Some(depth) => {
            if ancestor == "/" && path == "/" {
                return true;
            }
            let levels = rest.bytes().filter(|&byte| byte == b'/').count();
            u32::try_from(levels).is_ok_and(|levels| levels <= depth)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: DomainId = DomainId(5);

    fn absolute(raw: &str) -> Result<String, Error> {
        canonicalize(raw, GUEST, Some(2048), false).map(|path| path.absolute)
    }

    #[test]
    fn relative_paths_resolve_against_the_domain() {
        let path = canonicalize("device/vbd", GUEST, None, false).unwrap();
        assert_eq!(path.absolute, "/local/domain/5/device/vbd");
        assert_eq!(&path.absolute[path.relative_prefix..], "device/vbd");
        assert_eq!(absolute("/tool").unwrap(), "/tool");
        assert_eq!(absolute("/").unwrap(), "/");
    }

    #[test]
    fn invalid_paths() {
        for bad in [
            "", "a//b", "/a/", "a/", "/a b", "a\u{e9}", "@x", "/a.b", "/a\0b", "//",
        ] {
            assert_eq!(absolute(bad), Err(Error::InvalidArgument), "{bad:?}");
        }
        assert!(
            canonicalize("@releaseDomain", GUEST, None, true)
                .unwrap()
                .is_special()
        );
        assert!(canonicalize("/a@b-c_D9", GUEST, None, false).is_ok());
    }

    #[test]
    fn length_limits() {
        let long = "a".repeat(2048);
        assert!(absolute(&long).is_ok());
        assert!(absolute(&"a".repeat(2049)).is_err());
        // The quota counts what follows /local/domain/<id>/ ...
        assert!(absolute(&format!("/local/domain/9/{long}")).is_ok());
        // ... but the absolute limit holds for everyone.
        let huge = format!("/{}", "a".repeat(ABSOLUTE_PATH_MAX));
        assert!(canonicalize(&huge, DomainId(0), None, false).is_err());
        let fits = format!("/{}", "a".repeat(ABSOLUTE_PATH_MAX - 1));
        assert!(canonicalize(&fits, DomainId(0), None, false).is_ok());
        assert!(canonicalize(&fits, GUEST, Some(2048), false).is_err());
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(parent("@releaseDomain"), None);
        assert_eq!(base_name("/a/b/c"), "c");
        assert_eq!(base_name("/a"), "a");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
    }

    #[test]
    fn within() {
        assert!(is_within("/a/b", "/a", None));
        assert!(is_within("/a", "/a", None));
        assert!(!is_within("/ab", "/a", None));
        assert!(!is_within("/a", "/a/b", None));
        assert!(is_within("/a/b/c", "/", None));
        assert!(is_within("/a", "/a", Some(0)));
        assert!(!is_within("/a/b", "/a", Some(0)));
        assert!(is_within("/a/b", "/a", Some(1)));
        assert!(!is_within("/a/b/c", "/a", Some(1)));
        assert!(is_within("/a", "/", Some(1)));
        assert!(!is_within("/a/b", "/", Some(1)));
        assert!(is_within("/", "/", Some(0)));
        assert!(!is_within("/a", "/", Some(0)));
        assert!(is_within("@releaseDomain/5", "@releaseDomain", Some(1)));
        assert!(!is_within("@releaseDomain", "/", None));
    }
}
