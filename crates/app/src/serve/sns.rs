//! AWS SNS message signatures.
//!
//! Every SNS message posted to the webhook is signed by SNS with the key of the
//! certificate at its `SigningCertURL`. The URL must be https on an SNS host
//! ([`SnsCertHosts`]); the certificate is fetched once per URL and kept. The
//! string to sign is built as AWS documents it, and the signature checked with
//! SHA1withRSA (`SignatureVersion` 1) or SHA256withRSA (2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};
use x509_cert::der::DecodePem as _;

/// The SNS hosts of AWS and AWS China, the default `WEBHOOK_SNS_CERT_HOSTS`.
pub const DEFAULT_SNS_CERT_HOSTS: &str = "sns.*.amazonaws.com,sns.*.amazonaws.com.cn";

/// How long fetching a certificate may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest certificate read; SNS's are under 2 KiB.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Certificates kept at once; SNS uses a handful.
const MAX_CERTS: usize = 64;

/// Where SNS signing certificates may come from: host patterns in which `*`
/// stands for one DNS label (`sns.*.amazonaws.com`), each optionally with a
/// `:port` (without one, only the scheme's default port). A certificate URL must
/// be https, or plain http to a loopback host (a test's certificate server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsCertHosts(Vec<HostPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    labels: Vec<String>,
    port: Option<u16>,
}

impl SnsCertHosts {
    /// Comma-separated host patterns: host names or IPv4 addresses whose labels
    /// may be `*`, each optionally followed by `:port`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(|written| {
                let written = written.trim().to_ascii_lowercase();
                let invalid = || {
                    format!(
                        "`{written}` is not a host pattern (host names whose labels may be `*`, each with an optional :port, separated by commas)"
                    )
                };
                let (host, port) = match written.split_once(':') {
                    Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| invalid())?)),
                    None => (written.as_str(), None),
                };
                let labels: Vec<String> = host.split('.').map(str::to_owned).collect();
                let valid = labels.iter().all(|label| {
                    label == "*"
                        || (!label.is_empty()
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                });
                if valid {
                    Ok(HostPattern { labels, port })
                } else {
                    Err(invalid())
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether a certificate may be fetched from `url`.
    fn allow(&self, url: &url::Url) -> bool {
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => crate::settings::is_loopback(url),
            _ => false,
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host: Vec<&str> = host.split('.').collect();
        scheme_ok
            && url.username().is_empty()
            && url.password().is_none()
            && self
                .0
                .iter()
                .any(|pattern| pattern.matches(&host, url.port()))
    }
}

impl HostPattern {
    /// `host` (lowercase labels) and the URL's explicit port, if any.
    fn matches(&self, host: &[&str], port: Option<u16>) -> bool {
        self.port == port
            && self.labels.len() == host.len()
            && self
                .labels
                .iter()
                .zip(host)
                .all(|(pattern, label)| (pattern == "*" && !label.is_empty()) || pattern == label)
    }
}

impl Default for SnsCertHosts {
    fn default() -> Self {
        Self::parse(DEFAULT_SNS_CERT_HOSTS).unwrap_or_else(|_| Self(Vec::new()))
    }
}

/// Why an SNS message is not accepted (answered 401). Each is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsRefusal {
    /// A field the signature covers, or the signature itself, is missing.
    #[error("the SNS message has no {0}")]
    Missing(&'static str),
    /// A `SignatureVersion` other than 1 or 2.
    #[error("the SNS message has SignatureVersion {0}; 1 and 2 are known")]
    Version(String),
    /// The certificate URL is not https on an allowed SNS host.
    #[error(
        "the SNS SigningCertURL {0} is not an https URL on an SNS host (WEBHOOK_SNS_CERT_HOSTS)"
    )]
    CertUrl(String),
    /// The certificate URL does not serve a certificate (4xx, not PEM, too large).
    #[error("the SNS SigningCertURL {url} holds no certificate ({reason})")]
    Certificate {
        /// The certificate's URL.
        url: String,
        /// What came back.
        reason: String,
    },
    /// The signature does not match the message.
    #[error("the SNS message's signature does not verify")]
    Signature,
}

/// Why an SNS message could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// Not from SNS, or altered: answer 401.
    #[error(transparent)]
    Refused(#[from] SnsRefusal),
    /// The certificate cannot be fetched: answer 5xx, so that SNS tries again.
    #[error("cannot fetch the SNS signing certificate {url}: {reason}")]
    CertUnavailable {
        /// The certificate's URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Verifies SNS messages; shared by every request.
pub struct SnsVerifier {
    hosts: SnsCertHosts,
    client: reqwest::Client,
    /// The RSA public key of each certificate fetched, by URL.
    keys: Mutex<HashMap<String, Arc<[u8]>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl SnsVerifier {
    /// A verifier that fetches certificates from `hosts` only.
    pub fn new(hosts: SnsCertHosts) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect could lead off the allowed hosts.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            hosts,
            client,
            keys: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Accepts `message` (an SNS message's JSON object) when SNS signed it.
    pub async fn verify(&self, message: &Map<String, Value>) -> Result<(), SnsError> {
        let field = |name: &'static str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .ok_or(SnsRefusal::Missing(name))
        };
        let algorithm: &'static dyn VerificationAlgorithm = match field("SignatureVersion")? {
            "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
            other => {
                let mut other = other.to_owned();
                other.truncate(16);
                return Err(SnsRefusal::Version(format!("`{other}`")).into());
            }
        };
        let signed = string_to_sign(message)?;
        let signature_bytes = base64::engine::general_purpose::STANDARD
            .decode(field("Signature")?)
            .map_err(|_| SnsRefusal::Signature)?;
        let cert_url = field("SigningCertURL")?;
        let key = self.key(cert_url).await?;
        UnparsedPublicKey::new(algorithm, &key)
            .verify(signed.as_bytes(), &signature_bytes)
            .map_err(|_| SnsRefusal::Signature.into())
    }

    async fn key(&self, cert_url: &str) -> Result<Arc<[u8]>, SnsError> {
        let refused = || SnsRefusal::CertUrl(shown(cert_url));
        let url = url::Url::parse(cert_url).map_err(|_| refused())?;
        if !self.hosts.allow(&url) {
            return Err(refused().into());
        }
        if let Some(key) = self.known(cert_url) {
            return Ok(key);
        }
        let _one = self.fetching.lock().await;
        if let Some(key) = self.known(cert_url) {
            return Ok(key);
        }
        let key: Arc<[u8]> = match self.fetch(url).await {
            Ok(key) => key.into(),
            Err(Fetched::Refused(reason)) => {
                return Err(SnsRefusal::Certificate {
                    url: shown(cert_url),
                    reason,
                }
                .into())
            }
            Err(Fetched::Unavailable(reason)) => {
                tracing::error!(cert_url = %shown(cert_url), %reason, "cannot fetch the SNS signing certificate");
                return Err(SnsError::CertUnavailable {
                    url: shown(cert_url),
                    reason,
                });
            }
        };
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= MAX_CERTS {
            keys.clear();
        }
        keys.insert(cert_url.to_owned(), Arc::clone(&key));
        Ok(key)
    }

    fn known(&self, cert_url: &str) -> Option<Arc<[u8]>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(cert_url)
            .cloned()
    }

    /// The certificate's RSA public key (PKCS#1 DER, as ring takes it).
    async fn fetch(&self, url: url::Url) -> Result<Vec<u8>, Fetched> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Fetched::Unavailable(e.without_url().to_string()))?;
        if response.status().is_client_error() {
            // SNS's hosts answer so for a certificate they never issued.
            return Err(Fetched::Refused(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        if !response.status().is_success() {
            return Err(Fetched::Unavailable(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        let pem = response
            .bytes()
            .await
            .map_err(|e| Fetched::Unavailable(e.without_url().to_string()))?;
        if pem.len() > MAX_CERT_BYTES {
            return Err(Fetched::Refused("over 64 KiB".to_owned()));
        }
        let certificate = x509_cert::Certificate::from_pem(&pem)
            .map_err(|e| Fetched::Refused(format!("not a PEM certificate: {e}")))?;
        Ok(certificate
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .to_vec())
    }
}

/// Why a certificate was not fetched.
enum Fetched {
    /// The URL answered, but with no certificate: the message is not from SNS.
    Refused(String),
    /// The URL did not answer (network, 5xx): try again later.
    Unavailable(String),
}

/// The string SNS signs: `Name\nvalue\n` for each signed field, in AWS's order
/// (a `Notification`'s `Subject` only when present).
fn string_to_sign(message: &Map<String, Value>) -> Result<String, SnsRefusal> {
    const NOTIFICATION: &[&str] = &[
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ];
    const CONFIRMATION: &[&str] = &[
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ];
    let fields = match message.get("Type").and_then(Value::as_str) {
        Some("Notification") => NOTIFICATION,
        Some(_) => CONFIRMATION,
        None => return Err(SnsRefusal::Missing("Type")),
    };
    let mut signed = String::new();
    for &name in fields {
        match message.get(name).and_then(Value::as_str) {
            Some(value) => {
                signed.push_str(name);
                signed.push('\n');
                signed.push_str(value);
                signed.push('\n');
            }
            None if name == "Subject" => {}
            None => return Err(SnsRefusal::Missing(name)),
        }
    }
    Ok(signed)
}

/// A URL as logged: at most 200 characters of it, no credentials.
fn shown(url: &str) -> String {
    segment_sync_adapters::without_credentials(url)
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests;
