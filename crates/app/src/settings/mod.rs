//! Settings, parsed once at start-up: the process environment, then a `.env` file in
//! the working directory for names the environment leaves unset, then command-line
//! flags, which beat both. Nothing else reads the environment.
//!
//! One rule for every variable: values are trimmed; an empty value counts as unset
//! (so `.env` fills it); a value of only whitespace is an error. Booleans take
//! `true/false/1/0/yes/no/on/off` in any case and nothing else.
//!
//! Each part of the configuration is parsed into its own [`Parsed`] section with
//! every error it has, so that a command needing several sections reports all
//! their errors at once ([`Settings::require`]), and `check` shows each section as
//! ✓ or ✗ through the same code.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use segment_sync_adapters::commercetools::{region_urls, CommercetoolsConfig};
use segment_sync_adapters::postgres_state::PostgresUrl;
use segment_sync_adapters::segment::{SegmentConfig, DEFAULT_ENDPOINT};
use segment_sync_adapters::without_credentials;
use segment_sync_domain::identify::IdentifyRules;
use segment_sync_domain::identity::UnknownStrategy;
use segment_sync_domain::walk::MAX_CONCURRENCY;
use segment_sync_domain::{Mapping, UserIdStrategy, WriteKey, WriteKeyError};

use crate::cli::{Command, DeadLettersCommand};
use crate::serve::{check_auth_config, OidcConfig, SnsCertHosts, WebhookToken, GOOGLE_JWKS_URL};
pub use deletion::{DeletionSettings, DELETION_OFF};

/// The default state database path.
pub const DEFAULT_STATE_PATH: &str = "segment-sync.db";

/// Messages waiting for Segment at most, per process: four batches in flight need
/// far fewer than the adapter's default, and a smaller queue keeps a sync's memory
/// well under 64 MiB.
pub const SEGMENT_QUEUE_CAPACITY: usize = 4_096;

/// A configuration problem. Each is one line; any of them exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The write key is missing or blank, in the contract's words.
    #[error(transparent)]
    WriteKey(#[from] WriteKeyError),
    /// commercetools variables are missing; every one is named.
    #[error("Missing {}", .0.join(", "))]
    MissingCommercetools(Vec<String>),
    /// `SEGMENT_SYNC_USER_ID` is not a known strategy.
    #[error("SEGMENT_SYNC_USER_ID: {0}")]
    Strategy(#[from] UnknownStrategy),
    /// A variable holds only whitespace.
    #[error("{name} cannot be empty or whitespace only")]
    Blank {
        /// The variable.
        name: &'static str,
    },
    /// A variable has a value that cannot be used.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable or flag.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `--input` names nothing that can be read.
    #[error("cannot read --input {path}: {reason}")]
    Input {
        /// The path given.
        path: String,
        /// Why it cannot be read.
        reason: &'static str,
    },
    /// An adapter refused its settings, in its own words.
    #[error("{0}")]
    Refused(String),
    /// The `.env` file exists but cannot be read.
    #[error("cannot read .env: {0}")]
    DotEnv(String),
    /// The mapping file cannot be read.
    #[error("cannot read the mapping file {path}: {reason}")]
    MappingFile {
        /// The path given.
        path: String,
        /// The system's reason.
        reason: String,
    },
    /// A problem in the mapping file, with its file, line and key.
    #[error("{0}")]
    Mapping(String),
}

/// Every problem a command's configuration has, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// A section of the configuration: its value, or every error it has.
pub type Parsed<T> = Result<T, ConfigErrors>;

/// The variables in effect: the environment, then `.env` for names the
/// environment leaves unset or empty. `Debug` shows names, never values.
#[derive(Clone, Default)]
pub struct Env(HashMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Env").field(&names).finish()
    }
}

impl Env {
    /// The process environment, completed by `dir/.env` when it exists.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        Self::from_process_and_file(std::env::vars(), &dir.join(".env"))
    }

    fn from_process_and_file(
        process: impl IntoIterator<Item = (String, String)>,
        dot_env: &Path,
    ) -> Result<Self, ConfigError> {
        let mut vars: HashMap<String, String> = process
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        if dot_env.exists() {
            let entries =
                dotenvy::from_path_iter(dot_env).map_err(|e| ConfigError::DotEnv(e.to_string()))?;
            for entry in entries {
                let (name, value) = entry.map_err(|e| ConfigError::DotEnv(e.to_string()))?;
                if !value.is_empty() {
                    vars.entry(name).or_insert(value);
                }
            }
        }
        Ok(Self(vars))
    }

    /// Variables from pairs, for tests; empty values count as unset.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value, trimmed; `None` when unset or empty; an error when it holds only
    /// whitespace.
    fn get(&self, name: &'static str) -> Result<Option<&str>, ConfigError> {
        match self.0.get(name).map(|v| (v.as_str(), v.trim())) {
            None => Ok(None),
            Some((raw, "")) if !raw.is_empty() => Err(ConfigError::Blank { name }),
            Some((_, "")) => Ok(None),
            Some((_, trimmed)) => Ok(Some(trimmed)),
        }
    }
}

/// What the command line says beside the command itself, where it beats the
/// environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--input`: an export file, or `-` for stdin.
    pub input: Option<PathBuf>,
    /// `--state`: where the state is.
    pub state: Option<String>,
    /// `--listen`: the webhook's address.
    pub listen: Option<SocketAddr>,
    /// `--allow-unauthenticated`.
    pub allow_unauthenticated: bool,
    /// `--mapping`: the trait mapping file.
    pub mapping: Option<PathBuf>,
    /// `--concurrency`: id ranges of the API read at once.
    pub concurrency: Option<u32>,
}

impl Flags {
    /// The flags of a parsed command line.
    pub fn of(command: &Command) -> Self {
        let state = |arg: &crate::cli::StateArg| arg.state.clone();
        match command {
            Command::Sync(args) => Self {
                input: args.input.clone(),
                state: state(&args.state),
                mapping: args.mapping.mapping.clone(),
                concurrency: args.concurrency,
                ..Self::default()
            },
            Command::Serve(args) => Self {
                state: state(&args.state),
                listen: args.listen,
                allow_unauthenticated: args.allow_unauthenticated,
                mapping: args.mapping.mapping.clone(),
                ..Self::default()
            },
            Command::DeadLetters(
                DeadLettersCommand::List { state: arg, .. }
                | DeadLettersCommand::Purge { state: arg, .. },
            ) => Self {
                state: state(arg),
                ..Self::default()
            },
            Command::DeadLetters(DeadLettersCommand::Replay {
                state: arg,
                mapping,
                ..
            }) => Self {
                state: state(arg),
                mapping: mapping.mapping.clone(),
                ..Self::default()
            },
            // `check` judges the webhook's settings by what they hold: running
            // without a token is `serve`'s flag to give, not a setting to fix.
            Command::Check(args) => Self {
                state: state(&args.state),
                mapping: args.mapping.mapping.clone(),
                allow_unauthenticated: true,
                ..Self::default()
            },
            Command::State(_) => Self::default(),
            Command::Forget(args) => Self {
                state: state(&args.state),
                ..Self::default()
            },
            Command::Deletions(args) => Self {
                state: state(&args.state),
                ..Self::default()
            },
            Command::Runs(args) => Self {
                state: state(&args.state),
                ..Self::default()
            },
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Logging: what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The `RUST_LOG` filter; `None` leaves the choice to the command.
    pub filter: Option<String>,
    /// `LOG_FORMAT`; unset picks pretty on a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
}

/// Where customers come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceSettings {
    /// The commercetools HTTP API.
    Api(Box<CommercetoolsConfig>),
    /// An export file.
    File(PathBuf),
    /// An export on standard input.
    Stdin,
}

impl fmt::Display for SourceSettings {
    /// `api`, `file customers.ndjson` or `stdin`, as the run history names it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api(_) => f.write_str("api"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Stdin => f.write_str("stdin"),
        }
    }
}

/// Where the state is kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StateLocation {
    /// A SQLite database file: one host.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every replica and run.
    Postgres(Box<PostgresUrl>),
}

impl PartialEq for StateLocation {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for StateLocation {}

impl StateLocation {
    /// Where a state is, from what the user wrote (`name` says where, for the
    /// error): a `postgres://` or `postgresql://` URL, else a SQLite path.
    pub fn parse(name: &'static str, written: &str) -> Result<Self, ConfigError> {
        let written = written.trim();
        if written.is_empty() {
            return Err(ConfigError::Blank { name });
        }
        if PostgresUrl::is_postgres(written) {
            return PostgresUrl::parse(written)
                .map(|url| Self::Postgres(Box::new(url)))
                .map_err(|e| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                });
        }
        Ok(Self::Sqlite(PathBuf::from(written)))
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(url.without_credentials()),
        }
    }
}

/// The webhook server's own settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The shared secret requests must carry; `None` only with
    /// `--allow-unauthenticated`.
    pub token: Option<WebhookToken>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// `WEBHOOK_MAX_CONNECTIONS`: connections held open at once.
    pub max_connections: usize,
    /// `WEBHOOK_OIDC_AUDIENCE`, `WEBHOOK_OIDC_JWKS_URL`, `WEBHOOK_OIDC_EMAIL`:
    /// Pub/Sub push tokens accepted, when the audience is set.
    pub oidc: Option<OidcConfig>,
    /// `WEBHOOK_SNS_CERT_HOSTS` (for tests and special set-ups): where SNS
    /// signing certificates may come from.
    pub sns_cert_hosts: SnsCertHosts,
}

/// Every section of the configuration, each parsed with all its errors.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `RUST_LOG`, `LOG_FORMAT`.
    pub log: Parsed<LogSettings>,
    /// `SEGMENT_SYNC_USER_ID`.
    pub user_id: Parsed<UserIdStrategy>,
    /// How messages are built: the `userId` strategy, and the mapping file of
    /// `--mapping`, else `SEGMENT_SYNC_MAPPING` (none: the standard traits).
    pub rules: Parsed<IdentifyRules>,
    /// The Segment client: `SEGMENT_WRITE_KEY`, `SEGMENT_ENDPOINT` and its tuning.
    pub segment: Parsed<SegmentConfig>,
    /// The commercetools API: `CTP_*`.
    pub commercetools: Parsed<CommercetoolsConfig>,
    /// Where customers come from: `--input`, else the commercetools API.
    pub source: Parsed<SourceSettings>,
    /// `--state`, else `SEGMENT_SYNC_STATE`, else [`DEFAULT_STATE_PATH`].
    pub state: Parsed<StateLocation>,
    /// `WEBHOOK_TOKEN`, `--listen`, `PORT`, `--allow-unauthenticated`.
    pub webhook: Parsed<WebhookSettings>,
    /// `SEGMENT_SYNC_RETENTION`: how long dead letters are kept (else
    /// [`DEFAULT_RETENTION`]).
    pub retention: Parsed<Duration>,
    /// `SEGMENT_DELETION`, `SEGMENT_PUBLIC_API_URL`, `SEGMENT_PUBLIC_API_TOKEN`:
    /// `None` while deletion is off.
    pub deletion: Parsed<Option<DeletionSettings>>,
}

impl Settings {
    /// Parses every section from the environment and the flags.
    pub fn parse(env: &Env, flags: &Flags) -> Self {
        let commercetools = commercetools(env, flags);
        let user_id = user_id(env);
        Self {
            log: log(env),
            rules: rules(env, flags, &user_id),
            user_id,
            segment: segment(env),
            source: source(flags, &commercetools),
            commercetools,
            state: state(env, flags),
            webhook: webhook(env, flags),
            retention: retention(env),
            deletion: deletion::deletion(env),
        }
    }

    /// The sections a command needs, or every error they have. Pass a tuple of
    /// sections: `Settings::require((&settings.segment, &settings.state))`.
    pub fn require<S: Sections>(sections: S) -> Result<S::Values, ConfigErrors> {
        sections.gather()
    }
}

/// A tuple of sections that [`Settings::require`] takes whole or not at all.
pub trait Sections {
    /// The sections' values.
    type Values;
    /// The values, or every error of every section.
    fn gather(self) -> Result<Self::Values, ConfigErrors>;
}

macro_rules! sections {
    ($($name:ident),+) => {
        impl<'a, $($name),+> Sections for ($(&'a Parsed<$name>,)+) {
            type Values = ($(&'a $name,)+);

            #[allow(non_snake_case)]
            fn gather(self) -> Result<Self::Values, ConfigErrors> {
                let ($($name,)+) = self;
                let mut errors = Vec::new();
                $(
                    if let Err(e) = $name {
                        errors.extend(e.0.iter().cloned());
                    }
                )+
                match ($($name,)+) {
                    ($(Ok($name),)+) => Ok(($($name,)+)),
                    _ => Err(ConfigErrors(errors)),
                }
            }
        }
    };
}

sections!(A);
sections!(A, B);
sections!(A, B, C);
sections!(A, B, C, D);
sections!(A, B, C, D, E);
sections!(A, B, C, D, E, F);

/// Collects a section's errors while its parts are parsed.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    /// The value, or `None` with its error kept.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// The section: `value` when nothing went wrong.
    fn section<T>(self, value: impl FnOnce() -> Option<T>) -> Parsed<T> {
        if self.0.is_empty() {
            if let Some(value) = value() {
                return Ok(value);
            }
        }
        Err(ConfigErrors(self.0))
    }
}

fn log(env: &Env) -> Parsed<LogSettings> {
    let mut errors = Errors::default();
    let filter = errors
        .keep(env.get("RUST_LOG"))
        .flatten()
        .map(str::to_owned);
    if let Some(Err(error)) = filter
        .as_deref()
        .map(tracing_subscriber::EnvFilter::try_new)
    {
        errors.0.push(ConfigError::Invalid {
            name: "RUST_LOG",
            reason: format!(
                "`{}` is not a log filter ({error})",
                filter.as_deref().unwrap_or_default()
            ),
        });
    }
    let format = errors.keep(env.get("LOG_FORMAT").and_then(|value| {
        value
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "json" => Ok(LogFormat::Json),
                "pretty" => Ok(LogFormat::Pretty),
                _ => Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("`{v}` is neither json nor pretty"),
                }),
            })
            .transpose()
    }));
    errors.section(|| {
        Some(LogSettings {
            filter,
            format: format?,
        })
    })
}

fn user_id(env: &Env) -> Parsed<UserIdStrategy> {
    let mut errors = Errors::default();
    let strategy = errors.keep(env.get("SEGMENT_SYNC_USER_ID").and_then(|value| {
        value.map_or(Ok(UserIdStrategy::Email), |v| {
            v.parse().map_err(ConfigError::Strategy)
        })
    }));
    errors.section(|| strategy)
}

fn rules(env: &Env, flags: &Flags, user_id: &Parsed<UserIdStrategy>) -> Parsed<IdentifyRules> {
    // The strategy's errors come first, then the mapping's, all at once.
    let mut errors = Errors(
        user_id
            .as_ref()
            .err()
            .map_or_else(Vec::new, |e| e.0.clone()),
    );
    let path = match &flags.mapping {
        Some(flag) if flag.as_os_str().to_string_lossy().trim().is_empty() => {
            errors.0.push(ConfigError::Blank { name: "--mapping" });
            None
        }
        Some(flag) => Some(flag.clone()),
        None => errors
            .keep(env.get("SEGMENT_SYNC_MAPPING"))
            .flatten()
            .map(PathBuf::from),
    };
    let Some(path) = path else {
        return errors.section(|| user_id.as_ref().ok().copied().map(IdentifyRules::from));
    };
    let shown = path.display().to_string();
    let Some(text) =
        errors.keep(
            std::fs::read_to_string(&path).map_err(|e| ConfigError::MappingFile {
                path: shown.clone(),
                reason: e.to_string(),
            }),
        )
    else {
        return errors.section(|| None);
    };
    let read = match user_id {
        Ok(strategy) => IdentifyRules::from_toml(*strategy, &text, &shown).map(Some),
        // Without a strategy the file's own problems are still reported; those
        // that depend on the strategy wait for a valid one.
        Err(_) => Mapping::from_toml(&text, &shown).map(|_| None),
    };
    match read {
        Ok(rules) => errors.section(|| rules),
        Err(problems) => {
            errors.0.extend(
                problems
                    .into_iter()
                    .map(|e| ConfigError::Mapping(e.to_string())),
            );
            errors.section(|| None)
        }
    }
}

fn segment(env: &Env) -> Parsed<SegmentConfig> {
    let mut errors = Errors::default();
    // The contract words a blank write key its own way.
    let write_key = errors.keep(match env.get("SEGMENT_WRITE_KEY") {
        Ok(value) => WriteKey::parse(value).map_err(ConfigError::from),
        Err(ConfigError::Blank { .. }) => Err(WriteKeyError::Blank.into()),
        Err(other) => Err(other),
    });
    let endpoint = errors
        .keep(env.get("SEGMENT_ENDPOINT").and_then(|v| {
            v.map(|url| service_url("SEGMENT_ENDPOINT", url))
                .transpose()
        }))
        .flatten()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let max_attempts = errors.keep(number(env, "SEGMENT_MAX_ATTEMPTS"));
    let max_in_flight = errors.keep(number(env, "SEGMENT_MAX_IN_FLIGHT"));
    let gzip = errors.keep(boolean(env, "SEGMENT_GZIP"));
    let Some(write_key) = write_key else {
        return errors.section(|| None);
    };
    let mut config = SegmentConfig::new(endpoint, write_key);
    config.queue_capacity = SEGMENT_QUEUE_CAPACITY;
    if let Err(error) = config.batch_url() {
        errors.0.push(ConfigError::Refused(error.to_string()));
    }
    errors.section(|| {
        if let Some(attempts) = max_attempts? {
            config.retry.max_attempts = attempts;
        }
        if let Some(in_flight) = max_in_flight? {
            config.max_in_flight = in_flight as usize;
        }
        config.gzip = gzip?.unwrap_or(false);
        Some(config)
    })
}

fn commercetools(env: &Env, flags: &Flags) -> Parsed<CommercetoolsConfig> {
    let mut errors = Errors::default();
    // The flag beats the variable, which is then not read at all.
    let concurrency = match flags.concurrency {
        Some(flag) => Some(flag),
        None => errors.keep(concurrency(env)).flatten(),
    };
    let mut missing = Vec::new();
    let mut need = |name: &'static str, errors: &mut Errors| {
        let value = errors.keep(env.get(name)).flatten().map(str::to_owned);
        if value.is_none() && !errors.0.iter().any(|e| e == &ConfigError::Blank { name }) {
            missing.push(name.to_owned());
        }
        value
    };
    let project_key = need("CTP_PROJECT_KEY", &mut errors);
    let client_id = need("CTP_CLIENT_ID", &mut errors);
    let client_secret = need("CTP_CLIENT_SECRET", &mut errors);
    let region = errors
        .keep(env.get("CTP_REGION"))
        .flatten()
        .map(region_urls);
    let explicit = |name: &'static str, errors: &mut Errors| {
        errors
            .keep(
                env.get(name)
                    .and_then(|v| v.map(|url| service_url(name, url)).transpose()),
            )
            .flatten()
            .map(|url| url.trim_end_matches('/').to_owned())
    };
    let auth_url = explicit("CTP_AUTH_URL", &mut errors).or(region.clone().map(|(auth, _)| auth));
    let api_url = explicit("CTP_API_URL", &mut errors).or(region.map(|(_, api)| api));
    match (&auth_url, &api_url) {
        (Some(_), Some(_)) => {}
        (None, None) => missing.push("CTP_REGION (or CTP_AUTH_URL and CTP_API_URL)".to_owned()),
        (None, Some(_)) => missing.push("CTP_AUTH_URL (or CTP_REGION)".to_owned()),
        (Some(_), None) => missing.push("CTP_API_URL (or CTP_REGION)".to_owned()),
    }
    if !missing.is_empty() {
        errors
            .0
            .insert(0, ConfigError::MissingCommercetools(missing));
    }
    let scopes: Vec<String> = errors
        .keep(env.get("CTP_SCOPES"))
        .flatten()
        .map(|s| {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let (Some(project_key), Some(client_id), Some(client_secret), Some(auth_url), Some(api_url)) =
        (project_key, client_id, client_secret, auth_url, api_url)
    else {
        return errors.section(|| None);
    };
    let mut config = CommercetoolsConfig::new(
        auth_url,
        api_url,
        project_key,
        client_id,
        SecretString::from(client_secret),
    );
    config.scopes = scopes;
    if let Some(concurrency) = concurrency {
        config.concurrency = concurrency;
    }
    if let Err(error) = config.validate() {
        errors.0.push(ConfigError::Refused(error.to_string()));
    }
    errors.section(|| Some(config))
}

fn source(flags: &Flags, commercetools: &Parsed<CommercetoolsConfig>) -> Parsed<SourceSettings> {
    match &flags.input {
        None => commercetools
            .clone()
            .map(|config| SourceSettings::Api(Box::new(config))),
        Some(path) if path == Path::new("-") => Ok(SourceSettings::Stdin),
        Some(path) if path.is_dir() => Err(ConfigError::Input {
            path: path.display().to_string(),
            reason: "it is a directory, not an export file",
        }
        .into()),
        Some(path) if !path.is_file() => Err(ConfigError::Input {
            path: path.display().to_string(),
            reason: "no such file",
        }
        .into()),
        Some(path) => Ok(SourceSettings::File(path.clone())),
    }
}

fn state(env: &Env, flags: &Flags) -> Parsed<StateLocation> {
    let configured = match &flags.state {
        Some(flag) => flag.clone(),
        None => env
            .get("SEGMENT_SYNC_STATE")?
            .unwrap_or(DEFAULT_STATE_PATH)
            .to_owned(),
    };
    Ok(StateLocation::parse("--state", &configured)?)
}

fn webhook(env: &Env, flags: &Flags) -> Parsed<WebhookSettings> {
    let mut errors = Errors::default();
    let token = errors.keep(env.get("WEBHOOK_TOKEN"));
    let blank_token = token.is_none();
    let token = token
        .flatten()
        .map(WebhookToken::parse)
        .transpose()
        .map_err(|e| errors.0.push(ConfigError::Refused(e.to_string())))
        .ok()
        .flatten();
    let oidc = oidc(env, &mut errors);
    if !blank_token && oidc.is_some() {
        if let Err(refused) = check_auth_config(
            &token,
            oidc.as_ref().unwrap_or(&None),
            flags.allow_unauthenticated,
        ) {
            errors.0.push(ConfigError::Refused(refused.to_string()));
        }
    }
    let sns_cert_hosts = errors
        .keep(env.get("WEBHOOK_SNS_CERT_HOSTS").and_then(|hosts| {
            hosts
                .map(|hosts| {
                    SnsCertHosts::parse(hosts).map_err(|reason| ConfigError::Invalid {
                        name: "WEBHOOK_SNS_CERT_HOSTS",
                        reason,
                    })
                })
                .transpose()
        }))
        .map(Option::unwrap_or_default);
    let max_connections = errors.keep(number(env, "WEBHOOK_MAX_CONNECTIONS"));
    let listen = match flags.listen {
        Some(listen) => Some(listen),
        None => errors.keep(env.get("PORT").and_then(|port| {
            match port {
                None => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
                Some(port) => port
                    .parse::<u16>()
                    .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
                    .map_err(|_| ConfigError::Invalid {
                        name: "PORT",
                        reason: format!("`{port}` is not a port number"),
                    }),
            }
        })),
    };
    errors.section(|| {
        let max_connections = max_connections?;
        Some(WebhookSettings {
            max_connections: max_connections
                .map_or(crate::serve::DEFAULT_MAX_CONNECTIONS, |n| n as usize),
            token,
            listen: listen?,
            oidc: oidc?,
            sns_cert_hosts: sns_cert_hosts?,
        })
    })
}

/// The Pub/Sub push token settings: `None` when `WEBHOOK_OIDC_AUDIENCE` is unset;
/// `None` inside when one of them is wrong (its error kept).
fn oidc(env: &Env, errors: &mut Errors) -> Option<Option<OidcConfig>> {
    let before = errors.0.len();
    let audience = errors.keep(env.get("WEBHOOK_OIDC_AUDIENCE")).flatten();
    let jwks_url = errors
        .keep(env.get("WEBHOOK_OIDC_JWKS_URL").and_then(|url| {
            url.map(|url| service_url("WEBHOOK_OIDC_JWKS_URL", url))
                .transpose()
        }))
        .flatten();
    let email = errors
        .keep(env.get("WEBHOOK_OIDC_EMAIL").and_then(|email| {
            email
                .map(|email| match email.split_once('@') {
                    Some((name, domain)) if !name.is_empty() && domain.contains('.') => {
                        Ok(email.to_owned())
                    }
                    _ => Err(ConfigError::Invalid {
                        name: "WEBHOOK_OIDC_EMAIL",
                        reason: format!("`{email}` is not a service account's email address"),
                    }),
                })
                .transpose()
        }))
        .flatten();
    if audience.is_none() {
        for (name, set) in [
            ("WEBHOOK_OIDC_JWKS_URL", jwks_url.is_some()),
            ("WEBHOOK_OIDC_EMAIL", email.is_some()),
        ] {
            if set {
                errors.0.push(ConfigError::Invalid {
                    name,
                    reason: "is used only with WEBHOOK_OIDC_AUDIENCE, which is not set".to_owned(),
                });
            }
        }
    }
    if errors.0.len() > before {
        return None;
    }
    Some(audience.map(|audience| OidcConfig {
        audience: audience.to_owned(),
        jwks_url: jwks_url.unwrap_or_else(|| GOOGLE_JWKS_URL.to_owned()),
        email,
    }))
}

/// A service's base URL: `https`, or plain `http` only to a loopback host (a local
/// collector or test server). Credentials in it are never shown in an error.
fn service_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let shown = without_credentials(value);
    let parsed = url::Url::parse(value).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("{shown} is not a URL ({e})"),
    })?;
    match parsed.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if is_loopback(&parsed) => Ok(value.to_owned()),
        "http" => Err(ConfigError::Invalid {
            name,
            reason: format!(
                "{shown} is plain http; use https (http is allowed only to a loopback host)"
            ),
        }),
        other => Err(ConfigError::Invalid {
            name,
            reason: format!("{shown}: the scheme must be https, not {other}"),
        }),
    }
}

/// How long dead letters are kept when `SEGMENT_SYNC_RETENTION` is unset.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

fn retention(env: &Env) -> Parsed<Duration> {
    let name = "SEGMENT_SYNC_RETENTION";
    Ok(env
        .get(name)?
        .map(|value| parse_duration(value).map_err(|reason| ConfigError::Invalid { name, reason }))
        .transpose()?
        .unwrap_or(DEFAULT_RETENTION))
}

/// A duration as people write it (`30d`, `12h`, `1h 30m`), longer than nothing;
/// also the parser of the flags that take one.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{value}` is not a duration (e.g. 30d, 12h, 90m)"))
}

/// Whether a URL's host is a loopback address (or `localhost`), where plain http
/// is allowed.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A positive whole number, when set.
fn number(env: &Env, name: &'static str) -> Result<Option<u32>, ConfigError> {
    env.get(name)?
        .map(|value| {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::Invalid {
                    name,
                    reason: format!("`{value}` is not a positive whole number"),
                })
        })
        .transpose()
}

/// `CTP_CONCURRENCY`, when set: a positive whole number up to
/// [`MAX_CONCURRENCY`].
fn concurrency(env: &Env) -> Result<Option<u32>, ConfigError> {
    const NAME: &str = "CTP_CONCURRENCY";
    match number(env, NAME)? {
        Some(n) if n > MAX_CONCURRENCY => Err(ConfigError::Invalid {
            name: NAME,
            reason: format!(
                "`{n}` is more than {MAX_CONCURRENCY}, the most id ranges read at once"
            ),
        }),
        n => Ok(n),
    }
}

/// A boolean, when set: `true/false/1/0/yes/no/on/off` in any case.
fn boolean(env: &Env, name: &'static str) -> Result<Option<bool>, ConfigError> {
    env.get(name)?
        .map(|value| match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("`{value}` is not a boolean (true/false, 1/0, yes/no, on/off)"),
            }),
        })
        .transpose()
}

mod deletion;
#[cfg(test)]
mod tests;
