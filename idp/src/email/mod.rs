//! Sign-in by email magic link, and invitations by an admin. Owned tables:
//! `idp_email_tokens` (one-time link tokens, SHA-256 only) and `idp_rate_events`
//! (the `email-link:*` buckets).
//!
//! ```text
//! person            Warrant (any replica)                 SMTP server
//!   | POST /signin/email  |                                    |
//!   |-------------------->| shape check, rate limits (db)      |
//!   |<--------------------| "if an account exists…" (always)  |
//!   |                     |-- spawned: account? token, mail -->|
//!   | GET link            |                                    |
//!   |-------------------->| token still valid? confirm page    |
//!   | POST (token, csrf)  |                                    |
//!   |-------------------->| consume once (atomic UPDATE), sign in
//! ```
//!
//! - The request path does the same work whether or not the address has an account:
//!   the lookup, the token and the mail happen in a spawned task, so neither the page
//!   nor its timing tells.
//! - Opening a link (GET) only shows a "Sign in" button; the POST consumes the token,
//!   so mail scanners that fetch links do not burn them.
//! - A token is random (256 bits), stored as its SHA-256, valid once and briefly; using
//!   one also retires every other open link of that address.

mod mailer;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{EmailConfig, IdpConfig};
use crate::db::Db;
use crate::error::IdpError;
use crate::users::{self, NewUser, Role, Status, User, Users};

use crate::rate::{RateError, RateLimiter};
use mailer::Mailer;
use tokens::Tokens;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Sign-in link asked for on the sign-in page.
    Login,
    /// Invitation sent by an admin.
    Invite,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Invite => "invite",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(Self::Login),
            "invite" => Some(Self::Invite),
            _ => None,
        }
    }
}

/// A link that is still valid, as the confirmation page shows it (before it is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPreview {
    pub email: String,
    pub purpose: Purpose,
}

/// What an invitation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invitation {
    /// A new user (status `invited`) and their invitation mail.
    Sent,
    /// The address was already invited and had not signed in: a fresh invitation went out.
    Resent,
}

/// Sign-in links by email.
#[derive(Debug, Clone)]
pub struct MagicLinks {
    config: Arc<IdpConfig>,
    users: Users,
    tokens: Tokens,
    rate: RateLimiter,
    mailer: Option<Arc<Mailer>>,
}

/// Longest display name an invitation sets.
const MAX_NAME_CHARS: usize = 100;

impl MagicLinks {
    /// The service; checks the `[auth.email]` settings (sender, TLS) without connecting.
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        let mailer = config
            .email
            .as_ref()
            .map(|email| Mailer::new(email).map(Arc::new))
            .transpose()?;
        Ok(Self {
            users: Users::new(db.clone(), clock.clone()),
            tokens: Tokens::new(db.clone(), clock.clone()),
            rate: RateLimiter::new(db, clock, "email-link:"),
            mailer,
            config,
        })
    }

    /// Whether sign-in by email is offered (an SMTP server is configured).
    pub fn enabled(&self) -> bool {
        self.config.email.is_some()
    }

    /// Sends a plain-text notice to a person (a call waiting for their approval, say)
    /// through the configured SMTP server. `Ok(false)`: email is not set up here.
    pub async fn send_notice(
        &self,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<bool, IdpError> {
        let Some(mailer) = &self.mailer else {
            return Ok(false);
        };
        mailer.send(to, subject, body).await?;
        Ok(true)
    }

    fn settings(&self) -> Result<(&EmailConfig, &Arc<Mailer>), IdpError> {
        match (&self.config.email, &self.mailer) {
            (Some(config), Some(mailer)) => Ok((config, mailer)),
            _ => Err(IdpError::Invalid(
                "Sign-in by email is not set up here. Choose another way to sign in.".into(),
            )),
        }
    }

    /// Asks for a sign-in link for `email`, from `ip`. Refuses a malformed address and a
    /// request over the per-address or per-IP limit; otherwise answers `Ok` at once,
    /// whether or not the address has an account, and mails the link in the background
    /// only if an active or invited user has that address. `next` (a local path) is
    /// where the link leads after sign-in.
    #[tracing::instrument(skip_all)]
    pub async fn request_login(
        &self,
        email: &str,
        ip: Option<&str>,
        next: Option<&str>,
    ) -> Result<(), IdpError> {
        let (config, _) = self.settings()?;
        let email = users::normalize_email(email);
        if !users::plausible_email(&email) {
            return Err(IdpError::Invalid(
                "That does not look like an email address. Check it and try again.".into(),
            ));
        }
        if let Some(ip) = ip {
            self.rate
                .hit(
                    &self.rate.ip_bucket(ip),
                    config.per_ip_limit,
                    config.rate_window,
                    "sign-in links from one client address",
                )
                .await
                .map_err(rate_error)?;
        }
        self.rate
            .hit(
                &self.rate.hashed_bucket("addr", &email),
                config.per_address_limit,
                config.rate_window,
                "sign-in links for one email address",
            )
            .await
            .map_err(rate_error)?;
        let this = self.clone();
        let ip = ip.map(str::to_owned);
        let next = next.filter(|n| is_local_path(n)).map(str::to_owned);
        tokio::spawn(async move {
            if let Err(e) = this
                .send_login_link(&email, ip.as_deref(), next.as_deref())
                .await
            {
                tracing::warn!(error = %e, "a sign-in link could not be sent");
            }
        });
        Ok(())
    }

    /// The background half of [`MagicLinks::request_login`].
    async fn send_login_link(
        &self,
        email: &str,
        ip: Option<&str>,
        next: Option<&str>,
    ) -> Result<(), IdpError> {
        let (config, mailer) = self.settings()?;
        let user = match self.users.by_email(email).await? {
            Some(user) if user.status != Status::Disabled => user,
            Some(user) => {
                tracing::info!(user = %user.id, "sign-in link asked for a disabled account; none sent");
                return Ok(());
            }
            None => {
                tracing::info!("sign-in link asked for an address without an account; none sent");
                return Ok(());
            }
        };
        let token = self
            .tokens
            .issue(email, Purpose::Login, &user.id, config.link_ttl, ip)
            .await?;
        let link = self.link(&token, next);
        let body = mailer::login_body(self.config.public_url.as_str(), &link, config.link_ttl);
        mailer
            .send(email, "Your sign-in link for Warrant", body)
            .await?;
        tracing::info!(user = %user.id, "sign-in link sent");
        Ok(())
    }

    /// Invites `email` (with an optional display name) on behalf of the admin `by`:
    /// creates the user with status `invited` and role member, and mails an invitation
    /// link valid `invite_ttl`. An address whose invitation is still pending gets a fresh
    /// one; any other existing account is [`IdpError::EmailTaken`]. Mail failures are
    /// returned (the admin is told), the user stays invited and can be invited again.
    #[tracing::instrument(skip_all, fields(admin = %by.id))]
    pub async fn invite(
        &self,
        email: &str,
        name: Option<&str>,
        by: &User,
    ) -> Result<Invitation, IdpError> {
        let (config, mailer) = self.settings()?;
        let email = users::normalize_email(email);
        if !users::plausible_email(&email) {
            return Err(IdpError::Invalid(
                "That does not look like an email address. Check it and try again.".into(),
            ));
        }
        let name = clean_name(name.unwrap_or_default());
        let (user, outcome) = match self.users.by_email(&email).await? {
            Some(user) if user.status == Status::Invited => (user, Invitation::Resent),
            Some(_) => return Err(IdpError::EmailTaken),
            None => {
                let display_name = if name.is_empty() {
                    email.split('@').next().unwrap_or_default().to_owned()
                } else {
                    name.clone()
                };
                let user = self
                    .users
                    .create(NewUser {
                        email: email.clone(),
                        display_name,
                        role: Role::Member,
                        status: Status::Invited,
                    })
                    .await?;
                (user, Invitation::Sent)
            }
        };
        let token = self
            .tokens
            .issue(&email, Purpose::Invite, &user.id, config.invite_ttl, None)
            .await?;
        let link = self.link(&token, None);
        let inviter = clean_name(&by.display_name);
        let body = mailer::invite_body(
            self.config.public_url.as_str(),
            &link,
            &user.display_name,
            &inviter,
            config.invite_ttl,
        );
        mailer
            .send(&email, "You are invited to Warrant", body)
            .await?;
        tracing::info!(user = %user.id, resent = outcome == Invitation::Resent, "invitation sent");
        Ok(outcome)
    }

    /// Whether `token` is a link that may still be used (nothing is consumed): what the
    /// confirmation page shows. Unknown, used, expired and tampered links, and links of
    /// a disabled account, are all [`IdpError::LinkInvalid`].
    pub async fn preview(&self, token: &str) -> Result<LinkPreview, IdpError> {
        let record = self.tokens.find_open(token).await?;
        self.holder(&record).await?;
        Ok(LinkPreview {
            email: record.email,
            purpose: record.purpose,
        })
    }

    /// Uses `token` once (atomically: of two concurrent uses one wins) and returns the
    /// user it signs in. The caller starts the session and records the login (an invited
    /// user becomes active). Every other open link of the address is retired.
    pub async fn consume(&self, token: &str) -> Result<User, IdpError> {
        let record = self.tokens.consume(token).await?;
        let user = self.holder(&record).await?;
        self.tokens.retire_all(&record.email).await?;
        tracing::info!(user = %user.id, purpose = record.purpose.as_str(), "email link used");
        Ok(user)
    }

    /// The user a link signs in, if they still may: the account exists, has the
    /// address the link was sent to, and is not disabled.
    async fn holder(&self, record: &tokens::TokenRecord) -> Result<User, IdpError> {
        let user = match &record.user_id {
            Some(id) => self.users.get(id).await?,
            None => None,
        };
        match user {
            Some(user) if user.status != Status::Disabled && user.email == record.email => Ok(user),
            Some(user) => {
                tracing::info!(user = %user.id, "email link of a disabled or changed account refused");
                Err(IdpError::LinkInvalid)
            }
            None => Err(IdpError::LinkInvalid),
        }
    }

    /// `public_url/auth/email?token=…[&next=…]`.
    fn link(&self, token: &str, next: Option<&str>) -> String {
        let mut link = self.config.url("/auth/email");
        link.push_str("?token=");
        link.push_str(token);
        if let Some(next) = next.filter(|n| is_local_path(n) && *n != "/account") {
            link.push_str("&next=");
            link.extend(url::form_urlencoded::byte_serialize(next.as_bytes()));
        }
        link
    }
}

/// A path on this site (never `//host`, a scheme or a backslash trick).
fn is_local_path(path: &str) -> bool {
    crate::next::local_path(path).is_some()
}

/// A display name as given by a person: trimmed, one line, bounded.
fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

/// `15 minutes`, `7 days`, `1 hour`: a validity period in words for a mail.
fn in_words(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let (n, unit) = if secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3_600) {
        (secs / 3_600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

fn rate_error(e: RateError) -> IdpError {
    match e {
        RateError::Storage(e) => IdpError::Storage(e),
        limited => IdpError::RateLimited(limited.to_string()),
    }
}
