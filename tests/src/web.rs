//! A scripted browser for the pages: a cookie jar, no automatic redirects (tests look at
//! each hop), form posts with the page's CSRF token. Real HTTP against the running
//! Warrant on loopback; for pixels and JavaScript, the Chromium tests drive the real thing.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;

/// `next` values that lead off this site in a browser (the WHATWG URL rules drop tabs and
/// newlines and read a backslash as `/`): every place that takes `next` must drop them.
pub const OFF_SITE_NEXT: &[&str] = &[
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
];

/// `value` as a query or form value (`application/x-www-form-urlencoded`).
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// One HTTP answer, body read.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The value of the first `<input name="csrf" value="…">` (or `data-csrf="…"`).
    pub fn csrf(&self) -> Option<String> {
        attribute_after(&self.body, "name=\"csrf\"", "value=\"")
            .or_else(|| attribute_after(&self.body, "data-csrf=\"", ""))
    }

    pub fn contains(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

/// The value of the attribute quoted after `anchor` (+ `prefix`), HTML entities decoded.
fn attribute_after(body: &str, anchor: &str, prefix: &str) -> Option<String> {
    let at = body.find(anchor)? + anchor.len();
    let rest = &body[at..];
    let rest = if prefix.is_empty() {
        rest
    } else {
        &rest[rest.find(prefix)? + prefix.len()..]
    };
    let end = rest.find('"')?;
    Some(unescape(&rest[..end]))
}

/// Undoes askama's HTML escaping of attribute values: the named entities it writes and
/// every numeric one (`&#38;`, `&#x2f;`).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A cookie-keeping HTTP client pointed at one site.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub jar: Arc<Jar>,
    client: reqwest::Client,
}

impl Browser {
    /// A browser for the site at `base` (`http://localhost:PORT`).
    pub fn new(base: &str) -> Self {
        crate::init();
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .timeout(Duration::from_secs(20))
            .user_agent("warrant-e2e-browser")
            .build()
            .expect("an HTTP client");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            jar,
            client,
        }
    }

    /// `path` made absolute against the base (full URLs pass through).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let url = self.url(path);
        let response = self.client.get(&url).send().await.expect("GET answered");
        read(response, url).await
    }

    /// POSTs a urlencoded form.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let url = self.url(path);
        let response = self
            .client
            .post(&url)
            .form(fields)
            .send()
            .await
            .expect("POST answered");
        read(response, url).await
    }

    /// POSTs JSON with an `X-CSRF-Token` header (the passkey ceremonies' endpoints).
    pub async fn post_json(&self, path: &str, csrf: &str, body: &serde_json::Value) -> Page {
        let url = self.url(path);
        let response = self
            .client
            .post(&url)
            .header("x-csrf-token", csrf)
            .json(body)
            .send()
            .await
            .expect("POST answered");
        read(response, url).await
    }

    /// Follows redirects from `page` (at most 10 hops), GETting each `Location`.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            if !(300..400).contains(&page.status) {
                return page;
            }
            let Some(location) = page.location() else {
                return page;
            };
            let next = url::Url::parse(&page.url)
                .and_then(|base| base.join(&location))
                .expect("a valid redirect target");
            page = self.get(next.as_str()).await;
        }
        panic!("more than 10 redirects, last at {}", page.url);
    }

    /// The `Cookie` header this browser would send to `base`.
    pub fn cookies(&self) -> String {
        let url = url::Url::parse(&self.base).expect("base URL");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }
}

async fn read(response: reqwest::Response, url: String) -> Page {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body read");
    Page {
        status,
        url,
        headers,
        body,
    }
}
