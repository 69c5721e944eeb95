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

mod deletion {
    use segment_sync_testkit::fake_public_api::{FakePublicApi, TOKEN};

    use super::*;

    async fn with_deletion(token: &str) -> (FakeSegment, FakeCommercetools, FakePublicApi, App) {
        let (segment, ctp, app) = healthy().await;
        let api = FakePublicApi::start().await;
        let app = app
            .env("SEGMENT_DELETION", "suppress_with_delete")
            .env("SEGMENT_PUBLIC_API_URL", api.url())
            .env("SEGMENT_PUBLIC_API_TOKEN", token);
        (segment, ctp, api, app)
    }

    #[tokio::test]
    async fn deletion_on_adds_a_tick_for_the_public_api_and_creates_nothing() {
        let (_segment, _ctp, api, app) = with_deletion(TOKEN).await;
        let output = app.run(&["check"]).await;
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
        line_starting(&text, "✓", "Segment Public API");
        assert_eq!(
            text.lines().filter(|l| l.starts_with('✓')).count(),
            10,
            "{text}"
        );
        assert!(api.requests() >= 1, "the token was tried");
        assert!(api.regulations().is_empty(), "check regulates nobody");
    }

    #[tokio::test]
    async fn a_refused_token_is_a_cross_naming_the_variable_and_never_printed() {
        let secret = "sekrit-public-api-token";
        let (_segment, _ctp, api, app) = with_deletion(secret).await;
        api.refuse_token(403);
        let output = app.run(&["check"]).await;
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        line_starting(&text, "✗", "Segment Public API");
        assert!(text.contains("SEGMENT_PUBLIC_API_TOKEN"), "{text}");
        assert!(text.contains("Workspace Owner"), "{text}");
        assert!(!text.contains(secret), "the token is never printed: {text}");
        assert!(!stderr(&output).contains(secret), "nor logged");
    }

    #[tokio::test]
    async fn deletion_settings_errors_are_one_cross_with_every_problem() {
        let (_segment, _ctp, app) = healthy().await;
        let output = app
            .env("SEGMENT_DELETION", "erase")
            .env("SEGMENT_PUBLIC_API_URL", "http://segment.example.com")
            .run(&["check"])
            .await;
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        let line = line_starting(&text, "✗", "Segment deletion settings");
        assert!(line.contains("SEGMENT_DELETION"), "{text}");
        assert!(
            text.contains("`erase` is not one of off, suppress_with_delete"),
            "{text}"
        );
        assert!(text.contains("is plain http"), "{text}");
    }

    #[tokio::test]
    async fn deletion_off_adds_no_line() {
        let (_segment, _ctp, app) = healthy().await;
        let output = app.env("SEGMENT_DELETION", "off").run(&["check"]).await;
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{text}");
        assert!(!text.contains("Public API"), "{text}");
    }
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
