//! The MCP methods of the [`Gateway`]: lists answered from the aggregated view of the
//! client's era, everything else routed to the upstream that serves it.
//!
//! Results pass through as the upstream sent them, with one normalisation: a result
//! from an upstream of an older revision gets the `resultType` that 2026-07-28 clients
//! require (`"complete"`), which older clients ignore.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// clients and servers of earlier revisions still use them, so the gateway carries them.
#![allow(deprecated)]

use std::borrow::Cow;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, Implementation, InputRequest, InputRequests, InputRequiredResult,
    InputResponses, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, PromptListChangedNotification, ProtocolVersion,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ResourceListChangedNotification, ResultType, ServerCapabilities, ServerConfig,
    ServerNotification, ServerRequest, ServerResult, SetLevelRequestParams, SubscribeRequest,
    SubscribeRequestParams, SubscriptionFilter, Tool, ToolListChangedNotification,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use warrant_consent::token::{CallArgs, Risk, call_args};

use super::gateway::{Gateway, unexpected};
use super::park::{self, Call, Step};
use super::stage::{credentials, record};
use crate::enforce::approve::Held;
use crate::enforce::auth::{Authorized, Caller, refused_by_ceiling, step_up_scope};
use crate::enforce::budget;
use crate::protocol::codes::{NOT_AUTHENTICATED, NOT_PERMITTED};
use crate::protocol::era::{Era, era_of, upstream_meta};
use crate::protocol::error::GatewayError;
use crate::protocol::headers::MCP_SESSION_ID;
use crate::upstream::inflight::Inflight;
use crate::upstream::lane::Lane;
use crate::upstream::remote::Upstream;
use crate::upstream::state::Change;
use crate::view::aggregate::{Aggregate, Route, page};
use std::sync::Arc;

impl Gateway {
    /// One page of a list of the client's era, once its upstreams have settled.
    /// One page of a list of the client's era, once its upstreams have settled, with
    /// only the items the caller's token lets it use: `shown(view, item, may)` where
    /// `may(server, tool, risk)` asks the token.
    async fn listing<T: Clone>(
        &self,
        request: Option<PaginatedRequestParams>,
        context: &RequestContext<RoleServer>,
        items: impl Fn(&Aggregate) -> &[T],
        shown: impl Fn(&Aggregate, &T, &dyn Fn(&str, &str, Risk) -> bool) -> bool,
    ) -> Result<(Vec<T>, Option<String>), ErrorData> {
        let era = era_of(context);
        self.settle_for_listing(era).await;
        let view = self.view(era);
        let cursor = request.and_then(|r| r.cursor);
        let all = items(&view);
        let Some(auth) = self.auth() else {
            return page(all, cursor.as_deref(), self.page_size())
                .map_err(|c| GatewayError::InvalidCursor(c).into());
        };
        let caller = token_caller(context).ok_or_else(no_token)?;
        let may = |server: &str, tool: &str, risk: Risk| auth.lists(&caller, server, tool, risk);
        let visible: Vec<T> = all
            .iter()
            .filter(|item| shown(&view, item, &may))
            .cloned()
            .collect();
        page(&visible, cursor.as_deref(), self.page_size())
            .map_err(|c| GatewayError::InvalidCursor(c).into())
    }

    /// Asks the caller's token about a request the edge did not decide; a refusal is
    /// a JSON-RPC error with [`NOT_PERMITTED`] naming what would be needed.
    pub(super) fn permit(
        &self,
        context: &RequestContext<RoleServer>,
        server: &str,
        tool: &str,
        risk: Risk,
        args: CallArgs,
    ) -> Result<(), ErrorData> {
        let Some(auth) = self.auth() else {
            return Ok(());
        };
        let parts = context.extensions.get::<http::request::Parts>();
        if parts
            .and_then(|p| p.extensions.get::<Authorized>())
            .is_some_and(|a| &*a.server == server && &*a.tool == tool)
        {
            return Ok(());
        }
        let caller = token_caller(context).ok_or_else(no_token)?;
        let decision = auth.decide(&caller, server, tool, risk, args);
        if decision.allow {
            return Ok(());
        }
        let data = if refused_by_ceiling(&decision) {
            // Only an admin can help (by raising the ceiling): no scope to ask for.
            serde_json::json!({ "failedChecks": decision.failed_checks })
        } else {
            let scope = step_up_scope(server, tool);
            serde_json::json!({ "scope": scope, "failedChecks": decision.failed_checks })
        };
        Err(ErrorData::new(NOT_PERMITTED, decision.reason, Some(data)))
    }
}

/// The tool name that stands for "the whole server" in a decision: prompts, resources
/// and completions are granted with their server (a pattern like `github.*` or `*`),
/// never by a tool-name pattern.
const SERVER_WIDE: &str = "*";

/// The verified token of the request behind `context` (set by the edge).
fn token_caller(context: &RequestContext<RoleServer>) -> Option<Caller> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
}

/// With authorization on, a request without a verified token never gets past the
/// edge; should one reach a handler anyway, it is refused.
fn no_token() -> ErrorData {
    ErrorData::new(
        NOT_AUTHENTICATED,
        "no verified access token came with this request",
        None,
    )
}

/// `"complete"` on a result that has no `resultType` (an upstream before 2026-07-28).
fn complete(result_type: &mut Option<ResultType>) {
    if result_type.is_none() {
        *result_type = Some(ResultType::COMPLETE);
    }
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
            .with_instructions(format!(
                "Warrant aggregates several MCP servers: tool and prompt names are \
                 <server>{}<name>. Every call is routed to the server that offers it.",
                self.separator()
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.versions().to_vec())
    }

    /// Lets rmcp check the `Mcp-Param-*` headers of a 2026-07-28 `tools/call` against
    /// the tool's schema, as an intermediary routing on them must.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.view(Era::Modern)
            .tools
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(&MCP_SESSION_ID))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(id) = id {
            self.register_session(id, context.peer);
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (items, next) = self
            .listing(
                request,
                &context,
                |v| &v.tools,
                |v, tool, may| {
                    v.tool(&tool.name)
                        .is_some_and(|r| may(r.upstream.name(), &r.original, r.risk))
                },
            )
            .await?;
        let mut result = ListToolsResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let era = era_of(&context);
        let view = self
            .settled_view(era, |v| v.knows_tool(&request.name))
            .await;
        let name = request.name.to_string();
        let Some(route) = view.tool(&name) else {
            if let Some(q) = view.quarantined(&name) {
                return Err(GatewayError::Quarantined {
                    name,
                    upstream: q.upstream.clone(),
                }
                .into());
            }
            return Err(self
                .unknown(&name, GatewayError::UnknownTool(name.clone()))
                .into());
        };
        let args = request
            .arguments
            .as_ref()
            .map(call_args)
            .unwrap_or_default();
        self.permit(
            &context,
            route.upstream.name(),
            &route.original,
            route.risk,
            args,
        )?;
        if route.risk == Risk::Critical
            && let Some(desk) = self.approval_desk()
            && let Some(caller) = token_caller(&context)
        {
            let held = desk
                .hold(
                    &caller,
                    route.upstream.name(),
                    &route.original,
                    &mut request,
                    &context,
                )
                .await?;
            let key = match held {
                Held::Answer(response) => return Ok(response),
                Held::Go(key) => key,
            };
            // Approved: counted now that it goes (never while it waits).
            charge(self, &context, route.upstream.name(), &route.original)?;
            let response = self.forward_call(&name, route, request, &context).await;
            desk.note(&key, &response);
            return response;
        }
        charge(self, &context, route.upstream.name(), &route.original)?;
        self.forward_call(&name, route, request, &context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let (items, next) = self
            .listing(
                request,
                &context,
                |v| &v.prompts,
                |v, prompt, may| {
                    v.prompt(&prompt.name)
                        .is_some_and(|r| may(r.upstream.name(), SERVER_WIDE, Risk::Low))
                },
            )
            .await?;
        let mut result = ListPromptsResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let view = self
            .settled_view(era_of(&context), |v| v.prompt(&request.name).is_some())
            .await;
        let Some(route) = view.prompt(&request.name) else {
            return Err(self.missing_prompt(&view, &request.name).into());
        };
        self.permit(
            &context,
            route.upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        request.name = route.original.to_string();
        let sent = self
            .send_answering(&route.upstream, &context, |answers| {
                let mut get = request.clone();
                if let Some((responses, state)) = answers {
                    get.input_responses = Some(responses);
                    get.request_state = state;
                }
                ClientRequest::GetPromptRequest(GetPromptRequest::new(get))
            })
            .await?;
        match sent {
            ServerResult::GetPromptResult(mut r) => {
                complete(&mut r.result_type);
                Ok(GetPromptResponse::Complete(r))
            }
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            _ => Err(unexpected(route.upstream.name(), "prompts/get")),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let (items, next) = self
            .listing(
                request,
                &context,
                |v| &v.resources,
                |v, resource, may| {
                    v.resource(&resource.uri)
                        .is_some_and(|u| may(u.name(), SERVER_WIDE, Risk::Low))
                },
            )
            .await?;
        let mut result = ListResourcesResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let (items, next) = self
            .listing(
                request,
                &context,
                |v| &v.templates,
                |v, template, may| {
                    v.template(&template.uri_template)
                        .is_some_and(|u| may(u.name(), SERVER_WIDE, Risk::Low))
                },
            )
            .await?;
        let mut result = ListResourceTemplatesResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let era = era_of(&context);
        self.settled_view(era, |v| v.resource(&request.uri).is_some())
            .await;
        let upstream = self.resource_upstream(era, &request.uri)?;
        self.permit(
            &context,
            upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        let sent = self
            .send_answering(&upstream, &context, |answers| {
                let mut read = request.clone();
                if let Some((responses, state)) = answers {
                    read.input_responses = Some(responses);
                    read.request_state = state;
                }
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(read))
            })
            .await?;
        match sent {
            ServerResult::ReadResourceResult(mut r) => {
                complete(&mut r.result_type);
                Ok(ReadResourceResponse::Complete(r))
            }
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            _ => Err(unexpected(upstream.name(), "resources/read")),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let upstream = self.resource_upstream(era_of(&context), &request.uri)?;
        self.permit(
            &context,
            upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        upstream.subscribe(
            &request.uri,
            &Gateway::session_id(&context),
            context.peer.clone(),
        );
        let forwarded = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        self.send(&upstream, forwarded, &context, false).await?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let upstream = self.resource_upstream(era_of(&context), &request.uri)?;
        if upstream.unsubscribe(&request.uri, &Gateway::session_id(&context)) {
            let forwarded = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
            self.send(&upstream, forwarded, &context, false).await?;
        }
        Ok(())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let view = self.view(era_of(&context));
        let upstream = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let Some(route) = view.prompt(&prompt.name) else {
                    return Err(self.missing_prompt(&view, &prompt.name).into());
                };
                prompt.name = route.original.to_string();
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
        self.permit(
            &context,
            upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        let forwarded = ClientRequest::CompleteRequest(CompleteRequest::new(request));
        match self.send(&upstream, forwarded, &context, false).await? {
            ServerResult::CompleteResult(mut r) => {
                complete(&mut r.result_type);
                Ok(r)
            }
            _ => Err(unexpected(upstream.name(), "completion/complete")),
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // The session's own: upstreams are shared, and one client's level is not another's.
        if let Some(level) = self.log_level(&context) {
            level.set(request.level);
        }
        Ok(())
    }

    /// 2026-07-28 clients learn about list changes on a `subscriptions/listen` stream.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        accepted.prompts_list_changed = requested.prompts_list_changed;
        accepted.resources_list_changed = requested.resources_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.changes();
        let mut personal = self.personal_changes();
        // Whose stream this is: a change that concerns some clients only goes to theirs.
        let caller = token_caller(context.request_context());
        loop {
            let change = tokio::select! {
                r = changes.recv() => match r {
                    Ok((_, change)) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Health,
                    Err(_) => return Ok(()),
                },
                r = personal.recv() => match r {
                    Ok(audience) if self.concerns(&audience, caller.as_ref()) => Change::Tools,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Tools,
                    Err(_) => return Ok(()),
                },
                () = context.cancelled() => return Ok(()),
            };
            let notifications = match change {
                Change::Tools => vec![tool_list_changed()],
                Change::Prompts => vec![prompt_list_changed()],
                Change::Resources => vec![resource_list_changed()],
                Change::Health => vec![
                    tool_list_changed(),
                    prompt_list_changed(),
                    resource_list_changed(),
                ],
            };
            for notification in notifications {
                // A kind the client did not ask for is refused by the sink: skip it.
                if let Err(rmcp::service::SubscriptionSendError::SubscriptionClosed) =
                    context.sink().send(notification).await
                {
                    return Ok(());
                }
            }
        }
    }
}

impl Gateway {
    /// Forwards a `tools/call` the caller may make to the upstream that serves it.
    async fn forward_call(
        &self,
        name: &str,
        route: &Route,
        mut request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Stages 5 and 6 of the call, as on the edge (see `server::pipeline`).
        let allowed = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Authorized>());
        let _credentials = credentials::for_call(allowed);
        record::allowed(allowed);
        let era = era_of(context);
        request.name = route.original.to_string().into();
        if era == Era::Modern && (request.request_state.is_some() || can_be_asked(context)) {
            let lane = route.upstream.ready(era).await?;
            if lane.era == Era::Legacy {
                return self.call_parking(name, lane, request, context).await;
            }
        }
        let sent = self
            .send_answering(&route.upstream, context, |answers| {
                let mut call = request.clone();
                if let Some((responses, state)) = answers {
                    call.input_responses = Some(responses);
                    call.request_state = state;
                }
                ClientRequest::CallToolRequest(CallToolRequest::new(call))
            })
            .await?;
        tool_response(route.upstream.name(), sent)
    }
}

impl Gateway {
    /// Sends a request that an upstream may answer with an `InputRequiredResult`. A
    /// client of the session era cannot read one (2026-07-28 multi round-trip), so for
    /// it the gateway asks the client in its own terms — elicitation, sampling, roots
    /// requests on the request's stream — and sends the request again with the answers
    /// and the upstream's state. A 2026-07-28 client gets the result as it is.
    async fn send_answering(
        &self,
        upstream: &Arc<Upstream>,
        context: &RequestContext<RoleServer>,
        build: impl Fn(Option<(InputResponses, Option<String>)>) -> ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        let bridge = era_of(context) == Era::Legacy;
        let mut answers = None;
        for _ in 0..MAX_INPUT_ROUNDS {
            match self
                .send(upstream, build(answers.take()), context, true)
                .await?
            {
                ServerResult::InputRequiredResult(r) if bridge => {
                    answers = Some((
                        ask_client(context, r.input_requests).await?,
                        r.request_state,
                    ));
                }
                other => return Ok(other),
            }
        }
        Err(GatewayError::UpstreamFailed {
            upstream: upstream.name().to_owned(),
            reason: format!("it still asked for input after {MAX_INPUT_ROUNDS} rounds"),
        }
        .into())
    }
}

impl Gateway {
    /// A `tools/call` of a 2026-07-28 client to an upstream served on its legacy lane.
    /// Such an upstream asks for input with requests mid-call, which that client cannot
    /// receive: the call runs in a task of its own, and when the upstream asks, the
    /// call is parked and the client gets the requests as an `InputRequiredResult`; its
    /// retry (`inputResponses` and the `requestState`) resumes the call (`server::park`).
    async fn call_parking(
        &self,
        tool: &str,
        lane: Arc<Lane>,
        mut request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let bind = park::binding(tool, context.extensions.get::<http::request::Parts>());
        // A legacy upstream knows nothing of input responses: they are the gateway's.
        let responses = request.input_responses.take();
        let call = match request.request_state.take() {
            Some(state) => self
                .park()
                .resume(&state, &bind, responses.unwrap_or_default())?,
            None => {
                let capabilities = context.meta.client_capabilities().unwrap_or_default();
                let meta = upstream_meta(context, lane.era);
                let (peer, id) = (context.peer.clone(), context.id.clone());
                let progress = context.meta.get_progress_token();
                let log_level = self.log_level(context);
                let forwarded = ClientRequest::CallToolRequest(CallToolRequest::new(request));
                let timeout = lane.shared.config.call_timeout;
                let name = lane.name().to_owned();
                Call::spawn(&name, capabilities, timeout, move |asker, cancel| {
                    let origin = Inflight {
                        downstream: peer,
                        downstream_request: id,
                        downstream_progress: progress,
                        park: Some(asker),
                        log_level,
                    };
                    async move { lane.forward(forwarded, Some(origin), meta, &cancel).await }
                })
            }
        };
        self.drive(bind, call, context).await
    }

    /// Waits for a call of [`Self::call_parking`] to end (its result) or to ask for
    /// input (parked; an `InputRequiredResult`). A client that goes away meanwhile
    /// cancels the call upstream.
    async fn drive(
        &self,
        bind: String,
        mut call: Call,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let step = tokio::select! {
            step = call.next() => step,
            () = context.ct.cancelled() => return Err(GatewayError::Cancelled.into()),
        };
        match step {
            Step::Done(result) => tool_response(call.upstream(), (*result)?),
            Step::Asked(requests, pending) => {
                let state = self.park().park(bind, call, pending);
                Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                    Some(requests),
                    Some(state),
                )))
            }
        }
    }
}

/// Whether a 2026-07-28 client declared a capability an upstream may ask it to use
/// mid-call; one that declared none is never asked, so its call needs no parking.
fn can_be_asked(context: &RequestContext<RoleServer>) -> bool {
    context
        .meta
        .client_capabilities()
        .is_some_and(|c| c.elicitation.is_some() || c.sampling.is_some() || c.roots.is_some())
}

/// The `tools/call` response for what an upstream answered.
fn tool_response(upstream: &str, sent: ServerResult) -> Result<CallToolResponse, ErrorData> {
    match sent {
        ServerResult::CallToolResult(mut r) => {
            complete(&mut r.result_type);
            Ok(CallToolResponse::Complete(r))
        }
        ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
        ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
        _ => Err(unexpected(upstream, "tools/call")),
    }
}

/// How many rounds of input a bridged request may ask for.
const MAX_INPUT_ROUNDS: usize = 8;

/// Asks a session client for the input a 2026-07-28 upstream requested, one request per
/// entry, on the call's own stream; the answers keyed as the upstream keyed its requests.
async fn ask_client(
    context: &RequestContext<RoleServer>,
    requests: Option<InputRequests>,
) -> Result<InputResponses, ErrorData> {
    let capabilities = context
        .peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut responses = InputResponses::new();
    for (key, input) in requests.unwrap_or_default() {
        let (what, declared, request) = match input {
            InputRequest::Elicitation(r) => (
                "elicitation",
                capabilities.elicitation.is_some(),
                ServerRequest::ElicitRequest(r),
            ),
            InputRequest::CreateMessage(r) => (
                "sampling",
                capabilities.sampling.is_some(),
                ServerRequest::CreateMessageRequest(r),
            ),
            InputRequest::ListRoots(r) => (
                "roots",
                capabilities.roots.is_some(),
                ServerRequest::ListRootsRequest(r),
            ),
            _ => {
                return Err(GatewayError::NotSupported(
                    "an input request of an unknown kind".into(),
                )
                .into());
            }
        };
        if !declared {
            return Err(ErrorData::invalid_request(
                format!(
                    "the tool needs {what} from the client, which did not declare that capability"
                ),
                None,
            ));
        }
        let answer = context
            .peer
            .send_request(request)
            .await
            .map_err(|e| match e {
                rmcp::ServiceError::McpError(data) => data,
                other => ErrorData::internal_error(
                    format!("the client did not answer the {what} request: {other}"),
                    None,
                ),
            })?;
        let value = serde_json::to_value(answer).map_err(|e| {
            ErrorData::internal_error(format!("cannot encode the client's answer: {e}"), None)
        })?;
        responses.insert(key, value);
    }
    Ok(responses)
}

fn tool_list_changed() -> ServerNotification {
    ServerNotification::ToolListChangedNotification(ToolListChangedNotification::default())
}

fn prompt_list_changed() -> ServerNotification {
    ServerNotification::PromptListChangedNotification(PromptListChangedNotification::default())
}

fn resource_list_changed() -> ServerNotification {
    ServerNotification::ResourceListChangedNotification(ResourceListChangedNotification::default())
}

/// Counts a `tools/call` of `server`'s `tool` against its grant's budget, unless the
/// edge authorized (and so counted) this very call.
fn charge(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    server: &str,
    tool: &str,
) -> Result<(), ErrorData> {
    let Some(auth) = gateway.auth() else {
        return Ok(());
    };
    let Some(parts) = context.extensions.get::<http::request::Parts>() else {
        return Ok(());
    };
    if parts
        .extensions
        .get::<Authorized>()
        .is_some_and(|a| &*a.server == server && &*a.tool == tool)
    {
        return Ok(());
    }
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return Ok(());
    };
    auth.charge(caller)
        .map_err(|exhausted| budget::error(&exhausted, auth.now()))
}
