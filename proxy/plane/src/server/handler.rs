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
    CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest, CompleteRequestParams,
    CompleteResult, GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, PromptListChangedNotification, ProtocolVersion, ReadResourceRequest,
    ReadResourceRequestParams, ReadResourceResponse, Reference, ResourceListChangedNotification,
    ServerCapabilities, ServerConfig, ServerNotification, ServerResult, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, SubscriptionFilter, Tool,
    ToolListChangedNotification, UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use warrant_consent::token::{CallArgs, Risk};

use super::gateway::{Gateway, unexpected};
use super::pipeline;
use super::relay::{self, complete};
use super::stage::authenticate::{no_token, token_caller};
use super::stage::decide::permit;
use super::stage::inspect;
use crate::protocol::era::{Era, era_of};
use crate::protocol::error::GatewayError;
use crate::protocol::headers::MCP_SESSION_ID;
use crate::upstream::state::Change;
use crate::view::aggregate::{Aggregate, page};

/// One page of a list of the client's era, once its upstreams have settled, with
/// only the items the caller's token lets it use: `shown(view, item, may)` where
/// `may(server, tool, risk)` asks the token.
async fn listing<T: Clone>(
    gateway: &Gateway,
    request: Option<PaginatedRequestParams>,
    context: &RequestContext<RoleServer>,
    items: impl Fn(&Aggregate) -> &[T],
    shown: impl Fn(&Aggregate, &T, &dyn Fn(&str, &str, Risk) -> bool) -> bool,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let era = era_of(context);
    gateway.settle_for_listing(era).await;
    let view = gateway.view(era);
    let cursor = request.and_then(|r| r.cursor);
    let all = items(&view);
    let Some(auth) = gateway.auth() else {
        return page(all, cursor.as_deref(), gateway.page_size())
            .map_err(|c| GatewayError::InvalidCursor(c).into());
    };
    let caller = token_caller(context).ok_or_else(no_token)?;
    let may = |server: &str, tool: &str, risk: Risk| auth.lists(&caller, server, tool, risk);
    let visible: Vec<T> = all
        .iter()
        .filter(|item| shown(&view, item, &may))
        .cloned()
        .collect();
    page(&visible, cursor.as_deref(), gateway.page_size())
        .map_err(|c| GatewayError::InvalidCursor(c).into())
}

/// The tool name that stands for "the whole server" in a decision: prompts, resources
/// and completions are granted with their server (a pattern like `github.*` or `*`),
/// never by a tool-name pattern.
const SERVER_WIDE: &str = "*";

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
        let (items, next) = listing(
            self,
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
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        pipeline::tools_call_handled(self, request, &context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let (items, next) = listing(
            self,
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
        permit(
            self,
            &context,
            route.upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        request.name = route.original.to_string();
        // Credentials: the person's own connection where the upstream takes their key.
        let upstream = self.connection_for(&route.upstream, &context).await?;
        let sent = relay::send_answering(self, &upstream, &context, |answers| {
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
                let r = inspect::value(r, upstream.redactions())?;
                Ok(GetPromptResponse::Complete(r))
            }
            ServerResult::InputRequiredResult(r) => {
                let r = inspect::value(r, upstream.redactions())?;
                Ok(GetPromptResponse::InputRequired(r))
            }
            _ => Err(unexpected(upstream.name(), "prompts/get")),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let (items, next) = listing(
            self,
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
        let (items, next) = listing(
            self,
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
        permit(
            self,
            &context,
            upstream.name(),
            SERVER_WIDE,
            Risk::Low,
            CallArgs::new(),
        )?;
        // Credentials: the person's own connection where the upstream takes their key.
        let upstream = self.connection_for(&upstream, &context).await?;
        let sent = relay::send_answering(self, &upstream, &context, |answers| {
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
                let r = inspect::value(r, upstream.redactions())?;
                Ok(ReadResourceResponse::Complete(r))
            }
            ServerResult::InputRequiredResult(r) => {
                let r = inspect::value(r, upstream.redactions())?;
                Ok(ReadResourceResponse::InputRequired(r))
            }
            _ => Err(unexpected(upstream.name(), "resources/read")),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let upstream = self.resource_upstream(era_of(&context), &request.uri)?;
        permit(
            self,
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
        permit(
            self,
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

fn tool_list_changed() -> ServerNotification {
    ServerNotification::ToolListChangedNotification(ToolListChangedNotification::default())
}

fn prompt_list_changed() -> ServerNotification {
    ServerNotification::PromptListChangedNotification(PromptListChangedNotification::default())
}

fn resource_list_changed() -> ServerNotification {
    ServerNotification::ResourceListChangedNotification(ResourceListChangedNotification::default())
}
