//! `segment-sync check` against fakes: each failing condition prints ✗ with its
//! fix and exits 1; all passing prints ✓ and exits 0.

use crate::helpers::*;

async fn healthy() -> (FakeSegment, FakeCommercetools, App) {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![numbered_json(1)]).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    (segment, ctp, app)
}

fn line_starting<'a>(text: &'a str, prefix: &str, about: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix) && l.contains(about))
        .unwrap_or_else(|| panic!("no `{prefix} …{about}…` line in:\n{text}"))
}

#[tokio::test]
async fn all_good_prints_only_ticks_and_exits_0() {
    let (segment, _ctp, app) = healthy().await;
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert_eq!(
        text.lines().filter(|l| l.starts_with('✓')).count(),
        9,
        "{text}"
    );
    assert!(!text.contains('✗'));
    assert_eq!(segment.message_count(), 0, "check sends no customer");
}

#[tokio::test]
async fn no_write_key_is_a_cross_with_its_fix() {
    let ctp = FakeCommercetools::start(vec![]).await;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_WRITE_KEY", "");
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    line_starting(&text, "✗", "SEGMENT_WRITE_KEY");
    assert!(text.contains("Missing SEGMENT_WRITE_KEY"));
    line_starting(&text, "✓", "commercetools token");
}

#[tokio::test]
async fn an_unreachable_segment_is_a_cross() {
    let (_segment, ctp, _) = healthy().await;
    // Nothing ever listens on port 0: a connection there is refused at once,
    // where a port that was free a moment ago could be taken in between.
    let app = App::new()
        .env("SEGMENT_WRITE_KEY", WRITE_KEY)
        .env("SEGMENT_ENDPOINT", "http://127.0.0.1:0")
        .env("CTP_PROJECT_KEY", PROJECT)
        .env("CTP_CLIENT_ID", CLIENT_ID)
        .env("CTP_CLIENT_SECRET", CLIENT_SECRET)
        .env("CTP_AUTH_URL", ctp.url())
        .env("CTP_API_URL", ctp.url());
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    line_starting(&text, "✗", "Segment endpoint");
    assert!(text.contains("Connection failed"), "{text}");
    line_starting(&text, "✓", "SEGMENT_WRITE_KEY");
}

#[tokio::test]
async fn a_refused_write_key_is_a_cross() {
    let (segment, _ctp, app) = healthy().await;
    segment.set_mode(SegmentMode::Unauthorized);
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    line_starting(&text, "✗", "Segment endpoint");
    assert!(text.contains("Invalid write key"), "{text}");
    assert!(!text.contains(WRITE_KEY), "the key is never printed");
}

#[tokio::test]
async fn bad_commercetools_credentials_are_a_cross() {
    let (_segment, ctp, app) = healthy().await;
    ctp.set_mode(AuthMode::BadCredentials);
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    line_starting(&text, "✗", "commercetools token");
    assert!(
        text.contains("commercetools credentials rejected"),
        "{text}"
    );
    assert!(
        text.contains("CTP_CLIENT_SECRET"),
        "the fix names the variables: {text}"
    );
    assert!(!text.contains(CLIENT_SECRET), "the secret is never printed");
}

#[tokio::test]
async fn a_missing_scope_is_a_cross_naming_it() {
    let (_segment, ctp, app) = healthy().await;
    ctp.set_mode(AuthMode::MissingScope);
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    line_starting(&text, "✗", "commercetools token");
    line_starting(&text, "✗", "customer page");
    assert!(
        text.contains(&format!("view_customers:{PROJECT}")),
        "{text}"
    );
}

#[tokio::test]
async fn a_state_path_that_is_not_writable_is_a_cross() {
    let (_segment, _ctp, app) = healthy().await;
    // Root can write anywhere, so use a path whose directory does not exist.
    let output = app.run(&["check", "--state", "no/such/dir/state.db"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    line_starting(&text, "✗", "state database");
    assert!(text.contains("no/such/dir/state.db"), "{text}");
}

#[tokio::test]
async fn the_oidc_keys_are_fetched_and_shown_as_a_line() {
    use segment_sync_testkit::sender_auth::{FakeJwksHost, GoogleSigner};
    let (_segment, _ctp, app) = healthy().await;
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let reachable = app
        .env("WEBHOOK_OIDC_AUDIENCE", "https://hooks.example.com")
        .env("WEBHOOK_OIDC_JWKS_URL", &jwks.jwks_url());
    let output = reachable.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    line_starting(&text, "✓", "OIDC keys");
    assert!(
        text.contains("audience https://hooks.example.com, RS256 keys: 1"),
        "{text}"
    );
    assert_eq!(jwks.fetches(), 1);

    let gone = reachable.env(
        "WEBHOOK_OIDC_JWKS_URL",
        &format!("{}/gone", jwks.jwks_url()),
    );
    let output = gone.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    line_starting(&text, "✗", "OIDC keys");
    assert!(
        text.contains("fix: cannot fetch the OIDC keys from WEBHOOK_OIDC_JWKS_URL: HTTP 404"),
        "{text}"
    );
}
