//! Who may post to the webhook: the one place that decides.
//!
//! A request is let in when it carries the shared token (`WEBHOOK_TOKEN`, as
//! `Authorization: Bearer` or `?token=`) **or**, when `WEBHOOK_OIDC_AUDIENCE` is
//! set, a Google-signed Pub/Sub push token: either one authenticates. With
//! neither configured (`--allow-unauthenticated`) every request is let in.
//!
//! Independently of that, a body that is an SNS message must carry SNS's valid
//! signature ([`check_sns`]): a signature proves the message came from SNS, not
//! that it came from *our* topic, so it never replaces the token.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::oidc::{OidcError, OidcRefusal, OidcVerifier};
use super::sns::{SnsError, SnsVerifier};
use super::webhook::{reply, Reply};

/// The webhook's shared secret (`WEBHOOK_TOKEN`): one token, or two separated by a
/// comma while it is being rotated (both are accepted). Its `Debug` prints `***`.
#[derive(Clone)]
pub struct WebhookToken(Vec<SecretString>);

/// Why a string cannot be a [`WebhookToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookTokenError {
    /// Empty or only whitespace: it would let anyone in, or no one.
    #[error("WEBHOOK_TOKEN cannot be empty or whitespace only")]
    Blank,
    /// More than two tokens, or an empty one between commas.
    #[error("WEBHOOK_TOKEN holds one token, or two separated by a comma while rotating")]
    Malformed,
}

impl WebhookToken {
    /// Accepts one non-blank token, or two separated by a comma, each trimmed (a
    /// stray newline from a secrets file would otherwise make every request fail).
    pub fn parse(raw: &str) -> Result<Self, WebhookTokenError> {
        if raw.trim().is_empty() {
            return Err(WebhookTokenError::Blank);
        }
        let tokens: Vec<&str> = raw.split(',').map(str::trim).collect();
        if tokens.len() > 2 || tokens.iter().any(|t| t.is_empty()) {
            return Err(WebhookTokenError::Malformed);
        }
        Ok(Self(
            tokens
                .into_iter()
                .map(|t| SecretString::from(t.to_owned()))
                .collect(),
        ))
    }

    /// Whether `candidate` is one of the tokens. Every token is compared, each in
    /// time that depends neither on where the two first differ nor on the token's
    /// length.
    fn matches(&self, candidate: &str) -> bool {
        self.0
            .iter()
            .fold(false, |found, token| found | same(token, candidate))
    }
}

/// Whether `candidate` is `token`: both are compared as zero-padded blocks of the
/// same size, and their lengths in constant time.
fn same(token: &SecretString, candidate: &str) -> bool {
    let token = token.expose_secret().as_bytes();
    let candidate = candidate.as_bytes();
    let block = token.len().max(candidate.len()).max(COMPARED_BYTES);
    let padded = |bytes: &[u8]| {
        let mut out = vec![0u8; block];
        out[..bytes.len()].copy_from_slice(bytes);
        out
    };
    let same_bytes = padded(token).ct_eq(&padded(candidate));
    let same_length = (token.len() as u64).ct_eq(&(candidate.len() as u64));
    (same_bytes & same_length).into()
}

impl fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookToken(***)")
    }
}

/// Tokens up to this long are compared in the same time whatever their length.
const COMPARED_BYTES: usize = 256;

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// How senders are recognised: built once, shared by every request.
#[derive(Clone, Debug)]
pub(super) struct Senders {
    /// The shared secret; `None` when not set.
    pub(super) token: Option<WebhookToken>,
    /// Pub/Sub push tokens, when `WEBHOOK_OIDC_AUDIENCE` is set.
    pub(super) oidc: Option<Arc<OidcVerifier>>,
    /// SNS signatures, checked on every SNS message.
    pub(super) sns: Arc<SnsVerifier>,
}

impl Senders {
    /// No way to authenticate is configured: every request is let in.
    pub(super) fn open(&self) -> bool {
        self.token.is_none() && self.oidc.is_none()
    }
}

/// Lets a request through when it carries the token as `Authorization: Bearer`
/// or, for senders that cannot set headers, as `?token=`; or a valid Pub/Sub
/// push token as `Authorization: Bearer`.
pub(super) async fn require_sender(
    State(senders): State<Senders>,
    request: Request,
    next: Next,
) -> Response {
    if senders.open() {
        return next.run(request).await;
    }
    let bearers: Vec<String> = request
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(bearer_credentials)
        .map(|candidate| candidate.trim().to_owned())
        .collect();
    if let Some(token) = &senders.token {
        let by_token = bearers.iter().any(|candidate| token.matches(candidate))
            || Query::<TokenQuery>::try_from_uri(request.uri())
                .ok()
                .and_then(|Query(query)| query.token)
                .is_some_and(|candidate| token.matches(&candidate));
        if by_token {
            return next.run(request).await;
        }
    }
    if let (Some(oidc), Some(bearer)) = (&senders.oidc, bearers.first()) {
        match oidc.verify(bearer).await {
            Ok(()) => return next.run(request).await,
            // Not a JWT at all: most likely a wrong shared token, refused below.
            Err(OidcError::Refused(OidcRefusal::NotAJwt)) => {}
            Err(OidcError::Refused(why)) => {
                tracing::warn!(reason = %why, "webhook request with an invalid OIDC token refused");
                return reply(Reply::Unauthorized);
            }
            // Logged where it happened; the sender tries again.
            Err(OidcError::KeysUnavailable(_)) => return reply(Reply::Error),
        }
    }
    // The URI is not logged: it may hold a (wrong, but maybe nearly right) token.
    tracing::warn!("webhook request without a valid token refused");
    reply(Reply::Unauthorized)
}

/// Whether `body` is an SNS message, checked: `Ok(true)` when it is one and SNS
/// signed it, `Ok(false)` when it is not an SNS message, else the reply that
/// refuses it (401 when forged or altered, 500 when the certificate cannot be
/// fetched now).
pub(super) async fn check_sns(senders: &Senders, body: &[u8]) -> Result<bool, Reply> {
    let Some(message) = segment_sync_domain::webhook::sns_message(body) else {
        return Ok(false);
    };
    match senders.sns.verify(&message).await {
        Ok(()) => Ok(true),
        Err(SnsError::Refused(why)) => {
            tracing::warn!(reason = %why, "SNS message with an invalid signature refused");
            Err(Reply::Unauthorized)
        }
        // Logged where it happened; SNS tries again.
        Err(SnsError::CertUnavailable { .. }) => Err(Reply::Error),
    }
}

/// The credentials of a `Bearer` authorization; the scheme is matched in any
/// case, as HTTP says (RFC 9110 §11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("BEARER  abc"), Some(" abc"));
        assert_eq!(bearer_credentials("Basic abc"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
    }

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
    fn two_tokens_are_both_accepted_while_rotating() {
        let rotating = WebhookToken::parse(" old-token , new-token\n").unwrap();
        assert!(rotating.matches("old-token"));
        assert!(rotating.matches("new-token"));
        assert!(!rotating.matches("old-token,new-token"));
        assert!(!rotating.matches(""));
        for malformed in ["a,,", "a, ", ",b", "a,b,c"] {
            assert_eq!(
                WebhookToken::parse(malformed).unwrap_err(),
                WebhookTokenError::Malformed,
                "{malformed}"
            );
        }
        assert!(!format!("{rotating:?}").contains("token"));
    }

    #[test]
    fn token_never_prints_and_matches_only_itself() {
        let token = WebhookToken::parse(" s3cret\n").unwrap();
        assert_eq!(format!("{token:?}"), "WebhookToken(***)");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret2"));
        assert!(!token.matches(""));
        // Padding must not make a longer candidate equal.
        assert!(!token.matches("s3cret\0"));
        let long = "x".repeat(600);
        assert!(WebhookToken::parse(&long).unwrap().matches(&long));
        assert!(!WebhookToken::parse(&long).unwrap().matches(&long[..599]));
    }
}
