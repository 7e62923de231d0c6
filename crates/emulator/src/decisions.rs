//! The record of every front-end decision.
//!
//! Each request the front end sees becomes one [`DecisionRecord`]: when, from which source, to
//! which site, which rule decided and what the caller got back. The newest
//! [`MAX_RECORDS_IN_MEMORY`] records are kept in memory for the control API and tests; every
//! record is appended to a JSON Lines file when one is configured. File writes are buffered;
//! the emulator's runtime flushes them every [`FLUSH_INTERVAL`], and so does dropping the log.
//! A full buffer is written at once.
//!
//! A record is kept as its JSON line, the same bytes the file gets, and read back into a
//! [`DecisionRecord`] only when asked for. Every request writes a record, and few are ever
//! read: an owned record cost the front end about a fifth of its instructions per request in
//! allocations and copies (docs/benchmarks.md).

use std::collections::VecDeque;
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

/// Number of records kept in memory. Older ones remain only in the file. Ten thousand records
/// take a few megabytes, and the ring is allocated once, so a busy front end does not grow it.
pub const MAX_RECORDS_IN_MEMORY: usize = 10_000;

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
}

struct Inner {
    /// The newest records as [`write_json_tail`] writes them, oldest first. The last one has
    /// the sequence number `next_sequence - 1`.
    tails: VecDeque<Vec<u8>>,
    next_sequence: u64,
    file: Option<BufWriter<std::fs::File>>,
}

impl DecisionLog {
    /// Creates a log that also appends to `path` when given.
    ///
    /// When the file already contains records, from an earlier run on the same state directory,
    /// numbering continues after the last complete one, so that sequence numbers stay unique
    /// in the file. A record that a crash left incomplete at the end is skipped with a warning,
    /// and the next record starts on a new line.
    pub fn new(path: Option<PathBuf>) -> std::io::Result<DecisionLog> {
        let (file, next_sequence) = match &path {
            Some(path) => {
                let mut file = open_log_file(path)?;
                let next_sequence = continue_numbering(&mut file, path)?;
                (Some(file), next_sequence)
            }
            None => (None, 1),
        };
        Ok(DecisionLog {
            inner: Mutex::new(Inner {
                tails: VecDeque::with_capacity(MAX_RECORDS_IN_MEMORY),
                next_sequence,
                file: file.map(|file| BufWriter::with_capacity(FILE_BUFFER_BYTES, file)),
            }),
            path,
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
    /// sequence number, and the buffer of the record that this one pushed out of memory, for
    /// the caller to reuse.
    pub(crate) fn push_tail(&self, tail: Vec<u8>) -> (u64, Option<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;

        if let Some(file) = inner.file.as_mut() {
            let mut number = itoa::Buffer::new();
            let written = file
                .write_all(b"{\"sequence\":")
                .and_then(|()| file.write_all(number.format(sequence).as_bytes()))
                .and_then(|()| file.write_all(&tail));
            if let Err(error) = written {
                tracing::warn!(%error, "cannot append to the decision log file");
            }
        }

        let evicted = if inner.tails.len() == MAX_RECORDS_IN_MEMORY {
            inner.tails.pop_front()
        } else {
            None
        };
        inner.tails.push_back(tail);
        (sequence, evicted)
    }

    /// Writes buffered records to the file. The emulator's runtime calls it every
    /// [`FLUSH_INTERVAL`].
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = inner.file.as_mut() {
            if let Err(error) = file.flush() {
                tracing::warn!(%error, "cannot flush the decision log file");
            }
        }
    }

    /// Records in memory after `since` (a sequence number; 0 for all).
    pub fn since(&self, since: u64) -> Vec<DecisionRecord> {
        // The lines are copied under the lock and read outside it, so that reading thousands
        // of records does not hold up the front end.
        let (first, tails) = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let first = inner.next_sequence - inner.tails.len() as u64;
            let skip = usize::try_from(since.saturating_add(1).saturating_sub(first))
                .unwrap_or(usize::MAX);
            let tails: Vec<Vec<u8>> = inner.tails.iter().skip(skip).cloned().collect();
            (first + skip.min(inner.tails.len()) as u64, tails)
        };
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        let mut records = Vec::with_capacity(tails.len());
        for (sequence, tail) in (first..).zip(&tails) {
            line.clear();
            line.extend_from_slice(b"{\"sequence\":");
            line.extend_from_slice(itoa::Buffer::new().format(sequence).as_bytes());
            line.extend_from_slice(tail);
            match serde_json::from_slice(&line) {
                Ok(record) => records.push(record),
                // The writers and `DecisionRecord` are tested to agree, so this is a bug.
                Err(error) => {
                    tracing::error!(sequence, %error, "cannot read a decision record back")
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
fn continue_numbering(file: &mut std::fs::File, path: &Path) -> std::io::Result<u64> {
    let mut lines = ReverseLines::new(file)?;

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

fn write_newline(mut file: &std::fs::File) -> std::io::Result<()> {
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

/// Reads the lines of a file from its end, so that finding the last record costs one read
/// however long the file is. The first line returned is the part after the last newline,
/// which is empty when the file ends with one.
struct ReverseLines<'a> {
    file: &'a mut std::fs::File,
    /// Offset of the first byte of `buffer` in the file.
    position: u64,
    /// Bytes from `position` to the end of the line being read, which are not yet returned.
    buffer: Vec<u8>,
    /// Length of the part of the current line that was dropped because it was too long.
    dropped: u64,
    finished: bool,
}

impl<'a> ReverseLines<'a> {
    fn new(file: &'a mut std::fs::File) -> std::io::Result<ReverseLines<'a>> {
        let position = file.metadata()?.len();
        Ok(ReverseLines {
            file,
            position,
            buffer: Vec::new(),
            dropped: 0,
            finished: false,
        })
    }

    fn next_line(&mut self) -> std::io::Result<Option<ReverseLine>> {
        use std::io::{Read, Seek, SeekFrom};
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
            self.file.seek(SeekFrom::Start(self.position))?;
            self.file.read_exact(&mut block)?;
            block.extend_from_slice(&self.buffer);
            self.buffer = block;
        }
    }
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
    fn full_ring_gives_back_the_oldest_buffer() {
        let log = DecisionLog::new(None).unwrap();
        for _ in 0..MAX_RECORDS_IN_MEMORY {
            assert!(log.push_tail(b"x".to_vec()).1.is_none());
        }
        let first = MAX_RECORDS_IN_MEMORY as u64 + 1;
        let mut tail = Vec::new();
        write_json_tail(&record(None), &mut tail);
        let (sequence, spare) = log.push_tail(tail);
        assert_eq!(sequence, first);
        assert_eq!(spare.as_deref(), Some(&b"x"[..]));
        // Only the newest record is readable; the others were written as `x` on purpose.
        let newest = log.since(first - 1);
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].sequence, first);
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
