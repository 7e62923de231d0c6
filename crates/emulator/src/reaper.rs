//! Stops handler processes that outlived the emulator that started them.
//!
//! Every handler process gets [`MARKER_VARIABLE`] set to a value that names the emulator's
//! state directory and the emulator itself (its process id and start time), and so does every
//! process it starts, because children inherit the environment. When the emulator shuts
//! down, it stops the processes that carry its own token: what its handlers started in the
//! background. An emulator killed with SIGKILL cannot do that, so the next one on the same
//! state directory reads the killed one's token from the lock file and stops the processes
//! that carry the killed one's token.
//!
//! The processes are found through `/proc/<pid>/environ`, so this works on Linux only. A
//! process of another user is never touched unless the emulator runs as root, because its
//! environment cannot be read otherwise. The emulator and its ancestors are never touched. A
//! process started with a cleared environment carries no marker and escapes.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// Environment variable that marks a process as started by one emulator.
pub(crate) const MARKER_VARIABLE: &str = "SUBNETLOCK_EMULATOR";

/// Time a process gets to exit after SIGTERM before it gets SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Stops every process whose marker names the emulator with `token` (see [`marker_value`]),
/// except this process and its ancestors. Returns how many processes it signalled.
///
/// Only the token is compared, not the directory: a token (process id and start time) names
/// one emulator process, and the directory may have been moved or reached through a link
/// that now points elsewhere.
pub(crate) async fn stop_marked_processes(token: &str) -> usize {
    stop_processes_matching(Marker::new(token)).await
}

/// Stops the processes whose marker is exactly `value`: those of one emulator, and not those
/// of another emulator in the same process, which share its token.
pub(crate) async fn stop_processes_of(value: &str) -> usize {
    stop_processes_matching(Marker::exact(value)).await
}

async fn stop_processes_matching(marker: Marker) -> usize {
    let mut stopped = 0;
    // A process can start another while it is being stopped, from its SIGTERM handler for
    // example, so the scan repeats until it comes back empty, a few times at most.
    for _ in 0..SCAN_ROUNDS {
        let pids = marked_processes(&marker);
        if pids.is_empty() {
            break;
        }
        stop_processes(&pids, &marker).await;
        stopped += pids.len();
    }
    stopped
}

/// Scans for marked processes at most this many times.
const SCAN_ROUNDS: usize = 3;

/// The end of the marker entries of one emulator: `#<token>`.
struct Marker {
    suffix: Vec<u8>,
    /// The exact value, `<dir>#<token>`, that a marker must equal. Without it, a value that
    /// ends with `suffix` matches, whatever its directory.
    whole: Option<Vec<u8>>,
}

impl Marker {
    fn new(token: &str) -> Marker {
        Marker {
            suffix: format!("#{token}").into_bytes(),
            whole: None,
        }
    }

    fn exact(value: &str) -> Marker {
        Marker {
            suffix: Vec::new(),
            whole: Some(value.as_bytes().to_vec()),
        }
    }

    /// Checks whether one `NAME=value` entry of an environment is this emulator's marker.
    fn matches(&self, entry: &[u8]) -> bool {
        entry
            .strip_prefix(MARKER_VARIABLE.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(|value| match &self.whole {
                Some(whole) => value == whole.as_slice(),
                None => value.ends_with(&self.suffix),
            })
    }
}

/// Sends SIGTERM to `pids`, and SIGKILL to those still marked after [`TERMINATE_GRACE`].
async fn stop_processes(pids: &[i32], marker: &Marker) {
    for &pid in pids {
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + TERMINATE_GRACE;
    while Instant::now() < deadline && pids.iter().any(|&pid| is_marked(pid, marker)) {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    // The environment is checked again, so a process id that was reused in the meantime by
    // an unrelated process is left alone.
    for &pid in pids {
        if is_marked(pid, marker) {
            tracing::warn!(
                pid,
                "left-over handler process ignored SIGTERM; sending SIGKILL"
            );
            signal(pid, Signal::KILL);
        }
    }
}

/// Stops the processes that handlers of an emulator in this process started, for a start
/// that was abandoned before it returned an [`crate::Emulator`].
pub async fn stop_own_processes() -> usize {
    stop_marked_processes(&crate::runtime::owner_token()).await
}

/// Returns the value of [`MARKER_VARIABLE`] for the emulator with `token` (process id and
/// start time) on `state_dir`. The directory is canonical, so that two spellings of one
/// directory give one value.
pub(crate) fn marker_value(state_dir: &Path, token: &str) -> String {
    let directory = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    format!("{}#{token}", directory.display())
}

fn marked_processes(marker: &Marker) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // This process and its ancestors are never stopped, whatever their environment holds.
    let spared = own_lineage();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !spared.contains(pid))
        .filter(|&pid| is_marked(pid, marker))
        .collect()
}

/// Returns this process and its ancestors, from `/proc/<pid>/stat`.
fn own_lineage() -> Vec<i32> {
    let mut lineage = Vec::new();
    let mut pid = i32::try_from(std::process::id()).unwrap_or(0);
    while pid > 0 && !lineage.contains(&pid) {
        lineage.push(pid);
        pid = parent_of(pid).unwrap_or(0);
    }
    lineage
}

/// Reads the parent process id, the fourth field of `/proc/<pid>/stat`. The second field is
/// the command name in parentheses and may contain spaces, so the fields are counted from
/// the last `)`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn is_marked(pid: i32, marker: &Marker) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => environ
            .split(|&byte| byte == 0)
            .any(|entry| marker.matches(entry)),
        Err(_) => false,
    }
}

fn signal(pid: i32, signal: Signal) {
    let Some(process) = Pid::from_raw(pid) else {
        return;
    };
    match kill_process(process, signal) {
        Ok(()) => tracing::info!(
            pid,
            signal = signal.as_raw(),
            "stopped a left-over handler process"
        ),
        Err(error) => tracing::debug!(pid, %error, "cannot signal a left-over handler process"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_marked_process_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The directory part does not matter: the token names the emulator.
        let ours = marker_value(&dir.path().join("moved"), "1:2");
        let others = [
            marker_value(dir.path(), "1:3"),
            marker_value(dir.path(), "11:2"),
            dir.path().display().to_string(),
        ];

        let mut marked = std::process::Command::new("sleep")
            .arg("60")
            .env(MARKER_VARIABLE, &ours)
            .spawn()
            .expect("spawn sleep");
        let mut unmarked: Vec<std::process::Child> = others
            .iter()
            .map(|value| {
                std::process::Command::new("sleep")
                    .arg("60")
                    .env(MARKER_VARIABLE, value)
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect();

        // The child's environment is readable once it has executed `sleep`.
        let marker = Marker::new("1:2");
        let pid = i32::try_from(marked.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_marked(pid, &marker) && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        assert_eq!(stop_marked_processes("1:2").await, 1);
        let status = marked.wait().expect("wait");
        assert!(!status.success(), "{status}");
        for child in &mut unmarked {
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "another emulator's process was stopped"
            );
            child.kill().expect("kill");
            let _ = child.wait();
        }
    }

    #[test]
    fn exact_marker_spares_other_emulators_of_the_process() {
        let token = "4242:17";
        let ours = format!("{MARKER_VARIABLE}=/tmp/a#{token}");
        let sibling = format!("{MARKER_VARIABLE}=/tmp/b#{token}");

        // A killed owner's leftovers are found by token, in any directory.
        let by_token = Marker::new(token);
        assert!(by_token.matches(ours.as_bytes()));
        assert!(by_token.matches(sibling.as_bytes()));

        // One emulator's own shutdown stops only its own directory's processes.
        let own = Marker::exact(&format!("/tmp/a#{token}"));
        assert!(own.matches(ours.as_bytes()));
        assert!(!own.matches(sibling.as_bytes()));
    }

    #[test]
    fn lineage_starts_with_self_and_parent() {
        let lineage = own_lineage();
        assert_eq!(
            lineage.first().copied(),
            i32::try_from(std::process::id()).ok()
        );
        assert_eq!(
            lineage.get(1).copied(),
            i32::try_from(std::os::unix::process::parent_id()).ok()
        );
    }

    #[test]
    fn parent_of_reads_names_with_spaces() {
        // The command name of a process, its executable's file name, can contain spaces and
        // parentheses.
        let dir = tempfile::tempdir().expect("temp dir");
        let odd_name = dir.path().join("a (b) c");
        std::os::unix::fs::symlink("/bin/sleep", &odd_name).expect("symlink");
        let mut child = std::process::Command::new(&odd_name)
            .arg("30")
            .spawn()
            .expect("spawn");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).expect("stat");
        assert!(stat.contains("(a (b) c)"), "{stat}");
        let pid = i32::try_from(child.id()).expect("pid");
        let own = i32::try_from(std::process::id()).expect("pid");
        assert_eq!(parent_of(pid), Some(own));
        child.kill().expect("kill");
        let _ = child.wait();
    }
}
