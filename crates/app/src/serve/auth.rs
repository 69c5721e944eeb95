//! The shared-secret check in front of the webhook.

use std::fmt;

use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::webhook::{reply, Reply};

/// The webhook's shared secret (`WEBHOOK_TOKEN`). Its `Debug` prints `***`.
#[derive(Clone)]
pub struct WebhookToken(SecretString);

/// Why a string cannot be a [`WebhookToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookTokenError {
    /// Empty or only whitespace: it would let anyone in, or no one.
    #[error("WEBHOOK_TOKEN cannot be empty or whitespace only")]
    Blank,
}

impl WebhookToken {
    /// Accepts any non-blank string, trimmed (a stray newline from a secrets
    /// file would otherwise make every request fail).
    pub fn parse(raw: &str) -> Result<Self, WebhookTokenError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(WebhookTokenError::Blank);
        }
        Ok(Self(SecretString::from(trimmed.to_owned())))
    }

    /// Whether `candidate` is this token, in time that does not depend on where
    /// the two first differ.
    fn matches(&self, candidate: &str) -> bool {
        self.0
            .expose_secret()
            .as_bytes()
            .ct_eq(candidate.as_bytes())
            .into()
    }
}

impl fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookToken(***)")
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Lets a request through when it carries the token as `Authorization: Bearer`
/// or, for senders that cannot set headers (Pub/Sub push), as `?token=`.
pub(super) async fn require_token(
    State(token): State<Option<WebhookToken>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.strip_prefix("Bearer "))
        .any(|candidate| token.matches(candidate.trim()));
    let authorised = bearer
        || Query::<TokenQuery>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(query)| query.token)
            .is_some_and(|candidate| token.matches(&candidate));
    if authorised {
        next.run(request).await
    } else {
        // The URI is not logged: it may hold a (wrong, but maybe nearly right) token.
        tracing::warn!("webhook request without a valid token refused");
        reply(Reply::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_tokens_are_refused() {
        for blank in ["", "  ", "\n\t"] {
            assert_eq!(
                WebhookToken::parse(blank).unwrap_err(),
                WebhookTokenError::Blank
            );
        }
    }

    #[test]
    fn token_never_prints_and_matches_only_itself() {
        let token = WebhookToken::parse(" s3cret\n").unwrap();
        assert_eq!(format!("{token:?}"), "WebhookToken(***)");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret2"));
        assert!(!token.matches(""));
    }
}
