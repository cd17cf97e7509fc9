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
