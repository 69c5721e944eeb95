//! The PostgreSQL URL: where the state is, how the connection is protected
//! (`sslmode`, `sslrootcert`, as libpq reads them), and how it is shown: never
//! with its credentials.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How sessions show in `pg_stat_activity` when the URL does not say
/// (`application_name`).
const APPLICATION_NAME: &str = "segment-sync";

/// Parameters that would make this client present a certificate, which it does
/// not do.
const CLIENT_CERTIFICATE_PARAMETERS: &[&str] = &["sslcert", "sslkey", "sslpassword"];

/// How a connection is protected: the URL's `sslmode`, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate; in the
    /// clear otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS always, without checking the server's certificate (as libpq does
    /// without a root certificate).
    Require,
    /// TLS with a certificate signed by a trusted root (webpki's roots, and the
    /// `sslrootcert` file's), whatever host it names.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in the order libpq documents them.
    const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The mode as the URL writes it: `disable`, `prefer`, `require`,
    /// `verify-ca` or `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked against trusted roots.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Why a PostgreSQL URL cannot be used. The URL in a message never shows its
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresUrlError {
    /// It does not start with `postgres://` or `postgresql://`.
    #[error("a PostgreSQL URL starts with postgres:// or postgresql://")]
    NotPostgres,
    /// `sslmode` holds another word.
    #[error(
        "unknown sslmode \"{0}\": expected disable, prefer, require, verify-ca or verify-full"
    )]
    SslMode(String),
    /// A client certificate was asked for.
    #[error("the URL parameter {0} is not supported: segment-sync presents no client certificate")]
    ClientCertificate(String),
    /// The client library refused it (an unknown parameter, a bad port, …).
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    Invalid {
        /// The URL without its credentials.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed `postgres://` (or `postgresql://`) URL, ready to connect.
///
/// Besides the client library's parameters it reads `sslmode` (all of libpq's
/// modes but `allow`) and `sslrootcert` (a PEM file of roots trusted besides
/// webpki's; `system` for webpki's alone). When the URL does not say, connecting
/// may take 10 s and sessions are named `segment-sync`.
///
/// `Display` and `Debug` show it without its credentials: neither the user nor
/// the password (in the authority or as a `password` parameter) is ever shown.
#[derive(Clone)]
pub struct PostgresUrl {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    shown: String,
}

impl PostgresUrl {
    /// Whether `text` is meant as a PostgreSQL URL (it starts with
    /// `postgres://` or `postgresql://`), as a setting that also takes a file
    /// path decides.
    pub fn is_postgres(text: &str) -> bool {
        scheme_and_rest(text).is_some()
    }

    /// Parses a URL, checking every parameter.
    pub fn parse(url: &str) -> Result<Self, PostgresUrlError> {
        let (scheme, rest) = scheme_and_rest(url).ok_or(PostgresUrlError::NotPostgres)?;
        // As the client library reads it: credentials up to the first `@`.
        let (credentials, location) = match rest.split_once('@') {
            Some((credentials, location)) => (Some(credentials), location),
            None => (None, rest),
        };
        let (address, query) = match location.split_once('?') {
            Some((address, query)) => (address, Some(query)),
            None => (location, None),
        };

        let mut ssl_mode = SslMode::default();
        let mut root_cert = None;
        let mut passed_on = Vec::new();
        for parameter in query.into_iter().flat_map(|q| q.split('&')) {
            match parameter_key(parameter) {
                "sslmode" => {
                    let value = percent_decode(parameter_value(parameter));
                    ssl_mode = SslMode::ALL
                        .into_iter()
                        .find(|mode| mode.as_str() == value)
                        .ok_or(PostgresUrlError::SslMode(value))?;
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(percent_decode(parameter_value(parameter))));
                }
                key if CLIENT_CERTIFICATE_PARAMETERS.contains(&key) => {
                    return Err(PostgresUrlError::ClientCertificate(key.to_owned()));
                }
                _ => passed_on.push(parameter),
            }
        }
        let shown = without_credentials(scheme, rest);

        let mut library_url = format!("{scheme}://");
        if let Some(credentials) = credentials {
            library_url.push_str(credentials);
            library_url.push('@');
        }
        library_url.push_str(address);
        if !passed_on.is_empty() {
            library_url.push('?');
            library_url.push_str(&passed_on.join("&"));
        }

        let invalid = |shown: &str, reason: String| PostgresUrlError::Invalid {
            url: shown.to_owned(),
            reason,
        };
        let mut config = tokio_postgres::Config::from_str(&library_url).map_err(|e| {
            let shown = hide_password(&shown, credentials, None);
            invalid(&shown, super::failure::chain(&e))
        })?;
        let shown = hide_password(&shown, credentials, config.get_password());
        if config.get_hosts().is_empty() {
            return Err(invalid(
                &shown,
                "it names no host: write postgres://user@host:5432/database".to_owned(),
            ));
        }
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
            shown,
        })
    }

    /// The URL without its credentials, as every message shows it.
    pub fn without_credentials(&self) -> &str {
        &self.shown
    }

    /// How the connection is protected.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The user it connects as, if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// The database it names, if it names one (else the user's name is used).
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The `sslrootcert` file, unless absent or `system`.
    pub(super) fn root_cert(&self) -> Option<&Path> {
        self.root_cert
            .as_deref()
            .filter(|path| path.as_os_str() != "system")
    }

    /// The client library's configuration.
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// `host:port` of the first host, for messages.
    pub(super) fn first_address(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }
}

impl FromStr for PostgresUrl {
    type Err = PostgresUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl fmt::Display for PostgresUrl {
    /// The URL without its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.shown).finish()
    }
}

fn parameter_key(parameter: &str) -> &str {
    parameter.split_once('=').map_or(parameter, |(key, _)| key)
}

fn parameter_value(parameter: &str) -> &str {
    parameter.split_once('=').map_or("", |(_, value)| value)
}

/// The URL as shown: everything up to the last `@` left out (a password that is
/// not percent-encoded may hold an `@`, so the first one is not enough; an `@`
/// in a parameter only makes the shown URL shorter), and so is a `password`
/// parameter.
fn without_credentials(scheme: &str, rest: &str) -> String {
    let location = rest.rsplit_once('@').map_or(rest, |(_, location)| location);
    let (address, query) = location.split_once('?').unwrap_or((location, ""));
    let parameters: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && parameter_key(p) != "password")
        .collect();
    let mut shown = format!("{scheme}://{address}");
    if !parameters.is_empty() {
        shown.push('?');
        shown.push_str(&parameters.join("&"));
    }
    shown
}

/// Any text meant as a URL, shown without what could be credentials, for a
/// message about a URL that could not be parsed.
pub(super) fn shown(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => without_credentials(scheme, rest),
        None => text.to_owned(),
    }
}

fn scheme_and_rest(text: &str) -> Option<(&'static str, &str)> {
    ["postgres", "postgresql"].into_iter().find_map(|scheme| {
        text.strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .map(|rest| (scheme, rest))
    })
}

/// `shown` with any trace of the password replaced by `***`: a password that is
/// not percent-encoded can spill past where the client library ends it.
fn hide_password(shown: &str, credentials: Option<&str>, password: Option<&[u8]>) -> String {
    let mut shown = shown.to_owned();
    let raw = credentials.and_then(|c| c.split_once(':')).map(|(_, p)| p);
    let decoded = password.map(String::from_utf8_lossy);
    for secret in [raw, decoded.as_deref()].into_iter().flatten() {
        if !secret.is_empty() {
            shown = shown.replace(secret, "***");
        }
    }
    shown
}

/// `%XX` escapes decoded; anything else kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> PostgresUrl {
        PostgresUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn both_schemes_are_postgres_and_nothing_else_is() {
        assert!(PostgresUrl::is_postgres("postgres://db/sync"));
        assert!(PostgresUrl::is_postgres("postgresql://db/sync"));
        for other in [
            "segment-sync.db",
            "/var/lib/state.db",
            "postgres:db",
            "mysql://db",
        ] {
            assert!(!PostgresUrl::is_postgres(other), "{other}");
            assert_eq!(
                PostgresUrl::parse(other).unwrap_err(),
                PostgresUrlError::NotPostgres
            );
        }
    }

    #[test]
    fn credentials_are_never_shown() {
        let url = parse("postgres://sync:s3cret@db.internal:6432/state?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://db.internal:6432/state?sslmode=require"
        );
        assert_eq!(url.without_credentials(), url.to_string());
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("sync:"),
            "{debug}"
        );
        assert_eq!(url.user(), Some("sync"));
        assert_eq!(url.database(), Some("state"));
        assert_eq!(url.first_address(), "db.internal:6432");
    }

    #[test]
    fn a_url_that_cannot_be_parsed_is_shown_without_credentials_too() {
        assert_eq!(
            shown("postgress://sync:s3cret@db/state"),
            "postgress://db/state"
        );
        assert_eq!(shown("segment-sync.db"), "segment-sync.db");
    }

    #[test]
    fn a_password_given_as_a_parameter_is_not_shown_either() {
        let url = parse("postgresql://db/state?user=sync&password=s3cret&sslmode=disable");
        assert_eq!(
            url.to_string(),
            "postgresql://db/state?user=sync&sslmode=disable"
        );
    }

    #[test]
    fn an_unencoded_password_that_spills_is_still_hidden() {
        // Not percent-encoded, `@` ends the password early for the client
        // library; no part of it is shown all the same.
        let url = parse("postgres://sync:ab@cd@db/state");
        assert_eq!(url.to_string(), "postgres://db/state");
    }

    #[test]
    fn an_invalid_url_is_refused_without_its_password() {
        let error = PostgresUrl::parse("postgres://sync:s3cret@db:notaport/state").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("invalid PostgreSQL URL postgres://db:notaport/state: "));
        assert!(!message.contains("s3cret"), "{message}");

        let error = PostgresUrl::parse("postgres://db/state?colour=blue").unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn ssl_modes_are_read_as_libpq_reads_them() {
        assert_eq!(parse("postgres://db/s").ssl_mode(), SslMode::Prefer);
        for mode in SslMode::ALL {
            let url = parse(&format!("postgres://db/s?sslmode={}", mode.as_str()));
            assert_eq!(url.ssl_mode(), mode);
            let library = url.config().get_ssl_mode();
            let expected = match mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            };
            assert_eq!(library, expected, "{mode:?}");
        }
        assert_eq!(
            PostgresUrl::parse("postgres://db/s?sslmode=allow").unwrap_err(),
            PostgresUrlError::SslMode("allow".to_owned())
        );
        assert!(SslMode::VerifyCa.verifies() && !SslMode::Require.verifies());
    }

    #[test]
    fn a_root_certificate_file_is_read_decoded_and_system_means_none() {
        let url = parse("postgres://db/s?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20roots.pem");
        assert_eq!(url.root_cert(), Some(Path::new("/etc/ca roots.pem")));
        assert_eq!(
            parse("postgres://db/s?sslrootcert=system").root_cert(),
            None
        );
    }

    #[test]
    fn client_certificates_are_refused_clearly() {
        assert_eq!(
            PostgresUrl::parse("postgres://db/s?sslcert=client.pem").unwrap_err(),
            PostgresUrlError::ClientCertificate("sslcert".to_owned())
        );
    }

    #[test]
    fn defaults_fill_what_the_url_leaves_out() {
        let url = parse("postgres://db/s");
        assert_eq!(url.config().get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(url.config().get_application_name(), Some(APPLICATION_NAME));
        let url = parse("postgres://db/s?connect_timeout=3&application_name=replica-1");
        assert_eq!(
            url.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(url.config().get_application_name(), Some("replica-1"));
    }

    #[test]
    fn a_url_without_a_host_is_refused() {
        let error = PostgresUrl::parse("postgres:///state").unwrap_err();
        assert!(error.to_string().contains("names no host"), "{error}");
    }

    #[test]
    fn percent_escapes_are_decoded_and_broken_ones_kept() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
