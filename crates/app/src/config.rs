//! Configuration: the process environment, then a `.env` file in the working
//! directory for names the environment does not set; command-line flags beat both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use segment_sync_adapters::commercetools::region_urls;
use segment_sync_adapters::segment::DEFAULT_ENDPOINT;
use segment_sync_domain::identity::UnknownStrategy;
use segment_sync_domain::{UserIdStrategy, WriteKey, WriteKeyError};

/// The default state database path.
pub const DEFAULT_STATE_PATH: &str = "segment-sync.db";

/// A configuration problem. Each is printed as one line and exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The write key is missing or blank.
    #[error(transparent)]
    WriteKey(#[from] WriteKeyError),
    /// commercetools variables are missing; every one is named.
    #[error("Missing {}", .0.join(", "))]
    MissingCommercetools(Vec<String>),
    /// `SEGMENT_SYNC_USER_ID` is not a known strategy.
    #[error("SEGMENT_SYNC_USER_ID: {0}")]
    Strategy(#[from] UnknownStrategy),
    /// A variable has a value that cannot be used.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The `.env` file exists but cannot be read.
    #[error("cannot read .env: {0}")]
    DotEnv(String),
}

/// The variables in effect: the environment first, then `.env`.
#[derive(Clone, Default)]
pub struct Vars(HashMap<String, String>);

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets; names are enough to debug with.
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Vars").field(&names).finish()
    }
}

impl Vars {
    /// The process environment, completed by `dir/.env` when it exists.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let path = dir.join(".env");
        if path.exists() {
            let entries =
                dotenvy::from_path_iter(&path).map_err(|e| ConfigError::DotEnv(e.to_string()))?;
            for entry in entries {
                let (name, value) = entry.map_err(|e| ConfigError::DotEnv(e.to_string()))?;
                vars.entry(name).or_insert(value);
            }
        }
        Ok(Self(vars))
    }

    /// Variables from pairs, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The raw value, set or not (an empty value is returned as set).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value when it is set and not blank, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The Segment write key, with the contract's two error lines.
    pub fn write_key(&self) -> Result<WriteKey, ConfigError> {
        Ok(WriteKey::parse(self.raw("SEGMENT_WRITE_KEY"))?)
    }

    /// The Tracking API base URL.
    pub fn segment_endpoint(&self) -> String {
        self.get("SEGMENT_ENDPOINT")
            .unwrap_or(DEFAULT_ENDPOINT)
            .to_owned()
    }

    /// The state database path: the flag, else `SEGMENT_SYNC_STATE`, else the default.
    pub fn state_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.get("SEGMENT_SYNC_STATE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH))
    }

    /// The `userId` strategy.
    pub fn user_id_strategy(&self) -> Result<UserIdStrategy, ConfigError> {
        match self.get("SEGMENT_SYNC_USER_ID") {
            None => Ok(UserIdStrategy::Email),
            Some(value) => Ok(value.parse()?),
        }
    }

    /// The commercetools API settings, naming every missing variable at once.
    pub fn commercetools(&self) -> Result<CommercetoolsSettings, ConfigError> {
        let mut missing = Vec::new();
        let mut need = |name: &str| {
            let value = self.get(name).map(str::to_owned);
            if value.is_none() {
                missing.push(name.to_owned());
            }
            value.unwrap_or_default()
        };
        let project_key = need("CTP_PROJECT_KEY");
        let client_id = need("CTP_CLIENT_ID");
        let client_secret = need("CTP_CLIENT_SECRET");
        let (region_auth, region_api) = match self.get("CTP_REGION") {
            Some(region) => {
                let (auth, api) = region_urls(region);
                (Some(auth), Some(api))
            }
            None => (None, None),
        };
        let explicit = |name: &str| {
            self.get(name)
                .map(|url| url.trim_end_matches('/').to_owned())
        };
        let auth_url = explicit("CTP_AUTH_URL").or(region_auth);
        let api_url = explicit("CTP_API_URL").or(region_api);
        match (&auth_url, &api_url) {
            (Some(_), Some(_)) => {}
            (None, None) => missing.push("CTP_REGION (or CTP_AUTH_URL and CTP_API_URL)".to_owned()),
            (None, Some(_)) => missing.push("CTP_AUTH_URL (or CTP_REGION)".to_owned()),
            (Some(_), None) => missing.push("CTP_API_URL (or CTP_REGION)".to_owned()),
        }
        if !missing.is_empty() {
            return Err(ConfigError::MissingCommercetools(missing));
        }
        let scopes = self
            .get("CTP_SCOPES")
            .map(|s| {
                s.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(CommercetoolsSettings {
            project_key,
            client_id,
            client_secret: SecretString::from(client_secret),
            auth_url: auth_url.unwrap_or_default(),
            api_url: api_url.unwrap_or_default(),
            scopes,
        })
    }
}

/// What is needed to read customers from the commercetools API.
#[derive(Debug, Clone)]
pub struct CommercetoolsSettings {
    /// The project key.
    pub project_key: String,
    /// The API client id.
    pub client_id: String,
    /// The API client secret.
    pub client_secret: SecretString,
    /// The OAuth server, without a trailing `/`.
    pub auth_url: String,
    /// The HTTP API, without a trailing `/`.
    pub api_url: String,
    /// Scopes to ask for; empty means the client's own.
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_key_errors_are_the_contract_lines() {
        let none = Vars::from_pairs([]);
        assert_eq!(
            none.write_key().unwrap_err().to_string(),
            "Missing SEGMENT_WRITE_KEY"
        );
        let empty = Vars::from_pairs([("SEGMENT_WRITE_KEY", "")]);
        assert_eq!(
            empty.write_key().unwrap_err().to_string(),
            "Missing SEGMENT_WRITE_KEY"
        );
        let blank = Vars::from_pairs([("SEGMENT_WRITE_KEY", "  ")]);
        assert_eq!(
            blank.write_key().unwrap_err().to_string(),
            "Write key cannot be empty or whitespace only"
        );
    }

    #[test]
    fn every_missing_commercetools_variable_is_named_at_once() {
        let vars = Vars::from_pairs([("CTP_CLIENT_ID", "id")]);
        assert_eq!(
            vars.commercetools().unwrap_err().to_string(),
            "Missing CTP_PROJECT_KEY, CTP_CLIENT_SECRET, CTP_REGION (or CTP_AUTH_URL and CTP_API_URL)"
        );
    }

    #[test]
    fn region_derives_urls_and_explicit_urls_win() {
        let vars = Vars::from_pairs([
            ("CTP_PROJECT_KEY", "shop"),
            ("CTP_CLIENT_ID", "id"),
            ("CTP_CLIENT_SECRET", "secret"),
            ("CTP_REGION", "europe-west1.gcp"),
            ("CTP_API_URL", "http://127.0.0.1:9/"),
            ("CTP_SCOPES", "view_customers:shop, manage_project:shop"),
        ]);
        let settings = vars.commercetools().unwrap();
        assert_eq!(
            settings.auth_url,
            "https://auth.europe-west1.gcp.commercetools.com"
        );
        assert_eq!(settings.api_url, "http://127.0.0.1:9");
        assert_eq!(
            settings.scopes,
            ["view_customers:shop", "manage_project:shop"]
        );
        assert!(!format!("{settings:?}").contains("secret\""));
    }

    #[test]
    fn dot_env_fills_only_what_the_environment_lacks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "SEGMENT_SYNC_TEST_ONLY_IN_FILE=file\nPATH=from-file\n",
        )
        .unwrap();
        let vars = Vars::load(dir.path()).unwrap();
        assert_eq!(vars.get("SEGMENT_SYNC_TEST_ONLY_IN_FILE"), Some("file"));
        assert_ne!(vars.get("PATH"), Some("from-file"));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let vars = Vars::from_pairs([("SEGMENT_WRITE_KEY", "sekrit")]);
        assert!(!format!("{vars:?}").contains("sekrit"));
    }
}
