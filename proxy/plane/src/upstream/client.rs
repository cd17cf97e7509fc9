//! The gateway as a *client* of one upstream: what it declares, and what it does with
//! the messages an upstream sends on its own — list changes, progress, log messages,
//! and requests back to the human's client (elicitation, sampling, roots).
//!
//! Those are routed to the downstream request that caused them: the upstream request
//! they arrived with (Streamable HTTP marks it), or else the only request in flight on
//! that upstream. A request back to a client that did not declare the capability is
//! refused with a clear error instead of being sent where it cannot be answered. A
//! 2026-07-28 client, which has no session to be asked on, gets the request as the
//! `InputRequiredResult` of its call while the call waits, parked (`server::park`).

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// clients and servers of earlier revisions still use them, so the gateway carries them.
#![allow(deprecated)]

use std::sync::{Arc, Weak};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, Implementation, ListRootsRequest, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ResourceUpdatedNotificationParam,
    ServerRequest,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, RequestContext,
};
use rmcp::{ClientHandler, ErrorData, RoleClient};

use super::inflight::{Calls, Tracked};
use super::session::SessionSlot;
use super::shared::Shared;
use super::state::Change;

/// What the client handler of a lane needs of it: its calls in flight (to route what
/// the upstream sends), its upstream session id, and a re-list after a change. A trait,
/// so that the handler does not depend on the lane that creates it.
pub(crate) trait LaneLink: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn shared(&self) -> &Shared;
    fn calls(&self) -> &Calls;
    fn session(&self) -> &SessionSlot;
    fn refresh(self: Arc<Self>, change: Change) -> futures::future::BoxFuture<'static, ()>;
}

/// The handler rmcp calls for messages from one upstream.
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    lane: Weak<dyn LaneLink>,
    /// Where this connection's session id is recorded, when it is not the lane's own
    /// (one of the extra sessions of [`super::session_pool`]).
    session: Option<SessionSlot>,
}

impl UpstreamClient {
    pub(crate) fn new(lane: Weak<dyn LaneLink>) -> Self {
        Self {
            lane,
            session: None,
        }
    }

    /// The handler of an extra session's connection: what the upstream sends there is
    /// routed as on the lane's own connection; the session id goes to `session`.
    pub(crate) fn for_session(lane: Weak<dyn LaneLink>, session: SessionSlot) -> Self {
        Self {
            lane,
            session: Some(session),
        }
    }

    pub(crate) fn lane(&self) -> Weak<dyn LaneLink> {
        self.lane.clone()
    }

    /// Where the lane's HTTP transport records the upstream's session id.
    pub(crate) fn direct_session(&self) -> SessionSlot {
        if let Some(session) = &self.session {
            return session.clone();
        }
        self.lane
            .upgrade()
            .map(|l| l.session().clone())
            .unwrap_or_default()
    }

    async fn origin(
        &self,
        extensions: &rmcp::model::Extensions,
    ) -> Option<(Arc<dyn LaneLink>, Tracked)> {
        let upstream = self.lane.upgrade()?;
        let request = match extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id),
            _ => None,
        };
        let origin = upstream.calls().origin_of(request).await?;
        Some((upstream, origin))
    }

    fn refresh(&self, change: Change) {
        if let Some(upstream) = self.lane.upgrade() {
            tokio::spawn(upstream.refresh(change));
        }
    }

    /// Sends a request to the downstream client of the originating call, on that call's
    /// stream, after checking the client declared the capability.
    async fn ask_downstream(
        &self,
        extensions: &rmcp::model::Extensions,
        what: &str,
        declared: impl Fn(&ClientCapabilities) -> bool,
        build: impl FnOnce(OriginatingRequestId) -> ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        let Some((upstream, (origin, _))) = self.origin(extensions).await else {
            return Err(ErrorData::invalid_request(
                format!("the gateway cannot tell which client request this {what} belongs to"),
                None,
            ));
        };
        // A 2026-07-28 client has no session to be asked on: the call is parked and
        // the request becomes its `InputRequiredResult` (see `server::park`).
        let capable = match &origin.park {
            Some(asker) => declared(asker.capabilities()),
            None => origin
                .downstream
                .peer_info()
                .map(|info| declared(&info.capabilities))
                .unwrap_or(false),
        };
        if !capable {
            return Err(ErrorData::invalid_request(
                format!("the client did not declare the {what} capability"),
                None,
            ));
        }
        let request = build(OriginatingRequestId(origin.downstream_request.clone()));
        if let Some(asker) = &origin.park {
            tracing::debug!(upstream = %upstream.name(), what, "parking the call for the client's input");
            return asker.ask(request).await;
        }
        tracing::debug!(upstream = %upstream.name(), what, "forwarding a request to the client");
        origin
            .downstream
            .send_request(request)
            .await
            .map_err(|e| match e {
                rmcp::ServiceError::McpError(data) => data,
                other => ErrorData::internal_error(
                    format!("the client did not answer the {what}: {other}"),
                    None,
                ),
            })
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = ClientCapabilities::builder()
            .enable_roots()
            .enable_roots_list_changed()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(
            capabilities,
            Implementation::new("warrant", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let result = self
            .ask_downstream(
                &context.extensions,
                "elicitation",
                |c| c.elicitation.is_some(),
                |origin| {
                    let mut request = ElicitRequest::new(params);
                    request.extensions.insert(origin);
                    ServerRequest::ElicitRequest(request)
                },
            )
            .await?;
        match result {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "the client answered the elicitation with something else",
                None,
            )),
        }
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let result = self
            .ask_downstream(
                &context.extensions,
                "sampling",
                |c| c.sampling.is_some(),
                |origin| {
                    let mut request = CreateMessageRequest::new(params);
                    request.extensions.insert(origin);
                    ServerRequest::CreateMessageRequest(request)
                },
            )
            .await?;
        match result {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(ErrorData::internal_error(
                "the client answered the sampling request with something else",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let result = self
            .ask_downstream(
                &context.extensions,
                "roots",
                |c| c.roots.is_some(),
                |origin| {
                    let mut request = ListRootsRequest::default();
                    request.extensions.insert(origin);
                    ServerRequest::ListRootsRequest(request)
                },
            )
            .await?;
        match result {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "the client answered roots/list with something else",
                None,
            )),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(upstream) = self.lane.upgrade() else {
            return;
        };
        let Some((origin, count)) = upstream
            .calls()
            .origin_of_progress(&params.progress_token)
            .await
        else {
            return;
        };
        if let Some(token) = origin.downstream_progress {
            let mut params = params;
            params.progress_token = token;
            if let Err(e) = origin.downstream.notify_progress(params).await {
                tracing::debug!(upstream = %upstream.name(), error = %e, "cannot forward progress");
            }
        }
        count.forwarded();
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        if let Some((upstream, (origin, count))) = self.origin(&context.extensions).await {
            let wanted = origin
                .log_level
                .as_ref()
                .is_none_or(|l| l.wants(params.level));
            if !wanted {
                count.logged();
                return;
            }
            if let Err(e) = origin.downstream.notify_logging_message(params).await {
                tracing::debug!(upstream = %upstream.name(), error = %e, "cannot forward a log message");
            }
            count.logged();
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(upstream) = self.lane.upgrade() {
            upstream.shared().resource_updated(params).await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh(Change::Tools);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh(Change::Prompts);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh(Change::Resources);
    }
}
