//! What `segment-sync check` asks of the commercetools API: a token with the needed
//! scope, and one customer page.

use std::sync::Arc;

use async_trait::async_trait;
use segment_sync_ports::{CheckLine, CustomerPages, CustomerQuery, SelfCheck, SourceError};

use super::pages::ApiPages;
use super::HttpCustomerSource;

const TOKEN: &str = "commercetools token obtained with the needed scope";
const PAGE: &str = "one customer page read";

#[async_trait]
impl SelfCheck for HttpCustomerSource {
    /// Two lines: the token and its scopes, then one page of customers. The token
    /// is fetched once; when that fails, the page is not tried.
    async fn self_check(&self) -> Vec<CheckLine> {
        let needed = self.required_scope();
        let sufficient = self.sufficient_scopes();
        let scopes = match self.granted_scopes().await {
            Ok(scopes) => scopes,
            Err(error) => {
                return vec![
                    CheckLine::fail(TOKEN, fix(&error)),
                    CheckLine::fail(PAGE, "needs a token first"),
                ]
            }
        };
        // An answer without scopes names none: the page read below decides.
        let token = if scopes.is_empty() || scopes.iter().any(|s| sufficient.contains(s)) {
            CheckLine::pass(TOKEN, scopes.join(" "))
        } else {
            CheckLine::fail(
                TOKEN,
                format!(
                    "the API client lacks the scope {needed} (it has: {}); create an API client with it",
                    scopes.join(" ")
                ),
            )
        };
        let page = match self.first_page().await {
            Ok(count) => CheckLine::pass(PAGE, format!("{count} customer(s) on the first page")),
            Err(error) => CheckLine::fail(PAGE, fix(&error)),
        };
        vec![token, page]
    }
}

impl HttpCustomerSource {
    async fn first_page(&self) -> Result<usize, SourceError> {
        // One request, not one per id range: the check reads one page.
        let mut pages = ApiPages::single_cursor(Arc::clone(&self.inner), CustomerQuery::All);
        Ok(pages
            .next_page()
            .await?
            .map_or(0, |page| page.records.len()))
    }
}

fn fix(error: &SourceError) -> String {
    match error {
        SourceError::CredentialsRejected => format!(
            "{error}: check CTP_CLIENT_ID and CTP_CLIENT_SECRET, and that CTP_AUTH_URL (or CTP_REGION) is your project's region"
        ),
        SourceError::MissingScope { scope } => {
            format!("{error}: create an API client with the scope {scope}")
        }
        SourceError::Unavailable(reason) if reason.starts_with("token request") => {
            format!("{error}: check CTP_AUTH_URL / CTP_REGION and outbound HTTPS")
        }
        SourceError::Unavailable(_) => {
            format!("{error}: check CTP_API_URL / CTP_REGION and outbound HTTPS")
        }
        other => other.to_string(),
    }
}
