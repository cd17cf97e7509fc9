//! The gateway as an MCP *server*: one endpoint that lists what every upstream offers
//! and routes each request to the upstream that serves it.
//!
//! rmcp handles the wire for every protocol revision (sessions and `initialize` for
//! 2024-11-05 … 2025-11-25; stateless requests and `server/discover` for 2026-07-28);
//! this handler works on typed requests, so a client of one revision reaches an upstream
//! of another without either noticing.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// clients and servers of earlier revisions still use them, so the gateway carries them.
#![allow(deprecated)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequest, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;
use warrant_consent::catalog::ToolRecord;

use super::aggregate::{Aggregate, page};
use super::error::GatewayError;
use super::upstream::{Change, Changes, Health, Inflight, Upstream};
use crate::config::{Config, StartMode};

/// The aggregating MCP server. Cheap to clone: rmcp makes one per session.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<Arc<Upstream>>,
    separator: String,
    page_size: usize,
    versions: Vec<ProtocolVersion>,
    changes: Changes,
    view: RwLock<Arc<Aggregate>>,
    rebuild: Mutex<()>,
    /// Sessions of clients that keep a session (2025-11-25 and older), told about list
    /// changes.
    sessions: Mutex<Vec<Peer<RoleServer>>>,
    shutdown: CancellationToken,
}

/// How one upstream is doing, for `/readyz` and the start banner.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub transport: &'static str,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub tools: usize,
}

impl Gateway {
    /// Builds the gateway for a configuration; nothing connects until [`Self::start`].
    pub fn new(config: &Config, shutdown: CancellationToken) -> Self {
        let changes = Changes::new();
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone(), changes.clone(), shutdown.child_token()))
            .collect();
        let versions = config
            .mcp
            .protocol_versions
            .iter()
            .filter_map(|v| {
                ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .find(|k| k.as_str() == v)
                    .cloned()
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                upstreams,
                separator: config.mcp.separator.clone(),
                page_size: config.mcp.page_size,
                versions,
                changes,
                view: RwLock::new(Arc::default()),
                rebuild: Mutex::new(()),
                sessions: Mutex::new(Vec::new()),
                shutdown,
            }),
        }
    }

    /// Starts the eager upstreams and the task that tells clients about changes.
    /// `on_tools` receives each upstream's tool list whenever it is (re)read.
    pub fn start(&self, on_tools: impl Fn(&str, Vec<ToolRecord>) + Send + Sync + 'static) {
        for upstream in &self.inner.upstreams {
            if upstream.config.start == StartMode::Eager {
                upstream.start();
            }
        }
        let inner = self.inner.clone();
        let mut rx = inner.changes.subscribe();
        tokio::spawn(async move {
            loop {
                let (name, change) = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(c) => c,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    },
                    () = inner.shutdown.cancelled() => break,
                };
                if matches!(change, Change::Tools | Change::Health)
                    && let Some(upstream) = inner.upstreams.iter().find(|u| u.name() == name)
                {
                    let offer = upstream.offer();
                    if !offer.tools.is_empty() {
                        on_tools(&name, offer.tools.iter().map(tool_record).collect());
                    }
                }
                inner.notify_sessions(change).await;
            }
        });
    }

    /// Waits until no eager upstream is still starting (each bounded by its connect
    /// timeout). Returns the names that collide across upstreams, if any.
    pub async fn settle(&self) -> Vec<String> {
        for upstream in &self.inner.upstreams {
            if upstream.config.start == StartMode::Eager {
                let _ = upstream.peer().await;
            }
        }
        self.view().collisions.clone()
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.inner
            .upstreams
            .iter()
            .map(|u| {
                let health = u.health();
                UpstreamStatus {
                    name: u.name().to_owned(),
                    transport: u.config.transport.kind(),
                    state: health.label(),
                    reason: match health {
                        Health::Down(reason) => Some(reason),
                        _ => None,
                    },
                    tools: u.offer().tools.len(),
                }
            })
            .collect()
    }

    /// The current aggregated view, rebuilt first if an upstream changed.
    fn view(&self) -> Arc<Aggregate> {
        let epoch = self.inner.changes.epoch();
        if let Ok(view) = self.inner.view.read()
            && view.epoch == epoch
        {
            return view.clone();
        }
        let _guard = self.inner.rebuild.lock();
        let epoch = self.inner.changes.epoch();
        if let Ok(view) = self.inner.view.read()
            && view.epoch == epoch
        {
            return view.clone();
        }
        let fresh = Arc::new(Aggregate::build(
            epoch,
            &self.inner.upstreams,
            &self.inner.separator,
        ));
        if let Ok(mut slot) = self.inner.view.write() {
            *slot = fresh.clone();
        }
        fresh
    }

    /// Lets lazy upstreams start and starting ones finish before a list is answered.
    async fn settle_for_listing(&self) {
        for upstream in &self.inner.upstreams {
            if matches!(upstream.health(), Health::Idle | Health::Starting) {
                let _ = upstream.peer().await;
            }
        }
    }

    /// Why a name that routes nowhere is unknown: maybe its upstream is down.
    fn unknown(&self, name: &str, not_found: GatewayError) -> GatewayError {
        for upstream in &self.inner.upstreams {
            let prefix = &upstream.config.prefix;
            let owns = !prefix.is_empty()
                && name
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with(self.inner.separator.as_str()));
            if owns && let Health::Down(reason) = upstream.health() {
                return GatewayError::UpstreamUnavailable {
                    upstream: upstream.name().to_owned(),
                    reason,
                };
            }
        }
        not_found
    }

    fn inflight(context: &RequestContext<RoleServer>) -> Inflight {
        use rmcp::model::RequestMetaObject;
        let meta: &RequestMetaObject = &context.meta;
        Inflight {
            downstream: context.peer.clone(),
            downstream_request: context.id.clone(),
            downstream_progress: meta.get_progress_token(),
        }
    }

    fn session_id(context: &RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Inner {
    async fn notify_sessions(&self, change: Change) {
        let sessions: Vec<Peer<RoleServer>> = match self.sessions.lock() {
            Ok(mut sessions) => {
                sessions.retain(|p| !p.is_transport_closed());
                sessions.clone()
            }
            Err(_) => return,
        };
        for peer in sessions {
            let result = match change {
                Change::Tools => peer.notify_tool_list_changed().await,
                Change::Prompts => peer.notify_prompt_list_changed().await,
                Change::Resources => peer.notify_resource_list_changed().await,
                Change::Health => {
                    let _ = peer.notify_prompt_list_changed().await;
                    let _ = peer.notify_resource_list_changed().await;
                    peer.notify_tool_list_changed().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "cannot tell a client about a list change");
            }
        }
    }
}

fn page_params(request: Option<PaginatedRequestParams>) -> Option<String> {
    request.and_then(|r| r.cursor)
}

fn paged<T: Clone>(
    items: &[T],
    request: Option<PaginatedRequestParams>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    page(items, page_params(request).as_deref(), size)
        .map_err(|c| GatewayError::InvalidCursor(c).into())
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("warrant", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Warrant aggregates several MCP servers: tool and prompt names are \
                 <server>__<name>. Every call is routed to the server that offers it.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.inner.versions.clone())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.retain(|p| !p.is_transport_closed());
            sessions.push(context.peer);
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.settle_for_listing().await;
        let view = self.view();
        let (tools, next) = paged(&view.tools, request, self.inner.page_size)?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let view = self.view();
        let name = request.name.to_string();
        let Some(route) = view.tool(&name) else {
            return Err(self
                .unknown(&name, GatewayError::UnknownTool(name.clone()))
                .into());
        };
        request.name = route.original.clone().into();
        let forwarded = ClientRequest::CallToolRequest(CallToolRequest::new(request));
        let result = route
            .upstream
            .forward(forwarded, Some(Self::inflight(&context)), &context.ct)
            .await?;
        match result {
            ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
            ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
            _ => Err(unexpected(route.upstream.name(), "tools/call")),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.settle_for_listing().await;
        let view = self.view();
        let (prompts, next) = paged(&view.prompts, request, self.inner.page_size)?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let view = self.view();
        let Some(route) = view.prompt(&request.name) else {
            let name = request.name.clone();
            return Err(self
                .unknown(&name, GatewayError::UnknownPrompt(name.clone()))
                .into());
        };
        request.name = route.original.clone();
        let forwarded = ClientRequest::GetPromptRequest(GetPromptRequest::new(request));
        let result = route
            .upstream
            .forward(forwarded, Some(Self::inflight(&context)), &context.ct)
            .await?;
        match result {
            ServerResult::GetPromptResult(r) => Ok(GetPromptResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            _ => Err(unexpected(route.upstream.name(), "prompts/get")),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.settle_for_listing().await;
        let view = self.view();
        let (resources, next) = paged(&view.resources, request, self.inner.page_size)?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.settle_for_listing().await;
        let view = self.view();
        let (templates, next) = paged(&view.templates, request, self.inner.page_size)?;
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.next_cursor = next;
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let upstream = self.resource_upstream(&request.uri)?;
        let forwarded = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        let result = upstream
            .forward(forwarded, Some(Self::inflight(&context)), &context.ct)
            .await?;
        match result {
            ServerResult::ReadResourceResult(r) => Ok(ReadResourceResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            _ => Err(unexpected(upstream.name(), "resources/read")),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let upstream = self.resource_upstream(&request.uri)?;
        let uri = request.uri.clone();
        upstream.subscribe(&uri, &Self::session_id(&context), context.peer.clone());
        let forwarded = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        upstream.forward(forwarded, None, &context.ct).await?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let upstream = self.resource_upstream(&request.uri)?;
        if upstream.unsubscribe(&request.uri, &Self::session_id(&context)) {
            let forwarded = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
            upstream.forward(forwarded, None, &context.ct).await?;
        }
        Ok(())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let view = self.view();
        let upstream = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let Some(route) = view.prompt(&prompt.name) else {
                    let name = prompt.name.clone();
                    return Err(GatewayError::UnknownPrompt(name).into());
                };
                prompt.name = route.original.clone();
                route.upstream.clone()
            }
            Reference::Resource(resource) => match view.template(&resource.uri) {
                Some(upstream) => upstream.clone(),
                None => return Err(GatewayError::UnknownResource(resource.uri.clone()).into()),
            },
            _ => {
                return Err(GatewayError::NotSupported(
                    "completion for this kind of reference".into(),
                )
                .into());
            }
        };
        let forwarded = ClientRequest::CompleteRequest(CompleteRequest::new(request));
        match upstream.forward(forwarded, None, &context.ct).await? {
            ServerResult::CompleteResult(r) => Ok(r),
            _ => Err(unexpected(upstream.name(), "completion/complete")),
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // The level applies to every upstream that logs; one that is down misses it.
        let mut forwarded = 0usize;
        for upstream in &self.inner.upstreams {
            let logs = upstream
                .offer()
                .capabilities
                .as_ref()
                .is_some_and(|c| c.logging.is_some());
            if logs {
                let req = ClientRequest::SetLevelRequest(SetLevelRequest::new(request.clone()));
                match upstream.forward(req, None, &context.ct).await {
                    Ok(_) => forwarded += 1,
                    Err(e) => {
                        tracing::debug!(upstream = %upstream.name(), error = %e, "logging/setLevel not applied")
                    }
                }
            }
        }
        tracing::debug!(forwarded, "logging/setLevel forwarded");
        Ok(())
    }
}

impl Gateway {
    fn resource_upstream(&self, uri: &str) -> Result<Arc<Upstream>, ErrorData> {
        let view = self.view();
        if let Some(upstream) = view.resource(uri) {
            return Ok(upstream.clone());
        }
        // A resource nobody listed: if exactly one upstream serves resources, it is the
        // only one that can know it.
        let serving: Vec<&Arc<Upstream>> = self
            .inner
            .upstreams
            .iter()
            .filter(|u| {
                u.offer()
                    .capabilities
                    .as_ref()
                    .is_some_and(|c| c.resources.is_some())
            })
            .collect();
        match serving.as_slice() {
            [only] => Ok((*only).clone()),
            _ => Err(GatewayError::UnknownResource(uri.to_owned()).into()),
        }
    }

    /// Names of the upstreams, by name (for diagnostics and tests).
    pub fn upstream_names(&self) -> HashMap<String, &'static str> {
        self.inner
            .upstreams
            .iter()
            .map(|u| (u.name().to_owned(), u.config.transport.kind()))
            .collect()
    }
}

fn tool_record(tool: &rmcp::model::Tool) -> ToolRecord {
    ToolRecord {
        name: tool.name.to_string(),
        title: tool.title.clone(),
        description: tool.description.as_ref().map(|d| d.to_string()),
        annotations: tool
            .annotations
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok()),
        input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
    }
}

fn unexpected(upstream: &str, method: &str) -> ErrorData {
    GatewayError::UpstreamFailed {
        upstream: upstream.to_owned(),
        reason: format!("it answered {method} with a result of another kind"),
    }
    .into()
}
