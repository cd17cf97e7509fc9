//! The audit log pages over HTTP: an admin filters every record by person, decision and
//! kind with known answers, pages through them newest first, and opens one with its
//! reason and hashes; a person sees only their own; names from agents are text.

use serde_json::json;
use warrant_consent::ledger::Entry;
use warrant_e2e::agent::{admin_approves_agent, member_calls_echo_and_is_refused_seen, review_low};
use warrant_e2e::web::Page;
use warrant_e2e::{Backend, Raw, TestGateway, fixture_http};

/// The links to records on a log page, in order.
fn record_links(page: &Page, base: &str) -> Vec<String> {
    let anchor = format!("<a href=\"{base}/");
    page.body
        .match_indices(&anchor)
        .map(|(at, _)| {
            let rest = &page.body[at + "<a href=\"".len()..];
            rest[..rest.find('"').expect("end of the link")].to_owned()
        })
        .collect()
}

/// The "Older records" link of a log page.
fn older(page: &Page) -> Option<String> {
    let at = page.body.find("rel=\"next\"")?;
    let before = &page.body[..at];
    let start = before.rfind("href=\"")? + "href=\"".len();
    let end = before[start..].find('"')? + start;
    Some(warrant_e2e::web::unescape(&before[start..end]))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_filters_pages_and_opens_records() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    let agent = admin_approves_agent(&gw, "<b>Ledger</b> agent").await;
    let admin = &agent.browser;
    let (alice, _session) =
        member_calls_echo_and_is_refused_seen(&gw, "alice@example.com", 1).await;
    // The admin's own agent calls too.
    let mut own = Raw::new(&gw.url());
    own.bearer = Some(agent.tokens.access.clone());
    own.initialize("2025-11-25").await;
    let echo = json!({"name": "flaky__echo", "arguments": {"message": "mine"}});
    assert_eq!(
        own.request(1, "tools/call", echo).await.result_text(1),
        "mine"
    );
    // 60 more records to page through.
    let ledger = gw.running.ledger.clone().expect("a ledger");
    for i in 0..60 {
        ledger
            .append(
                Entry::event("test.filler")
                    .by(&alice, "alice@example.com")
                    .with("i", i),
            )
            .await
            .expect("append");
    }

    // Wait for the refusal (written without waiting).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let page = admin
            .get("/admin/audit?person=alice%40example.com&decision=deny")
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        if !record_links(&page, "/admin/audit").is_empty() {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{}", page.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        record_links(&refused, "/admin/audit").len(),
        1,
        "{}",
        refused.body
    );
    assert!(refused.contains("flaky · seen"), "{}", refused.body);
    assert!(refused.contains("refused"));
    assert!(refused.contains("alice@example.com"));
    let calls = admin
        .get("/admin/audit?person=alice%40example.com&kind=call")
        .await;
    assert_eq!(
        record_links(&calls, "/admin/audit").len(),
        2,
        "her allowed call and her refused one: {}",
        calls.body
    );

    // Pages of 50, newest first, each record once.
    let first = admin.get("/admin/audit?kind=test.filler").await;
    let mut links = record_links(&first, "/admin/audit");
    assert_eq!(links.len(), 50);
    let next = older(&first).expect("an older page");
    let second = admin.get(&next).await;
    assert!(second.contains("Newest"));
    links.extend(record_links(&second, "/admin/audit"));
    assert_eq!(links.len(), 60);
    assert!(older(&second).is_none(), "the last page");
    let unique: std::collections::HashSet<_> = links.iter().collect();
    assert_eq!(unique.len(), 60);
    let newest = admin.get(&links[0]).await;
    assert!(
        newest.contains("\"i\": 59") || newest.contains(">59<"),
        "{}",
        newest.body
    );

    // A record opens with its reason and its place in the chain.
    let link = &record_links(&refused, "/admin/audit")[0];
    let record = admin.get(link).await;
    assert_eq!(record.status, 200, "{}", record.body);
    for text in ["Why", "Previous hash", "alice@example.com", "flaky · seen"] {
        assert!(record.contains(text), "{text}: {}", record.body);
    }

    // The admin's own activity: their agent's call, not alice's.
    let mine = admin.get("/account/activity?kind=call").await;
    assert_eq!(mine.status, 200);
    assert_eq!(
        record_links(&mine, "/account/activity").len(),
        1,
        "{}",
        mine.body
    );
    // Names from agents are text, never markup.
    assert!(
        mine.contains("&#60;b&#62;Ledger&#60;/b&#62; agent"),
        "{}",
        mine.body
    );
    assert!(!mine.contains("<b>Ledger</b>"));
    // Someone else's record is not found among one's own.
    let theirs = link.replacen("/admin/audit/", "/account/activity/", 1);
    assert_eq!(admin.get(&theirs).await.status, 404);
    // Analytics and the graph count the same calls.
    let analytics = admin.get("/admin/analytics?range=24h&by=upstream").await;
    assert_eq!(analytics.status, 200, "{}", analytics.body);
    assert!(
        analytics.contains("In the last 24 hours: 2 calls allowed, 1 refused."),
        "{}",
        analytics.body
    );
    assert_eq!(analytics.body.matches("<svg class=\"chart\"").count(), 2);
    let graph = admin.get("/admin/graph").await;
    for text in ["alice@example.com", "flaky · seen", "&#60;b&#62;Ledger"] {
        assert!(graph.contains(text), "{text}: {}", graph.body);
    }
    assert!(
        !graph.contains("<b>Ledger"),
        "names are text in the graph too"
    );
    // Filters that match nothing say so; a bad time is said, not guessed.
    let none = admin.get("/admin/audit?person=nobody%40example.com").await;
    assert!(none.contains("Nobody has the email address nobody@example.com"));
    assert!(none.contains("No records match."));
    let bad = admin.get("/admin/audit?since=yesterday-ish").await;
    assert!(bad.contains("Not used:"), "{}", bad.body);
    gw.stop().await;
}

/// The audit, analytics and graph pages in real Chromium (`tests/node/browser_audit.mjs`):
/// the filter form, a record, the charts, the graph, one's own activity, 360 px wide; no
/// console error or CSP violation; screenshots in `target/screenshots/audit/` for people
/// to look at.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_pages_work_in_chromium() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    let agent = admin_approves_agent(&gw, "<b>Chromium</b> agent").await;
    member_calls_echo_and_is_refused_seen(&gw, "alice@example.com", 5).await;
    let mut own = Raw::new(&gw.url());
    own.bearer = Some(agent.tokens.access.clone());
    own.initialize("2025-11-25").await;
    let seen = json!({"name": "flaky__seen", "arguments": {}});
    assert!(own.request(1, "tools/call", seen).await.status < 300);
    // The refusal is written without waiting: let it land.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = warrant_e2e::repo_root()
        .join("target/screenshots/audit")
        .join(format!("{:?}", gw.backend).to_lowercase());
    let (result, stderr) = warrant_e2e::browser_script(
        "browser_audit.mjs",
        &[
            gw.public_url().as_ref(),
            out.as_os_str(),
            agent.browser.cookies().as_ref(),
        ],
    )
    .await;
    assert_eq!(result["ok"], true, "{result:#}\nstderr: {stderr}");
    assert_eq!(result["refused"], 1, "{result:#}");
    let shots = result["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 7, "{result:#}");
    for shot in shots {
        let path = shot.as_str().expect("a path");
        let size = std::fs::metadata(path).expect("screenshot written").len();
        assert!(size > 5_000, "{path} is {size} bytes: an empty page?");
    }
    gw.stop().await;
}
