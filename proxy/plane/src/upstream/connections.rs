//! HTTP/1.1 connections to one upstream, driven by the task that uses them.
//!
//! A pooled hyper client hands each request to a connection task through a channel, a
//! wake-up per request and per response. Here the caller's own task polls the
//! connection while it waits for its response, so a forwarded call costs no task hop on
//! the way to the upstream. Idle connections wait in a small pool; a connection the
//! upstream closed is dropped and a new one opened.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// A connection and its request handle.
pub(crate) struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
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
    idle: Mutex<Vec<Pooled>>,
}

/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 256;

impl Connections {
    pub(crate) fn new(authority: String, connect_timeout: Duration) -> Self {
        Self {
            authority,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection, or a new one.
    pub(crate) async fn checkout(&self) -> Result<Pooled, ConnError> {
        loop {
            let candidate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match candidate {
                Some(pooled) if pooled.sender.is_ready() => return Ok(pooled),
                Some(_) => continue, // closed while idle
                None => break,
            }
        }
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
        })
    }

    /// Returns a connection whose last exchange completed.
    pub(crate) fn checkin(&self, pooled: Pooled) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(pooled);
        }
    }
}

impl Pooled {
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
                Poll::Pending => Poll::Pending,
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

    /// The next data chunk of a response body, `None` at its end.
    pub(crate) async fn frame(
        &mut self,
        body: &mut hyper::body::Incoming,
    ) -> Result<Option<Bytes>, ConnError> {
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
