//! Stops handler processes that outlived the emulator that started them.
//!
//! Every handler process gets [`STATE_DIR_VARIABLE`] set to the emulator's state directory, and
//! so does every process it starts, because children inherit the environment. Only one
//! emulator at a time uses a state directory. So a process that carries the variable but is
//! not the current emulator's own handler is left over: from an emulator that was killed with
//! SIGKILL, which cannot clean up, or a child that a handler started in the background. The
//! emulator stops such processes when it takes the directory over, and again when it shuts
//! down.
//!
//! The processes are found through `/proc/<pid>/environ`, so this works on Linux only. A
//! process of another user, whose environment cannot be read, is never touched.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// Environment variable that marks a process as started for one state directory.
pub(crate) const STATE_DIR_VARIABLE: &str = "SUBNETLOCK_STATE_DIR";

/// Time a process gets to exit after SIGTERM before it gets SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Stops every process whose environment marks it as started for `state_dir`, except this
/// process. Returns how many processes it signalled.
pub(crate) async fn stop_marked_processes(state_dir: &Path) -> usize {
    let marker = marker(state_dir);
    let pids = marked_processes(&marker);
    if pids.is_empty() {
        return 0;
    }

    for &pid in &pids {
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + TERMINATE_GRACE;
    while Instant::now() < deadline && pids.iter().any(|&pid| is_marked(pid, &marker)) {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    // The environment is checked again, so a process id that was reused in the meantime by
    // an unrelated process is left alone.
    for &pid in &pids {
        if is_marked(pid, &marker) {
            tracing::warn!(
                pid,
                "left-over handler process ignored SIGTERM; sending SIGKILL"
            );
            signal(pid, Signal::KILL);
        }
    }
    pids.len()
}

/// Returns the value of [`STATE_DIR_VARIABLE`] for `state_dir`: its canonical path, so that
/// two spellings of one directory mark the same processes.
pub(crate) fn marker_value(state_dir: &Path) -> String {
    std::fs::canonicalize(state_dir)
        .unwrap_or_else(|_| state_dir.to_owned())
        .display()
        .to_string()
}

/// Returns the `NAME=value` entry that marks processes of `state_dir`.
fn marker(state_dir: &Path) -> Vec<u8> {
    format!("{STATE_DIR_VARIABLE}={}", marker_value(state_dir)).into_bytes()
}

fn marked_processes(marker: &[u8]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter_map(|pid| i32::try_from(pid).ok())
        .filter(|&pid| is_marked(pid, marker))
        .collect()
}

fn is_marked(pid: i32, marker: &[u8]) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => environ
            .split(|&byte| byte == 0)
            .any(|entry| entry == marker),
        Err(_) => false,
    }
}

fn signal(pid: i32, signal: Signal) {
    let Some(process) = Pid::from_raw(pid) else {
        return;
    };
    match kill_process(process, signal) {
        Ok(()) => tracing::info!(pid, ?signal, "stopped a left-over handler process"),
        Err(error) => tracing::debug!(pid, %error, "cannot signal a left-over handler process"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_marked_process_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state_dir = dir.path().join("state");
        let other_dir = dir.path().join("other");

        let mut marked = std::process::Command::new("sleep")
            .arg("60")
            .env(STATE_DIR_VARIABLE, marker_value(&state_dir))
            .spawn()
            .expect("spawn sleep");
        let mut unmarked = std::process::Command::new("sleep")
            .arg("60")
            .env(STATE_DIR_VARIABLE, marker_value(&other_dir))
            .spawn()
            .expect("spawn sleep");

        // The child's environment is readable once it has executed `sleep`.
        let marker = marker(&state_dir);
        let pid = i32::try_from(marked.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_marked(pid, &marker) && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        assert_eq!(stop_marked_processes(&state_dir).await, 1);
        let status = marked.wait().expect("wait");
        assert!(!status.success(), "{status}");
        assert!(
            unmarked.try_wait().expect("try_wait").is_none(),
            "unmarked process still runs"
        );

        unmarked.kill().expect("kill");
        let _ = unmarked.wait();
    }
}
