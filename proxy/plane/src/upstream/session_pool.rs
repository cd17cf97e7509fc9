//! The sessions the direct path spreads a Streamable HTTP upstream's calls over.
//!
//! The lane's own connection holds one session with the upstream. Every client's direct
//! calls going into that one session serializes them on the upstream's side: an rmcp
//! server, for one, routes all of a session's messages through one task. Where the
//! upstream allows it (`[[upstreams]] sessions = N`: its tools keep no state of their own
//! per session), the lane opens N − 1 more, each on an rmcp connection of its own with
//! the same client handler as the lane's: what the upstream sends on such a session's
//! standalone stream (list changes, log messages, progress, requests back to the client)
//! is routed exactly as on the lane's own. Direct calls take the sessions in turn.
//!
//! An extra session lives while the lane's own connection does: it is opened once that
//! connection is up (and issued a session: a stateless upstream has nothing to spread),
//! closed when it ends, and opened again (with a backoff) if the upstream ends it or its
//! connection fails. While it is not open, calls go to the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{LaneLink, UpstreamClient};
use super::connect;
use super::session::SessionSlot;
use crate::locks::Locked;
use crate::protocol::era::Era;

/// The first wait before an extra session is opened again after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

pub(crate) struct SessionPool {
    /// The lane's own session first, then the extra ones.
    slots: Box<[SessionSlot]>,
    /// Per extra session (`slots[1..]`): asks its connection to open a new session.
    renew: Box<[Arc<Notify>]>,
    /// The session the next call takes.
    next: AtomicUsize,
    /// Ends the extra sessions' connections.
    open: Mutex<Option<CancellationToken>>,
}

impl SessionPool {
    /// The lane's own session and `size − 1` extra ones (none open yet).
    pub(crate) fn new(size: usize) -> Self {
        let slots: Box<[SessionSlot]> = (0..size.max(1)).map(|_| SessionSlot::default()).collect();
        let renew = (1..slots.len()).map(|_| Arc::new(Notify::new())).collect();
        Self {
            slots,
            renew,
            next: AtomicUsize::new(0),
            open: Mutex::new(None),
        }
    }

    /// The session of the lane's own connection.
    pub(crate) fn own(&self) -> &SessionSlot {
        &self.slots[0]
    }

    /// How many of the sessions have a known id (or none needed).
    pub(crate) fn known(&self) -> usize {
        self.slots.iter().filter(|s| s.is_known()).count()
    }

    /// The session the next direct call goes into: each known one in turn; the lane's
    /// own while no other is known.
    pub(crate) fn pick(&self) -> &SessionSlot {
        let n = self.slots.len();
        if n == 1 {
            return &self.slots[0];
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &self.slots[(start + k) % n])
            .find(|slot| slot.is_known())
            .unwrap_or(&self.slots[0])
    }

    /// The upstream ended `session` (HTTP 404 to a call): it is forgotten until a new
    /// one is open — by rmcp for the lane's own, by the pool for an extra one.
    pub(crate) fn ended(&self, session: &SessionSlot) {
        session.clear();
        if let Some(i) = self.slots.iter().position(|s| Arc::ptr_eq(s, session))
            && i > 0
        {
            self.renew[i - 1].notify_one();
        }
    }

    /// Opens the extra sessions next to the lane's own, once its connection is up; they
    /// stay open until [`Self::close`] (or the gateway shuts down).
    pub(crate) fn open(&self, link: Weak<dyn LaneLink>, era: Era, shutdown: &CancellationToken) {
        if self.slots.len() == 1 || era != Era::Legacy || !self.own().is_known() {
            return;
        }
        if self.own().is_stateless() {
            return; // no session to spread calls over
        }
        let stop = shutdown.child_token();
        if let Some(before) = self.open.locked().replace(stop.clone()) {
            before.cancel();
        }
        for (slot, renew) in self.slots[1..].iter().zip(self.renew.iter()) {
            let extra = Extra {
                link: link.clone(),
                era,
                slot: slot.clone(),
                renew: renew.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(extra.keep_open());
        }
    }

    /// Closes the extra sessions (the lane's own connection ended or reconnects).
    pub(crate) fn close(&self) {
        if let Some(stop) = self.open.locked().take() {
            stop.cancel();
        }
        for slot in &self.slots[1..] {
            slot.clear();
        }
    }
}

/// One extra session, kept open by a task of its own.
struct Extra {
    link: Weak<dyn LaneLink>,
    era: Era,
    slot: SessionSlot,
    renew: Arc<Notify>,
    stop: CancellationToken,
}

impl Extra {
    async fn keep_open(self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stop.is_cancelled() {
            let again = match self.connect_and_hold().await {
                Held::Stop => break,
                Held::Renew => Duration::ZERO,
                Held::Failed(backoff_max) => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(backoff_max);
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(again) => {}
                () = self.stop.cancelled() => break,
            }
        }
        self.slot.clear();
    }

    /// Opens a session and holds it until it ends, the stop, or a renewal.
    async fn connect_and_hold(&self) -> Held {
        let Some(lane) = self.link.upgrade() else {
            return Held::Stop;
        };
        let config = &lane.shared().config;
        let client = UpstreamClient::for_session(self.link.clone(), self.slot.clone());
        let connecting = tokio::time::timeout(
            config.connect_timeout,
            connect::connect(config, self.era, client),
        );
        let outcome = tokio::select! {
            outcome = connecting => outcome,
            () = self.stop.cancelled() => return Held::Stop,
        };
        let backoff_max = config.restart_backoff_max;
        let name = lane.name().to_owned();
        drop(lane);
        let running = match outcome {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::warn!(upstream = %name, error = %e, "cannot open an extra session");
                return Held::Failed(backoff_max);
            }
            Err(_) => {
                tracing::warn!(upstream = %name, "no answer to an extra session's handshake");
                return Held::Failed(backoff_max);
            }
        };
        if self.slot.is_stateless() || !self.slot.is_known() {
            // The upstream no longer issues sessions: the lane's own connection learns
            // it too, and there is nothing to spread calls over.
            let _ = running.cancel().await;
            return Held::Stop;
        }
        tracing::debug!(upstream = %name, "extra session open");
        let connection = running.cancellation_token();
        let held = tokio::select! {
            _ = running.waiting() => {
                tracing::info!(upstream = %name, "an extra session's connection ended");
                Held::Failed(backoff_max)
            }
            () = self.renew.notified() => Held::Renew,
            () = self.stop.cancelled() => Held::Stop,
        };
        connection.cancel();
        self.slot.clear();
        held
    }
}

enum Held {
    /// The pool closed, or the lane is gone.
    Stop,
    /// The upstream ended the session: open a new one now.
    Renew,
    /// The connection failed or ended: open a new one after a backoff (up to this).
    Failed(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the pool's slots `n` picks in a row took.
    fn picks(pool: &SessionPool, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let slot = pool.pick();
                pool.slots
                    .iter()
                    .position(|s| Arc::ptr_eq(s, slot))
                    .unwrap_or(usize::MAX)
            })
            .collect()
    }

    #[test]
    fn calls_take_the_known_sessions_in_turn() {
        let pool = SessionPool::new(3);
        assert_eq!(picks(&pool, 3), [0, 0, 0], "none known: the own");
        pool.slots[0].record("a");
        pool.slots[2].record("c");
        assert_eq!(pool.known(), 2);
        let picked = picks(&pool, 6);
        assert!(
            !picked.contains(&1),
            "an unknown session is skipped: {picked:?}"
        );
        assert!(picked.contains(&0) && picked.contains(&2), "{picked:?}");
        pool.slots[1].record("b");
        let mut picked = picks(&pool, 3);
        picked.sort_unstable();
        assert_eq!(picked, [0, 1, 2], "three calls, three sessions");
    }

    #[tokio::test]
    async fn an_ended_extra_session_is_forgotten_and_renewed() {
        let pool = SessionPool::new(2);
        pool.slots[0].record("a");
        pool.slots[1].record("b");
        let extra = pool.slots[1].clone();
        pool.ended(&extra);
        assert!(!extra.is_known());
        assert!(pool.own().is_known());
        // The renewal waits for whoever holds the session.
        let renewed =
            tokio::time::timeout(Duration::from_millis(100), pool.renew[0].notified()).await;
        assert!(renewed.is_ok(), "the extra session is renewed");
        // The lane's own is renewed by rmcp, not by the pool.
        pool.ended(&pool.slots[0].clone());
        assert!(!pool.own().is_known());
        let renewed =
            tokio::time::timeout(Duration::from_millis(50), pool.renew[0].notified()).await;
        assert!(renewed.is_err());
    }

    #[test]
    fn one_session_is_the_lanes_own() {
        let pool = SessionPool::new(1);
        pool.slots[0].record("a");
        for _ in 0..3 {
            assert!(Arc::ptr_eq(pool.pick(), pool.own()));
        }
    }
}
