//! Approvals of critical calls (`consent_approvals`): a `tools/call` of a tool whose
//! effective risk class is `critical` is held until the person behind the token
//! approves it — once (this call, these arguments), or for the rest of the grant (later
//! calls of the same tool under the same grant pass without asking). An approval nobody
//! decides within its timeout expires, which denies the call.
//!
//! ```text
//! agent ── tools/call (critical) ──> gateway: admit? (grant-wide, or once & unused)
//!                                      │ no
//!                                      v
//!                               request(): the pending approval of this call, or a new
//!                               one (id = 256 random bits: the page URL, the requestState)
//!   <── asked in its own protocol ─────┘            person ── /approvals/{id} ── decide()
//!   retry (same call, or requestState) ──> admit / resume(): approved → forward
//! ```
//!
//! The arguments are stored only as the person is shown them: the SHA-256 of their
//! canonical JSON (a retried call matches by it), a short preview ([`preview`]: values
//! truncated, secret-looking keys masked) and the whole arguments for the page's
//! expandable block ([`arguments`]: every value whole, secret-looking keys masked at
//! every depth, at most 64 KiB). The store is the truth for every replica: whoever
//! waits for a decision polls it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use warrant_idp::clock::Clock;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// Nobody decided in time: the call is denied.
    Expired,
    /// Ended undecided because the person's agents were stopped (the person was
    /// disabled): the call is denied.
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
        }
    }

    fn parse(s: &str) -> Result<Self, ApprovalError> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "withdrawn" => Self::Withdrawn,
            other => return Err(ApprovalError::Corrupt(format!("status {other:?}"))),
        })
    }
}

/// How far an approval reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This call, with these arguments, once.
    Once,
    /// Every call of this tool under this grant, for as long as the grant lives.
    Grant,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Grant => "grant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "once" => Some(Self::Once),
            "grant" => Some(Self::Grant),
            _ => None,
        }
    }
}

/// How the person proved it was them when deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Their signed-in browser session.
    Session,
    /// A fresh passkey assertion (the strongest proof).
    Passkey,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(Self::Session),
            "passkey" => Some(Self::Passkey),
            _ => None,
        }
    }
}

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve(Scope),
    Deny,
}

/// The call an approval is for: who (user, agent, grant), what (server, tool) and with
/// which arguments (their hash, [`args_hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKey {
    pub user_id: String,
    pub client_id: String,
    pub grant_id: String,
    pub server: String,
    pub tool: String,
    pub args_hash: String,
}

/// An approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub key: CallKey,
    pub preview: String,
    /// The whole arguments as shown to the person ([`arguments`]); `None` for an
    /// approval stored before they were kept.
    pub arguments: Option<String>,
    pub status: Status,
    pub scope: Option<Scope>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub method: Option<Method>,
    pub used_at: Option<i64>,
}

impl Approval {
    /// Whether this approval is for `key` (the same person, agent, grant, tool and
    /// arguments).
    pub fn is_for(&self, key: &CallKey) -> bool {
        self.key == *key
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("an approval row is not readable: {0}")]
    Corrupt(String),
    /// No such approval for this person.
    #[error("no such approval")]
    NotFound,
    /// It was decided already (or expired) and cannot be decided again.
    #[error("this approval is already {}", .0.as_str())]
    Closed(Status),
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    user_id: String,
    client_id: String,
    grant_id: String,
    server: String,
    tool: String,
    args_hash: String,
    preview: String,
    arguments: Option<String>,
    status: String,
    scope: Option<String>,
    created_at: i64,
    expires_at: i64,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    method: Option<String>,
    used_at: Option<i64>,
}

impl Row {
    fn into_approval(self) -> Result<Approval, ApprovalError> {
        Ok(Approval {
            status: Status::parse(&self.status)?,
            scope: self.scope.as_deref().and_then(Scope::parse),
            method: self.method.as_deref().and_then(Method::parse),
            id: self.id,
            key: CallKey {
                user_id: self.user_id,
                client_id: self.client_id,
                grant_id: self.grant_id,
                server: self.server,
                tool: self.tool,
                args_hash: self.args_hash,
            },
            preview: self.preview,
            arguments: self.arguments,
            created_at: self.created_at,
            expires_at: self.expires_at,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            used_at: self.used_at,
        })
    }
}

const COLUMNS: &str = "id, user_id, client_id, grant_id, server, tool, args_hash, preview, \
    arguments, status, scope, created_at, expires_at, decided_by, decided_at, method, used_at";

/// The default time a person has to decide (`[policy] approval_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the approval page shows of a call's arguments: the short preview ([`preview`])
/// and the whole arguments ([`arguments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub preview: String,
    pub arguments: String,
}

impl Shown {
    pub fn of(args: Option<&Map<String, Value>>) -> Self {
        Self {
            preview: preview(args),
            arguments: arguments(args),
        }
    }
}

/// The approval store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Approvals {
    db: Db,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl Approvals {
    /// The store; a person has `timeout` to decide, and an approved single call must be
    /// made within `timeout` of the approval.
    pub fn new(db: Db, clock: Arc<dyn Clock>, timeout: Duration) -> Self {
        Self { db, clock, timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn now(&self) -> i64 {
        self.clock.unix()
    }

    fn timeout_secs(&self) -> i64 {
        i64::try_from(self.timeout.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Whether an approval lets `key`'s call through now: one for the rest of the grant
    /// (this tool under this grant), or a single approval of these very arguments not
    /// used yet — which this use consumes (of two concurrent calls, one gets it).
    pub async fn admit(&self, key: &CallKey) -> Result<Option<Approval>, ApprovalError> {
        let now = self.now();
        let grant_wide = format!(
            "SELECT {COLUMNS} FROM consent_approvals WHERE grant_id = $1 AND server = $2 \
             AND tool = $3 AND user_id = $4 AND client_id = $5 AND status = 'approved' \
             AND scope = 'grant' LIMIT 1"
        );
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(&grant_wide)
                .bind(&key.grant_id)
                .bind(&key.server)
                .bind(&key.tool)
                .bind(&key.user_id)
                .bind(&key.client_id)
                .fetch_optional(pool)
                .await?
        });
        if let Some(row) = row {
            return row.into_approval().map(Some);
        }
        let single = format!(
            "SELECT {COLUMNS} FROM consent_approvals WHERE grant_id = $1 AND server = $2 \
             AND tool = $3 AND user_id = $4 AND client_id = $5 AND args_hash = $6 \
             AND status = 'approved' AND scope = 'once' AND used_at IS NULL \
             AND expires_at > $7 ORDER BY decided_at LIMIT 1"
        );
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(&single)
                .bind(&key.grant_id)
                .bind(&key.server)
                .bind(&key.tool)
                .bind(&key.user_id)
                .bind(&key.client_id)
                .bind(&key.args_hash)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let approval = row.into_approval()?;
        self.consume(approval, now).await
    }

    /// Marks a single approval used; `None` when another call used it first.
    async fn consume(
        &self,
        mut approval: Approval,
        now: i64,
    ) -> Result<Option<Approval>, ApprovalError> {
        let sql = "UPDATE consent_approvals SET used_at = $2 WHERE id = $1 \
                   AND status = 'approved' AND used_at IS NULL";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(&approval.id).bind(now).execute(pool).await?.rows_affected()
        });
        if n == 0 {
            return Ok(None);
        }
        approval.used_at = Some(now);
        tracing::info!(approval = %approval.id, "approved call let through");
        Ok(Some(approval))
    }

    /// The pending approval of `key`'s call (a client that retries before the person
    /// decided asks no second time), or a new one with `preview`. Returns it and whether
    /// it is new (then the person is told: an email). `shown` is what the page shows of
    /// the arguments.
    pub async fn request(
        &self,
        key: &CallKey,
        shown: &Shown,
    ) -> Result<(Approval, bool), ApprovalError> {
        let now = self.now();
        self.expire_due(now, Some(&key.user_id)).await?;
        let pending = format!(
            "SELECT {COLUMNS} FROM consent_approvals WHERE grant_id = $1 AND server = $2 \
             AND tool = $3 AND user_id = $4 AND client_id = $5 AND args_hash = $6 \
             AND status = 'pending' AND expires_at > $7 ORDER BY created_at DESC LIMIT 1"
        );
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(&pending)
                .bind(&key.grant_id)
                .bind(&key.server)
                .bind(&key.tool)
                .bind(&key.user_id)
                .bind(&key.client_id)
                .bind(&key.args_hash)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        if let Some(row) = row {
            return Ok((row.into_approval()?, false));
        }
        let approval = Approval {
            id: new_id(),
            key: key.clone(),
            preview: shown.preview.clone(),
            arguments: Some(shown.arguments.clone()),
            status: Status::Pending,
            scope: None,
            created_at: now,
            expires_at: now.saturating_add(self.timeout_secs()),
            decided_by: None,
            decided_at: None,
            method: None,
            used_at: None,
        };
        let sql = "INSERT INTO consent_approvals (id, user_id, client_id, grant_id, server, \
                   tool, args_hash, preview, arguments, status, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11)";
        on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&approval.id)
                .bind(&key.user_id)
                .bind(&key.client_id)
                .bind(&key.grant_id)
                .bind(&key.server)
                .bind(&key.tool)
                .bind(&key.args_hash)
                .bind(&approval.preview)
                .bind(&approval.arguments)
                .bind(now)
                .bind(approval.expires_at)
                .execute(pool)
                .await?;
        });
        tracing::info!(approval = %approval.id, user = %key.user_id, agent = %key.client_id, server = %key.server, tool = %key.tool, "critical call held for approval");
        Ok((approval, true))
    }

    /// An approval by id (expired at once when its time is up).
    pub async fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_approvals WHERE id = $1");
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        let Some(mut approval) = row.map(Row::into_approval).transpose()? else {
            return Ok(None);
        };
        let now = self.now();
        if approval.status == Status::Pending && approval.expires_at <= now {
            self.expire_due(now, Some(&approval.key.user_id)).await?;
            approval.status = Status::Expired;
        }
        Ok(Some(approval))
    }

    /// The approval `id` if it belongs to `user_id` (anyone else: not found).
    pub async fn get_for(
        &self,
        id: &str,
        user_id: &str,
    ) -> Result<Option<Approval>, ApprovalError> {
        Ok(self.get(id).await?.filter(|a| a.key.user_id == user_id))
    }

    /// A person's approvals, pending first (oldest first), then the most recent decided
    /// ones (at most `recent`).
    pub async fn for_user(
        &self,
        user_id: &str,
        recent: i64,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let now = self.now();
        self.expire_due(now, Some(user_id)).await?;
        let pending = format!(
            "SELECT {COLUMNS} FROM consent_approvals WHERE user_id = $1 AND status = 'pending' \
             ORDER BY created_at, id"
        );
        let decided = format!(
            "SELECT {COLUMNS} FROM consent_approvals WHERE user_id = $1 AND status <> 'pending' \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let (mut rows, more): (Vec<Row>, Vec<Row>) = on_pool!(&self.db, pool => {
            (
                sqlx::query_as(&pending).bind(user_id).fetch_all(pool).await?,
                sqlx::query_as(&decided).bind(user_id).bind(recent).fetch_all(pool).await?,
            )
        });
        rows.extend(more);
        rows.into_iter().map(Row::into_approval).collect()
    }

    /// Records the owner's decision on a pending approval. Someone else's approval, or
    /// an unknown id, is [`ApprovalError::NotFound`]; one decided already or expired is
    /// [`ApprovalError::Closed`]. An approved single call may then be made within the
    /// timeout.
    pub async fn decide(
        &self,
        id: &str,
        user_id: &str,
        decision: Decision,
        method: Method,
    ) -> Result<Approval, ApprovalError> {
        let now = self.now();
        let (status, scope, expires) = match decision {
            Decision::Approve(scope) => (
                Status::Approved,
                Some(scope.as_str()),
                now.saturating_add(self.timeout_secs()),
            ),
            Decision::Deny => (Status::Denied, None, now),
        };
        let sql = "UPDATE consent_approvals SET status = $3, scope = $4, decided_by = $2, \
                   decided_at = $5, method = $6, \
                   expires_at = CASE WHEN expires_at > $7 THEN expires_at ELSE $7 END \
                   WHERE id = $1 AND user_id = $2 AND status = 'pending' AND expires_at > $5";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(id)
                .bind(user_id)
                .bind(status.as_str())
                .bind(scope)
                .bind(now)
                .bind(method.as_str())
                .bind(expires)
                .execute(pool)
                .await?
                .rows_affected()
        });
        let approval = self
            .get_for(id, user_id)
            .await?
            .ok_or(ApprovalError::NotFound)?;
        if n == 0 {
            return Err(ApprovalError::Closed(approval.status));
        }
        tracing::info!(approval = %id, user = %user_id, status = status.as_str(), scope = ?scope, method = method.as_str(), "approval decided");
        Ok(approval)
    }

    /// The approval a retry names (by its `requestState`), checked against the retried
    /// call: `None` when unknown or issued for another call. An approved single call is
    /// consumed here; one used already reads as `None` too (make the call again).
    pub async fn resume(&self, id: &str, key: &CallKey) -> Result<Option<Approval>, ApprovalError> {
        let Some(approval) = self.get(id).await?.filter(|a| a.is_for(key)) else {
            return Ok(None);
        };
        match (approval.status, approval.scope) {
            (Status::Approved, Some(Scope::Once)) => self.consume(approval, self.now()).await,
            _ => Ok(Some(approval)),
        }
    }

    /// Ends every undecided approval of `user_id` as [`Status::Withdrawn`] (the person
    /// was disabled: the calls waiting for them are denied). Returns how many.
    pub async fn withdraw_pending_of(&self, user_id: &str) -> Result<u64, ApprovalError> {
        let now = self.now();
        let sql = "UPDATE consent_approvals SET status = 'withdrawn', decided_at = $2 \
                   WHERE user_id = $1 AND status = 'pending'";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(user_id).bind(now).execute(pool).await?.rows_affected()
        });
        if n > 0 {
            tracing::info!(user = %user_id, approvals = n, "held calls withdrawn");
        }
        Ok(n)
    }

    /// Marks pending approvals whose time is up as expired (of one user, or all).
    async fn expire_due(&self, now: i64, user_id: Option<&str>) -> Result<u64, ApprovalError> {
        let n = match user_id {
            Some(user) => {
                let sql = "UPDATE consent_approvals SET status = 'expired' \
                           WHERE user_id = $1 AND status = 'pending' AND expires_at <= $2";
                on_pool!(&self.db, pool => {
                    sqlx::query(sql).bind(user).bind(now).execute(pool).await?.rows_affected()
                })
            }
            None => {
                let sql = "UPDATE consent_approvals SET status = 'expired' \
                           WHERE status = 'pending' AND expires_at <= $1";
                on_pool!(&self.db, pool => {
                    sqlx::query(sql).bind(now).execute(pool).await?.rows_affected()
                })
            }
        };
        if n > 0 {
            tracing::info!(approvals = n, "approvals expired undecided");
        }
        Ok(n)
    }
}

/// A fresh approval id: 256 random bits, base64url.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `id` could be an approval id (so that a malformed one is refused before any
/// lookup).
pub fn plausible_id(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 (hex) of the arguments' canonical JSON (keys sorted at every depth, no
/// whitespace): the same arguments in any key order give the same hash; no arguments
/// and `{}` are alike.
pub fn args_hash(args: Option<&Map<String, Value>>) -> String {
    let mut text = String::new();
    match args {
        Some(map) => canonical(&Value::Object(map.clone()), &mut text),
        None => text.push_str("{}"),
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The longest preview, in characters.
const PREVIEW_CHARS: usize = 300;
/// The longest value shown in a preview, in characters.
const VALUE_CHARS: usize = 40;
/// Key words that mark a value as secret: never shown.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "auth",
    "credential",
    "private",
    "cookie",
    "session",
];

/// A short, human-readable preview of a call's arguments for the approval page: top-
/// level keys in order, strings truncated, nested values summarised, values of keys that
/// look secret masked, the whole at most a few hundred characters.
pub fn preview(args: Option<&Map<String, Value>>) -> String {
    let Some(map) = args.filter(|m| !m.is_empty()) else {
        return String::from("(no arguments)");
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut parts = Vec::with_capacity(keys.len());
    for key in keys {
        let lower = key.to_ascii_lowercase();
        let shown = if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
            String::from("•••")
        } else {
            match &map[key] {
                Value::String(s) => format!("\"{}\"", truncate(s, VALUE_CHARS)),
                Value::Array(items) => format!("[{} items]", items.len()),
                Value::Object(inner) => format!("{{{} fields}}", inner.len()),
                other => truncate(&other.to_string(), VALUE_CHARS),
            }
        };
        parts.push(format!("{}: {shown}", truncate(key, VALUE_CHARS)));
    }
    truncate(&parts.join(", "), PREVIEW_CHARS)
}

/// Whether `c` changes how text around it reads without showing itself: direction
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), direction marks,
/// zero-width characters, the byte order mark, the soft hyphen.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2060}'..='\u{2064}'
        | '\u{061C}'
        | '\u{FEFF}'
        | '\u{00AD}'
        | '\u{180E}')
}

/// `text` with control characters as spaces and invisible or direction-changing ones
/// spelled out (`⟨U+202E⟩`), so that a person reads what is there.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_invisible(c) {
            out.push_str(&format!("⟨U+{:04X}⟩", u32::from(c)));
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    let clean = visible(text);
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[path = "approvals_shown.rs"]
mod shown;
pub use shown::{ARGUMENTS_BYTES, arguments, visible_text};

#[cfg(test)]
#[path = "approvals_tests.rs"]
mod tests;
