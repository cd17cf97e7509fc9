//! How much memory request bodies being received may hold: a budget of bytes for all
//! clients together and one per client address (`mcp.max_body_bytes_in_flight`,
//! `mcp.max_body_bytes_in_flight_per_client`). Bytes are counted as they arrive and
//! given back when the body is handed on (or refused), so small calls never come near
//! the limits while many large or never-finishing bodies do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::locks::Sharded;
use axum::body::Body;

/// The budget shared by every request to `/mcp`: counted without a lock across the
/// process (the total is a counter, the clients' counts are in shards by address).
pub(crate) struct BodyBudget {
    total: usize,
    per_client: usize,
    used: AtomicUsize,
    by_client: Sharded<HashMap<IpAddr, usize>>,
}

/// Why a body was not read to its end.
pub(crate) enum Unread {
    /// Larger than `server.max_body_bytes`.
    TooLarge,
    /// The client's address already has this many bytes being received.
    ClientBusy(usize),
    /// All clients together already have this many bytes being received.
    GatewayBusy(usize),
    /// The connection failed while the body was being received.
    Broken,
}

/// Bytes of one body counted against the budget, given back when dropped.
struct Held {
    budget: Arc<BodyBudget>,
    client: Option<IpAddr>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        if let Some(client) = self.client {
            let mut by_client = self.budget.by_client.shard(&client);
            if let Some(n) = by_client.get_mut(&client) {
                *n = n.saturating_sub(self.bytes);
                if *n == 0 {
                    by_client.remove(&client);
                }
            }
        }
    }
}

impl BodyBudget {
    pub(crate) fn new(total: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_client,
            used: AtomicUsize::new(0),
            by_client: Sharded::default(),
        })
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn per_client(&self) -> usize {
        self.per_client
    }

    /// Counts `more` bytes of `held`'s body, unless a limit would be passed.
    fn take(&self, held: &mut Held, more: usize) -> Result<(), Unread> {
        // The total first (taken back if the client's own count refuses).
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + more <= self.total).then_some(used + more)
            })
            .map_err(Unread::GatewayBusy)?;
        if let Some(client) = held.client {
            let mut by_client = self.by_client.shard(&client);
            let mine = by_client.entry(client).or_default();
            if *mine + more > self.per_client {
                let now = *mine;
                if now == 0 {
                    by_client.remove(&client);
                }
                drop(by_client);
                self.used.fetch_sub(more, Ordering::AcqRel);
                return Err(Unread::ClientBusy(now));
            }
            *mine += more;
        }
        held.bytes += more;
        Ok(())
    }

    /// A request body within `limit` bytes and within the budget (`axum::body::to_bytes`
    /// without its buffer list: a body in one piece is kept as it came). The bytes are
    /// counted until the body is handed on.
    pub(crate) async fn read(
        self: &Arc<Self>,
        body: Body,
        limit: usize,
        client: Option<IpAddr>,
    ) -> Result<bytes::Bytes, Unread> {
        use http_body_util::BodyExt as _;
        let mut held = Held {
            budget: self.clone(),
            client,
            bytes: 0,
        };
        let mut body = body;
        let mut first: Option<bytes::Bytes> = None;
        let mut more: Option<bytes::BytesMut> = None;
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Unread::Broken)?.into_data() else {
                continue; // trailers
            };
            len += data.len();
            if len > limit {
                return Err(Unread::TooLarge);
            }
            self.take(&mut held, data.len())?;
            match (&mut first, &mut more) {
                (None, _) => first = Some(data),
                (Some(head), None) => {
                    let mut all = bytes::BytesMut::with_capacity(len);
                    all.extend_from_slice(head);
                    all.extend_from_slice(&data);
                    more = Some(all);
                }
                (Some(_), Some(all)) => all.extend_from_slice(&data),
            }
        }
        Ok(match (first, more) {
            (_, Some(all)) => all.freeze(),
            (Some(one), None) => one,
            (None, None) => bytes::Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(budget: &Arc<BodyBudget>, client: [u8; 4]) -> Held {
        Held {
            budget: budget.clone(),
            client: Some(IpAddr::from(client)),
            bytes: 0,
        }
    }

    #[test]
    fn bytes_are_counted_per_client_and_in_total_and_given_back() {
        let budget = BodyBudget::new(150, 100);
        let mut a = held(&budget, [127, 0, 0, 1]);
        assert!(budget.take(&mut a, 80).is_ok());
        assert!(matches!(
            budget.take(&mut a, 30),
            Err(Unread::ClientBusy(80))
        ));
        let mut b = held(&budget, [127, 0, 0, 2]);
        assert!(budget.take(&mut b, 60).is_ok());
        let mut c = held(&budget, [127, 0, 0, 3]);
        assert!(matches!(
            budget.take(&mut c, 20),
            Err(Unread::GatewayBusy(140))
        ));
        drop(a);
        assert!(budget.take(&mut c, 20).is_ok());
        drop((b, c));
        let clients: usize = budget.by_client.each().map(|shard| shard.len()).sum();
        assert_eq!((budget.used.load(Ordering::Acquire), clients), (0, 0));
    }
}
