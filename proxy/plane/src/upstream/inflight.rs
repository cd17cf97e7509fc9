//! The calls in flight on a lane: which downstream request a message from the
//! upstream (progress, a request back to the client) belongs to, and the count of each
//! call's notifications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{ProgressToken, RequestId};
use rmcp::service::Peer;

use super::asker::Asker;
use crate::locks::Locked;

/// A downstream request that is waiting on this lane: where its progress and any
/// request the upstream makes back (elicitation, sampling, roots) must go.
#[derive(Clone)]
pub(crate) struct Inflight {
    pub(crate) downstream: Peer<RoleServer>,
    pub(crate) downstream_request: RequestId,
    pub(crate) downstream_progress: Option<ProgressToken>,
    /// For a 2026-07-28 client on a legacy lane: where the upstream's requests go
    /// instead (they become the call's `InputRequiredResult`, see `server::park`).
    pub(crate) park: Option<Arc<Asker>>,
    /// The client session's own log level ([`LogLevel`]); `None`: every message.
    pub(crate) log_level: Option<Arc<LogLevel>>,
}

/// The least severe log message a client session wants, set by its `logging/setLevel`
/// (kept by the gateway, not sent upstream, where every client would share it).
#[derive(Default)]
pub(crate) struct LogLevel(std::sync::atomic::AtomicU8);

// Logging is deprecated in 2026-07-28, but the older revisions still have it.
#[allow(deprecated)]
impl LogLevel {
    fn rank(level: rmcp::model::LoggingLevel) -> u8 {
        use rmcp::model::LoggingLevel as L;
        match level {
            L::Debug => 0,
            L::Info => 1,
            L::Notice => 2,
            L::Warning => 3,
            L::Error => 4,
            L::Critical => 5,
            L::Alert => 6,
            L::Emergency => 7,
        }
    }

    pub(crate) fn set(&self, level: rmcp::model::LoggingLevel) {
        self.0
            .store(Self::rank(level), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the session wants a message of `level`.
    pub(crate) fn wants(&self, level: rmcp::model::LoggingLevel) -> bool {
        Self::rank(level) >= self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the session wants a JSON-RPC message as the upstream sent it: anything
    /// but a `notifications/message` below its level.
    pub(crate) fn wants_message(
        &self,
        message: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        if message.get("method").and_then(|m| m.as_str()) != Some("notifications/message") {
            return true;
        }
        message
            .get("params")
            .and_then(|p| p.get("level"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .is_none_or(|l| self.wants(l))
    }
}

/// A call in flight and the count of its notifications.
pub(crate) type Tracked = (Inflight, Arc<ProgressCount>);

#[derive(Default)]
struct Inflights {
    by_request: HashMap<RequestId, Tracked>,
    by_progress: HashMap<ProgressToken, (RequestId, Arc<ProgressCount>)>,
    /// Calls being sent whose upstream request id is not known yet (rmcp assigns it as
    /// it sends). The upstream may already answer with a request or progress of its
    /// own — over stdio nothing marks which call those belong to — so a lookup that
    /// finds nothing certain waits until these are tracked.
    sending: usize,
}

/// How long a message from the upstream waits for the calls being sent to be tracked
/// before it is treated as belonging to none.
const SETTLE_SENDING: std::time::Duration = std::time::Duration::from_secs(2);

/// A call being sent (see [`Inflights::sending`]): counted while it lives.
pub(crate) struct Sending<'a> {
    calls: &'a Calls,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        {
            let mut inflight = self.calls.inflight.locked();
            inflight.sending = inflight.sending.saturating_sub(1);
        }
        self.calls.tracked.notify_waiters();
    }
}

/// Notifications of one call that reach the lane's connection rather than the call's
/// own response: how many progress notifications arrived (counted in the order the
/// transport received them) and how many were passed on, and when a log message was
/// last passed on. rmcp handles notifications in tasks of their own, and an upstream may
/// send log messages on its standalone stream, racing the response on another
/// connection; so a call returns its result only once its progress has been passed on,
/// and, if it has been logging, once its log messages have paused.
#[derive(Default)]
pub(crate) struct ProgressCount {
    received: std::sync::atomic::AtomicU64,
    forwarded: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
    last_log: Mutex<Option<tokio::time::Instant>>,
}

/// How long a call that has been logging waits, after its answer arrived and after its
/// last log message, for a log message still on its way.
const LOG_QUIET: Duration = Duration::from_millis(15);
/// The most a call waits for its notifications.
const SETTLE_MAX: Duration = Duration::from_millis(250);

impl ProgressCount {
    pub(crate) fn received(&self) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn forwarded(&self) {
        self.forwarded
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    pub(crate) fn logged(&self) {
        let mut last = self.last_log.locked();
        *last = Some(tokio::time::Instant::now());
    }

    /// Waits (briefly) until every received progress notification was passed on and,
    /// for a call that logs, until its log messages pause.
    pub(crate) async fn settle(&self) {
        use std::sync::atomic::Ordering::Acquire;
        // The common case, nothing to wait for, without a clock read or a timer.
        if self.forwarded.load(Acquire) >= self.received.load(Acquire)
            && self.last_log.locked().is_none()
        {
            return;
        }
        let answered = tokio::time::Instant::now();
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.forwarded.load(Acquire) >= self.received.load(Acquire) {
                    break;
                }
                changed.await;
            }
            loop {
                let last = *self.last_log.locked();
                let Some(last) = last else { return };
                // The last message may be racing the answer on another connection.
                let quiet_until = last.max(answered) + LOG_QUIET;
                if tokio::time::Instant::now() >= quiet_until {
                    return;
                }
                tokio::time::sleep_until(quiet_until).await;
            }
        };
        let _ = tokio::time::timeout(SETTLE_MAX, wait).await;
    }
}

/// The calls in flight on one lane (see the module doc).
#[derive(Default)]
pub(crate) struct Calls {
    inflight: Mutex<Inflights>,
    /// Woken whenever a call being sent is tracked (or failed to send).
    tracked: tokio::sync::Notify,
}

impl Calls {
    /// Forgets every call (the connection went down: their callers get rmcp's error).
    pub(crate) fn clear(&self) {
        let mut inflight = self.inflight.locked();
        *inflight = Inflights::default();
    }

    pub(crate) fn sending(&self) -> Sending<'_> {
        {
            let mut inflight = self.inflight.locked();
            inflight.sending += 1;
        }
        Sending { calls: self }
    }

    pub(crate) fn track(
        &self,
        id: RequestId,
        progress: ProgressToken,
        origin: Inflight,
    ) -> Arc<ProgressCount> {
        let count = Arc::new(ProgressCount::default());
        {
            let mut inflight = self.inflight.locked();
            inflight
                .by_progress
                .insert(progress, (id.clone(), count.clone()));
            inflight.by_request.insert(id, (origin, count.clone()));
        }
        count
    }

    pub(crate) fn untrack(&self, id: &RequestId) {
        let mut inflight = self.inflight.locked();
        if inflight.by_request.remove(id).is_some() {
            inflight.by_progress.retain(|_, (v, _)| v != id);
        }
    }

    /// [`Self::untrack`] for a call tracked under `progress`: its one progress entry is
    /// found by key rather than by a scan of every call in flight.
    pub(crate) fn untrack_one(&self, id: &RequestId, progress: &ProgressToken) {
        let mut inflight = self.inflight.locked();
        if inflight.by_request.remove(id).is_some()
            && let Some((key, entry)) = inflight.by_progress.remove_entry(progress)
            && entry.0 != *id
        {
            // The token is another call's now: put it back.
            inflight.by_progress.insert(key, entry);
        }
    }

    /// The downstream request a message from this lane belongs to: the one whose
    /// upstream request id it names, or else the only one in flight. While calls are
    /// being sent (their ids not known yet) an answer that is not certain waits for them,
    /// up to [`SETTLE_SENDING`].
    pub(crate) async fn origin_of(&self, upstream_request: Option<&RequestId>) -> Option<Tracked> {
        self.settled(|inflight| {
            if let Some(origin) = upstream_request.and_then(|id| inflight.by_request.get(id)) {
                return Some(Some(origin.clone()));
            }
            if inflight.sending > 0 {
                return None;
            }
            Some(match inflight.by_request.len() {
                1 => inflight.by_request.values().next().cloned(),
                _ => None,
            })
        })
        .await
    }

    /// The downstream request (and its own progress token) for an upstream progress
    /// token, with the call's progress count (waiting for calls being sent, as
    /// [`Self::origin_of`]).
    pub(crate) async fn origin_of_progress(&self, token: &ProgressToken) -> Option<Tracked> {
        self.settled(|inflight| match inflight.by_progress.get(token) {
            Some((id, _)) => Some(inflight.by_request.get(id).cloned()),
            None if inflight.sending > 0 => None,
            None => Some(None),
        })
        .await
    }

    /// Runs `decide` on the calls in flight until it is certain (`Some`), waiting for
    /// calls being sent to be tracked, at most [`SETTLE_SENDING`]; then `None`.
    async fn settled(
        &self,
        decide: impl Fn(&Inflights) -> Option<Option<Tracked>>,
    ) -> Option<Tracked> {
        let deadline = tokio::time::Instant::now() + SETTLE_SENDING;
        loop {
            let woken = self.tracked.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(answer) = decide(&self.inflight.locked()) {
                return answer;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return None;
            }
        }
    }

    /// Counts a progress notification as the transport receives it, in order.
    pub(crate) fn progress_arrived(&self, token: &ProgressToken) {
        if let Some((_, count)) = self.inflight.locked().by_progress.get(token) {
            count.received();
        }
    }
}
