//! The MAC table: where each source address was last seen, with aging, a
//! capacity bound that evicts the least recently seen entry, and addresses
//! pinned to guarded ports.

use alloc::collections::{BTreeMap, BTreeSet};
use core::time::Duration;

use crate::ethernet::MacAddress;
use crate::port::PortId;
use crate::time::Instant;

/// How an address got into the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Learned from a frame's source; ages and may be evicted or moved.
    Learned,
    /// A guarded port's own address: stays until the port goes.
    Pinned,
}

/// One table entry, as [`MacTable::entries`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    /// The address.
    pub mac: MacAddress,
    /// The port it is behind.
    pub port: PortId,
    /// When a frame from it was last seen (the pinning time for pinned ones).
    pub last_seen: Instant,
    /// Learned or pinned.
    pub kind: EntryKind,
}

/// What learning a source address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learning {
    /// A new entry (possibly after evicting the oldest one).
    Added,
    /// The entry was already there, behind the same port.
    Refreshed,
    /// The address moved from another port.
    Moved {
        /// Where it was before.
        from: PortId,
    },
    /// The address is pinned to another port and was not learned.
    RefusedPinned,
    /// The table has no room for learned entries at all (capacity 0).
    NoRoom,
}

/// Table-wide counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TableCounters {
    /// Entries learned.
    pub learned: u64,
    /// Entries that moved to another port.
    pub moved: u64,
    /// Entries evicted to make room.
    pub evicted: u64,
    /// Entries removed because they aged out.
    pub aged_out: u64,
    /// Frames whose source is pinned to another port.
    pub refused_pinned: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    last_seen: Instant,
    kind: EntryKind,
}

/// A bounded MAC table.
#[derive(Debug)]
pub struct MacTable {
    capacity: usize,
    aging: Duration,
    entries: BTreeMap<MacAddress, Entry>,
    /// Learned entries only, oldest first.
    by_age: BTreeSet<(Instant, MacAddress)>,
    counters: TableCounters,
}

impl MacTable {
    /// A table holding at most `capacity` learned entries (pinned ones come
    /// on top), each forgotten once unseen for `aging`.
    pub fn new(capacity: usize, aging: Duration) -> Self {
        Self {
            capacity,
            aging,
            entries: BTreeMap::new(),
            by_age: BTreeSet::new(),
            counters: TableCounters::default(),
        }
    }

    /// Notes that `mac` sent a frame through `port` at `now`.
    pub fn learn(&mut self, mac: MacAddress, port: PortId, now: Instant) -> Learning {
        if let Some(entry) = self.entries.get_mut(&mac) {
            if entry.kind == EntryKind::Pinned {
                if entry.port == port {
                    return Learning::Refreshed;
                }
                self.counters.refused_pinned = self.counters.refused_pinned.saturating_add(1);
                return Learning::RefusedPinned;
            }
            let previous = *entry;
            // A clock that steps back must not make the entry older.
            let seen = previous.last_seen.max(now);
            entry.port = port;
            entry.last_seen = seen;
            if seen != previous.last_seen {
                self.by_age.remove(&(previous.last_seen, mac));
                self.by_age.insert((seen, mac));
            }
            if previous.port == port {
                return Learning::Refreshed;
            }
            self.counters.moved = self.counters.moved.saturating_add(1);
            return Learning::Moved {
                from: previous.port,
            };
        }
        if self.capacity == 0 {
            return Learning::NoRoom;
        }
        while self.by_age.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.counters.evicted = self.counters.evicted.saturating_add(1);
        }
        self.entries.insert(
            mac,
            Entry {
                port,
                last_seen: now,
                kind: EntryKind::Learned,
            },
        );
        self.by_age.insert((now, mac));
        self.counters.learned = self.counters.learned.saturating_add(1);
        Learning::Added
    }

    /// Pins `mac` to `port`, replacing a learned entry. Returns the port it
    /// is already pinned to, if that is another one (and then changes
    /// nothing).
    pub fn pin(&mut self, mac: MacAddress, port: PortId, now: Instant) -> Result<(), PortId> {
        match self.entries.get(&mac) {
            Some(entry) if entry.kind == EntryKind::Pinned && entry.port != port => {
                return Err(entry.port);
            }
            Some(entry) if entry.kind == EntryKind::Learned => {
                self.by_age.remove(&(entry.last_seen, mac));
            }
            _ => {}
        }
        self.entries.insert(
            mac,
            Entry {
                port,
                last_seen: now,
                kind: EntryKind::Pinned,
            },
        );
        Ok(())
    }

    /// The port `mac` is behind, unless unknown or aged out by `now`.
    pub fn lookup(&self, mac: MacAddress, now: Instant) -> Option<PortId> {
        let entry = self.entries.get(&mac)?;
        if entry.kind == EntryKind::Learned && self.is_expired(entry.last_seen, now) {
            return None;
        }
        Some(entry.port)
    }

    /// Forgets learned entries unseen for the aging time. Cheap when nothing
    /// expired: it looks at the oldest entry only.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(last_seen, mac)) = self.by_age.first() {
            if !self.is_expired(last_seen, now) {
                break;
            }
            self.by_age.pop_first();
            self.entries.remove(&mac);
            self.counters.aged_out = self.counters.aged_out.saturating_add(1);
        }
    }

    /// Forgets every entry behind `port`, pinned ones included.
    pub fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|_, entry| entry.port != port);
        let entries = &self.entries;
        self.by_age.retain(|(_, mac)| entries.contains_key(mac));
    }

    /// Entries in the table, pinned and learned (aged ones may linger until
    /// the next [`MacTable::expire`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in address order (for display and for saving state).
    pub fn entries(&self) -> impl Iterator<Item = MacEntry> + '_ {
        self.entries.iter().map(|(mac, entry)| MacEntry {
            mac: *mac,
            port: entry.port,
            last_seen: entry.last_seen,
            kind: entry.kind,
        })
    }

    /// Table-wide counters.
    pub fn counters(&self) -> &TableCounters {
        &self.counters
    }

    fn is_expired(&self, last_seen: Instant, now: Instant) -> bool {
        now.saturating_since(last_seen) >= self.aging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddress {
        MacAddress([0x00, 0x16, 0x3e, 0, 0, last])
    }

    const AGING: Duration = Duration::from_secs(300);

    #[test]
    fn learned_entries_age_out() {
        let mut table = MacTable::new(8, AGING);
        assert_eq!(
            table.learn(mac(1), PortId(1), Instant::ZERO),
            Learning::Added
        );
        assert_eq!(
            table.lookup(mac(1), Instant::from_millis(299_999)),
            Some(PortId(1))
        );
        assert_eq!(table.lookup(mac(1), Instant::from_millis(300_000)), None);
        table.expire(Instant::from_millis(299_999));
        assert_eq!(table.len(), 1);
        table.expire(Instant::from_millis(300_000));
        assert_eq!(table.len(), 0);
        assert_eq!(table.counters().aged_out, 1);
    }

    #[test]
    fn refreshing_postpones_aging() {
        let mut table = MacTable::new(8, AGING);
        table.learn(mac(1), PortId(1), Instant::ZERO);
        table.learn(mac(2), PortId(1), Instant::ZERO);
        assert_eq!(
            table.learn(mac(1), PortId(1), Instant::from_millis(200_000)),
            Learning::Refreshed
        );
        table.expire(Instant::from_millis(400_000));
        assert_eq!(
            table.lookup(mac(1), Instant::from_millis(400_000)),
            Some(PortId(1))
        );
        assert_eq!(table.lookup(mac(2), Instant::from_millis(400_000)), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen() {
        let mut table = MacTable::new(3, AGING);
        for (index, last) in [1u8, 2, 3].into_iter().enumerate() {
            table.learn(mac(last), PortId(1), Instant::from_millis(index as u64));
        }
        // Seeing 1 again makes 2 the oldest.
        table.learn(mac(1), PortId(1), Instant::from_millis(10));
        assert_eq!(
            table.learn(mac(4), PortId(2), Instant::from_millis(11)),
            Learning::Added
        );
        let now = Instant::from_millis(12);
        assert_eq!(table.lookup(mac(2), now), None);
        for last in [1, 3, 4] {
            assert!(table.lookup(mac(last), now).is_some(), "{last}");
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.counters().evicted, 1);
    }

    #[test]
    fn capacity_zero_learns_nothing() {
        let mut table = MacTable::new(0, AGING);
        assert_eq!(
            table.learn(mac(1), PortId(1), Instant::ZERO),
            Learning::NoRoom
        );
        assert!(table.is_empty());
    }

    #[test]
    fn stations_move_between_ports() {
        let mut table = MacTable::new(4, AGING);
        table.learn(mac(1), PortId(1), Instant::ZERO);
        assert_eq!(
            table.learn(mac(1), PortId(2), Instant::ZERO),
            Learning::Moved { from: PortId(1) }
        );
        assert_eq!(table.lookup(mac(1), Instant::ZERO), Some(PortId(2)));
        assert_eq!(table.counters().moved, 1);
    }

    #[test]
    fn pinned_entries_never_move_age_or_get_evicted() {
        let mut table = MacTable::new(1, AGING);
        table.learn(mac(1), PortId(3), Instant::ZERO);
        table.pin(mac(1), PortId(1), Instant::ZERO).unwrap();
        assert_eq!(table.pin(mac(1), PortId(2), Instant::ZERO), Err(PortId(1)));
        assert_eq!(
            table.learn(mac(1), PortId(2), Instant::ZERO),
            Learning::RefusedPinned
        );
        assert_eq!(table.counters().refused_pinned, 1);
        // Learned entries come on top of the pinned one.
        table.learn(mac(2), PortId(2), Instant::ZERO);
        table.learn(mac(3), PortId(2), Instant::ZERO);
        let late = Instant::from_millis(10_000_000);
        table.expire(late);
        assert_eq!(table.lookup(mac(1), late), Some(PortId(1)));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn forgetting_a_port_removes_learned_and_pinned_entries() {
        let mut table = MacTable::new(8, AGING);
        table.pin(mac(1), PortId(1), Instant::ZERO).unwrap();
        table.learn(mac(2), PortId(1), Instant::ZERO);
        table.learn(mac(3), PortId(2), Instant::ZERO);
        table.forget_port(PortId(1));
        let entries: Vec<_> = table.entries().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mac, mac(3));
        // The age index shrank too: filling up evicts only what is there.
        for last in 10..17 {
            table.learn(mac(last), PortId(2), Instant::from_millis(1));
        }
        assert_eq!(table.counters().evicted, 0);
        table.learn(mac(20), PortId(2), Instant::from_millis(2));
        assert_eq!(table.counters().evicted, 1);
        assert_eq!(table.lookup(mac(3), Instant::from_millis(2)), None);
    }

    #[test]
    fn a_clock_stepping_back_does_not_age_or_panic() {
        let mut table = MacTable::new(2, AGING);
        table.learn(mac(1), PortId(1), Instant::from_millis(1_000));
        table.learn(mac(1), PortId(1), Instant::ZERO);
        table.expire(Instant::ZERO);
        assert_eq!(table.lookup(mac(1), Instant::ZERO), Some(PortId(1)));
        assert_eq!(
            table.entries().next().unwrap().last_seen,
            Instant::from_millis(1_000)
        );
    }
}
