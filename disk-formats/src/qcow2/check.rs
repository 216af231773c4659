//! A `qemu-img check` of a qcow2 image's metadata: every cluster the
//! header, the L1 and refcount tables, refcount blocks, L2 tables and L2
//! entries reference is counted, and the counts are compared with the
//! stored refcounts. A stored refcount below its references is a
//! corruption (a cluster in use could be handed out again); one above is a
//! leak (space lost, harmless, what a crash between QEMU's ordered steps
//! leaves). The `copied` flags must say "refcount one" exactly when it is.
//!
//! Work and memory grow with the clusters the image references (bounded by
//! its file length), never with values read from it alone.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::Qcow2;
use super::entries::{L1Entry, L2Entry, decode_refcount_table_entry};
use crate::{ImageError, Storage};

/// The most problems listed one by one (the counts go on).
const MAX_LISTED: usize = 32;

/// What [`Qcow2::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Clusters whose refcount is below their references, references
    /// outside the file, wrong `copied` flags.
    pub corruptions: u64,
    /// Clusters whose refcount is above their references.
    pub leaks: u64,
    /// Host clusters referenced.
    pub referenced_clusters: u64,
    /// Refcounts were not compared (internal snapshots reference clusters
    /// this check does not follow).
    pub refcounts_skipped: bool,
    /// The first [`MAX_LISTED`] problems, in words.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// No corruption (leaks are allowed: they only waste space).
    pub fn is_consistent(&self) -> bool {
        self.corruptions == 0
    }

    fn corruption(&mut self, problem: fmt::Arguments<'_>) {
        self.corruptions += 1;
        self.note(problem);
    }

    fn leak(&mut self, problem: fmt::Arguments<'_>) {
        self.leaks += 1;
        self.note(problem);
    }

    fn note(&mut self, problem: fmt::Arguments<'_>) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(alloc::format!("{problem}"));
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} clusters referenced, {} corruptions, {} leaked clusters",
            self.referenced_clusters, self.corruptions, self.leaks
        )?;
        if self.refcounts_skipped {
            formatter.write_str(" (refcounts not compared: internal snapshots)")?;
        }
        Ok(())
    }
}

impl<S: Storage> Qcow2<S> {
    /// Checks the image's metadata as `qemu-img check` does (without
    /// repairing anything). An error means the metadata could not even be
    /// read; inconsistencies are in the report.
    pub fn check(&mut self) -> Result<CheckReport, ImageError> {
        let mut report = CheckReport::default();
        let cluster_size = self.cluster_size;
        let file_clusters = self.file_length().div_ceil(cluster_size);
        let mut references: BTreeMap<u64, u64> = BTreeMap::new();
        // `times`: a cluster named from an L2 table the L1 table names
        // several times is referenced as often (QEMU walks every L1 entry).
        let mut reference =
            |report: &mut CheckReport, what: &str, offset: u64, length: u64, times: u64| {
                let first = offset / cluster_size;
                let last = (offset + length.max(1) - 1) / cluster_size;
                for cluster in first..=last {
                    if cluster >= file_clusters {
                        report.corruption(format_args!(
                            "{what} at {offset:#x}: cluster {cluster} is past the end of the file"
                        ));
                        return;
                    }
                    let count = references.entry(cluster).or_insert(0);
                    *count = count.saturating_add(times);
                }
            };

        reference(&mut report, "header", 0, cluster_size, 1);
        let l1_bytes = u64::from(self.header.l1_size) * 8;
        if l1_bytes > 0 {
            reference(
                &mut report,
                "L1 table",
                self.header.l1_table_offset,
                l1_bytes,
                1,
            );
        }
        reference(
            &mut report,
            "refcount table",
            self.header.refcount_table_offset,
            u64::from(self.header.refcount_table_clusters) * cluster_size,
            1,
        );
        for (index, &raw) in self.refcount_table.iter().enumerate() {
            match decode_refcount_table_entry(raw, cluster_size) {
                Ok(Some(block)) => {
                    reference(&mut report, "refcount block", block, cluster_size, 1);
                }
                Ok(None) => {}
                Err(error) => {
                    report.corruption(format_args!("refcount table entry {index}: {error}"))
                }
            }
        }

        // A table named twice is counted twice but read once, so a hostile
        // L1 table cannot make the work exceed the file's size.
        let mut l2_tables = Vec::new();
        let mut distinct_tables: BTreeMap<u64, u64> = BTreeMap::new();
        for (index, &raw) in self.l1.iter().enumerate() {
            match L1Entry::decode(raw, cluster_size) {
                Ok(L1Entry::Table { offset, copied }) => {
                    if self
                        .check_metadata_cluster(crate::MetadataKind::L2Table, offset)
                        .is_err()
                    {
                        report.corruption(format_args!(
                            "L1 entry {index}: L2 table at {offset:#x} is outside the file or on fixed metadata"
                        ));
                        continue;
                    }
                    reference(&mut report, "L2 table", offset, cluster_size, 1);
                    l2_tables.push((index, offset, copied));
                    *distinct_tables.entry(offset).or_insert(0) += 1;
                }
                Ok(L1Entry::Unallocated) => {}
                Err(error) => report.corruption(format_args!("L1 entry {index}: {error}")),
            }
        }
        // Data clusters and their copied flags, checked once refcounts are known.
        let mut data = Vec::new();
        for (&l2_offset, &times) in &distinct_tables {
            for index in 0..self.l2_entries {
                let raw = self.l2_raw(l2_offset, index)?;
                match L2Entry::decode(raw, self.header.cluster_bits) {
                    Ok(
                        L2Entry::Data { offset, copied }
                        | L2Entry::Zero {
                            preallocated: Some(offset),
                            copied,
                        },
                    ) => {
                        reference(&mut report, "data cluster", offset, cluster_size, times);
                        data.push((offset, copied));
                    }
                    Ok(L2Entry::Compressed { offset, length }) => {
                        // QEMU counts whole 512-byte sectors of the stream.
                        let aligned = offset & !511;
                        reference(
                            &mut report,
                            "compressed cluster",
                            aligned,
                            offset + length - aligned,
                            times,
                        );
                    }
                    Ok(L2Entry::Unallocated | L2Entry::Zero { .. }) => {}
                    Err(error) => report.corruption(format_args!(
                        "L2 table at {l2_offset:#x} entry {index}: {error}"
                    )),
                }
            }
        }
        report.referenced_clusters = references.len() as u64;

        if self.header.snapshot_count > 0 {
            report.refcounts_skipped = true;
            return Ok(report);
        }
        // Every referenced cluster against its refcount.
        for (&cluster, &count) in &references {
            let stored = self.refcount(cluster)?;
            if stored < count {
                report.corruption(format_args!(
                    "cluster {cluster}: refcount {stored} but {count} references"
                ));
            } else if stored > count {
                report.leak(format_args!(
                    "cluster {cluster}: refcount {stored} but {count} references (leaked)"
                ));
            }
        }
        // Clusters of the file with a refcount and no reference at all
        // (one look each: the work follows the file's length, whatever the
        // refcount table says).
        for cluster in 0..file_clusters {
            if references.contains_key(&cluster) {
                continue;
            }
            let stored = self.refcount(cluster)?;
            if stored > 0 {
                report.leak(format_args!(
                    "cluster {cluster}: refcount {stored} but no references (leaked)"
                ));
            }
        }
        // `copied` must mean exactly "refcount one".
        for &(l1_index, l2_offset, copied) in &l2_tables {
            let refcount = self.refcount(l2_offset / cluster_size)?;
            if copied != (refcount == 1) {
                report.corruption(format_args!(
                    "L1 entry {l1_index}: copied flag {copied} but the L2 table's refcount is {refcount}"
                ));
            }
        }
        for (offset, copied) in data {
            let refcount = self.refcount(offset / cluster_size)?;
            if copied != (refcount == 1) {
                report.corruption(format_args!(
                    "data cluster {offset:#x}: copied flag {copied} but refcount {refcount}"
                ));
            }
        }
        Ok(report)
    }
}
