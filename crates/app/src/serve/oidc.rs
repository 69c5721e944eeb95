//! Pub/Sub push OIDC tokens: a Google-signed JWT in `Authorization: Bearer`,
//! verified against the issuer's JWKS.
//!
//! The keys are fetched once and kept for the JWKS's `Cache-Control: max-age`; a
//! token signed with a key not in the set fetches it again, but never more often
//! than [`MIN_REFRESH`], so a flood of made-up key ids cannot make us hammer the
//! issuer. Only RS256 is accepted (never `none`, never HMAC), from Google's
//! issuer, for our audience, unexpired, and from the configured service account
//! when one is set.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;

/// Google's JWKS, the default `WEBHOOK_OIDC_JWKS_URL`.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The issuers Google writes in `iss`.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// A token with a key id not in the set fetches the set again at most this often.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);

/// How long a JWKS served without `max-age` is kept.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest a JWKS is kept, whatever its `max-age` says.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long fetching the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a Pub/Sub push token must say (`WEBHOOK_OIDC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// `WEBHOOK_OIDC_AUDIENCE`: the `aud` the subscription was given.
    pub audience: String,
    /// `WEBHOOK_OIDC_JWKS_URL`: where the signing keys are.
    pub jwks_url: String,
    /// `WEBHOOK_OIDC_EMAIL`: the service account that must have signed, when set.
    pub email: Option<String>,
}

/// Why a token is not accepted. Each is logged; the token never is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcRefusal {
    /// Not three base64url parts with a JSON header.
    #[error("the bearer token is not a JWT")]
    NotAJwt,
    /// Signed with something other than RS256 (`none`, HS256, …).
    #[error("the OIDC token is signed with {0}; only RS256 is accepted")]
    Algorithm(String),
    /// No `kid` in the header, or one the issuer does not publish.
    #[error("the OIDC token's key is not in the JWKS")]
    UnknownKey,
    /// Past its `exp`.
    #[error("the OIDC token has expired")]
    Expired,
    /// `aud` is not `WEBHOOK_OIDC_AUDIENCE`.
    #[error("the OIDC token's audience is not WEBHOOK_OIDC_AUDIENCE")]
    Audience,
    /// `iss` is not Google.
    #[error("the OIDC token's issuer is not Google")]
    Issuer,
    /// The signature does not match the key.
    #[error("the OIDC token's signature does not verify")]
    Signature,
    /// `email` is not `WEBHOOK_OIDC_EMAIL`, or not verified.
    #[error("the OIDC token's email is not WEBHOOK_OIDC_EMAIL, or not verified")]
    Email,
    /// Any other broken claim (missing `exp`, `nbf` in the future, …).
    #[error("the OIDC token is invalid ({0})")]
    Invalid(String),
}

/// Why a token could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token is not acceptable: answer 401.
    #[error(transparent)]
    Refused(#[from] OidcRefusal),
    /// The JWKS cannot be fetched and no key is known: answer 5xx, so that the
    /// sender tries again.
    #[error("cannot fetch the OIDC keys from WEBHOOK_OIDC_JWKS_URL: {0}")]
    KeysUnavailable(String),
}

/// Verifies Pub/Sub push tokens; shared by every request.
pub struct OidcVerifier {
    config: OidcConfig,
    validation: Validation,
    client: reqwest::Client,
    keys: RwLock<KeySet>,
    /// One fetch at a time: requests that find the keys missing together wait
    /// for the same fetch.
    fetching: tokio::sync::Mutex<()>,
    min_refresh: Duration,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for `config` that refreshes for unknown keys at most every
    /// [`MIN_REFRESH`].
    pub fn new(config: OidcConfig) -> Self {
        Self::with_min_refresh(config, MIN_REFRESH)
    }

    /// A verifier that refreshes for unknown keys at most every `min_refresh`.
    pub fn with_min_refresh(config: OidcConfig, min_refresh: Duration) -> Self {
        // Another provider already installed (only ever this one here) is fine.
        let _ = RING_PROVIDER.install_default();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            config,
            validation,
            client,
            keys: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
            min_refresh,
        }
    }

    /// What the tokens must say.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Accepts `token` when it is a valid Google-signed token for our audience
    /// (and service account).
    pub async fn verify(&self, token: &str) -> Result<(), OidcError> {
        let kid = key_id(token)?;
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        if let Some(expected) = &self.config.email {
            let same = claims
                .email
                .is_some_and(|email| email.eq_ignore_ascii_case(expected));
            if !same || claims.email_verified != Some(true) {
                return Err(OidcRefusal::Email.into());
            }
        }
        Ok(())
    }

    /// Fetches the JWKS now and says how many keys it holds (for `check`).
    pub async fn fetch_now(&self) -> Result<usize, OidcError> {
        let _one = self.fetching.lock().await;
        self.fetch().await?;
        Ok(self.read().keys.len())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, OidcError> {
        if let Lookup::Use(key) = self.read().lookup(kid, Instant::now(), self.min_refresh) {
            return Ok(key);
        }
        let _one = self.fetching.lock().await;
        // Looked up again: the fetch this request waited for may have brought it.
        let lookup = self.read().lookup(kid, Instant::now(), self.min_refresh);
        match lookup {
            Lookup::Use(key) => Ok(key),
            Lookup::Unknown => Err(OidcRefusal::UnknownKey.into()),
            Lookup::Fetch => {
                let fetched = self.fetch().await;
                match self.read().lookup(kid, Instant::now(), self.min_refresh) {
                    Lookup::Use(key) => Ok(key),
                    _ => match fetched {
                        Err(error) => Err(error),
                        Ok(()) => Err(OidcRefusal::UnknownKey.into()),
                    },
                }
            }
        }
    }

    /// Fetches the JWKS into the set; on failure the keys known stay in use.
    async fn fetch(&self) -> Result<(), OidcError> {
        self.write().attempted(Instant::now());
        let fetched = async {
            let response = self
                .client
                .get(&self.config.jwks_url)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status().as_u16()));
            }
            let max_age = response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|value| value.to_str().ok())
                .and_then(max_age);
            let jwks: Jwks = response
                .json()
                .await
                .map_err(|e| format!("not a JWKS ({})", e.without_url()))?;
            Ok((jwks, max_age))
        }
        .await;
        match fetched {
            Ok((jwks, max_age)) => {
                let keys = jwks.rsa_keys();
                tracing::info!(keys = keys.len(), "OIDC keys fetched");
                let max_age = max_age.unwrap_or(DEFAULT_MAX_AGE).min(LONGEST_MAX_AGE);
                self.write().replace(keys, Instant::now() + max_age);
                Ok(())
            }
            Err(reason) => {
                tracing::error!(%reason, "cannot fetch the OIDC keys from WEBHOOK_OIDC_JWKS_URL");
                Err(OidcError::KeysUnavailable(reason))
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeySet> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `kid` of an RS256 token, read before anything else so that `none` and
/// HMAC tokens are refused by name.
fn key_id(token: &str) -> Result<String, OidcRefusal> {
    let header = token.split('.').next().unwrap_or_default();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| OidcRefusal::NotAJwt)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| OidcRefusal::NotAJwt)?;
    if header.alg != "RS256" {
        let mut alg = header.alg;
        alg.truncate(16);
        return Err(OidcRefusal::Algorithm(format!("`{alg}`")));
    }
    header.kid.ok_or(OidcRefusal::UnknownKey)
}

fn refusal(kind: &ErrorKind) -> OidcError {
    let refusal = match kind {
        ErrorKind::ExpiredSignature => OidcRefusal::Expired,
        ErrorKind::InvalidAudience => OidcRefusal::Audience,
        ErrorKind::InvalidIssuer => OidcRefusal::Issuer,
        ErrorKind::InvalidSignature => OidcRefusal::Signature,
        ErrorKind::InvalidAlgorithm => OidcRefusal::Algorithm("another algorithm".to_owned()),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => OidcRefusal::NotAJwt,
        other => OidcRefusal::Invalid(format!("{other:?}")),
    };
    refusal.into()
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    email: Option<String>,
    email_verified: Option<bool>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl Jwks {
    /// The RS256 signing keys, by id; other keys are left out.
    fn rsa_keys(self) -> HashMap<String, DecodingKey> {
        self.keys
            .into_iter()
            .filter(|jwk| jwk.kty == "RSA")
            .filter(|jwk| jwk.alg.as_deref().is_none_or(|alg| alg == "RS256"))
            .filter(|jwk| jwk.usage.as_deref().is_none_or(|usage| usage == "sig"))
            .filter_map(|jwk| {
                let key = DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?);
                Some((jwk.kid?, key.ok()?))
            })
            .collect()
    }
}

/// The keys known, and when they were fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// Until when the keys may be used without asking again.
    fresh_until: Option<Instant>,
    /// The last fetch, whether it worked or not.
    last_attempt: Option<Instant>,
}

/// What to do about a key id.
enum Lookup {
    Use(DecodingKey),
    Fetch,
    Unknown,
}

impl KeySet {
    /// Known and fresh: use it. Stale or unknown: fetch, unless the last fetch
    /// was less than `min_refresh` ago (a stale key is then used as it is).
    fn lookup(&self, kid: &str, now: Instant, min_refresh: Duration) -> Lookup {
        let fresh = self.fresh_until.is_some_and(|until| now < until);
        let may_fetch = self
            .last_attempt
            .is_none_or(|last| now.saturating_duration_since(last) >= min_refresh);
        match self.keys.get(kid) {
            Some(key) if fresh || !may_fetch => Lookup::Use(key.clone()),
            _ if may_fetch => Lookup::Fetch,
            _ => Lookup::Unknown,
        }
    }

    fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
    }

    fn replace(&mut self, keys: HashMap<String, DecodingKey>, fresh_until: Instant) {
        self.keys = keys;
        self.fresh_until = Some(fresh_until);
    }
}

/// jsonwebtoken's crypto on ring (already in the tree under rustls): RS256
/// verification only; this process never signs a JWT.
static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(new_error(ErrorKind::InvalidAlgorithm)),
    verifier_factory: |algorithm, key| match algorithm {
        Algorithm::RS256 if key.family() == AlgorithmFamily::Rsa => {
            Ok(Box::new(Rs256Verifier(key.clone())))
        }
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    },
    key_utils: KeyUtils::new_unimplemented(),
};

struct Rs256Verifier(DecodingKey);

impl Verifier<Vec<u8>> for Rs256Verifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let algorithm = &ring::signature::RSA_PKCS1_2048_8192_SHA256;
        let verified = match self.0.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                ring::signature::RsaPublicKeyComponents { n, e }
                    .verify(algorithm, message, signature)
            }
            DecodingKeyKind::SecretOrDer(der) => {
                ring::signature::UnparsedPublicKey::new(algorithm, der).verify(message, signature)
            }
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests;
