//! "Connected accounts" and the admin's shared key, end to end: a person connects,
//! replaces and removes their own key for a `person_key` upstream on
//! `/account/connections`; an admin sets a `shared` upstream's key on its server page.
//! A key is never shown again (no page holds it), is stored in the vault under its
//! person (listed by email), is not in the database in clear (the SQLite file and its WAL,
//! or every PostgreSQL row), and nobody sees another person's state. People sign in with
//! email links through a real SMTP server.

use warrant_consent::vault::SHARED;
use warrant_e2e::agent::person;
use warrant_e2e::at_rest::{CapturedLog, database_bytes, in_clear};
use warrant_e2e::smtp::{SmtpSink, sign_in};
use warrant_e2e::web::{Browser, Page, encode};
use warrant_e2e::{Backend, TestGateway, fixture_http, repo_root};
use warrant_idp::users::Role;

const KIND: &str = "api_key";
/// Keys as a person would paste them; each test's are its own.
const ALICE_KEY: &str = "lin_api_alice_first_key_7d1c";
const ALICE_NEW_KEY: &str = "lin_api_alice_second_key_93b0";
const SHARED_KEY: &str = "ghp_shared_admin_key_5e2a";

/// A gateway whose upstreams are the flaky fixture five times: `linear` and `notion` take
/// each person's key, `github` a shared key set on its page, `fixed` a shared key written
/// in the file by reference, and people connect their own account at `tracker` with
/// OAuth (which the fixture does not ask for: connecting fails, and says why).
async fn gateway(sink: &SmtpSink) -> (TestGateway, warrant_e2e::peers::ChildGuard) {
    let (upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!(
        "[upstreams.linear]\nurl = {url:?}\nauth = {{ mode = \"person_key\" }}\n\
         [upstreams.notion]\nurl = {url:?}\n\
         auth = {{ mode = \"person_key\", header = \"X-Notion-Key\" }}\n\
         [upstreams.github]\nurl = {url:?}\n\
         auth = {{ mode = \"shared\", header = \"X-Api-Key\" }}\n\
         [upstreams.fixed]\nurl = {url:?}\n\
         auth = {{ mode = \"shared\", value = \"${{WARRANT_TEST_UNSET_FIXED_KEY:-fixed-key}}\" }}\n\
         [upstreams.tracker]\nurl = {url:?}\nauth = {{ mode = \"person_oauth\" }}\n\
         {}",
        sink.auth_toml("per_address_limit = 50")
    );
    (
        TestGateway::start(&toml, Backend::current()).await,
        upstream,
    )
}

/// `browser` signed in as `email`.
async fn signed_in(gw: &TestGateway, sink: &SmtpSink, email: &str) -> Browser {
    let browser = gw.browser();
    sign_in(&browser, sink, email).await;
    browser
}

/// Posts `key` for `upstream` from the connections page (its CSRF token); the page the
/// redirect leads to (or the refusal).
async fn connect(browser: &Browser, upstream: &str, key: &str) -> Page {
    let csrf = browser
        .get("/account/connections")
        .await
        .csrf()
        .expect("a CSRF token");
    let done = browser
        .post_form(
            &format!("/account/connections/{upstream}"),
            &[("csrf", &csrf), ("key", key)],
        )
        .await;
    browser.follow(done).await
}

/// Posts `key` as `upstream`'s shared key from its admin page, with `csrf`.
async fn post_shared_key(browser: &Browser, upstream: &str, csrf: &str, key: &str) -> Page {
    browser
        .post_form(
            &format!("/admin/servers/{upstream}/shared-key"),
            &[("csrf", csrf), ("key", key)],
        )
        .await
}

async fn remove(browser: &Browser, upstream: &str) -> Page {
    let csrf = browser
        .get("/account/connections")
        .await
        .csrf()
        .expect("a CSRF token");
    let done = browser
        .post_form(
            &format!("/account/connections/{upstream}/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    browser.follow(done).await
}

async fn stored(gw: &TestGateway, owner: &str, upstream: &str) -> Option<String> {
    gw.running
        .vault
        .get(owner, upstream, KIND)
        .await
        .expect("the vault reads")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// What the database holds at rest, checked to have been read.
async fn at_rest(gw: &TestGateway) -> Vec<u8> {
    let bytes = database_bytes(gw).await;
    assert!(
        in_clear(&bytes, "consent_vault") || in_clear(&bytes, "api_key"),
        "the database was read"
    );
    bytes
}

/// `warrant vault list` against the gateway's database.
async fn vault_list(gw: &TestGateway) -> String {
    let output = gw.warrant(&["vault", "list"], "").await;
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_connects_replaces_and_removes_their_key_and_never_sees_it_again() {
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    let alice = person(&gw, "alice@example.com", Role::Member).await;
    let browser = signed_in(&gw, &sink, "alice@example.com").await;

    let account = browser.get("/account").await;
    assert!(
        account.contains("href=\"/account/connections\""),
        "the account page links to the connections: {}",
        account.body
    );
    let empty = browser.get("/account/connections").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert!(
        empty.contains("linear") && empty.contains("not connected"),
        "{}",
        empty.body
    );
    assert!(
        !empty.contains("github") && !empty.contains("fixed"),
        "shared upstreams take no key of a person's own: {}",
        empty.body
    );
    assert!(
        empty.contains("type=\"password\"") && empty.contains("autocomplete=\"off\""),
        "{}",
        empty.body
    );
    // The link the gateway gives an agent: that upstream first, its field focused.
    let asked = browser.get("/account/connections?upstream=linear").await;
    assert!(
        asked.contains("An agent asked to use linear for you: connect your key to continue."),
        "{}",
        asked.body
    );
    assert!(asked.contains("autofocus"), "{}", asked.body);
    assert!(!empty.contains("autofocus"), "{}", empty.body);

    let connected = connect(&browser, "linear", ALICE_KEY).await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    assert!(
        connected.contains("Your key for linear is connected"),
        "a message names the upstream: {}",
        connected.body
    );
    assert!(
        connected.contains(">connected</span> since 20"),
        "{}",
        connected.body
    );
    assert!(!connected.contains(ALICE_KEY), "{}", connected.body);
    assert_eq!(
        stored(&gw, &alice.id, "linear").await.as_deref(),
        Some(ALICE_KEY)
    );
    // The gateway was told: a connection with her key opens at once.
    let mut opened = 0;
    for _ in 0..100 {
        opened = gw.running.gateway.keyed_connections("linear");
        if opened == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(opened, 1, "a connection with alice's key");
    let list = vault_list(&gw).await;
    assert!(
        list.lines()
            .any(|l| l.contains("linear") && l.contains("alice@example.com")),
        "{list}"
    );
    // The message is shown once.
    let again = browser.get("/account/connections").await;
    assert!(!again.contains("is connected."), "{}", again.body);

    let replaced = connect(&browser, "linear", &format!("  {ALICE_NEW_KEY}\n")).await;
    assert!(
        replaced.contains("Your key for linear was replaced"),
        "{}",
        replaced.body
    );
    assert!(replaced.contains("key replaced on"), "{}", replaced.body);
    assert!(
        !replaced.contains(ALICE_KEY) && !replaced.contains(ALICE_NEW_KEY),
        "{}",
        replaced.body
    );
    assert_eq!(
        stored(&gw, &alice.id, "linear").await.as_deref(),
        Some(ALICE_NEW_KEY),
        "the key as pasted, without the surrounding whitespace"
    );
    let bytes = at_rest(&gw).await;
    assert!(
        !in_clear(&bytes, ALICE_KEY) && !in_clear(&bytes, ALICE_NEW_KEY),
        "a key is in clear in the database (or its WAL)"
    );

    let removed = remove(&browser, "linear").await;
    assert!(
        removed.contains("Your key for linear was removed"),
        "{}",
        removed.body
    );
    assert!(removed.contains("not connected"), "{}", removed.body);
    assert_eq!(stored(&gw, &alice.id, "linear").await, None);
    assert!(!vault_list(&gw).await.contains("alice@example.com"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_each_persons_own_and_every_change_needs_the_form_and_a_sane_key() {
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    let alice = person(&gw, "alice@example.com", Role::Member).await;
    let bob = person(&gw, "bob@example.com", Role::Member).await;

    // Signed out: to the sign-in page, which brings the person back.
    let anonymous = gw
        .browser()
        .get("/account/connections?upstream=linear")
        .await;
    assert_eq!(anonymous.status, 303, "{}", anonymous.body);
    assert_eq!(
        anonymous.location().as_deref(),
        Some(
            format!(
                "/signin?next={}",
                encode("/account/connections?upstream=linear")
            )
            .as_str()
        )
    );

    let alice_browser = signed_in(&gw, &sink, "alice@example.com").await;
    let bob_browser = signed_in(&gw, &sink, "bob@example.com").await;
    connect(&alice_browser, "linear", ALICE_KEY).await;

    // Bob sees his own state only, and cannot remove Alice's key.
    let bobs = bob_browser.get("/account/connections").await;
    assert!(bobs.contains("not connected"), "{}", bobs.body);
    assert!(!bobs.contains(">connected</span>"), "{}", bobs.body);
    let nothing = remove(&bob_browser, "linear").await;
    assert!(
        nothing.contains("No key of yours for linear was stored"),
        "{}",
        nothing.body
    );
    assert_eq!(
        stored(&gw, &alice.id, "linear").await.as_deref(),
        Some(ALICE_KEY)
    );
    assert_eq!(stored(&gw, &bob.id, "linear").await, None);

    // Without the session's CSRF token: refused, nothing stored or removed.
    let forged = bob_browser
        .post_form("/account/connections/linear", &[("key", "forged-key-1")])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = bob_browser
        .post_form(
            "/account/connections/linear",
            &[("csrf", "not-the-token"), ("key", "forged-key-2")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(stored(&gw, &bob.id, "linear").await, None);
    let forged = alice_browser
        .post_form("/account/connections/linear/remove", &[])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(stored(&gw, &alice.id, "linear").await.is_some());

    // Empty, too long: refused in plain words naming the upstream; nothing replaced.
    let empty = connect(&alice_browser, "linear", "   ").await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(
        empty.contains("The key for linear was empty: nothing was saved."),
        "{}",
        empty.body
    );
    assert!(
        !empty.contains("An agent asked"),
        "a refusal is not an agent's request: {}",
        empty.body
    );
    assert!(
        empty.contains("autofocus"),
        "the refused field is focused again: {}",
        empty.body
    );
    let long = connect(&alice_browser, "linear", &"k".repeat(4097)).await;
    assert_eq!(long.status, 400, "{}", long.body);
    assert!(long.contains("longer than 4 KiB"), "{}", long.body);
    assert!(!long.contains("kkkkkkkk"), "the key is not echoed back");
    assert_eq!(
        stored(&gw, &alice.id, "linear").await.as_deref(),
        Some(ALICE_KEY)
    );

    // A shared upstream takes no person's key, from this page or a crafted form.
    let shared = connect(&alice_browser, "github", "mine-for-github").await;
    assert_eq!(shared.status, 404, "{}", shared.body);
    assert_eq!(stored(&gw, &alice.id, "github").await, None);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_sets_a_shared_key_and_sees_only_when_and_how_many_connected() {
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    person(&gw, "root@example.com", Role::Admin).await;
    person(&gw, "alice@example.com", Role::Member).await;
    let admin = signed_in(&gw, &sink, "root@example.com").await;
    let alice = signed_in(&gw, &sink, "alice@example.com").await;

    let page = admin.get("/admin/servers/github").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("Mode <code>shared</code>") && page.contains("header X-Api-Key"),
        "{}",
        page.body
    );
    assert!(
        page.contains("No shared key is stored yet"),
        "{}",
        page.body
    );
    let csrf = page.csrf().expect("a CSRF token");

    // Without the token, or by a member: refused.
    let forged = admin
        .post_form("/admin/servers/github/shared-key", &[("key", SHARED_KEY)])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let alice_csrf = alice
        .get("/account/connections")
        .await
        .csrf()
        .expect("csrf");
    let member = post_shared_key(&alice, "github", &alice_csrf, SHARED_KEY).await;
    assert_eq!(member.status, 403, "{}", member.body);
    assert_eq!(stored(&gw, SHARED, "github").await, None);

    let done = post_shared_key(&admin, "github", &csrf, SHARED_KEY).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let after = admin.follow(done).await;
    assert!(
        after.contains("The shared key for github was saved"),
        "{}",
        after.body
    );
    assert!(
        after.contains("The shared key was set on 20"),
        "{}",
        after.body
    );
    assert!(!after.contains(SHARED_KEY), "{}", after.body);
    assert_eq!(
        stored(&gw, SHARED, "github").await.as_deref(),
        Some(SHARED_KEY)
    );
    let list = vault_list(&gw).await;
    assert!(
        list.lines()
            .any(|l| l.contains("github") && l.contains("shared")),
        "{list}"
    );
    assert!(
        !in_clear(&at_rest(&gw).await, SHARED_KEY),
        "the shared key is in clear in the database (or its WAL)"
    );
    let empty = post_shared_key(&admin, "github", &csrf, "").await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(empty.contains("was empty"), "{}", empty.body);

    // A key written in the file by reference: said so, no form, nothing set here.
    let fixed = admin.get("/admin/servers/fixed").await;
    assert!(fixed.contains("by reference"), "{}", fixed.body);
    assert!(!fixed.contains("shared-key-input"), "{}", fixed.body);
    let refused = post_shared_key(&admin, "fixed", &csrf, "another").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(stored(&gw, SHARED, "fixed").await, None);

    // Per person: how many connected, nobody's key or name.
    let linear = admin.get("/admin/servers/linear").await;
    assert!(
        linear.contains("Mode <code>person_key</code>") && linear.contains("0 people have"),
        "{}",
        linear.body
    );
    assert!(
        !linear.contains("shared-key-input"),
        "no shared key for a per-person upstream: {}",
        linear.body
    );
    connect(&alice, "linear", ALICE_KEY).await;
    let linear = admin.get("/admin/servers/linear").await;
    assert!(
        linear.contains("1 person has connected a key"),
        "{}",
        linear.body
    );
    assert!(
        !linear.contains("alice@example.com") && !linear.contains(ALICE_KEY),
        "{}",
        linear.body
    );
    gw.stop().await;
}

/// The pages in real Chromium (`tests/node/browser_connections.mjs`): the person follows
/// the link an agent gets, types a key into the focused field and connects; the admin sets
/// a shared key. No console error or CSP violation, no key in a page after it was saved;
/// screenshots in `target/screenshots/connections/` for people to look at.
#[tokio::test(flavor = "multi_thread")]
async fn the_pages_work_in_chromium() {
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    person(&gw, "root@example.com", Role::Admin).await;
    let alice = person(&gw, "alice@example.com", Role::Member).await;
    let admin = signed_in(&gw, &sink, "root@example.com").await;
    let person_browser = signed_in(&gw, &sink, "alice@example.com").await;
    connect(&person_browser, "linear", ALICE_KEY).await;
    let out = repo_root()
        .join("target/screenshots/connections")
        .join(format!("{:?}", gw.backend).to_lowercase());
    let (result, stderr) = warrant_e2e::browser_script(
        "browser_connections.mjs",
        &[
            gw.public_url().as_ref(),
            out.as_os_str(),
            person_browser.cookies().as_ref(),
            admin.cookies().as_ref(),
        ],
    )
    .await;
    assert_eq!(result["ok"], true, "{result:#}\nstderr: {stderr}");
    let shots = result["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 9, "{result:#}");
    // What was typed in the browser is what the vault holds, each under its owner.
    assert_eq!(
        stored(&gw, &alice.id, "notion").await.as_deref(),
        Some("key-typed-in-chromium-0c4f1e")
    );
    assert_eq!(
        stored(&gw, SHARED, "github").await.as_deref(),
        Some("shared-key-typed-in-chromium-9a7d2b")
    );
    gw.stop().await;
}

/// With every log event at debug captured (each test is a process of its own under
/// nextest): keys connected, replaced, refused and set by an admin never reach the log.
#[tokio::test(flavor = "multi_thread")]
async fn no_key_typed_on_a_page_reaches_the_log() {
    let log = CapturedLog::at_debug();
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    person(&gw, "root@example.com", Role::Admin).await;
    person(&gw, "alice@example.com", Role::Member).await;
    let admin = signed_in(&gw, &sink, "root@example.com").await;
    let alice = signed_in(&gw, &sink, "alice@example.com").await;
    connect(&alice, "linear", ALICE_KEY).await;
    connect(&alice, "linear", ALICE_NEW_KEY).await;
    let too_long = format!("{ALICE_KEY}{}", "x".repeat(4096));
    let refused = connect(&alice, "notion", &too_long).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let csrf = admin
        .get("/admin/servers/github")
        .await
        .csrf()
        .expect("a CSRF token");
    let done = post_shared_key(&admin, "github", &csrf, SHARED_KEY).await;
    assert_eq!(done.status, 303, "{}", done.body);
    gw.stop().await;

    let text = String::from_utf8_lossy(&log.bytes()).into_owned();
    assert!(
        text.contains("a person stored their key for an upstream")
            && text.contains("admin set an upstream's shared key"),
        "the log was captured: {text}"
    );
    for key in [ALICE_KEY, ALICE_NEW_KEY, SHARED_KEY] {
        assert!(!text.contains(key), "{key} is in the log");
    }
}

/// An admin removing a person deletes every credential that person stored: the user
/// page lists what is stored (never a value), the removal needs the form's token and the
/// ticked confirmation, and afterwards the vault holds nothing of theirs, their sessions
/// are over and the account stays listed as disabled.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_removing_a_person_deletes_every_credential_they_stored() {
    let sink = SmtpSink::start().await;
    let (gw, _upstream) = gateway(&sink).await;
    person(&gw, "root@example.com", Role::Admin).await;
    let alice_id = person(&gw, "alice@example.com", Role::Member).await.id;
    let admin = signed_in(&gw, &sink, "root@example.com").await;
    let alice = signed_in(&gw, &sink, "alice@example.com").await;
    connect(&alice, "linear", ALICE_KEY).await;
    connect(&alice, "notion", ALICE_NEW_KEY).await;
    assert!(stored(&gw, &alice_id, "linear").await.is_some());

    let page = admin.get(&format!("/admin/users/{alice_id}")).await;
    assert!(
        page.contains("linear: their key") && page.contains("notion: their key"),
        "{}",
        page.body
    );
    assert!(!page.contains(ALICE_KEY) && !page.contains(ALICE_NEW_KEY));
    let csrf = page.csrf().expect("a CSRF token");
    let path = format!("/admin/users/{alice_id}/remove");

    // Without the token, or without the ticked confirmation: nothing is removed.
    let forged = admin.post_form(&path, &[("confirm", "yes")]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let unconfirmed = admin.post_form(&path, &[("csrf", &csrf)]).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert!(stored(&gw, &alice_id, "linear").await.is_some());

    let done = admin
        .post_form(&path, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.contains("alice@example.com can no longer sign in")
            && done.contains("2 stored credentials deleted"),
        "{}",
        done.body
    );
    assert_eq!(stored(&gw, &alice_id, "linear").await, None);
    assert_eq!(stored(&gw, &alice_id, "notion").await, None);
    assert!(!vault_list(&gw).await.contains("alice@example.com"));
    let user = gw
        .running
        .idp
        .users
        .get(&alice_id)
        .await
        .expect("lookup")
        .expect("still listed");
    assert_eq!(user.status, warrant_idp::users::Status::Disabled);
    // Her session is over.
    let after = alice.get("/account/connections").await;
    assert_ne!(after.status, 200, "{}", after.body);
    let page = admin.get(&format!("/admin/users/{alice_id}")).await;
    assert!(
        page.contains("None: this person has stored no key"),
        "{}",
        page.body
    );
    gw.stop().await;
}
