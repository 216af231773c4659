//! Optimistic transactions (C xenstored's scheme): each node a transaction
//! touches has its generation recorded at first access; changes stay in an
//! overlay; commit succeeds only if every recorded generation still holds
//! (absent nodes must still be absent), and otherwise answers `EAGAIN`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use xenolith_abi::domain::DomainId;

use crate::Error;
use crate::operations::Change;
use crate::tree::{Node, NodeAccess, Tree};

/// A transaction id as it travels in the header's tx_id; never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(pub u32);

impl fmt::Display for TransactionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

#[derive(Clone, Debug)]
struct Accessed {
    /// The tree's generation for the path when first touched.
    base: Option<u64>,
    /// `Some` once modified: the node, or `None` for deleted.
    modified: Option<Option<Node>>,
}

/// One open transaction.
#[derive(Clone, Debug)]
pub(crate) struct Transaction {
    accessed: BTreeMap<String, Accessed>,
    owner_delta: BTreeMap<DomainId, i64>,
    changes: Vec<Change>,
    node_limit: Option<usize>,
    /// An operation hit the node limit part-way: the overlay may hold half
    /// of it, so the transaction can only be aborted.
    failed: bool,
}

impl Transaction {
    /// A transaction that may touch at most `node_limit` nodes.
    pub(crate) fn new(node_limit: Option<usize>) -> Self {
        Self {
            accessed: BTreeMap::new(),
            owner_delta: BTreeMap::new(),
            changes: Vec::new(),
            node_limit,
            failed: false,
        }
    }

    /// Remembers changes whose watches fire at commit.
    pub(crate) fn record_changes(&mut self, changes: Vec<Change>) {
        self.changes.extend(changes);
    }

    /// The view operations run on.
    pub(crate) fn view<'a>(&'a mut self, tree: &'a mut Tree) -> TransactionView<'a> {
        TransactionView {
            tree,
            transaction: self,
        }
    }

    /// Applies the transaction if nothing it touched changed meanwhile.
    /// `node_quota` says how many nodes a domain may own (`None`: no
    /// limit). Returns the changes to fire watches for.
    pub(crate) fn commit(
        self,
        tree: &mut Tree,
        mut node_quota: impl FnMut(DomainId) -> Option<u64>,
    ) -> Result<Vec<Change>, Error> {
        if self.failed {
            return Err(Error::QuotaExceeded);
        }
        for (path, accessed) in &self.accessed {
            if tree.generation_of(path) != accessed.base {
                return Err(Error::TryAgain);
            }
        }
        for (&domain, &delta) in &self.owner_delta {
            if delta <= 0 {
                continue;
            }
            if let Some(limit) = node_quota(domain) {
                let total = tree.owned_by(domain).saturating_add(delta.unsigned_abs());
                if total > limit {
                    return Err(Error::QuotaExceeded);
                }
            }
        }
        for (path, accessed) in self.accessed {
            match accessed.modified {
                Some(Some(node)) => tree.put(&path, node)?,
                Some(None) => tree.delete(&path)?,
                None => {}
            }
        }
        Ok(self.changes)
    }
}

/// A transaction seen through its overlay: reads fall through to the tree
/// and record generations; writes stay local.
pub(crate) struct TransactionView<'a> {
    tree: &'a mut Tree,
    transaction: &'a mut Transaction,
}

impl TransactionView<'_> {
    fn touch(&mut self, path: &str) -> Result<(), Error> {
        if self.transaction.accessed.contains_key(path) {
            return Ok(());
        }
        if let Some(limit) = self.transaction.node_limit
            && self.transaction.accessed.len() >= limit
        {
            self.transaction.failed = true;
            return Err(Error::QuotaExceeded);
        }
        let base = self.tree.generation_of(path);
        self.transaction.accessed.insert(
            String::from(path),
            Accessed {
                base,
                modified: None,
            },
        );
        Ok(())
    }

    fn current_owner(&self, path: &str) -> Option<DomainId> {
        match self
            .transaction
            .accessed
            .get(path)
            .and_then(|accessed| accessed.modified.as_ref())
        {
            Some(node) => node.as_ref().map(|node| node.permissions.owner()),
            None => self.tree.node(path).map(|node| node.permissions.owner()),
        }
    }

    fn count(&mut self, owner: DomainId, delta: i64) {
        *self.transaction.owner_delta.entry(owner).or_insert(0) += delta;
    }

    fn replace(&mut self, path: &str, node: Option<Node>) -> Result<(), Error> {
        self.touch(path)?;
        if let Some(old_owner) = self.current_owner(path) {
            self.count(old_owner, -1);
        }
        if let Some(node) = &node {
            self.count(node.permissions.owner(), 1);
        }
        if let Some(accessed) = self.transaction.accessed.get_mut(path) {
            accessed.modified = Some(node);
        }
        Ok(())
    }
}

impl NodeAccess for TransactionView<'_> {
    fn get(&mut self, path: &str) -> Result<Option<&Node>, Error> {
        self.touch(path)?;
        let overlay = self
            .transaction
            .accessed
            .get(path)
            .and_then(|accessed| accessed.modified.as_ref());
        Ok(match overlay {
            Some(node) => node.as_ref(),
            None => self.tree.node(path),
        })
    }

    fn put(&mut self, path: &str, mut node: Node) -> Result<(), Error> {
        node.generation = self.tree.next_generation();
        self.replace(path, Some(node))
    }

    fn delete(&mut self, path: &str) -> Result<(), Error> {
        self.replace(path, None)
    }

    fn owned_nodes(&self, domain: DomainId) -> u64 {
        let delta = self
            .transaction
            .owner_delta
            .get(&domain)
            .copied()
            .unwrap_or(0);
        self.tree.owned_by(domain).saturating_add_signed(delta)
    }
}
