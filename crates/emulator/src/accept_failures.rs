//! Rate limit for the log of a listener whose `accept` keeps failing, for example while the
//! process is out of file descriptors. The accept loops retry every `ACCEPT_RETRY`, so one
//! line per failure would be one line per retry for as long as the failures last.

use std::time::{Duration, Instant};

/// Minimum time between two summary lines of one run of failures.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The line to log for one failed `accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureLine {
    /// The first failure after a success, or of the listener's life.
    First,
    /// A summary of the `failures` since the last line, the current one included.
    Summary { failures: u64 },
    /// No line, because the last line is less than [`SUMMARY_INTERVAL`] old.
    Quiet,
}

/// The end of a run of failures, logged when `accept` succeeds again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Failures of the whole run.
    pub failures: u64,
    /// Time from the first failure of the run to the success.
    pub duration: Duration,
}

/// Consecutive `accept` failures, and when the last line about them was logged.
#[derive(Debug, Default)]
pub(crate) struct AcceptFailures {
    run: Option<Run>,
}

#[derive(Debug)]
struct Run {
    started: Instant,
    last_line: Instant,
    total: u64,
    since_last_line: u64,
}

impl AcceptFailures {
    /// Counts a failure at `now` and returns the line to log for it.
    pub(crate) fn record_failure(&mut self, now: Instant) -> FailureLine {
        let Some(run) = &mut self.run else {
            self.run = Some(Run {
                started: now,
                last_line: now,
                total: 1,
                since_last_line: 0,
            });
            return FailureLine::First;
        };

        run.total += 1;
        run.since_last_line += 1;
        if now.saturating_duration_since(run.last_line) < SUMMARY_INTERVAL {
            return FailureLine::Quiet;
        }
        let failures = run.since_last_line;
        run.since_last_line = 0;
        run.last_line = now;
        FailureLine::Summary { failures }
    }

    /// Ends the run of failures at `now`, returning it when there was one.
    pub(crate) fn record_success(&mut self, now: Instant) -> Option<Recovery> {
        let run = self.run.take()?;
        Some(Recovery {
            failures: run.total,
            duration: now.saturating_duration_since(run.started),
        })
    }
}

/// Logs a failed `accept` on `listener` (its name in the log, such as `front end`) in the form
/// `line` selects, with the retry delay `retry`.
pub(crate) fn log_failure(
    listener: &'static str,
    line: FailureLine,
    error: &std::io::Error,
    retry: Duration,
) {
    match line {
        FailureLine::First => tracing::warn!(
            listener,
            %error,
            retry_ms = retry.as_millis(),
            "failed to accept a connection, retrying"
        ),
        FailureLine::Summary { failures } => tracing::warn!(
            listener,
            last_error = %error,
            failures_since_last_log = failures,
            "still failing to accept connections"
        ),
        FailureLine::Quiet => {}
    }
}

/// Logs that `accept` on `listener` works again after a run of failures.
pub(crate) fn log_recovery(listener: &'static str, recovery: Recovery) {
    tracing::info!(
        listener,
        failures = recovery.failures,
        duration_ms = recovery.duration.as_millis(),
        "accepts connections again"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(100);

    #[test]
    fn first_failure_then_quiet() {
        let start = Instant::now();
        let mut failures = AcceptFailures::default();

        assert_eq!(failures.record_failure(start), FailureLine::First);
        for step in 1..100 {
            assert_eq!(
                failures.record_failure(start + STEP * step),
                FailureLine::Quiet,
                "failure {step}"
            );
        }
    }

    #[test]
    fn summary_every_interval() {
        let start = Instant::now();
        let mut failures = AcceptFailures::default();
        assert_eq!(failures.record_failure(start), FailureLine::First);

        let mut summaries = Vec::new();
        for step in 1..=250 {
            let line = failures.record_failure(start + STEP * step);
            if line != FailureLine::Quiet {
                summaries.push((step, line));
            }
        }

        // Every 100 failures 100 ms apart make 10 s, and each summary counts the failures
        // after the previous line.
        assert_eq!(
            summaries,
            vec![
                (100, FailureLine::Summary { failures: 100 }),
                (200, FailureLine::Summary { failures: 100 }),
            ]
        );
    }

    #[test]
    fn summary_after_long_gap() {
        let start = Instant::now();
        let mut failures = AcceptFailures::default();
        failures.record_failure(start);
        failures.record_failure(start + STEP);

        let line = failures.record_failure(start + SUMMARY_INTERVAL * 3);
        assert_eq!(line, FailureLine::Summary { failures: 2 });
    }

    #[test]
    fn success_ends_run() {
        let start = Instant::now();
        let mut failures = AcceptFailures::default();
        for step in 0..150 {
            failures.record_failure(start + STEP * step);
        }

        let recovery = failures.record_success(start + STEP * 150);
        assert_eq!(
            recovery,
            Some(Recovery {
                failures: 150,
                duration: STEP * 150,
            })
        );

        // The run is over, so a second success logs nothing and the next failure is a first.
        assert_eq!(failures.record_success(start + STEP * 151), None);
        let later = start + STEP * 152;
        assert_eq!(failures.record_failure(later), FailureLine::First);
    }

    #[test]
    fn success_without_failure_is_silent() {
        let mut failures = AcceptFailures::default();
        assert_eq!(failures.record_success(Instant::now()), None);
    }
}
