//! The node tree: every node by absolute path, with its value, permissions,
//! children (in creation order, as C xenstored lists them) and generation,
//! plus the per-owner node counts quotas are checked against.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;

use crate::Error;
use crate::path;
use crate::permissions::{Access, DOMID_ANY, Permissions};

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The value: arbitrary bytes, possibly empty.
    pub value: Vec<u8>,
    /// Who may do what.
    pub permissions: Permissions,
    /// Leaf names of the children, in creation order.
    pub children: Vec<String>,
    /// Changes on every modification; DIRECTORY_PART reports it and
    /// transactions compare it.
    pub generation: u64,
}

impl Node {
    /// An empty node with no children.
    pub fn new(permissions: Permissions) -> Self {
        Self {
            value: Vec::new(),
            permissions,
            children: Vec::new(),
            generation: 0,
        }
    }

    /// The DIRECTORY payload: each child name followed by NUL.
    pub fn children_wire(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.children_wire_len());
        for name in &self.children {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    /// The length of [`Node::children_wire`].
    pub fn children_wire_len(&self) -> usize {
        self.children.iter().map(|name| name.len() + 1).sum()
    }
}

/// Reads and writes of nodes, either straight on the tree or through a
/// transaction's overlay. Operations in `operations.rs` only use this.
pub(crate) trait NodeAccess {
    /// The node at `path`, if it exists (in this view).
    fn get(&mut self, path: &str) -> Result<Option<&Node>, Error>;
    /// Creates or replaces a node; assigns it a fresh generation.
    fn put(&mut self, path: &str, node: Node) -> Result<(), Error>;
    /// Deletes one node (not its children: callers remove those first).
    fn delete(&mut self, path: &str) -> Result<(), Error>;
    /// Nodes owned by `domain` in this view.
    fn owned_nodes(&self, domain: DomainId) -> u64;
}

/// The whole store.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    owned: BTreeMap<DomainId, u64>,
    generation: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// The initial store: `/`, `/local`, `/local/domain`, `/tool`,
    /// `/tool/xenstored` (all `n0`), and the special nodes whose permissions
    /// decide who receives `@introduceDomain` (`n0`) and `@releaseDomain`
    /// (`n0`, readable by any domain: C xenstored's defaults).
    pub fn new() -> Self {
        let mut tree = Self {
            nodes: BTreeMap::new(),
            owned: BTreeMap::new(),
            generation: 0,
        };
        let dom0_only = Permissions::new(DomainId::DOM0, Access::None);
        let directories: [(&str, &[&str]); 5] = [
            ("/", &["local", "tool"]),
            ("/local", &["domain"]),
            ("/local/domain", &[]),
            ("/tool", &["xenstored"]),
            ("/tool/xenstored", &[]),
        ];
        for (name, children) in directories {
            let mut node = Node::new(dom0_only.clone());
            node.children = children.iter().map(|&child| String::from(child)).collect();
            tree.insert(name, node);
        }
        tree.insert(path::INTRODUCE_DOMAIN, Node::new(dom0_only.clone()));
        let release = dom0_only.with(DOMID_ANY, Access::Read);
        tree.insert(path::RELEASE_DOMAIN, Node::new(release));
        tree
    }

    /// The node at `path`.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every node, in path order (specials last): for dumps and checks.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(path, node)| (path.as_str(), node))
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes `domain` owns.
    pub fn owned_by(&self, domain: DomainId) -> u64 {
        self.owned.get(&domain).copied().unwrap_or(0)
    }

    /// The generation of `path`, `None` if absent.
    pub(crate) fn generation_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|node| node.generation)
    }

    /// A fresh generation number.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The paths of nodes `wanted` picks, in path order (ancestors first).
    pub(crate) fn paths_matching(&self, mut wanted: impl FnMut(&Node) -> bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, node)| wanted(node))
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn insert(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation();
        self.count(node.permissions.owner(), 1);
        if let Some(old) = self.nodes.insert(String::from(path), node) {
            self.count(old.permissions.owner(), -1);
        }
    }

    fn count(&mut self, owner: DomainId, delta: i64) {
        let entry = self.owned.entry(owner).or_insert(0);
        *entry = entry.saturating_add_signed(delta);
        if *entry == 0 {
            self.owned.remove(&owner);
        }
    }

    /// Checks the structural invariants: the root exists, every tree node
    /// but the root is listed exactly once by its existing parent, every
    /// listed child exists, and the owner counts match. Returns the first
    /// violation found.
    pub fn check(&self) -> Result<(), String> {
        if !self.nodes.contains_key("/") {
            return Err(String::from("no root"));
        }
        let mut owned: BTreeMap<DomainId, u64> = BTreeMap::new();
        for (name, node) in &self.nodes {
            *owned.entry(node.permissions.owner()).or_insert(0) += 1;
            if node.permissions.entries().is_empty() {
                return Err(alloc::format!("{name}: no permissions"));
            }
            for child in &node.children {
                let child_path = path::child(name, child);
                if !self.nodes.contains_key(&child_path) {
                    return Err(alloc::format!("{name}: missing child {child}"));
                }
            }
            let Some(parent) = path::parent(name) else {
                continue;
            };
            let listed = self.nodes.get(parent).map(|parent| {
                parent
                    .children
                    .iter()
                    .filter(|child| child.as_str() == path::base_name(name))
                    .count()
            });
            if listed != Some(1) {
                return Err(alloc::format!(
                    "{name}: listed {listed:?} times by its parent"
                ));
            }
        }
        if owned != self.owned {
            return Err(alloc::format!(
                "owner counts {:?} != {:?}",
                self.owned,
                owned
            ));
        }
        Ok(())
    }
}

impl NodeAccess for Tree {
    fn get(&mut self, path: &str) -> Result<Option<&Node>, Error> {
        Ok(self.nodes.get(path))
    }

    fn put(&mut self, path: &str, node: Node) -> Result<(), Error> {
        self.insert(path, node);
        Ok(())
    }

    fn delete(&mut self, path: &str) -> Result<(), Error> {
        if let Some(old) = self.nodes.remove(path) {
            self.count(old.permissions.owner(), -1);
        }
        Ok(())
    }

    fn owned_nodes(&self, domain: DomainId) -> u64 {
        self.owned_by(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_tree_is_consistent() {
        let tree = Tree::new();
        tree.check().unwrap();
        assert_eq!(tree.owned_by(DomainId::DOM0), 7);
        assert!(tree.node("/local/domain").is_some());
    }

    #[test]
    fn counts_follow_owners() {
        let mut tree = Tree::new();
        let guest = DomainId(3);
        let node = Node::new(Permissions::new(guest, Access::None));
        tree.put("/x", node.clone()).unwrap();
        assert_eq!(tree.owned_by(guest), 1);
        tree.put(
            "/x",
            Node::new(Permissions::new(DomainId::DOM0, Access::None)),
        )
        .unwrap();
        assert_eq!(tree.owned_by(guest), 0);
        tree.delete("/x").unwrap();
        assert_eq!(tree.owned_by(DomainId::DOM0), 7);
        // "/x" was never listed by "/", so check() notices.
        tree.put("/x", node).unwrap();
        assert!(tree.check().is_err());
    }

    #[test]
    fn generations_are_fresh() {
        let mut tree = Tree::new();
        let before = tree.generation_of("/").unwrap();
        let root = tree.node("/").unwrap().clone();
        tree.put("/", root).unwrap();
        assert!(tree.generation_of("/").unwrap() > before);
        assert_eq!(tree.generation_of("/nothing"), None);
    }
}
