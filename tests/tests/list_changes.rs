//! `notifications/tools/list_changed` reaches the clients whose tool list changed and
//! nobody else: a user's trust ceiling moved (here or on another replica) → that user's
//! clients; a grant revoked (the agent logs out, or the person replaces the grant) →
//! the clients of that grant. Each person has a session of an older revision and a
//! 2026-07-28 `subscriptions/listen` stream, and the others' must stay quiet.

use std::time::Duration;

use warrant_consent::ceilings::{Ceilings, SubjectKind};
use warrant_consent::token::Risk;
use warrant_e2e::agent::{
    AdminAgent, Tokens, admin_approves_agent, member, register_public, token_for_grant, unix_now,
};
use warrant_e2e::client::{ToolChanges, connect_with_token, heard_more, tool_names};
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestClient, TestGateway, demo_upstream};

/// How long a notification that should not come is given to arrive anyway.
const QUIET: Duration = Duration::from_millis(1500);
/// How long one that should come may take (another replica's change: a refresh).
const SOON: Duration = Duration::from_secs(5);

/// The first admin signed in, the demo upstream's annotations trusted (`list_notes`
/// low, `write_note` medium), their agent approved for every server.
async fn setup() -> (TestGateway, Browser, String, Tokens) {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    let AdminAgent {
        browser,
        admin,
        tokens,
    } = admin_approves_agent(&gw, "Claude Code").await;
    (gw, browser, admin, tokens)
}

/// A person's session and stream, and what each heard so far.
struct Listener {
    handler: TestClient,
    client: rmcp::service::RunningService<rmcp::RoleClient, TestClient>,
    stream: ToolChanges,
}

impl Listener {
    async fn open(gw: &TestGateway, token: &str) -> Self {
        let handler = TestClient::default();
        let client = connect_with_token(&gw.url(), token, handler.clone()).await;
        let stream = ToolChanges::listen(&gw.url(), token).await;
        // The list is read once, so that a change is news.
        assert!(!tool_names(&client).await.is_empty());
        Self {
            handler,
            client,
            stream,
        }
    }

    fn heard(&self) -> (usize, usize) {
        (self.handler.seen().tool_list_changed, self.stream.heard())
    }

    /// Both the session and the stream hear of a change after `before`.
    async fn hears(&self, before: (usize, usize), who: &str) {
        let session = heard_more(|| self.handler.seen().tool_list_changed, before.0, SOON).await;
        assert!(session > before.0, "{who}'s session heard");
        let stream = heard_more(|| self.stream.heard(), before.1, SOON).await;
        assert!(stream > before.1, "{who}'s stream heard");
    }

    async fn close(self) {
        drop(self.stream);
        self.client.cancel().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_ceiling_is_news_to_that_users_clients_only() {
    let (gw, browser, admin, tokens) = setup().await;
    let bob = member(&gw, "bob@example.com").await;
    let bobs_agent = register_public(&gw, "Bob's agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let bobs = token_for_grant(&gw, &bob, &bobs_agent, &resource, &["*"], &[]).await;
    let admins = Listener::open(&gw, &tokens.access).await;
    let bobs = Listener::open(&gw, &bobs.access).await;
    let (a0, b0) = (admins.heard(), bobs.heard());

    // The admin lowers their own ceiling on their page: their clients hear of it.
    let page = browser.get(&format!("/admin/users/{admin}")).await;
    let csrf = page.csrf().expect("csrf");
    let saved = browser
        .post_form(
            &format!("/admin/users/{admin}/ceiling"),
            &[("csrf", &csrf), ("ceiling", "low")],
        )
        .await;
    assert!(saved.status < 400, "{}", saved.body);
    admins.hears(a0, "the admin").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(bobs.heard(), b0, "Bob's clients were not told");
    assert_eq!(
        tool_names(&admins.client).await,
        ["demo__list_notes", "demo__read_note"]
    );
    assert!(
        tool_names(&bobs.client)
            .await
            .contains(&"demo__write_note".to_owned())
    );

    // Bob's ceiling lowered on another replica: now only Bob's clients hear.
    let a1 = admins.heard();
    Ceilings::new(gw.running.db.clone())
        .set(SubjectKind::User, &bob, Some(Risk::Low), &admin, unix_now())
        .await
        .expect("set elsewhere");
    bobs.hears(b0, "Bob").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(admins.heard(), a1, "the admin's clients were not told");
    assert_eq!(
        tool_names(&bobs.client).await,
        ["demo__list_notes", "demo__read_note"]
    );
    admins.close().await;
    bobs.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_grant_is_news_to_its_clients_only() {
    let (gw, _browser, admin, tokens) = setup().await;
    // The same person's second agent, with a grant of its own.
    let other_agent = register_public(&gw, "Another agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let other = token_for_grant(&gw, &admin, &other_agent, &resource, &["*"], &[]).await;
    let first = Listener::open(&gw, &tokens.access).await;
    let second = Listener::open(&gw, &other.access).await;
    let (f0, s0) = (first.heard(), second.heard());

    // The first agent logs out: revoking its refresh token revokes its grant.
    let revoked = warrant_e2e::agent::http()
        .post(format!("{}/revoke", gw.public_url()))
        .form(&[
            ("token", tokens.refresh.as_str()),
            ("client_id", tokens.client_id.as_str()),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    first.hears(f0, "the first agent").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(second.heard(), s0, "the other agent was not told");
    // What it heard is true: its token no longer lists anything.
    assert!(first.client.list_all_tools().await.is_err());
    assert!(!tool_names(&second.client).await.is_empty());
    first.close().await;
    second.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reclassified_tool_is_news_to_the_clients_that_can_see_it_only() {
    let (gw, browser, admin, tokens) = setup().await;
    // The same person's second agent may use list_notes only.
    let narrow_agent = register_public(&gw, "Reader").await;
    let resource = format!("{}/mcp", gw.public_url());
    let narrow = token_for_grant(
        &gw,
        &admin,
        &narrow_agent,
        &resource,
        &["demo.list_notes"],
        &[],
    )
    .await;
    let everything = Listener::open(&gw, &tokens.access).await;
    let reader = Listener::open(&gw, &narrow.access).await;
    assert_eq!(tool_names(&reader.client).await, ["demo__list_notes"]);
    let (e0, r0) = (everything.heard(), reader.heard());

    // The admin reviews write_note as high: news to the agent that can list it only.
    let page = browser.get("/admin/servers/demo/tools/write_note").await;
    let csrf = page.csrf().expect("csrf");
    let done = browser
        .post_form(
            "/admin/servers/demo/tools/write_note/review",
            &[("csrf", &csrf), ("risk", "high")],
        )
        .await;
    assert!(done.status < 400, "{}", done.body);
    everything.hears(e0, "the agent with every tool").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        reader.heard(),
        r0,
        "the agent that cannot list write_note was not told"
    );

    // list_notes (which both can list) reviewed as medium: both hear of it.
    let e1 = everything.heard();
    let page = browser.get("/admin/servers/demo/tools/list_notes").await;
    let csrf = page.csrf().expect("csrf");
    let done = browser
        .post_form(
            "/admin/servers/demo/tools/list_notes/review",
            &[("csrf", &csrf), ("risk", "medium")],
        )
        .await;
    assert!(done.status < 400, "{}", done.body);
    everything.hears(e1, "the agent with every tool").await;
    reader.hears(r0, "the reader").await;
    everything.close().await;
    reader.close().await;
    gw.stop().await;
}
