//! The SMTP side: one lettre transport built from `[auth.email]` (plain, STARTTLS
//! required, or TLS from the first byte; optional credentials), plain-text messages, and
//! a bound on the whole SMTP conversation.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::in_words;
use crate::config::{EmailConfig, SmtpTls};
use crate::error::IdpError;

/// Sends mail through the configured SMTP server.
pub(crate) struct Mailer {
    host: String,
    port: u16,
    mode: SmtpTls,
    tls: Tls,
    credentials: Option<Credentials>,
    from: Mailbox,
    timeout: Duration,
    /// Built on first use, inside the runtime (lettre's pool spawns a task when built).
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.mode)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Mailer {
    /// Checks the settings (sender mailbox, TLS parameters) without connecting.
    pub(crate) fn new(config: &EmailConfig) -> Result<Self, IdpError> {
        let from: Mailbox = config.from.parse().map_err(|e| {
            IdpError::Invalid(format!(
                "auth.email.from: {:?} is not a mailbox: {e}",
                config.from
            ))
        })?;
        let params = || {
            TlsParameters::new(config.smtp_host.clone()).map_err(|e| {
                IdpError::Invalid(format!("auth.email: TLS for {}: {e}", config.smtp_host))
            })
        };
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(params()?),
            SmtpTls::Tls => Tls::Wrapper(params()?),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            (Some(_), None) => {
                tracing::warn!("auth.email.username is set without a password; not authenticating");
                None
            }
            _ => None,
        };
        Ok(Self {
            host: config.smtp_host.clone(),
            port: config.smtp_port,
            mode: config.tls,
            tls,
            credentials,
            from,
            timeout: config.timeout,
            transport: OnceLock::new(),
        })
    }

    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| {
            let mut builder =
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
                    .port(self.port)
                    .tls(self.tls.clone())
                    .timeout(Some(self.timeout));
            if let Some(credentials) = &self.credentials {
                builder = builder.credentials(credentials.clone());
            }
            builder.build()
        })
    }

    /// Sends one plain-text message to `to`; the whole conversation is bounded by the
    /// configured timeout. Errors name the server's answer for the log, never the
    /// message (which holds a link).
    pub(crate) async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), IdpError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| IdpError::Mail(format!("recipient is not a mailbox: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| IdpError::Mail(format!("cannot build the message: {e}")))?;
        match tokio::time::timeout(self.timeout, self.transport().send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(IdpError::Mail(format!(
                "SMTP server {}:{}: {e}",
                self.host, self.port
            ))),
            Err(_) => Err(IdpError::Mail(format!(
                "SMTP server {}:{} did not finish within {:?}",
                self.host, self.port, self.timeout
            ))),
        }
    }
}

/// The text of a sign-in link mail.
pub(crate) fn login_body(site: &str, link: &str, ttl: Duration) -> String {
    format!(
        "Hello,\n\n\
         someone (hopefully you) asked for a link to sign in to Warrant at {site}\n\
         with this email address. To sign in, open this link within {ttl}:\n\n\
         {link}\n\n\
         The link works once. If you did not ask for it, ignore this email: nobody can\n\
         sign in without the link.\n",
        ttl = in_words(ttl),
    )
}

/// The text of an invitation mail.
pub(crate) fn invite_body(
    site: &str,
    link: &str,
    name: &str,
    inviter: &str,
    ttl: Duration,
) -> String {
    format!(
        "Hello {name},\n\n\
         {inviter} invited you to Warrant at {site}, the gateway through which your AI\n\
         agents reach your organisation's tools. To accept and sign in, open this link\n\
         within {ttl}:\n\n\
         {link}\n\n\
         The link works once. Afterwards, add a passkey on your account page or ask for\n\
         a new sign-in link on the sign-in page.\n",
        ttl = in_words(ttl),
    )
}
