//! `segment-sync check`: the troubleshooting checklist, run against the real
//! services. Each line shows ✓ or ✗, and every ✗ says how to fix it.

use std::fmt;
use std::io::Write;

use segment_sync_adapters::commercetools::HttpCustomerSource;
use segment_sync_adapters::segment::probe;
use segment_sync_adapters::sqlite_state::check_writable;
use segment_sync_domain::DeliveryError;
use segment_sync_ports::{CustomerQuery, CustomerSource, SourceError};

use crate::cli::StateArg;
use crate::config::Vars;
use crate::wiring::{commercetools_config, segment_config};
use crate::{Exit, Failure};

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked.
    pub what: String,
    /// `Ok` with a detail, or `Err` with the fix.
    pub result: Result<String, String>,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(detail) if detail.is_empty() => write!(f, "✓ {}", self.what),
            Ok(detail) => write!(f, "✓ {} ({detail})", self.what),
            Err(fix) => write!(f, "✗ {}\n    fix: {fix}", self.what),
        }
    }
}

fn pass(what: impl Into<String>, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        what: what.into(),
        result: Ok(detail.into()),
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> CheckLine {
    CheckLine {
        what: what.into(),
        result: Err(fix.into()),
    }
}

/// Runs every check and prints the lines; exit 0 when all pass, 1 otherwise.
pub async fn run(state: &StateArg, vars: &Vars) -> Result<Exit, Failure> {
    let lines = checklist(state, vars).await;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &lines {
        // A closed stdout leaves nobody to read the checklist.
        let _ = writeln!(out, "{line}");
    }
    Ok(if lines.iter().all(|l| l.result.is_ok()) {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// The checklist's lines, in order: write key, Segment endpoint, commercetools
/// token and scope, one customer page, state database.
pub async fn checklist(state: &StateArg, vars: &Vars) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    lines.extend(segment_checks(vars).await);
    lines.extend(commercetools_checks(vars).await);
    let path = vars.state_path(state.state.as_deref());
    let what = format!("state database {} writable", path.display());
    lines.push(
        match tokio::task::spawn_blocking(move || check_writable(&path)).await {
            Ok(Ok(())) => pass(what, ""),
            Ok(Err(error)) => fail(
                what,
                format!("{error}; point --state or SEGMENT_SYNC_STATE at a writable file"),
            ),
            Err(error) => fail(what, error.to_string()),
        },
    );
    lines
}

async fn segment_checks(vars: &Vars) -> Vec<CheckLine> {
    let write_key = match vars.write_key() {
        Ok(key) => key,
        Err(error) => {
            return vec![
                fail(
                    "SEGMENT_WRITE_KEY set",
                    format!("{error}: copy the write key from Segment (Connections › Sources › your source › Settings › API Keys)"),
                ),
                fail("Segment endpoint reachable", "needs the write key first"),
            ]
        }
    };
    let endpoint = vars.segment_endpoint();
    let what = format!("Segment endpoint {endpoint} reachable");
    let config = match segment_config(vars, write_key) {
        Ok(config) => config,
        Err(error) => {
            return vec![
                pass("SEGMENT_WRITE_KEY set", ""),
                fail(what, error.to_string()),
            ]
        }
    };
    let reached = match probe(&config).await {
        Ok(()) => pass(what, "write key accepted"),
        Err(DeliveryError::Unauthorized) => fail(
            what,
            "Invalid write key: Segment refused it; copy the key of the right source (EU workspaces also need SEGMENT_ENDPOINT=https://events.eu1.segmentapis.com)",
        ),
        Err(error @ (DeliveryError::NetworkTimeout | DeliveryError::ConnectionFailed)) => fail(
            what,
            format!("{error}: check SEGMENT_ENDPOINT, DNS, proxies and outbound HTTPS from this host"),
        ),
        Err(error) => fail(what, format!("{error}: is SEGMENT_ENDPOINT the Tracking API?")),
    };
    vec![pass("SEGMENT_WRITE_KEY set", ""), reached]
}

async fn commercetools_checks(vars: &Vars) -> Vec<CheckLine> {
    let token_what = "commercetools token obtained with the needed scope";
    let page_what = "one customer page read";
    let config = match commercetools_config(vars) {
        Ok(mut config) => {
            config.page_size = 1;
            config
        }
        Err(error) => {
            return vec![
                fail(
                    token_what,
                    format!("{error} (not needed when you only sync from export files)"),
                ),
                fail(page_what, "needs the commercetools configuration first"),
            ]
        }
    };
    let source = match HttpCustomerSource::new(config) {
        Ok(source) => source,
        Err(error) => {
            return vec![
                fail(token_what, error.to_string()),
                fail(page_what, "needs a valid configuration"),
            ]
        }
    };
    let needed = source.required_scope();
    let sufficient = source.sufficient_scopes();
    let token = match source.granted_scopes().await {
        Ok(scopes) => {
            // An answer without scopes names none: the page read below decides.
            let enough = scopes.is_empty() || scopes.iter().any(|s| sufficient.contains(s));
            if enough {
                pass(token_what, scopes.join(" "))
            } else {
                fail(
                    token_what,
                    format!("the API client lacks the scope {needed} (it has: {}); create an API client with it", scopes.join(" ")),
                )
            }
        }
        Err(error) => fail(token_what, source_fix(&error)),
    };
    let page = match first_page(&source).await {
        Ok(count) => pass(page_what, format!("{count} customer(s) on the first page")),
        Err(error) => fail(page_what, source_fix(&error)),
    };
    vec![token, page]
}

async fn first_page(source: &HttpCustomerSource) -> Result<usize, SourceError> {
    let mut pages = source.customers(CustomerQuery::All).await?;
    Ok(pages
        .next_page()
        .await?
        .map_or(0, |page| page.records.len()))
}

fn source_fix(error: &SourceError) -> String {
    match error {
        SourceError::CredentialsRejected => format!(
            "{error}: check CTP_CLIENT_ID and CTP_CLIENT_SECRET, and that CTP_AUTH_URL (or CTP_REGION) is your project's region"
        ),
        SourceError::MissingScope { scope } => {
            format!("{error}: create an API client with the scope {scope}")
        }
        SourceError::Unavailable(_) => format!("{error}: check CTP_API_URL / CTP_REGION and outbound HTTPS"),
        other => other.to_string(),
    }
}
