//! `segment-sync check`: the troubleshooting checklist. The settings are validated
//! by the same code as every other command (a setting `sync` refuses is a ✗ here),
//! then each configured adapter checks itself against the real service. Each line
//! shows ✓ or ✗, and every ✗ says how to fix it.

use segment_sync_domain::WriteKeyError;
use segment_sync_ports::CheckLine;

use crate::output::Stdout;
use crate::settings::{
    ConfigError, ConfigErrors, DeletionSettings, Parsed, Settings, SourceSettings,
};
use crate::wiring;
use crate::{Exit, Failure};

/// Runs every check and prints the lines (or, with `json`, one JSON array); exit
/// 0 when all pass, 1 otherwise.
pub async fn run(settings: &Settings, json: bool) -> Result<Exit, Failure> {
    let lines = checklist(settings).await;
    let mut out = Stdout::default();
    if json {
        let listed: Vec<ListedCheck<'_>> = lines.iter().map(ListedCheck::from).collect();
        out.json_pretty(&listed)?;
    } else {
        for line in &lines {
            out.line(line)?;
        }
    }
    out.flush()?;
    Ok(if lines.iter().all(CheckLine::passed) {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// The checklist's lines, in order: the shared settings, the write key and the
/// Segment endpoint, the Public API token (only with deletion on), the
/// commercetools token and one customer page, the state, the webhook's settings.
pub async fn checklist(settings: &Settings) -> Vec<CheckLine> {
    let mut lines = vec![settings_line(
        "settings RUST_LOG, LOG_FORMAT, SEGMENT_SYNC_USER_ID valid",
        [errors_of(&settings.log), errors_of(&settings.user_id)],
    )];
    lines.push(mapping_line(settings));
    lines.extend(segment_lines(&settings.segment).await);
    lines.extend(deletion_lines(&settings.deletion).await);
    lines.extend(commercetools_lines(settings).await);
    lines.extend(state_lines(settings).await);
    lines.push(settings_line(
        "webhook settings WEBHOOK_TOKEN, PORT valid",
        [errors_of(&settings.webhook)],
    ));
    lines.push(oidc_line(settings).await);
    lines
}

/// The Pub/Sub push token keys: fetched from `WEBHOOK_OIDC_JWKS_URL` when
/// `WEBHOOK_OIDC_AUDIENCE` is set.
async fn oidc_line(settings: &Settings) -> CheckLine {
    const WHAT: &str = "Pub/Sub push OIDC keys (WEBHOOK_OIDC_*) reachable";
    let Ok(webhook) = &settings.webhook else {
        return CheckLine::fail(WHAT, "needs valid webhook settings first");
    };
    let Some(config) = &webhook.oidc else {
        return CheckLine::pass(WHAT, "off: WEBHOOK_OIDC_AUDIENCE is not set");
    };
    let verifier = crate::serve::OidcVerifier::new(config.clone());
    match verifier.fetch_now().await {
        Ok(0) => CheckLine::fail(
            WHAT,
            format!(
                "{} holds no RS256 key: check WEBHOOK_OIDC_JWKS_URL (unset, it is Google's)",
                config.jwks_url
            ),
        ),
        Ok(keys) => CheckLine::pass(
            WHAT,
            format!("audience {}, RS256 keys: {keys}", config.audience),
        ),
        Err(error) => CheckLine::fail(
            WHAT,
            format!("{error}: check WEBHOOK_OIDC_JWKS_URL (unset, it is Google's) and the network"),
        ),
    }
}

/// A line of `check --json`.
#[derive(serde::Serialize)]
struct ListedCheck<'a> {
    check: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<&'a str>,
}

impl<'a> From<&'a CheckLine> for ListedCheck<'a> {
    fn from(line: &'a CheckLine) -> Self {
        let (detail, fix) = match &line.result {
            Ok(detail) => (Some(detail.as_str()).filter(|d| !d.is_empty()), None),
            Err(fix) => (None, Some(fix.as_str())),
        };
        Self {
            check: &line.what,
            ok: line.passed(),
            detail,
            fix,
        }
    }
}

fn mapping_line(settings: &Settings) -> CheckLine {
    const WHAT: &str = "trait mapping valid";
    match &settings.rules {
        Ok(rules) if rules.mapping().is_empty() => {
            CheckLine::pass(WHAT, "no mapping: the standard traits")
        }
        Ok(rules) => CheckLine::pass(WHAT, rules.mapping().summary()),
        Err(errors) => {
            // The strategy's errors have their own line.
            let strategy = errors_of(&settings.user_id);
            let mapping: Vec<ConfigError> = errors
                .0
                .iter()
                .filter(|e| !strategy.contains(e))
                .cloned()
                .collect();
            if mapping.is_empty() {
                CheckLine::fail(WHAT, "needs a valid SEGMENT_SYNC_USER_ID first")
            } else {
                settings_line(WHAT, [mapping.as_slice()])
            }
        }
    }
}

fn errors_of<T>(section: &Parsed<T>) -> &[ConfigError] {
    section.as_ref().err().map_or(&[], |errors| &errors.0)
}

fn settings_line<'a>(what: &str, errors: impl IntoIterator<Item = &'a [ConfigError]>) -> CheckLine {
    let errors: Vec<ConfigError> = errors.into_iter().flatten().cloned().collect();
    if errors.is_empty() {
        CheckLine::pass(what, "")
    } else {
        CheckLine::fail(what, ConfigErrors(errors).to_string().replace('\n', "; "))
    }
}

async fn segment_lines(
    segment: &Parsed<segment_sync_adapters::segment::SegmentConfig>,
) -> Vec<CheckLine> {
    const KEY: &str = "SEGMENT_WRITE_KEY set";
    const ENDPOINT: &str = "Segment endpoint reachable";
    let errors = match segment {
        Ok(config) => {
            let reached = match wiring::segment(config) {
                Ok(client) => client.check.self_check().await,
                Err(failure) => vec![CheckLine::fail(ENDPOINT, failure.to_string())],
            };
            return std::iter::once(CheckLine::pass(KEY, ""))
                .chain(reached)
                .collect();
        }
        Err(errors) => &errors.0,
    };
    let (key, other): (Vec<&ConfigError>, Vec<&ConfigError>) = errors
        .iter()
        .partition(|e| matches!(e, ConfigError::WriteKey(_)));
    let key = match key.first() {
        Some(ConfigError::WriteKey(error @ (WriteKeyError::Missing | WriteKeyError::Blank))) => CheckLine::fail(
            KEY,
            format!("{error}: copy the write key from Segment (Connections › Sources › your source › Settings › API Keys)"),
        ),
        _ => CheckLine::pass(KEY, ""),
    };
    let endpoint = if other.is_empty() {
        CheckLine::fail(ENDPOINT, "needs the write key first")
    } else {
        settings_line(
            ENDPOINT,
            [other.into_iter().cloned().collect::<Vec<_>>().as_slice()],
        )
    };
    vec![key, endpoint]
}

/// With deletion on, whether the Public API takes the token; with it off, no line.
async fn deletion_lines(deletion: &Parsed<Option<DeletionSettings>>) -> Vec<CheckLine> {
    const WHAT: &str =
        "Segment deletion settings SEGMENT_DELETION, SEGMENT_PUBLIC_API_URL, SEGMENT_PUBLIC_API_TOKEN valid";
    match deletion {
        Ok(None) => Vec::new(),
        Ok(Some(deletion)) => match wiring::regulations(Some(deletion)) {
            Ok(Some(client)) => client.check.self_check().await,
            Ok(None) => Vec::new(),
            Err(failure) => vec![CheckLine::fail(WHAT, failure.to_string())],
        },
        Err(errors) => vec![settings_line(WHAT, [errors.0.as_slice()])],
    }
}

/// Attempts per commercetools request in `check`: enough to ride out one hiccup,
/// few enough that an unreachable host is reported in seconds.
const CHECK_ATTEMPTS: u32 = 2;

async fn commercetools_lines(settings: &Settings) -> Vec<CheckLine> {
    match &settings.commercetools {
        Ok(config) => {
            let mut config = config.clone();
            config.retry.max_attempts = config.retry.max_attempts.min(CHECK_ATTEMPTS);
            match wiring::source(&SourceSettings::Api(Box::new(config))) {
                Ok(source) => source.check.self_check().await,
                Err(failure) => vec![CheckLine::fail(
                    "commercetools settings valid",
                    failure.to_string(),
                )],
            }
        }
        Err(errors) => vec![
            CheckLine::fail(
                "commercetools token obtained with the needed scope",
                format!(
                    "{} (not needed when you only sync from export files)",
                    errors.to_string().replace('\n', "; ")
                ),
            ),
            CheckLine::fail(
                "one customer page read",
                "needs the commercetools configuration first",
            ),
        ],
    }
}

async fn state_lines(settings: &Settings) -> Vec<CheckLine> {
    let location = match &settings.state {
        Ok(location) => location,
        Err(errors) => return vec![settings_line("state location valid", [errors.0.as_slice()])],
    };
    match wiring::state(location).await {
        Ok(state) => state.check.self_check().await,
        Err(failure) => vec![CheckLine::fail(
            format!("state database {location} writable"),
            format!("{failure}; point --state or SEGMENT_SYNC_STATE at a writable file"),
        )],
    }
}
