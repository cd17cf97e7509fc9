//! The identity provider's errors. Each says what went wrong in words a person
//! understands ([`IdpError::user_message`]) and keeps the technical reason for the log
//! (`Display`). The pages render the first and log the second; neither reveals whether
//! an email address has an account.

/// Why a sign-in step, a session or an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("session store failed: {0}")]
    Session(String),
    #[error("the form's CSRF token is missing or does not match the session")]
    Csrf,
    #[error("not signed in")]
    NotSignedIn,
    #[error("the account {0} is disabled")]
    Disabled(String),
    #[error("an account with this email address already exists")]
    EmailTaken,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the link is invalid, already used or expired")]
    LinkInvalid,
    #[error("too many requests: {0}")]
    RateLimited(String),
    #[error("sign-in with {provider} failed: {reason}")]
    Oidc { provider: String, reason: String },
    #[error("{provider} account not allowed: {reason}")]
    NotAllowed { provider: String, reason: String },
    #[error("passkey ceremony failed: {0}")]
    Passkey(String),
    #[error("sending mail failed: {0}")]
    Mail(String),
    #[error("{0}")]
    Invalid(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// What was asked must be recorded first, and the record cannot be written now.
    #[error("cannot be recorded: {0}")]
    Unrecorded(String),
}

impl IdpError {
    /// What the person sees: plain words, no internals, no account enumeration.
    pub fn user_message(&self) -> String {
        match self {
            Self::Storage(_) | Self::Session(_) => {
                "Something went wrong on our side. Please try again in a moment.".into()
            }
            Self::Csrf => "This form expired or was sent from another page. Go back, reload \
                           the page and try again."
                .into(),
            Self::NotSignedIn => "Please sign in first.".into(),
            Self::Disabled(_) => "This account is disabled. Ask an administrator.".into(),
            Self::EmailTaken => "An account with this email address already exists.".into(),
            Self::NotFound(what) => format!("That {what} does not exist (any more)."),
            Self::LinkInvalid => "This link is not valid any more: it was already used, it \
                                  expired, or it was changed. Ask for a new one."
                .into(),
            Self::RateLimited(_) => {
                "Too many attempts. Please wait a few minutes and try again.".into()
            }
            Self::Oidc { provider, .. } => format!(
                "Sign-in with {provider} did not complete. Please start again from the \
                 sign-in page."
            ),
            Self::NotAllowed { provider, reason } => {
                format!("Your {provider} account cannot sign in here: {reason}.")
            }
            Self::Passkey(_) => "The passkey could not be verified. Try again, or use \
                                 another way to sign in."
                .into(),
            Self::Mail(_) => "We could not send the email. Please try again later.".into(),
            Self::Invalid(reason) | Self::Forbidden(reason) => reason.clone(),
            Self::Unrecorded(_) => "This was not done: the audit record of it cannot be \
                                    written right now. Please try again in a moment; if \
                                    it keeps failing, tell an administrator."
                .into(),
        }
    }

    /// The HTTP status a page answering with this error uses.
    pub fn status(&self) -> u16 {
        match self {
            Self::Storage(_) | Self::Session(_) | Self::Mail(_) => 500,
            Self::Unrecorded(_) => 503,
            Self::Csrf | Self::Disabled(_) | Self::NotAllowed { .. } | Self::Forbidden(_) => 403,
            Self::NotSignedIn => 401,
            Self::EmailTaken => 409,
            Self::NotFound(_) => 404,
            Self::RateLimited(_) => 429,
            Self::LinkInvalid | Self::Oidc { .. } | Self::Passkey(_) | Self::Invalid(_) => 400,
        }
    }
}
