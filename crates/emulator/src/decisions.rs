//! The record of every front-end decision.
//!
//! Each request the front end sees becomes one [`DecisionRecord`]: when, from which source, to
//! which site, which rule decided and what the caller got back. The newest
//! [`MAX_RECORDS_IN_MEMORY`] records are kept in memory for the control API and tests; every
//! record is appended to a JSON Lines file when one is configured. File writes are buffered
//! and flushed at least every [`FLUSH_INTERVAL`], and when the log is dropped.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Records kept in memory; older ones remain only in the file.
pub const MAX_RECORDS_IN_MEMORY: usize = 100_000;

/// Longest time a record waits in the file buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Size of the file buffer. A record is about 500 bytes, so under load one write carries about
/// a hundred records.
const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// Thread-safe decision log.
pub struct DecisionLog {
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
}

struct Inner {
    records: VecDeque<DecisionRecord>,
    next_sequence: u64,
    file: Option<BufWriter<std::fs::File>>,
    last_flush: Instant,
}

impl DecisionLog {
    /// Creates a log that also appends to `path` when given.
    pub fn new(path: Option<PathBuf>) -> std::io::Result<DecisionLog> {
        let file = match &path {
            Some(path) => Some(open_log_file(path)?),
            None => None,
        };
        Ok(DecisionLog {
            inner: Mutex::new(Inner {
                records: VecDeque::new(),
                next_sequence: 1,
                file: file.map(|file| BufWriter::with_capacity(FILE_BUFFER_BYTES, file)),
                last_flush: Instant::now(),
            }),
            path,
        })
    }

    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Appends a record, numbering it; returns the sequence number.
    pub fn push(&self, mut record: DecisionRecord) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        record.sequence = inner.next_sequence;
        inner.next_sequence += 1;
        let sequence = record.sequence;

        if inner.file.is_some() {
            let flush_due = inner.last_flush.elapsed() >= FLUSH_INTERVAL;
            if let Some(file) = inner.file.as_mut() {
                let mut written = serde_json::to_writer(&mut *file, &record)
                    .map_err(std::io::Error::from)
                    .and_then(|()| file.write_all(b"\n"));
                if written.is_ok() && flush_due {
                    written = file.flush();
                }
                if let Err(error) = written {
                    tracing::warn!(%error, "cannot append to the decision log file");
                }
            }
            if flush_due {
                inner.last_flush = Instant::now();
            }
        }

        if inner.records.len() == MAX_RECORDS_IN_MEMORY {
            inner.records.pop_front();
        }
        inner.records.push_back(record);
        sequence
    }

    /// Writes buffered records to the file.
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = inner.file.as_mut() {
            if let Err(error) = file.flush() {
                tracing::warn!(%error, "cannot flush the decision log file");
            }
        }
        inner.last_flush = Instant::now();
    }

    /// Records in memory after `since` (a sequence number; 0 for all).
    pub fn since(&self, since: u64) -> Vec<DecisionRecord> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .records
            .iter()
            .filter(|record| record.sequence > since)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<DecisionRecord> {
        self.since(0)
    }
}

/// Opens the log for appending, owner-only, refusing a symbolic link in its place so that the
/// log cannot be redirected into another file.
fn open_log_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if metadata.file_type().is_symlink() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{}` is a symbolic link; remove it", path.display()),
            ));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.flush();
    }
}
