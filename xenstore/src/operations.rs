//! The node operations (read, write, mkdir, rm, directory, permissions),
//! written once over [`NodeAccess`] so they run the same on the tree and
//! inside a transaction. Each change returns what watches need to fire.
//!
//! Error choices follow C xenstored: a missing node answers `ENOENT` only
//! if the nearest existing ancestor grants the access asked for, and
//! `EACCES` otherwise, so errors do not reveal what a caller cannot see.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::Error;
use crate::config::Quotas;
use crate::path;
use crate::permissions::{Caller, Permissions, Rights};
use crate::tree::{Node, NodeAccess};
use crate::wire::PAYLOAD_MAX;

/// Which watches a change concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Watches on the path or any ancestor (within their depth).
    Subtree,
    /// Watches on exactly this path: the descendants a recursive remove
    /// deletes.
    Exact,
}

/// One changed node, with the permissions watch delivery checks: a watcher
/// hears of it if it may read the node, its parent, or (after SET_PERMS)
/// the node as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) path: String,
    pub(crate) scope: Scope,
    pub(crate) permissions: Permissions,
    pub(crate) parent_permissions: Option<Permissions>,
    pub(crate) old_permissions: Option<Permissions>,
}

impl Change {
    /// Whether `caller` may hear of this change.
    pub(crate) fn visible_to(&self, caller: &Caller) -> bool {
        caller.privileged
            || self.permissions.rights(caller).read
            || self
                .parent_permissions
                .as_ref()
                .is_some_and(|parent| parent.rights(caller).read)
            || self
                .old_permissions
                .as_ref()
                .is_some_and(|old| old.rights(caller).read)
    }
}

/// The limits an operation enforces: the caller's quotas, or none for the
/// privileged domain.
pub(crate) type Limits<'a> = Option<&'a Quotas>;

fn rights(view: &mut dyn NodeAccess, caller: &Caller, path: &str) -> Result<Option<Rights>, Error> {
    Ok(view.get(path)?.map(|node| node.permissions.rights(caller)))
}

/// The error for a missing `path`: `error` if the nearest existing
/// ancestor grants what `allowed` asks for, `EACCES` otherwise. Special
/// names have the root as their only ancestor.
fn missing_error(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
    allowed: impl Fn(Rights) -> bool,
    error: Error,
) -> Result<Error, Error> {
    let mut current = path;
    loop {
        let ancestor = path::parent(current).unwrap_or("/");
        if let Some(rights) = rights(view, caller, ancestor)? {
            return Ok(if allowed(rights) {
                error
            } else {
                Error::AccessDenied
            });
        }
        if ancestor == "/" {
            return Ok(Error::AccessDenied);
        }
        current = ancestor;
    }
}

/// The node at `path` if `allowed` holds for it, else the right error.
fn checked<'v>(
    view: &'v mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
    allowed: impl Fn(Rights) -> bool + Copy,
) -> Result<&'v Node, Error> {
    match rights(view, caller, path)? {
        Some(rights) if allowed(rights) => {}
        Some(_) => return Err(Error::AccessDenied),
        None => return Err(missing_error(view, caller, path, allowed, Error::NotFound)?),
    }
    view.get(path)?.ok_or(Error::NotFound)
}

fn can_read(rights: Rights) -> bool {
    rights.read
}

fn can_write(rights: Rights) -> bool {
    rights.write
}

/// READ: the value.
pub(crate) fn read(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
) -> Result<Vec<u8>, Error> {
    Ok(checked(view, caller, path, can_read)?.value.clone())
}

/// DIRECTORY: the children's leaf names.
pub(crate) fn directory(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
) -> Result<Vec<String>, Error> {
    Ok(checked(view, caller, path, can_read)?.children.clone())
}

/// DIRECTORY_PART: `<generation>\0` then the child list from byte `offset`
/// of the whole NUL-separated list, cut to fit one payload; an empty string
/// (an extra NUL) marks the end of the list.
pub(crate) fn directory_part(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
    offset: u32,
) -> Result<Vec<u8>, Error> {
    let node = checked(view, caller, path, can_read)?;
    let list = node.children_wire();
    let mut payload = format!("{}\0", node.generation).into_bytes();
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let Some(rest) = list.get(start..).filter(|rest| !rest.is_empty()) else {
        payload.push(0);
        return Ok(payload);
    };
    let room = PAYLOAD_MAX - payload.len() - 1;
    let mut taken = 0;
    let mut complete = false;
    while let Some(remaining) = rest.get(taken..).filter(|remaining| !remaining.is_empty()) {
        let name = remaining
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(remaining.len());
        if taken + name >= room {
            break;
        }
        taken = (taken + name + 1).min(rest.len());
        if taken == rest.len() {
            complete = true;
            break;
        }
    }
    payload.extend_from_slice(rest.get(..taken).unwrap_or_default());
    if complete {
        payload.push(0);
    }
    Ok(payload)
}

/// GET_PERMS.
pub(crate) fn get_permissions(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
) -> Result<Permissions, Error> {
    Ok(checked(view, caller, path, can_read)?.permissions.clone())
}

fn change(
    view: &mut dyn NodeAccess,
    path: &str,
    scope: Scope,
    old_permissions: Option<Permissions>,
) -> Result<Change, Error> {
    let permissions = view
        .get(path)?
        .map(|node| node.permissions.clone())
        .ok_or(Error::InputOutput)?;
    let parent_permissions = match path::parent(path) {
        Some(parent) => view.get(parent)?.map(|node| node.permissions.clone()),
        None => None,
    };
    Ok(Change {
        path: String::from(path),
        scope,
        permissions,
        parent_permissions,
        old_permissions,
    })
}

fn check_value_size(limits: Limits<'_>, value: &[u8]) -> Result<(), Error> {
    match limits.and_then(|quotas| Quotas::limit(quotas.value_size)) {
        Some(maximum) if value.len() as u64 > maximum => Err(Error::TooBig),
        _ => Ok(()),
    }
}

/// Creates `path` and any missing ancestors. Each new node copies its
/// parent's permissions; an unprivileged creator becomes the owner.
fn create(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    limits: Limits<'_>,
    path: &str,
    value: &[u8],
) -> Result<(), Error> {
    let mut missing = vec![String::from(path)];
    let mut current = String::from(path);
    let (ancestor_path, mut ancestor) = loop {
        let parent = path::parent(&current).ok_or(Error::InvalidArgument)?;
        if let Some(node) = view.get(parent)? {
            break (String::from(parent), node.clone());
        }
        missing.push(String::from(parent));
        current = String::from(parent);
    };
    if !ancestor.permissions.rights(caller).write {
        return Err(Error::AccessDenied);
    }
    check_value_size(limits, value)?;
    if let Some(maximum) = limits.and_then(|quotas| Quotas::limit(quotas.nodes)) {
        let total = view
            .owned_nodes(caller.domain)
            .saturating_add(missing.len() as u64);
        if total > maximum {
            return Err(Error::QuotaExceeded);
        }
    }
    let mut permissions = ancestor.permissions.clone();
    let top = missing
        .last()
        .map(|top| path::base_name(top))
        .unwrap_or_default();
    if !ancestor.children.iter().any(|name| name == top) {
        ancestor.children.push(String::from(top));
        view.put(&ancestor_path, ancestor)?;
    }
    let mut remaining = missing.iter().rev().peekable();
    while let Some(node_path) = remaining.next() {
        if !caller.privileged {
            permissions = permissions.with_owner(caller.domain);
        }
        let mut node = Node::new(permissions.clone());
        match remaining.peek() {
            Some(next) => node.children.push(String::from(path::base_name(next))),
            None => node.value = value.to_vec(),
        }
        view.put(node_path, node)?;
    }
    Ok(())
}

/// WRITE: sets the value, creating the node and missing parents.
pub(crate) fn write(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    limits: Limits<'_>,
    path: &str,
    value: &[u8],
) -> Result<Vec<Change>, Error> {
    if path::parent(path).is_none() && path != "/" {
        return Err(Error::InvalidArgument);
    }
    match view.get(path)? {
        Some(node) => {
            if !node.permissions.rights(caller).write {
                return Err(Error::AccessDenied);
            }
            check_value_size(limits, value)?;
            let mut node = node.clone();
            node.value = value.to_vec();
            view.put(path, node)?;
        }
        None => create(view, caller, limits, path, value)?,
    }
    Ok(vec![change(view, path, Scope::Subtree, None)?])
}

/// MKDIR: makes sure the node exists; an existing node is left alone.
pub(crate) fn mkdir(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    limits: Limits<'_>,
    path: &str,
) -> Result<Vec<Change>, Error> {
    match rights(view, caller, path)? {
        Some(rights) if rights.write => Ok(Vec::new()),
        Some(_) => Err(Error::AccessDenied),
        None => {
            create(view, caller, limits, path, &[])?;
            Ok(vec![change(view, path, Scope::Subtree, None)?])
        }
    }
}

/// RM: removes the node and everything below it. A missing node is fine if
/// its parent exists; removing `/` is not allowed.
pub(crate) fn remove(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    path: &str,
) -> Result<Vec<Change>, Error> {
    let Some(rights) = rights(view, caller, path)? else {
        let error = missing_error(view, caller, path, can_write, Error::NotFound)?;
        if error != Error::NotFound {
            return Err(error);
        }
        let parent = path::parent(path).ok_or(Error::NotFound)?;
        return match view.get(parent)? {
            Some(_) => Ok(Vec::new()),
            None => Err(Error::NotFound),
        };
    };
    if !rights.write {
        return Err(Error::AccessDenied);
    }
    let parent_path = path::parent(path).ok_or(Error::InvalidArgument)?;
    let mut parent = view
        .get(parent_path)?
        .cloned()
        .ok_or(Error::InvalidArgument)?;
    let mut changes = Vec::new();
    let mut pending = vec![(String::from(path), Some(parent.permissions.clone()))];
    while let Some((node_path, parent_permissions)) = pending.pop() {
        let Some(node) = view.get(&node_path)? else {
            continue;
        };
        let permissions = node.permissions.clone();
        for name in &node.children {
            pending.push((path::child(&node_path, name), Some(permissions.clone())));
        }
        let scope = if node_path == path {
            Scope::Subtree
        } else {
            Scope::Exact
        };
        changes.push(Change {
            path: node_path,
            scope,
            permissions,
            parent_permissions,
            old_permissions: None,
        });
    }
    for doomed in &changes {
        view.delete(&doomed.path)?;
    }
    let name = path::base_name(path);
    parent.children.retain(|child| child != name);
    view.put(parent_path, parent)?;
    Ok(changes)
}

/// SET_PERMS: only the owner (or the privileged domain) may; only the
/// privileged domain may change the owner.
pub(crate) fn set_permissions(
    view: &mut dyn NodeAccess,
    caller: &Caller,
    limits: Limits<'_>,
    path: &str,
    permissions: Permissions,
) -> Result<Vec<Change>, Error> {
    if let Some(maximum) = limits.and_then(|quotas| Quotas::limit(quotas.permissions))
        && permissions.entries().len() as u64 > maximum
    {
        return Err(Error::QuotaExceeded);
    }
    let owner_or_writer = |rights: Rights| rights.write || rights.owner;
    let node = match view.get(path)? {
        Some(node) => node,
        None => {
            return Err(missing_error(
                view,
                caller,
                path,
                owner_or_writer,
                Error::NotFound,
            )?);
        }
    };
    let rights = node.permissions.rights(caller);
    if !(rights.owner && rights.write) {
        return Err(Error::AccessDenied);
    }
    if !caller.privileged && permissions.owner() != node.permissions.owner() {
        return Err(Error::NotPermitted);
    }
    let mut node = node.clone();
    let old = core::mem::replace(&mut node.permissions, permissions);
    view.put(path, node)?;
    Ok(vec![change(view, path, Scope::Subtree, Some(old))?])
}
