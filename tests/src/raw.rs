//! Raw HTTP against the MCP endpoint, for what a well-behaved client never sends:
//! malformed bodies, missing or foreign session ids, bad headers.

use serde_json::Value;

/// A response: status, headers and the JSON-RPC messages in its body (one JSON body,
/// or every `data:` line of an event stream).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// The JSON-RPC messages in the body.
    pub fn messages(&self) -> Vec<Value> {
        if let Ok(value) = serde_json::from_str::<Value>(&self.text) {
            return vec![value];
        }
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }

    /// The message that answers request `id`.
    pub fn response(&self, id: i64) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m.get("id").and_then(Value::as_i64) == Some(id))
            .unwrap_or_else(|| panic!("no response to id {id} in {self:?}"))
    }

    /// The text of the first content item of the result answering `id`, or, when there
    /// is none (an error), the whole response, for the failure message.
    pub fn result_text(&self, id: i64) -> String {
        let response = self.response(id);
        response["result"]["content"][0]["text"]
            .as_str()
            .map_or_else(|| response.to_string(), str::to_owned)
    }

    /// The error answering request `id`; for a 401 (the token is checked before the
    /// body is read, and a large or slow body is not read for its id) the one answer,
    /// which carries the id or null.
    pub fn refusal(&self, id: i64) -> Value {
        if self.status != 401 {
            return self.response(id);
        }
        let messages = self.messages();
        assert_eq!(messages.len(), 1, "one answer in {self:?}");
        let answered = &messages[0]["id"];
        assert!(
            answered.is_null() || answered.as_i64() == Some(id),
            "{self:?}"
        );
        messages[0].clone()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A raw client that keeps a session id and protocol version once it has them.
pub struct Raw {
    http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub version: Option<String>,
    /// An access token sent as `Authorization: Bearer …` on every request.
    pub bearer: Option<String>,
}

impl Raw {
    pub fn new(url: &str) -> Self {
        crate::init();
        Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            url: url.to_owned(),
            session: None,
            version: None,
            bearer: None,
        }
    }

    /// POSTs a body with the given extra headers.
    pub async fn post(&self, body: impl Into<String>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.into());
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(version) = &self.version {
            request = request.header("mcp-protocol-version", version);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        finish(request).await
    }

    /// Sends any request built on the shared client.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        finish(request).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// `initialize` + `notifications/initialized` at `version`; keeps the session id.
    pub async fn initialize(&mut self, version: &str) -> Reply {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        });
        let reply = self.post(body.to_string(), &[]).await;
        assert_eq!(reply.status, 200, "initialize: {reply:?}");
        self.session = reply.header("mcp-session-id");
        self.version = Some(version.to_owned());
        let done = self
            .post(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &[],
            )
            .await;
        assert_eq!(done.status, 202, "initialized: {done:?}");
        reply
    }

    /// A request with `id` in the current session.
    pub async fn request(&self, id: i64, method: &str, params: Value) -> Reply {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.post(body.to_string(), &[]).await
    }
}

async fn finish(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        text,
    }
}

/// The `_meta` of a 2026-07-28 request from a client that declares no capabilities.
pub fn modern_meta() -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    })
}

/// A stateless (2026-07-28) `tools/call` with id 7, with `token` when given.
pub async fn modern_call(url: &str, token: Option<&str>, tool: &str, arguments: Value) -> Reply {
    let mut raw = Raw::new(url);
    raw.bearer = token.map(str::to_owned);
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": modern_meta()}
    });
    raw.post(
        body.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
    )
    .await
}

/// The tool names a stateless (2026-07-28) `tools/list` shows, sorted; asserts a 200.
pub async fn modern_tool_names(url: &str, token: Option<&str>) -> Vec<String> {
    let mut raw = Raw::new(url);
    raw.bearer = token.map(str::to_owned);
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": modern_meta()}
    });
    let reply = raw
        .post(
            body.to_string(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut names: Vec<String> = reply.response(3)["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}
