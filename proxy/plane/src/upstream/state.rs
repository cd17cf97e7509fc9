//! The state of an upstream as the layers above see it: a lane's health, the changes
//! in what an upstream offers, and why a lane cannot serve.

use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Health of a lane, as reported by `/readyz` and in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not started yet (lazy, or an era no client has used yet).
    Idle,
    Starting,
    Ready,
    /// Down, with the reason; the supervisor is retrying.
    Down(String),
    /// The upstream does not speak this era: its clients use the other lane.
    Unsupported,
    /// Stopped for good (gateway shutting down).
    Stopped,
}

impl Health {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Down(_) => "down",
            Self::Unsupported => "unsupported",
            Self::Stopped => "stopped",
        }
    }
}

/// A change in what an upstream offers or in its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Tools,
    Prompts,
    Resources,
    /// Came up or went down: everything it offers changed at once.
    Health,
}

/// Announces changes that the aggregated views and the connected clients must pick up:
/// an epoch counter (a view rebuilds when it moved) and a broadcast of each change.
#[derive(Clone)]
pub(crate) struct Changes {
    tx: tokio::sync::broadcast::Sender<(String, Change)>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Changes {
    pub(crate) fn new() -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(256).0,
            epoch: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    pub(crate) fn publish(&self, upstream: &str, change: Change) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send((upstream.to_owned(), change));
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, Change)> {
        self.tx.subscribe()
    }
}

/// Why a lane cannot serve.
#[derive(Debug)]
pub(crate) enum LaneError {
    Unsupported,
    Unavailable(String),
}
