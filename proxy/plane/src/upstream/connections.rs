//! HTTP/1.1 connections to one upstream, driven by the task that uses them.
//!
//! A pooled hyper client hands each request to a connection task through a channel, a
//! wake-up per request and per response. Here the caller's own task polls the
//! connection while it waits for its response, so a forwarded call costs no task hop on
//! the way to the upstream. Idle connections wait in a small pool; a connection the
//! upstream closed is dropped and a new one opened. At most `max_connections` (the
//! upstream's setting) are open at once: a caller that finds them all in use waits for
//! one to be given back (or dropped).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use crate::locks::Locked;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// A connection and its request handle.
pub(crate) struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
    /// Held while the connection is in use (an idle one holds none).
    slot: Option<OwnedSemaphorePermit>,
    /// The body of its last response while that is still ending (an event stream put
    /// back after its last event), and until when its end is waited for.
    ending: Option<(Incoming, tokio::time::Instant)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connection to {0} timed out")]
    ConnectTimeout(String),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("the upstream closed the connection")]
    Closed,
}

/// The connections to one `host:port`.
pub(crate) struct Connections {
    authority: String,
    connect_timeout: Duration,
    idle: Arc<Mutex<Vec<Pooled>>>,
    /// One permit per connection in use. A new connection is opened only when none is
    /// idle, so those in use and those idle together stay within the bound.
    slots: Arc<Semaphore>,
    /// How many connections were opened so far.
    opened: std::sync::atomic::AtomicU64,
}

/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 256;

impl Connections {
    pub(crate) fn new(authority: String, connect_timeout: Duration, max: usize) -> Self {
        Self {
            authority,
            connect_timeout,
            idle: Arc::default(),
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            opened: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many connections were opened so far (a connection carries call after call
    /// while the upstream keeps it open).
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An idle connection, or a new one; waits while all the upstream's connections
    /// are in use.
    pub(crate) async fn checkout(&self) -> Result<Pooled, ConnError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ConnError::Closed)?;
        loop {
            let candidate = self.idle.locked().pop();
            let Some(mut pooled) = candidate else { break };
            if let Some((mut body, until)) = pooled.ending.take() {
                use futures::FutureExt as _;
                match pooled.finish(&mut body).now_or_never() {
                    Some(true) => {}
                    Some(false) => continue,
                    None => {
                        // Not ended yet: its end is awaited apart, and another one taken.
                        self.finish_apart(pooled, body, until);
                        continue;
                    }
                }
            }
            if pooled.sender.is_ready() && pooled.alive() {
                pooled.slot = Some(slot);
                return Ok(pooled);
            }
            // Closed while idle: the next one.
        }
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let connecting = TcpStream::connect(&self.authority);
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ConnError::ConnectTimeout(self.authority.clone()))?
            .map_err(|e| ConnError::Connect(self.authority.clone(), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| ConnError::Connect(self.authority.clone(), e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        Ok(Pooled {
            sender,
            conn: Box::pin(conn),
            slot: Some(slot),
            ending: None,
        })
    }

    /// Returns a connection whose last exchange completed.
    pub(crate) fn checkin(&self, pooled: Pooled) {
        put_back(&self.idle, pooled);
    }

    /// Returns a connection whose last response (an event stream) has not quite ended:
    /// the next checkout reads its end first, which has usually arrived by then; a
    /// stream still open then is awaited apart, up to `within` from now.
    pub(crate) fn checkin_ending(&self, mut pooled: Pooled, body: Incoming, within: Duration) {
        pooled.ending = Some((body, tokio::time::Instant::now() + within));
        put_back(&self.idle, pooled);
    }

    /// Awaits the end of a connection's last response in a task of its own, then puts it
    /// back; it counts as in use meanwhile (without a free slot it is closed instead).
    fn finish_apart(&self, mut pooled: Pooled, mut body: Incoming, until: tokio::time::Instant) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        pooled.slot = Some(slot);
        let idle = self.idle.clone();
        tokio::spawn(async move {
            if let Ok(true) = tokio::time::timeout_at(until, pooled.finish(&mut body)).await {
                put_back(&idle, pooled);
            }
        });
    }
}

/// Puts a connection among the idle ones (at most [`MAX_IDLE`]) and gives back its slot.
fn put_back(idle: &Mutex<Vec<Pooled>>, mut pooled: Pooled) {
    // Idle before its slot is given back: a caller woken by the slot finds it.
    let slot = pooled.slot.take();
    let mut idle = idle.locked();
    if idle.len() < MAX_IDLE {
        idle.push(pooled);
    }
    drop(idle);
    drop(slot);
}

impl Pooled {
    /// Whether an idle connection is still open: polled once, a connection whose server
    /// closed it (it went away, or restarted) ends instead of failing the next call.
    fn alive(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        self.conn.as_mut().poll(&mut cx).is_pending()
    }

    /// Polls `future` while keeping the connection going.
    pub(crate) async fn drive<F: Future>(&mut self, future: F) -> Result<F::Output, ConnError> {
        let mut future = std::pin::pin!(future);
        let conn = &mut self.conn;
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            match conn.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(ConnError::Closed)),
                // What the connection just read (a response, a body's frame or its end)
                // is taken at once, not after a round through the scheduler.
                Poll::Pending => future.as_mut().poll(cx).map(Ok),
            }
        })
        .await
    }

    /// Sends a request and returns the response head; the body is read with
    /// [`Self::frame`].
    pub(crate) async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ConnError> {
        let sending = self.sender.send_request(request);
        Ok(self.drive(sending).await??)
    }

    /// Reads what is left of a response body (the end of an event stream after its last
    /// event), so that the connection can carry the next request; true once it ended.
    pub(crate) async fn finish(&mut self, body: &mut Incoming) -> bool {
        loop {
            match self.frame(body).await {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
    }

    /// The next data chunk of a response body, `None` at its end.
    pub(crate) async fn frame(&mut self, body: &mut Incoming) -> Result<Option<Bytes>, ConnError> {
        loop {
            match self.drive(body.frame()).await? {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn no_more_than_the_bound_are_open_and_a_caller_waits_for_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let authority = listener.local_addr().expect("address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                open.push(socket);
            }
        });
        let connections = Connections::new(authority, Duration::from_secs(5), 2);
        let first = connections.checkout().await.expect("first");
        let second = connections.checkout().await.expect("second");
        let short = Duration::from_millis(100);
        assert!(
            tokio::time::timeout(short, connections.checkout())
                .await
                .is_err(),
            "a third waits while two are in use"
        );
        tokio::time::sleep(short).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "no third was opened");
        connections.checkin(first);
        let third = tokio::time::timeout(short, connections.checkout())
            .await
            .expect("a connection given back is taken")
            .expect("third");
        drop(second);
        let fourth = tokio::time::timeout(short, connections.checkout())
            .await
            .expect("a dropped connection frees its slot")
            .expect("fourth");
        assert!(
            tokio::time::timeout(short, connections.checkout())
                .await
                .is_err()
        );
        drop((third, fourth));
        server.abort();
    }
}
