//! OAuth2 client credentials: one token shared by every request, fetched again
//! shortly before it expires or when the API says it is no longer valid.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The longest margin before `expires_in` at which a token is renewed. Tokens
/// usually live two days, so a minute is plenty for requests in flight.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(60);

/// A bearer token and the instant after which it is no longer handed out.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub(crate) value: SecretString,
    /// The scopes the token grants.
    pub(crate) scopes: Vec<String>,
    renew_at: Instant,
}

impl CachedToken {
    /// A token received at `now` that the server says lives `expires_in`.
    /// Renewed a minute early, or at 90 % of its life when that is sooner.
    pub(crate) fn new(value: SecretString, expires_in: Duration, now: Instant) -> Self {
        // A server may claim any lifetime; a year is forever for a token, and keeps
        // the arithmetic below from overflowing.
        let expires_in = expires_in.min(Duration::from_secs(365 * 24 * 3600));
        let margin = MAX_RENEWAL_MARGIN.min(expires_in / 10);
        Self {
            value,
            scopes: Vec::new(),
            renew_at: now + expires_in.saturating_sub(margin),
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.renew_at
    }
}

/// The token endpoint's success body.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    /// The scopes granted, space-separated.
    #[serde(default)]
    pub(crate) scope: String,
}

/// The token endpoint's error body (RFC 6749 §5.2).
#[derive(Deserialize, Default)]
pub(crate) struct TokenErrorResponse {
    #[serde(default)]
    pub(crate) error: String,
}

/// The cached token, behind an async lock so that concurrent requests wait for
/// one token request instead of each sending their own.
#[derive(Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<CachedToken>>,
}

impl TokenCache {
    /// The cached token if still fresh, else the one `fetch` obtains (cached).
    pub(crate) async fn get_or_fetch<F, Fut, E>(&self, fetch: F) -> Result<CachedToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<CachedToken, E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.is_fresh(Instant::now())) {
            return Ok(token.clone());
        }
        let token = fetch().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// Forgets `rejected` unless another request already replaced it.
    pub(crate) async fn invalidate(&self, rejected: &SecretString) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == rejected.expose_secret())
        {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_lived_token_is_renewed_a_minute_early() {
        let now = Instant::now();
        let token = CachedToken::new("t".into(), Duration::from_secs(172_800), now);
        assert!(token.is_fresh(now + Duration::from_secs(172_739)));
        assert!(!token.is_fresh(now + Duration::from_secs(172_740)));
    }

    #[test]
    fn a_short_lived_token_is_renewed_at_ninety_percent() {
        let now = Instant::now();
        let token = CachedToken::new("t".into(), Duration::from_secs(100), now);
        assert!(token.is_fresh(now + Duration::from_secs(89)));
        assert!(!token.is_fresh(now + Duration::from_secs(90)));
    }

    #[tokio::test]
    async fn invalidate_leaves_a_newer_token_alone() {
        let cache = TokenCache::default();
        let fresh = |v: &str| {
            let token = CachedToken::new(v.into(), Duration::from_secs(3600), Instant::now());
            async move { Ok::<_, ()>(token) }
        };
        let first = cache.get_or_fetch(|| fresh("one")).await.unwrap().value;
        assert_eq!(first.expose_secret(), "one");
        cache.invalidate(&SecretString::from("older")).await;
        let still = cache.get_or_fetch(|| fresh("two")).await.unwrap().value;
        assert_eq!(still.expose_secret(), "one");
        cache.invalidate(&first).await;
        let renewed = cache.get_or_fetch(|| fresh("two")).await.unwrap().value;
        assert_eq!(renewed.expose_secret(), "two");
    }
}
