//! The record of every front-end decision.
//!
//! Each request the front end sees becomes one [`DecisionRecord`]: when, from which source, to
//! which site, which rule decided and what the caller got back. The log is kept in memory for
//! the control API and tests, and appended to a JSON Lines file when one is configured.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;
use subnetlock_access::{Action, Ambiguity, Reason, SiteKind, Source};

/// One front-end decision.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionRecord {
    /// Sequence number, from 1.
    pub sequence: u64,
    /// RFC 3339 time, UTC.
    pub time: String,
    /// Who sent the request: `direct:<peer>`, `app:<site>`, `internet:<address>`, `subnet:<id>`.
    pub caller: String,
    pub source: Source,
    pub host: String,
    /// The site the host name belongs to; `None` when no site serves it.
    pub site: Option<String>,
    pub site_kind: Option<SiteKind>,
    pub method: String,
    /// Request path without the query string, which may carry a function key.
    pub path: String,
    /// Front-end verdict; `None` when no site serves the host.
    pub verdict: Option<Action>,
    pub reason: Option<Reason>,
    pub ambiguities: Vec<Ambiguity>,
    /// Status the caller received, after the Functions host and the handler when allowed.
    pub status: u16,
}

/// Thread-safe decision log.
pub struct DecisionLog {
    records: Mutex<Vec<DecisionRecord>>,
    file: Mutex<Option<std::fs::File>>,
    path: Option<PathBuf>,
}

impl DecisionLog {
    /// Creates a log that also appends to `path` when given.
    pub fn new(path: Option<PathBuf>) -> std::io::Result<DecisionLog> {
        let file = match &path {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        Ok(DecisionLog {
            records: Mutex::new(Vec::new()),
            file: Mutex::new(file),
            path,
        })
    }

    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Appends a record, numbering it; returns the sequence number.
    pub fn push(&self, mut record: DecisionRecord) -> u64 {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        record.sequence = records.len() as u64 + 1;
        let sequence = record.sequence;
        if let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let line = serde_json::to_string(&record).unwrap_or_default();
            if let Err(error) = writeln!(file, "{line}") {
                tracing::warn!(%error, "cannot append to the decision log file");
            }
        }
        records.push(record);
        sequence
    }

    /// Records after `since` (a sequence number; 0 for all).
    pub fn since(&self, since: u64) -> Vec<DecisionRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records
            .iter()
            .filter(|record| record.sequence > since)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<DecisionRecord> {
        self.since(0)
    }
}
