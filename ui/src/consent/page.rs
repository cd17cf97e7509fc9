//! The consent screen itself: the page, shown for a request (GET) or again for an
//! answer that could not be stored (POST, with the reasons).

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use warrant_consent::grants::Grants;
use warrant_consent::oauth::http::is_loopback;
use warrant_consent::token::Risk;

use super::{
    CARRIED, Checked, ConsentUi, DURATIONS, Refusal, RiskChoice, ServerChoice, above_ceiling,
    ceiling_of, constraints, identified_by, risk_choices, server_choices,
};
use crate::UiState;
use crate::extract::SignedIn;
use crate::page::{FormTargets, PageError};

struct DurationChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "consent.html")]
struct ConsentPage {
    csrf: String,
    agent: String,
    /// A metadata document agent: the host of its client_id URL.
    identified_by: Option<String>,
    redirect_host: String,
    is_new: bool,
    /// A live grant exists and the request asks for more.
    asks_more: bool,
    /// Tools the request names (step-up), offered one by one.
    tools: Vec<String>,
    /// Why tools the live grant names are asked for again (their class is above it).
    notes: Vec<String>,
    /// Tools (of `tools` too) above the person's ceiling: shown, not offered.
    above: Vec<String>,
    scope: Option<String>,
    servers: Vec<ServerChoice>,
    durations: Vec<DurationChoice>,
    /// "Highest risk this agent may reach", up to the person's ceiling.
    risks: Vec<RiskChoice>,
    /// The person's live ceiling, when ceilings apply.
    ceiling: Option<&'static str>,
    /// The request's parameters, carried to the POST as hidden fields.
    hidden: Vec<(String, String)>,
    /// The rules of an argument constraint: form value, label.
    rules: Vec<(&'static str, &'static str)>,
    /// The "calls per hour" as last entered.
    calls_per_hour: String,
    /// The constraint rows as last entered.
    entered: constraints::Entered,
    /// Why the last answer could not be stored (the form is shown again).
    errors: Vec<String>,
}

/// What the page shows beyond the request: the tools asked for beyond the live grant,
/// and, when an answer was refused, why and what was entered.
#[derive(Default)]
pub(super) struct Answer {
    pub(super) asks_more: bool,
    pub(super) more: Vec<String>,
    pub(super) notes: Vec<String>,
    pub(super) calls_per_hour: String,
    pub(super) entered: constraints::Entered,
    pub(super) errors: Vec<String>,
}

/// The consent screen for the checked request `c`.
pub(super) async fn render(
    state: &UiState,
    ui: &ConsentUi,
    person: &SignedIn,
    c: &Checked,
    p: &[(String, String)],
    answer: Answer,
) -> Result<Response, PageError> {
    let grants = Grants::new(ui.db.clone());
    let is_new = match grants.any_for(&person.user.id, &c.client.client_id).await {
        Ok(any) => !any,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    let csrf = state.idp.sessions.csrf_token(&person.session).await?;
    let redirect_host = url::Url::parse(&c.redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(h) if is_loopback(&u) => format!("{h} (this computer)"),
            Some(h) => h.to_owned(),
            None => format!("{}: (an app on this device)", u.scheme()),
        })
        .unwrap_or_default();
    let hidden = p
        .iter()
        .filter(|(k, _)| CARRIED.contains(&k.as_str()))
        .cloned()
        .collect();
    let servers = match server_choices(ui, ceiling_of(ui, &person.user.id)).await {
        Ok(servers) => servers,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    let status = if answer.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = ConsentPage {
        csrf,
        agent: c.client.name.clone(),
        identified_by: identified_by(&c.client),
        redirect_host,
        is_new,
        asks_more: answer.asks_more,
        tools: answer.more,
        notes: answer.notes,
        scope: c.scope.clone(),
        risks: risk_choices(ceiling_of(ui, &person.user.id)),
        ceiling: ceiling_of(ui, &person.user.id).map(Risk::name),
        above: above_ceiling(&servers),
        servers,
        durations: DURATIONS
            .iter()
            .map(|(value, label, _)| DurationChoice {
                value,
                label,
                selected: *value == "1d",
            })
            .collect(),
        hidden,
        rules: constraints::RULES.to_vec(),
        calls_per_hour: answer.calls_per_hour,
        entered: answer.entered,
        errors: answer.errors,
    };
    // The answer goes on to the agent's redirect URI: the form may lead there.
    let target = FormTargets::to(url::Url::parse(&c.redirect_uri).ok().as_ref());
    Ok((status, axum::Extension(target), page).into_response())
}
