//! Opening a connection to an upstream in its transport: a supervised stdio child, a
//! Streamable HTTP client, or a legacy HTTP+SSE client. Each speaks the newest protocol
//! revision the upstream accepts (rmcp negotiates it at `initialize`/`server/discover`).

use std::collections::HashMap;
use std::process::Stdio;

use std::sync::{Arc, Weak};

use std::time::Duration;

use futures::stream::BoxStream;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::SseRetryPolicy;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;

use rmcp::RoleClient;
use rmcp::model::{ClientRequest, JsonRpcMessage, ProtocolVersion, ServerNotification};
use rmcp::service::RunningService;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::AsyncBufReadExt;

use super::client::{LaneLink, UpstreamClient};
use super::legacy_sse::{SseClientConfig, SseClientTransport};
use crate::config::{Transport, UpstreamConfig, ValueRef, resolve};
use crate::protocol::era::Era;

/// How many requests may be in flight to one HTTP upstream at once.
const MAX_CONCURRENT_HTTP_REQUESTS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(String),
    #[error("invalid header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Sse(#[from] super::legacy_sse::SseTransportError),
    #[error("initialization failed: {0}")]
    Initialize(Box<rmcp::service::ClientInitializeError>),
}

pub(crate) async fn connect(
    config: &UpstreamConfig,
    era: Era,
    client: UpstreamClient,
) -> Result<RunningService<RoleClient, UpstreamClient>, ConnectError> {
    match &config.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).kill_on_drop(true);
            for (key, value) in env {
                let value =
                    resolve(value).map_err(|e| ConnectError::Secret(format!("env {key}: {e}")))?;
                cmd.env(key, value.expose());
            }
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| ConnectError::Spawn {
                    command: command.clone(),
                    source,
                })?;
            if let Some(stderr) = stderr {
                let name = config.name.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!(upstream = %name, "stderr: {line}");
                    }
                });
            }
            let transport = counted(transport, &client);
            Ok(client
                .serve_with_lifecycle(transport, lifecycle(era))
                .await?)
        }
        Transport::StreamableHttp { url, headers } => {
            let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .max_concurrent_requests(MAX_CONCURRENT_HTTP_REQUESTS)
                .control_request_timeout(config.connect_timeout);
            // A broken response stream is resumed a few times, briefly; then the call
            // fails (the default retries forever, and a call to a dead server would
            // wait out its whole timeout).
            transport_config.retry_config = Arc::new(BriefRetry);
            transport_config.custom_headers = header_map(headers)?;
            // What the upstream does about sessions is learned afresh on each connection
            // (it may have been restarted with other settings).
            client.direct_session().clear();
            let http = SessionRecorder {
                inner: http_client(config)?,
                session: client.direct_session(),
                lane: client.lane(),
            };
            let transport = StreamableHttpClientTransport::with_client(http, transport_config);
            let transport = counted(transport, &client);
            Ok(client
                .serve_with_lifecycle(transport, lifecycle(era))
                .await?)
        }
        Transport::Sse { url, headers } => {
            let mut sse_config = SseClientConfig::new(url.as_str())
                .connect_timeout(config.connect_timeout)
                .post_timeout(config.call_timeout)
                .client(http_client(config)?);
            sse_config.headers = header_map(headers)?.into_iter().collect();
            let transport = SseClientTransport::connect(sse_config).await?;
            let transport = counted(transport, &client);
            Ok(client
                .serve_with_lifecycle(transport, lifecycle(era))
                .await?)
        }
    }
}

/// The HTTP client of a Streamable HTTP lane, which remembers the session id the
/// upstream issued, so the direct data path can post calls into the same session, or
/// that it issued none to an `initialize` (a stateless server: direct calls go without
/// the header).
///
/// It also tells the upstream when it refuses the credential it was given (`401` with a
/// challenge): a connection built with a person's key or token is then replaced or
/// reported by the credentials stage.
#[derive(Clone)]
struct SessionRecorder {
    inner: reqwest::Client,
    session: super::session::SessionSlot,
    lane: std::sync::Weak<dyn super::client::LaneLink>,
}

impl SessionRecorder {
    fn record(&self, id: Option<&str>) {
        if let Some(id) = id {
            self.session.record(id);
        }
    }

    /// `error`, after noting a refused credential.
    fn noted(
        &self,
        error: StreamableHttpError<reqwest::Error>,
    ) -> StreamableHttpError<reqwest::Error> {
        if matches!(error, StreamableHttpError::AuthRequired(_))
            && let Some(lane) = self.lane.upgrade()
        {
            lane.shared().refuse_credentials();
        }
        without_url(error)
    }
}

impl StreamableHttpClient for SessionRecorder {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<http::HeaderName, http::HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.record(session_id.as_deref());
        let initialize = session_id.is_none()
            && matches!(&message, JsonRpcMessage::Request(r)
                if matches!(r.request, ClientRequest::InitializeRequest(_)));
        let response = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
            .map_err(|e| self.noted(e))?;
        match &response {
            StreamableHttpPostResponse::Json(_, Some(id))
            | StreamableHttpPostResponse::Sse(_, Some(id)) => self.session.record(id),
            StreamableHttpPostResponse::Json(_, None)
            | StreamableHttpPostResponse::Sse(_, None)
                if initialize =>
            {
                self.session.record_stateless();
            }
            _ => {}
        }
        Ok(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<http::HeaderName, http::HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.session.clear();
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
            .map_err(without_url)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<http::HeaderName, http::HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
            .map_err(|e| self.noted(e))
    }
}

/// An HTTP client error without the URL it was for: an upstream's URL may carry a
/// credential (`${vault:…}` in its query), and these errors are logged and shown.
fn without_url(error: StreamableHttpError<reqwest::Error>) -> StreamableHttpError<reqwest::Error> {
    match error {
        StreamableHttpError::Client(e) => StreamableHttpError::Client(e.without_url()),
        other => other,
    }
}

/// Resumes a broken response stream three times, 100, 200 and 400 ms apart.
#[derive(Debug)]
struct BriefRetry;

impl SseRetryPolicy for BriefRetry {
    fn retry(&self, attempt: usize) -> Option<Duration> {
        (attempt < 3).then(|| Duration::from_millis(100 << attempt))
    }
}

/// The handshake of each era: `initialize` for the legacy lane, `server/discover` for
/// the 2026-07-28 lane.
fn lifecycle(era: Era) -> ClientLifecycleMode {
    match era {
        Era::Legacy => ClientLifecycleMode::Initialize,
        Era::Modern => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    }
}

/// A transport that counts each progress notification as it is received, in order
/// (see [`super::inflight::ProgressCount`]).
struct Counted<T> {
    inner: T,
    lane: Weak<dyn LaneLink>,
}

fn counted<T>(inner: T, client: &UpstreamClient) -> Counted<T> {
    Counted {
        inner,
        lane: client.lane(),
    }
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Counted<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(note)) = &message
            && let ServerNotification::ProgressNotification(progress) = &note.notification
            && let Some(lane) = self.lane.upgrade()
        {
            lane.calls()
                .progress_arrived(&progress.params.progress_token);
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

impl From<rmcp::service::ClientInitializeError> for ConnectError {
    fn from(error: rmcp::service::ClientInitializeError) -> Self {
        Self::Initialize(Box::new(error))
    }
}

/// One HTTP client per upstream: connect timeout, TCP_NODELAY (multi-frame SSE replies
/// otherwise wait on delayed ACKs), pooled keep-alive connections.
fn http_client(config: &UpstreamConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .redirect(super::legacy_sse::same_origin_redirects())
        .build()
}

pub(crate) fn header_map(
    headers: &std::collections::BTreeMap<String, ValueRef>,
) -> Result<HashMap<http::HeaderName, http::HeaderValue>, ConnectError> {
    let mut map = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_error = |reason: String| ConnectError::Header {
            name: name.clone(),
            reason,
        };
        let value = resolve(value).map_err(header_error)?;
        let header_name =
            http::HeaderName::try_from(name.as_str()).map_err(|e| header_error(e.to_string()))?;
        let mut header_value = http::HeaderValue::try_from(value.expose())
            .map_err(|_| header_error("the value has characters a header cannot carry".into()))?;
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}
