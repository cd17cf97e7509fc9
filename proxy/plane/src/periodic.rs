//! Work done every so often in the background (re-reading what other replicas changed,
//! sharing counts, sweeping expired rows), with one way of saying so in the log: the
//! first failure is an error naming what stops working meanwhile, later ones are quiet
//! until the work succeeds again, which is said once.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// A periodic task, configured; [`Periodic::spawn`] starts it.
#[derive(Clone)]
pub struct Periodic {
    every: Duration,
    /// Logged (with the error) when the work starts failing: what fails, and what that
    /// means until it works again.
    failing: &'static str,
    /// Logged when the work succeeds again after failing.
    recovered: &'static str,
    at_once: bool,
    once_more_on_stop: bool,
    /// Told of each success (a live view reports its refresh to `/metrics`).
    on_success: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("every", &self.every)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl Periodic {
    /// Work to do every `every`, first at once.
    pub fn every(every: Duration, failing: &'static str, recovered: &'static str) -> Self {
        Self {
            every,
            failing,
            recovered,
            at_once: true,
            once_more_on_stop: false,
            on_success: None,
        }
    }

    /// Calls `told` after each run that succeeded.
    pub fn telling(mut self, told: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_success = Some(Arc::new(told));
        self
    }

    /// The first run comes after one period (the state was just loaded).
    pub fn first_after_a_period(mut self) -> Self {
        self.at_once = false;
        self
    }

    /// Runs the work once more when stopped (to hand over what is still in memory).
    pub fn once_more_on_stop(mut self) -> Self {
        self.once_more_on_stop = true;
        self
    }

    /// Runs `work` every period until `stop`. A run that overruns its period delays the
    /// next one instead of bunching them up.
    pub fn spawn<F, Fut, E>(self, stop: CancellationToken, mut work: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            if !self.at_once {
                tick.tick().await;
            }
            let mut health = Health::default();
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                if stopping && !self.once_more_on_stop {
                    return;
                }
                match work().await {
                    Ok(()) => {
                        if let Some(told) = &self.on_success {
                            told();
                        }
                        if health.succeeded() {
                            tracing::info!("{}", self.recovered);
                        }
                    }
                    Err(e) => {
                        if health.failed() {
                            tracing::error!(error = %e, "{}", self.failing);
                        } else {
                            tracing::debug!(error = %e, "{}", self.failing);
                        }
                    }
                }
                if stopping {
                    return;
                }
            }
        })
    }
}

/// Whether the work is failing, so that only the changes are logged.
#[derive(Debug, Default)]
struct Health {
    failing: bool,
}

impl Health {
    /// A failure; true when it is the first of a run of failures.
    fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// A success; true when it ends a run of failures.
    fn succeeded(&mut self) -> bool {
        std::mem::replace(&mut self.failing, false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn only_the_first_failure_and_the_recovery_are_news() {
        let mut health = Health::default();
        assert!(!health.succeeded());
        assert!(health.failed());
        assert!(!health.failed());
        assert!(health.succeeded());
        assert!(!health.succeeded());
        assert!(health.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn runs_every_period_until_stopped_and_once_more_when_asked() {
        for (once_more, at_once) in [(false, true), (true, true), (false, false)] {
            let runs = Arc::new(AtomicUsize::new(0));
            let stop = CancellationToken::new();
            let mut periodic = Periodic::every(Duration::from_secs(1), "failing", "recovered");
            if once_more {
                periodic = periodic.once_more_on_stop();
            }
            if !at_once {
                periodic = periodic.first_after_a_period();
            }
            let counted = runs.clone();
            let task = periodic.spawn(stop.clone(), move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            });
            // Runs at 0 s (unless the first waits a period), 1 s and 2 s.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            stop.cancel();
            task.await.expect("task");
            let expected = 3 - usize::from(!at_once) + usize::from(once_more);
            assert_eq!(
                runs.load(Ordering::SeqCst),
                expected,
                "once_more {once_more}, at_once {at_once}"
            );
        }
    }
}
