//! The record of every front-end decision.
//!
//! Each request the front end sees becomes one [`DecisionRecord`]: when, from which source, to
//! which site, which rule decided and what the caller got back. Every record is appended to a
//! JSON Lines file, and the control API and tests read records back from it. File writes are
//! buffered; the emulator's runtime flushes them every [`FLUSH_INTERVAL`], and so do a read
//! and dropping the log. A full buffer is written at once. A log without a file, as unit tests
//! use, keeps its newest [`MAX_RECORDS_PER_READ`] lines in memory instead.
//!
//! A record is written as its JSON line, straight from the front end's parts, and parsed into
//! a [`DecisionRecord`] only when asked for. Every request writes a record, and few are ever
//! read: an owned record cost the front end about a fifth of its instructions per request in
//! allocations and copies (docs/benchmarks.md).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use subnetlock_access::{Action, Ambiguity, Entry, Reason, SiteKind, Source};

/// One front-end decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Sequence number, from 1.
    pub sequence: u64,
    /// RFC 3339 time, UTC.
    pub time: String,
    /// Who sent the request: `direct:<peer>`, `app:<site>`, `internet:<address>`, `subnet:<id>`.
    pub caller: String,
    pub source: Source,
    pub host: String,
    /// The site the host name belongs to; `None` when no site serves it, or when the request
    /// could not be parsed.
    pub site: Option<String>,
    pub site_kind: Option<SiteKind>,
    pub method: String,
    /// Request path without the query string, which may carry a function key.
    pub path: String,
    /// Front-end verdict; `None` when no site serves the host, or when the request could not
    /// be parsed.
    pub verdict: Option<Action>,
    pub reason: Option<Reason>,
    pub ambiguities: Vec<Ambiguity>,
    /// Status the caller received, after the Functions host and the handler when allowed.
    pub status: u16,
}

/// Maximum number of records one read returns: the newest ones after the requested sequence
/// number. The file keeps every record.
pub const MAX_RECORDS_PER_READ: usize = 10_000;

/// Longest time a record waits in the file buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Size of the file buffer. A record is about 500 bytes, so under load one write carries about
/// a hundred records.
const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// Initial capacity of one JSON line, so that a typical record needs no reallocation.
pub(crate) const LINE_CAPACITY: usize = 768;

/// Thread-safe decision log.
pub struct DecisionLog {
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
    /// The sequence number of this log's first record. Lines before it in the file are an
    /// earlier run's, which reads leave out.
    first_sequence: u64,
    /// A second handle on the file, for reading records back without holding the lock.
    reader: Option<File>,
}

struct Inner {
    next_sequence: u64,
    sink: Sink,
}

/// The destination of records.
///
/// Records are read back from the file rather than kept in memory. A ring of the newest ten
/// thousand lines took a few megabytes, and each record was written into a slot that had left
/// the processor's caches since the ring last came round. Callgrind's cache simulation counted
/// 8.5 last-level cache write misses per request with the ring and 0.1 without it
/// (docs/benchmarks.md).
enum Sink {
    File(BufWriter<File>),
    /// Without a file, the newest [`MAX_RECORDS_PER_READ`] lines stay in memory.
    Memory(VecDeque<Vec<u8>>),
}

impl DecisionLog {
    /// Creates a log that appends to `path` when given, and keeps its newest records in memory
    /// otherwise.
    ///
    /// When the file already contains records, from an earlier run on the same state directory,
    /// numbering continues after the last complete one, so that sequence numbers stay unique
    /// in the file. A record that a crash left incomplete at the end is skipped with a warning,
    /// and the next record starts on a new line.
    pub fn new(path: Option<PathBuf>) -> std::io::Result<DecisionLog> {
        let (sink, first_sequence, reader) = match &path {
            Some(path) => {
                let file = open_log_file(path)?;
                let next_sequence = continue_numbering(&file, path)?;
                let reader = file.try_clone()?;
                let writer = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
                (Sink::File(writer), next_sequence, Some(reader))
            }
            None => (Sink::Memory(VecDeque::new()), 1, None),
        };
        Ok(DecisionLog {
            inner: Mutex::new(Inner {
                next_sequence: first_sequence,
                sink,
            }),
            path,
            first_sequence,
            reader,
        })
    }

    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Appends a record, numbering it; returns the sequence number. The record's own
    /// `sequence` is ignored.
    pub fn push(&self, record: &DecisionRecord) -> u64 {
        let mut tail = Vec::with_capacity(LINE_CAPACITY);
        write_json_tail(record, &mut tail);
        self.push_tail(tail).0
    }

    /// Appends a record written as [`write_json_tail`] writes it, numbering it. Returns the
    /// sequence number, and `tail`'s buffer, emptied, for the caller's next record.
    pub(crate) fn push_tail(&self, mut tail: Vec<u8>) -> (u64, Option<Vec<u8>>) {
        let mut number = itoa::Buffer::new();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        let number = number.format(sequence).as_bytes();

        match &mut inner.sink {
            Sink::File(file) => {
                let written = file
                    .write_all(SEQUENCE_PREFIX)
                    .and_then(|()| file.write_all(number))
                    .and_then(|()| file.write_all(&tail));
                if let Err(error) = written {
                    tracing::warn!(%error, "cannot append to the decision log file");
                }
            }
            Sink::Memory(lines) => {
                let mut line =
                    Vec::with_capacity(SEQUENCE_PREFIX.len() + number.len() + tail.len());
                line.extend_from_slice(SEQUENCE_PREFIX);
                line.extend_from_slice(number);
                line.extend_from_slice(&tail);
                if lines.len() == MAX_RECORDS_PER_READ {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
        drop(inner);
        tail.clear();
        (sequence, Some(tail))
    }

    /// Writes buffered records to the file. The emulator's runtime calls it every
    /// [`FLUSH_INTERVAL`].
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::File(file) = &mut inner.sink {
            if let Err(error) = file.flush() {
                tracing::warn!(%error, "cannot flush the decision log file");
            }
        }
    }

    /// Returns this log's records after `since` (a sequence number, or 0 for all), oldest first:
    /// at most the newest [`MAX_RECORDS_PER_READ`] of them.
    pub fn since(&self, since: u64) -> Vec<DecisionRecord> {
        // Lines are collected newest first, then read into records oldest first. The file is
        // flushed under the lock and read outside it, so that reading thousands of records
        // does not hold up the front end. Its bytes up to that length do not change, because
        // records are only appended.
        let requested = |sequence: u64| sequence > since && sequence >= self.first_sequence;
        let mut lines = Vec::new();
        let end = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match &mut inner.sink {
                Sink::Memory(memory) => {
                    let newest = memory.iter().rev();
                    let matching =
                        newest.take_while(|line| sequence_of(line).is_some_and(requested));
                    lines.extend(matching.cloned());
                    None
                }
                Sink::File(file) => {
                    if let Err(error) = file.flush() {
                        tracing::warn!(%error, "cannot flush the decision log file");
                    }
                    Some(file.get_ref().metadata().map(|metadata| metadata.len()))
                }
            }
        };
        if let (Some(end), Some(reader)) = (end, &self.reader) {
            let read = end.and_then(|end| newest_lines(reader, end, requested, &mut lines));
            if let Err(error) = read {
                tracing::warn!(%error, path = ?self.path, "failed to read the decision log file back; returning the records read so far");
            }
        }

        let mut records = Vec::with_capacity(lines.len());
        for line in lines.iter().rev() {
            match serde_json::from_slice(line) {
                Ok(record) => records.push(record),
                // The writers and `DecisionRecord` are tested to agree, so this is a bug, or
                // someone else wrote to the file.
                Err(error) => {
                    tracing::error!(%error, "cannot read a decision record back")
                }
            }
        }
        records
    }

    pub fn all(&self) -> Vec<DecisionRecord> {
        self.since(0)
    }
}

/// Appends `record` to `out` as one JSON line without its first member, the sequence number:
/// the rest of the document `serde_json` makes of it, from the comma after that number.
///
/// Through `serde_json` this took about an eighth of the front end's user-space instructions,
/// mostly for escaping field names and values. Here the names are literals, and a value is
/// escaped only when it contains a byte that needs it. The rare parts (service endpoint,
/// service tags, ambiguities) still go through `serde_json`. The test
/// `hand_written_lines_equal_serde` checks that both give the same bytes.
///
/// The parts are written by the functions below, in this order, so that the front end's fast
/// path can write a record from borrowed parts without building a [`DecisionRecord`].
pub(crate) fn write_json_tail(record: &DecisionRecord, out: &mut Vec<u8>) {
    // Destructured, so that a field added to the record fails to compile until it is written.
    let DecisionRecord {
        sequence: _,
        time,
        caller,
        source,
        host,
        site,
        site_kind,
        method,
        path,
        verdict,
        reason,
        ambiguities,
        status,
    } = record;
    write_time(out, time);
    write_caller_and_source(out, caller, source);
    write_request(
        out,
        RequestPart {
            host,
            site: SitePart::Fields(site.as_deref(), *site_kind),
            method,
            path,
            plain: false,
        },
    );
    write_decision(out, *verdict, reason.as_ref(), ambiguities);
    write_status(out, *status);
}

/// Writes the `time` member. The time is digits and `-:.TZ`, with no byte that JSON escapes.
pub(crate) fn write_time(out: &mut Vec<u8>, time: &str) {
    out.extend_from_slice(b",\"time\":");
    json_plain_string(out, time);
}

/// Writes the `caller` and `source` members, which are the same for every request on a
/// connection. Returns where the caller's text is in `out`, when it needed no escape.
pub(crate) fn write_caller_and_source(
    out: &mut Vec<u8>,
    caller: &str,
    source: &Source,
) -> Option<std::ops::Range<usize>> {
    let Source {
        address,
        service_endpoint,
        entry,
        service_tags,
    } = source;
    out.extend_from_slice(b",\"caller\":");
    let caller_range = json_string(out, caller);

    out.extend_from_slice(b",\"source\":{\"address\":\"");
    // An IP address prints as digits, dots, colons and hex letters only.
    push_ip(out, *address);
    out.extend_from_slice(b"\",\"service_endpoint\":");
    match service_endpoint {
        None => out.extend_from_slice(b"null"),
        Some(_) => json_value(out, service_endpoint),
    }
    out.extend_from_slice(b",\"entry\":\"");
    out.extend_from_slice(match entry {
        Entry::PublicEndpoint => b"PublicEndpoint",
        Entry::PrivateEndpoint => b"PrivateEndpoint",
    });
    out.extend_from_slice(b"\",\"service_tags\":");
    json_list(out, service_tags);
    out.push(b'}');
    caller_range
}

/// The members of a record that describe the request.
pub(crate) struct RequestPart<'a> {
    pub host: &'a str,
    pub site: SitePart<'a>,
    /// A token (RFC 9110, section 9.1), with no byte that JSON escapes.
    pub method: &'a str,
    pub path: &'a str,
    /// The caller checked that `host` and `path` hold no byte that JSON escapes, as the front
    /// end's fast path does before it takes a request.
    pub plain: bool,
}

/// The `site` and `site_kind` members of a record.
pub(crate) enum SitePart<'a> {
    Fields(Option<&'a str>, Option<SiteKind>),
    /// The members as [`write_site`] wrote them, for a connection that keeps them.
    Written(&'a [u8]),
}

/// Writes the members from `host` to `path`. Returns where the host name is in `out`, when it
/// needed no escape.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    part: RequestPart<'_>,
) -> Option<std::ops::Range<usize>> {
    // Each string the caller checked is written without a second check.
    let string = |out: &mut Vec<u8>, text: &str| match part.plain {
        true => Some(json_plain_string(out, text)),
        false => json_string(out, text),
    };
    out.extend_from_slice(b",\"host\":");
    let host_range = string(out, part.host);
    match part.site {
        SitePart::Fields(site, site_kind) => write_site(out, site, site_kind),
        SitePart::Written(members) => out.extend_from_slice(members),
    }
    out.extend_from_slice(b",\"method\":");
    json_plain_string(out, part.method);
    out.extend_from_slice(b",\"path\":");
    string(out, part.path);
    host_range
}

/// Writes the `site` and `site_kind` members.
pub(crate) fn write_site(out: &mut Vec<u8>, site: Option<&str>, site_kind: Option<SiteKind>) {
    out.extend_from_slice(b",\"site\":");
    match site {
        Some(site) => {
            json_string(out, site);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"site_kind\":");
    write_optional(out, site_kind, write_site_kind);
}

/// Writes the members from `verdict` to `ambiguities`.
pub(crate) fn write_decision(
    out: &mut Vec<u8>,
    verdict: Option<Action>,
    reason: Option<&Reason>,
    ambiguities: &[Ambiguity],
) {
    out.extend_from_slice(b",\"verdict\":");
    write_optional(out, verdict, write_action);
    out.extend_from_slice(b",\"reason\":");
    write_optional(out, reason, json_reason);
    out.extend_from_slice(b",\"ambiguities\":");
    json_list(out, ambiguities);
}

/// Writes the last member, `status`, and ends the line.
pub(crate) fn write_status(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b"}\n");
}

/// Appends `address` as `Display` prints it. An IPv4 address, the common case, is written
/// octet by octet, which takes a fraction of the formatting machinery's time.
pub(crate) fn push_ip(out: &mut Vec<u8>, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => {
            // Written into a buffer on the stack first, so the output grows once.
            let mut text = [0u8; 15];
            let mut length = 0;
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text[length] = b'.';
                    length += 1;
                }
                if octet >= 100 {
                    text[length] = b'0' + octet / 100;
                    length += 1;
                }
                if octet >= 10 {
                    text[length] = b'0' + octet / 10 % 10;
                    length += 1;
                }
                text[length] = b'0' + octet % 10;
                length += 1;
            }
            out.extend_from_slice(&text[..length]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Writes `value` with `write`, or `null` when it is absent.
fn write_optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_reason(out: &mut Vec<u8>, reason: &Reason) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"kind\":");
    match reason {
        Reason::PrivateEndpoint => out.extend_from_slice(b"\"private_endpoint\""),
        Reason::PublicNetworkAccessDisabled { explicit } => {
            out.extend_from_slice(b"\"public_network_access_disabled\",\"explicit\":");
            out.extend_from_slice(if *explicit { b"true" } else { b"false" });
        }
        Reason::Rule {
            list,
            index,
            name,
            priority,
            action: rule_action,
        } => {
            out.extend_from_slice(b"\"rule\",\"list\":");
            write_site_kind(out, *list);
            out.extend_from_slice(b",\"index\":");
            out.extend_from_slice(number.format(*index).as_bytes());
            out.extend_from_slice(b",\"name\":");
            match name {
                Some(name) => {
                    json_string(out, name);
                }
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"priority\":");
            out.extend_from_slice(number.format(*priority).as_bytes());
            out.extend_from_slice(b",\"action\":");
            write_action(out, *rule_action);
        }
        Reason::DefaultAction {
            list,
            action: default,
        } => {
            out.extend_from_slice(b"\"default_action\",\"list\":");
            write_site_kind(out, *list);
            out.extend_from_slice(b",\"action\":");
            write_action(out, *default);
        }
        Reason::ImplicitAllowNoRules { list } => {
            out.extend_from_slice(b"\"implicit_allow_no_rules\",\"list\":");
            write_site_kind(out, *list);
        }
        Reason::ImplicitDeny { list } => {
            out.extend_from_slice(b"\"implicit_deny\",\"list\":");
            write_site_kind(out, *list);
        }
    }
    out.push(b'}');
}

fn write_site_kind(out: &mut Vec<u8>, kind: SiteKind) {
    out.extend_from_slice(match kind {
        SiteKind::Main => b"\"Main\"",
        SiteKind::Scm => b"\"Scm\"",
    });
}

fn write_action(out: &mut Vec<u8>, action: Action) {
    out.extend_from_slice(match action {
        Action::Allow => b"\"Allow\"",
        Action::Deny => b"\"Deny\"",
    });
}

/// Writes a list, which is usually empty, so `serde_json` runs only for one that is not.
fn json_list<T: Serialize>(out: &mut Vec<u8>, items: &[T]) {
    if items.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        json_value(out, items);
    }
}

/// Writes a value through `serde_json`. Callers use it for the fields that are usually empty.
fn json_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        // Only a map with non-string keys fails, and these values have none.
        out.extend_from_slice(b"null");
    }
}

/// Writes `text` as a JSON string, checking nothing: the caller knows that `text` has no
/// byte that JSON escapes. A debug build checks it.
fn json_plain_string(out: &mut Vec<u8>, text: &str) -> std::ops::Range<usize> {
    debug_assert!(!needs_escape(text.as_bytes()), "{text:?} needs escaping");
    out.push(b'"');
    let start = out.len();
    out.extend_from_slice(text.as_bytes());
    let range = start..out.len();
    out.push(b'"');
    range
}

/// Writes `text` as a JSON string, escaping through `serde_json` only when a byte needs it.
/// Returns where `text` is in `out` when it is written as it is.
fn json_string(out: &mut Vec<u8>, text: &str) -> Option<std::ops::Range<usize>> {
    if needs_escape(text.as_bytes()) {
        json_value(out, text);
        None
    } else {
        out.push(b'"');
        let start = out.len();
        out.extend_from_slice(text.as_bytes());
        let range = start..out.len();
        out.push(b'"');
        Some(range)
    }
}

/// Returns whether `bytes` contain a byte that JSON escapes: a control character, `"` or `\\`.
///
/// This runs for every string of every decision line, so it tests eight bytes at once. In
/// `word - n * ONES`, a byte below `n` (with its high bit clear) wraps around and gets its high
/// bit set. A borrow into the next byte starts only at such a byte, so a word without one has
/// no high bit set by the test.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Sets the high bit of each byte of `word` that is below `n` (for `n` up to 128).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // A byte equal to `c` is a zero byte of `word ^ (c * ONES)`, so it is below 1.
        let found = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if found != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
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
    // Read access lets `continue_numbering` find the last record.
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Returns the sequence number for the next record appended to `file`: one after the last
/// complete record in it, or 1 when it contains none. A line at the end that a crash left without
/// its newline is terminated with one, so the next record starts on its own line. Lines that
/// are not records are skipped with a warning.
fn continue_numbering(file: &File, path: &Path) -> std::io::Result<u64> {
    let mut lines = ReverseLines::new(file, file.metadata()?.len());

    // The bytes after the last newline: empty unless the last write was cut short.
    let torn = lines.next_line()?.map_or(0, |line| line.length);
    if torn > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = torn,
            "the decision log file ends in an incomplete record, as a crash leaves it; skipping it and starting the next record on a new line"
        );
        write_newline(lines.file)?;
    }

    let mut skipped = 0usize;
    let last_sequence = loop {
        let Some(line) = lines.next_line()? else {
            break None;
        };
        let sequence = line
            .bytes
            .and_then(|bytes| serde_json::from_slice::<SequenceOnly>(&bytes).ok());
        match sequence {
            Some(SequenceOnly { sequence }) => break Some(sequence),
            None => skipped += 1,
        }
    };
    if skipped > 0 {
        tracing::warn!(
            path = %path.display(),
            lines = skipped,
            "skipped lines at the end of the decision log file that are not decision records"
        );
    }

    match last_sequence {
        Some(last) => {
            tracing::info!(
                path = %path.display(),
                last_sequence = last,
                "the decision log file has records of an earlier run; numbering continues after its last one"
            );
            last.checked_add(1).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the last record in `{}` has the largest sequence number; move the file away",
                        path.display()
                    ),
                )
            })
        }
        None => Ok(1),
    }
}

fn write_newline(mut file: &File) -> std::io::Result<()> {
    file.write_all(b"\n")
}

/// The only member of a record that [`continue_numbering`] reads. Parsing the whole line into
/// it still checks that the line is complete JSON.
#[derive(Deserialize)]
struct SequenceOnly {
    sequence: u64,
}

/// Maximum length of a line whose bytes [`ReverseLines`] returns. A record is about 500 bytes,
/// and its longest strings, the host and the path, are bounded by the front end's parser at a few
/// hundred kilobytes, escaped at most six times, so a longer line is not a record.
const MAX_RECORD_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Bytes read from the file at a time, from its end backwards.
const REVERSE_READ_BYTES: usize = 16 * 1024;

/// One line found by [`ReverseLines`], without its newline.
struct ReverseLine {
    length: u64,
    /// The line's bytes, or `None` when it is longer than [`MAX_RECORD_LINE_BYTES`].
    bytes: Option<Vec<u8>>,
}

/// Reads the lines of a file from a given end backwards, so that finding the last record costs
/// one read however long the file is. The first line returned is the part after the last
/// newline, which is empty when the file ends with one. Reads are positioned, so the file's
/// offset, which the log's writer shares, does not move.
struct ReverseLines<'a> {
    file: &'a File,
    /// Offset of the first byte of `buffer` in the file.
    position: u64,
    /// Bytes from `position` to the end of the line being read, which are not yet returned.
    buffer: Vec<u8>,
    /// Length of the part of the current line that was dropped because it was too long.
    dropped: u64,
    finished: bool,
}

impl<'a> ReverseLines<'a> {
    fn new(file: &'a File, end: u64) -> ReverseLines<'a> {
        ReverseLines {
            file,
            position: end,
            buffer: Vec::new(),
            dropped: 0,
            finished: false,
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<ReverseLine>> {
        use std::os::unix::fs::FileExt;
        if self.finished {
            return Ok(None);
        }
        loop {
            // The newline found ends the line before; the bytes after it are this line.
            let start = match memchr::memrchr(b'\n', &self.buffer) {
                Some(newline) => Some(newline + 1),
                None if self.position == 0 => {
                    self.finished = true;
                    Some(0)
                }
                None => None,
            };
            if let Some(start) = start {
                let bytes = self.buffer.split_off(start);
                self.buffer.truncate(start.saturating_sub(1));
                let length = bytes.len() as u64 + std::mem::take(&mut self.dropped);
                let bytes = (length <= MAX_RECORD_LINE_BYTES as u64).then_some(bytes);
                return Ok(Some(ReverseLine { length, bytes }));
            }

            if self.buffer.len() > MAX_RECORD_LINE_BYTES {
                self.dropped += self.buffer.len() as u64;
                self.buffer.clear();
            }
            // Each read is at least as long as the bytes held, so a long line is copied a
            // bounded number of times in all.
            let read = REVERSE_READ_BYTES
                .max(self.buffer.len())
                .min(usize::try_from(self.position).unwrap_or(usize::MAX));
            self.position -= read as u64;
            let mut block = vec![0; read];
            self.file.read_exact_at(&mut block, self.position)?;
            block.extend_from_slice(&self.buffer);
            self.buffer = block;
        }
    }
}

/// The start of every decision line, up to its sequence number.
const SEQUENCE_PREFIX: &[u8] = b"{\"sequence\":";

/// Returns the sequence number of a decision line, read from its start as the log writes it,
/// or `None` for a line the log did not write.
fn sequence_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(SEQUENCE_PREFIX)?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Pushes onto `lines` the lines of `file` before offset `end` whose sequence numbers are
/// `requested`, newest first, up to [`MAX_RECORDS_PER_READ`] in all. Sequence numbers grow
/// through the file, so the first record not requested ends the search. Lines that are not
/// records, such as one a crash cut short, are skipped.
fn newest_lines(
    file: &File,
    end: u64,
    requested: impl Fn(u64) -> bool,
    lines: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    let mut reverse = ReverseLines::new(file, end);
    while lines.len() < MAX_RECORDS_PER_READ {
        let Some(line) = reverse.next_line()? else {
            break;
        };
        let Some(bytes) = line.bytes else { continue };
        match sequence_of(&bytes) {
            Some(sequence) if requested(sequence) => lines.push(bytes),
            Some(_) => break,
            None => {}
        }
    }
    Ok(())
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use subnetlock_access::SubnetId;

    fn record(reason: Option<Reason>) -> DecisionRecord {
        DecisionRecord {
            sequence: 7,
            time: "2026-12-05T01:02:03.004Z".into(),
            caller: "direct:127.0.0.1".into(),
            source: Source::internet("127.0.0.1".parse().unwrap()),
            host: "app.azurewebsites.net".into(),
            site: Some("app".into()),
            site_kind: Some(SiteKind::Main),
            method: "GET".into(),
            path: "/api/function-b".into(),
            verdict: Some(Action::Allow),
            reason,
            ambiguities: Vec::new(),
            status: 200,
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let log = DecisionLog::new(None).unwrap();
        let mut unusual = record(Some(Reason::Rule {
            list: SiteKind::Main,
            index: 2,
            name: Some(Arc::from("allow \"vnet\"\n")),
            priority: 100,
            action: Action::Allow,
        }));
        unusual.host = "h\"ost".into();
        unusual.ambiguities = vec![Ambiguity::RuleDefaults];
        let written = [record(None), unusual];
        for (index, record) in written.iter().enumerate() {
            assert_eq!(log.push(record), index as u64 + 1);
        }
        let read = log.all();
        assert_eq!(read.len(), 2);
        for (sequence, (read, written)) in (1..).zip(read.iter().zip(&written)) {
            let mut expected = written.clone();
            expected.sequence = sequence;
            assert_eq!(read, &expected);
        }
        assert_eq!(log.since(1).len(), 1);
        assert_eq!(log.since(2).len(), 0);
    }

    #[test]
    fn push_gives_back_the_emptied_buffer() {
        let log = DecisionLog::new(None).unwrap();
        let mut tail = Vec::with_capacity(4096);
        write_json_tail(&record(None), &mut tail);
        let pointer = tail.as_ptr();
        let (sequence, spare) = log.push_tail(tail);
        assert_eq!(sequence, 1);
        let spare = spare.expect("the buffer comes back");
        assert!(spare.is_empty());
        assert_eq!(spare.as_ptr(), pointer);
        assert_eq!(spare.capacity(), 4096);
    }

    #[test]
    fn memory_keeps_the_newest_records() {
        let log = DecisionLog::new(None).unwrap();
        let total = MAX_RECORDS_PER_READ as u64 + 3;
        for _ in 0..total {
            log.push(&record(None));
        }
        let all = log.all();
        assert_eq!(all.len(), MAX_RECORDS_PER_READ);
        assert_eq!(all.first().map(|r| r.sequence), Some(4));
        assert_eq!(all.last().map(|r| r.sequence), Some(total));
        assert_eq!(log.since(total - 2).len(), 2);
    }

    #[test]
    fn file_read_sees_unflushed_current_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        {
            let earlier = DecisionLog::new(Some(path.clone())).unwrap();
            for _ in 0..3 {
                earlier.push(&record(None));
            }
        }
        let log = DecisionLog::new(Some(path.clone())).unwrap();
        assert!(
            log.all().is_empty(),
            "an earlier run's records are not this log's"
        );
        let total = MAX_RECORDS_PER_READ as u64 + 5;
        for _ in 0..total {
            log.push(&record(None));
        }
        // The last records are still in the write buffer; a read flushes it.
        let all = log.all();
        assert_eq!(all.len(), MAX_RECORDS_PER_READ);
        let sequences: Vec<u64> = all.iter().map(|r| r.sequence).collect();
        let expected: Vec<u64> = (4 + total - MAX_RECORDS_PER_READ as u64..4 + total).collect();
        assert_eq!(sequences, expected);
        let newest = log.since(3 + total - 1);
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].sequence, 3 + total);
        assert_eq!(newest[0].host, "app.azurewebsites.net");
        assert!(log.since(3 + total).is_empty());
    }

    #[test]
    fn file_read_skips_foreign_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let log = DecisionLog::new(Some(path.clone())).unwrap();
        log.push(&record(None));
        log.flush();
        // Someone else appends a line between two records.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not a record\n")
            .unwrap();
        log.push(&record(None));
        let sequences: Vec<u64> = log.all().iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, [1, 2]);
    }

    #[test]
    fn sequence_is_read_from_the_line_start() {
        assert_eq!(sequence_of(b"{\"sequence\":42,\"time\":\"x\"}"), Some(42));
        assert_eq!(sequence_of(b"{\"sequence\":42"), None);
        assert_eq!(sequence_of(b"{\"sequence\":,"), None);
        assert_eq!(sequence_of(b"{\"sequence\":99999999999999999999999,"), None);
        assert_eq!(sequence_of(b"{\"time\":1,\"sequence\":4,"), None);
        assert_eq!(sequence_of(b""), None);
    }

    #[test]
    fn escape_test_finds_every_byte_json_escapes() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        };
        // Every byte value at every position of strings up to 19 bytes long, in a background
        // of plain letters and of bytes above 0x7f, whose borrows must not count.
        for background in [b'a', 0xc3, 0x7f, b'#'] {
            for length in 1..20 {
                for position in 0..length {
                    for byte in 0..=255u8 {
                        let mut text = vec![background; length];
                        text[position] = byte;
                        assert_eq!(needs_escape(&text), naive(&text), "{text:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn hand_written_lines_equal_serde() {
        let reasons = [
            None,
            Some(Reason::PrivateEndpoint),
            Some(Reason::PublicNetworkAccessDisabled { explicit: true }),
            Some(Reason::PublicNetworkAccessDisabled { explicit: false }),
            Some(Reason::Rule {
                list: SiteKind::Scm,
                index: 3,
                name: Some(Arc::from("allow \"vnet\"\n\\ é")),
                priority: -5,
                action: Action::Deny,
            }),
            Some(Reason::Rule {
                list: SiteKind::Main,
                index: 0,
                name: None,
                priority: i64::MAX,
                action: Action::Allow,
            }),
            Some(Reason::DefaultAction {
                list: SiteKind::Main,
                action: Action::Deny,
            }),
            Some(Reason::ImplicitAllowNoRules {
                list: SiteKind::Scm,
            }),
            Some(Reason::ImplicitDeny {
                list: SiteKind::Main,
            }),
        ];
        let mut records: Vec<DecisionRecord> = reasons.into_iter().map(record).collect();

        // The other fields in every shape they take: absent, escaped, IPv6, rare parts.
        let mut unusual = record(None);
        unusual.sequence = u64::MAX;
        unusual.caller = "app:a\u{1}b".into();
        unusual.source = Source {
            address: "fd00::a:4".parse().unwrap(),
            service_endpoint: Some(SubnetId::new("/subscriptions/x/subnets/default")),
            entry: Entry::PrivateEndpoint,
            service_tags: vec!["AzureFrontDoor.Backend".into()],
        };
        unusual.host = "h\"ost\\".into();
        unusual.site = None;
        unusual.site_kind = None;
        unusual.method = "PÜT".into();
        unusual.path = "/\t".into();
        unusual.verdict = None;
        unusual.ambiguities = vec![
            Ambiguity::RuleDefaults,
            Ambiguity::ServiceTagUnresolved {
                tag: "AzureCloud".into(),
            },
        ];
        unusual.status = 0;
        records.push(unusual);
        let mut scm = record(None);
        scm.site_kind = Some(SiteKind::Scm);
        scm.verdict = Some(Action::Deny);
        records.push(scm);

        for address in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.4",
            "9.99.100.109",
            "::1",
            "::ffff:1.2.3.4",
        ] {
            let address: IpAddr = address.parse().unwrap();
            let mut printed = Vec::new();
            push_ip(&mut printed, address);
            assert_eq!(printed, address.to_string().as_bytes());
        }

        for record in &records {
            let mut line = format!("{{\"sequence\":{}", record.sequence).into_bytes();
            write_json_tail(record, &mut line);
            let mut expected = serde_json::to_vec(record).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    /// Returns the sequence numbers of the lines in `path`, failing on a line that is not a
    /// complete record.
    fn sequences_in_file(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let record: DecisionRecord =
                    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}"));
                record.sequence
            })
            .collect()
    }

    #[test]
    fn reused_file_continues_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        {
            let first = DecisionLog::new(Some(path.clone())).unwrap();
            for expected in 1..=3 {
                assert_eq!(first.push(&record(None)), expected);
            }
        }
        let second = DecisionLog::new(Some(path.clone())).unwrap();
        assert_eq!(second.push(&record(None)), 4);
        assert_eq!(second.push(&record(None)), 5);
        second.flush();

        assert_eq!(sequences_in_file(&path), [1, 2, 3, 4, 5]);
        // The control API's records are the file's last lines.
        let served: Vec<u64> = second.all().iter().map(|r| r.sequence).collect();
        assert_eq!(served, [4, 5]);
        assert_eq!(second.since(4).len(), 1);
    }

    #[test]
    fn torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        {
            let first = DecisionLog::new(Some(path.clone())).unwrap();
            first.push(&record(None));
            first.push(&record(None));
        }
        let complete = std::fs::read(&path).unwrap();
        let torn = b"{\"sequence\":3,\"time\":\"2026-12";
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(torn).unwrap();
        drop(file);

        // A run that writes nothing still ends the torn line, and the next run skips it.
        drop(DecisionLog::new(Some(path.clone())).unwrap());
        let mut expected = complete.clone();
        expected.extend_from_slice(torn);
        expected.push(b'\n');
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        let second = DecisionLog::new(Some(path.clone())).unwrap();
        assert_eq!(second.push(&record(None)), 3);
        drop(second);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[2].as_bytes(), torn);
        let last: DecisionRecord = serde_json::from_str(lines[3]).unwrap();
        assert_eq!(last.sequence, 3);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn numbering_reads_across_blocks() {
        // The last record is longer than one backward read, and the ones before fill several.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        {
            let first = DecisionLog::new(Some(path.clone())).unwrap();
            for _ in 0..100 {
                first.push(&record(None));
            }
            let mut long = record(None);
            long.path = format!("/{}", "a".repeat(3 * REVERSE_READ_BYTES));
            assert_eq!(first.push(&long), 101);
        }
        let second = DecisionLog::new(Some(path.clone())).unwrap();
        assert_eq!(second.push(&record(None)), 102);
        drop(second);
        assert_eq!(sequences_in_file(&path), (1..=102).collect::<Vec<u64>>());
    }

    #[test]
    fn empty_or_foreign_file_starts_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            DecisionLog::new(Some(path.clone()))
                .unwrap()
                .push(&record(None)),
            1
        );

        std::fs::write(&path, "not a record\n\n").unwrap();
        let log = DecisionLog::new(Some(path.clone())).unwrap();
        assert_eq!(log.push(&record(None)), 1);
    }
}
