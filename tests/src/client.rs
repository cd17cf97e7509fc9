//! A real MCP client (rmcp) for the tests, which records what the server sends it
//! (progress, log messages, list changes) and answers elicitation and sampling.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// clients and servers of earlier revisions still use them, so the gateway carries them.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationAction, Implementation,
    LoggingMessageNotificationParam, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};

/// What the server sent the client.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub progress: Vec<ProgressNotificationParam>,
    pub logs: Vec<LoggingMessageNotificationParam>,
    pub tool_list_changed: usize,
    pub elicitations: Vec<String>,
    pub samplings: usize,
}

/// The client's handler: declares elicitation and sampling, records notifications.
#[derive(Clone, Default)]
pub struct TestClient {
    pub seen: Arc<Mutex<Recorder>>,
    /// Declare the elicitation and sampling capabilities.
    pub capable: bool,
    /// Accept elicitations with this content (declined when `None`).
    pub elicit_with: Option<serde_json::Value>,
}

impl TestClient {
    pub fn seen(&self) -> Recorder {
        self.seen.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.capable {
            ClientCapabilities::builder()
                .enable_elicitation()
                .enable_sampling()
                .build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("warrant-e2e", "0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.elicitations.push(format!("{request:?}"));
        }
        Ok(match &self.elicit_with {
            Some(content) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(content.clone())
            }
            None => ElicitResult::new(ElicitationAction::Decline),
        })
    }

    async fn create_message(
        &self,
        _request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.samplings += 1;
        }
        Ok(CreateMessageResult::new(
            rmcp::model::SamplingMessage::assistant_text("sampled by the test client"),
            "test-model".into(),
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.progress.push(params);
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.logs.push(params);
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.tool_list_changed += 1;
        }
    }
}

/// Connects an rmcp client to an MCP endpoint over Streamable HTTP.
pub async fn connect(url: &str, handler: TestClient) -> RunningService<RoleClient, TestClient> {
    crate::init();
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    handler.serve(transport).await.expect("the client connects")
}

/// Connects an rmcp client (a session of the latest revision it speaks) that sends
/// `token` as `Authorization: Bearer` on every request.
pub async fn connect_with_token(
    url: &str,
    token: &str,
    handler: TestClient,
) -> RunningService<RoleClient, TestClient> {
    crate::init();
    let transport = StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        )
        .auth_header(token.to_owned()),
    );
    handler.serve(transport).await.expect("the client connects")
}

/// The names `client` lists, sorted.
pub async fn tool_names(client: &RunningService<RoleClient, TestClient>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// A 2026-07-28 `subscriptions/listen` stream that asked for tool list changes: counts
/// the `notifications/tools/list_changed` it receives until dropped.
pub struct ToolChanges {
    heard: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ToolChanges {
    /// Opens the stream on `url` with `token` (asserts a 200).
    pub async fn listen(url: &str, token: &str) -> Self {
        crate::init();
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
            "params": {
                "_meta": crate::raw::modern_meta(),
                "notifications": {"toolsListChanged": true}
            }
        });
        let mut response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(60))
            .body(body.to_string())
            .send()
            .await
            .expect("the stream opens");
        assert_eq!(response.status(), 200, "subscriptions/listen");
        let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = heard.clone();
        let task = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                let n = text.matches("notifications/tools/list_changed").count();
                count.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { heard, task }
    }

    /// How many it received so far.
    pub fn heard(&self) -> usize {
        self.heard.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ToolChanges {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits up to `within` for `count()` to pass `before`; returns what it reads then.
pub async fn heard_more(
    count: impl Fn() -> usize,
    before: usize,
    within: std::time::Duration,
) -> usize {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        let now = count();
        if now > before {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    count()
}
