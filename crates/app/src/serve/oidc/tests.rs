use segment_sync_testkit::sender_auth::{
    pubsub_claims, unix_now, unsigned_token, FakeJwksHost, GoogleSigner,
};
use std::sync::Arc;

use serde_json::json;

use super::*;

const AUDIENCE: &str = "https://hooks.example.com/webhooks/commercetools";
const PUSHER: &str = "pubsub-push@my-project.iam.gserviceaccount.com";

fn config(jwks: &FakeJwksHost, email: Option<&str>) -> OidcConfig {
    OidcConfig {
        audience: AUDIENCE.to_owned(),
        jwks_url: jwks.jwks_url(),
        email: email.map(str::to_owned),
    }
}

fn refused(result: Result<(), OidcError>) -> OidcRefusal {
    match result {
        Err(OidcError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_signed_like_google_for_our_audience_passes() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let verifier = OidcVerifier::new(config(&jwks, Some(PUSHER)));

    let token = google.sign(&pubsub_claims(AUDIENCE, PUSHER));

    assert_eq!(verifier.verify(&token).await, Ok(()));
    // Google writes the issuer with and without the scheme.
    let mut bare_issuer = pubsub_claims(AUDIENCE, PUSHER);
    bare_issuer["iss"] = json!("accounts.google.com");
    assert_eq!(verifier.verify(&google.sign(&bare_issuer)).await, Ok(()));
}

#[tokio::test]
async fn each_broken_token_is_refused_for_its_reason() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let verifier = OidcVerifier::new(config(&jwks, Some(PUSHER)));
    let claims = || pubsub_claims(AUDIENCE, PUSHER);
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = claims();
        claims[name] = value;
        claims
    };
    let signed = |claims: serde_json::Value| google.sign(&claims);
    let mut tampered = signed(claims());
    tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
    let cases = [
        (
            "wrong audience",
            signed(with("aud", json!("https://elsewhere.example.com"))),
            OidcRefusal::Audience,
        ),
        (
            "expired",
            signed(with("exp", json!(unix_now() - 3600))),
            OidcRefusal::Expired,
        ),
        (
            "exp as a string",
            signed(with("exp", json!("99999999999"))),
            OidcRefusal::Invalid("MissingRequiredClaim(\"exp\")".to_owned()),
        ),
        (
            "not Google's issuer",
            signed(with("iss", json!("https://evil.example.com"))),
            OidcRefusal::Issuer,
        ),
        (
            "signed by a key the JWKS does not publish",
            GoogleSigner::key_b().sign(&claims()),
            OidcRefusal::UnknownKey,
        ),
        (
            "key b's signature under key a's id",
            GoogleSigner::key_b()
                .sign_with_header(&json!({"alg": "RS256", "kid": google.kid()}), &claims()),
            OidcRefusal::Signature,
        ),
        ("signature altered", tampered, OidcRefusal::Signature),
        (
            "alg none",
            unsigned_token(&claims()),
            OidcRefusal::Algorithm("`none`".to_owned()),
        ),
        (
            "HS256",
            google.sign_with_header(&json!({"alg": "HS256", "kid": google.kid()}), &claims()),
            OidcRefusal::Algorithm("`HS256`".to_owned()),
        ),
        (
            "wrong email",
            signed(with("email", json!("someone@else.iam.gserviceaccount.com"))),
            OidcRefusal::Email,
        ),
        (
            "email not verified",
            signed(with("email_verified", json!(false))),
            OidcRefusal::Email,
        ),
        ("not a JWT", "s3cret".to_owned(), OidcRefusal::NotAJwt),
    ];
    for (what, token, expected) in cases {
        assert_eq!(refused(verifier.verify(&token).await), expected, "{what}");
    }
}

#[tokio::test]
async fn without_an_email_setting_any_service_account_passes() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let verifier = OidcVerifier::new(config(&jwks, None));

    let token = google.sign(&pubsub_claims(AUDIENCE, "other@p.iam.gserviceaccount.com"));

    assert_eq!(verifier.verify(&token).await, Ok(()));
}

#[tokio::test]
async fn the_jwks_is_fetched_once_for_many_requests_at_once() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let verifier = Arc::new(OidcVerifier::new(config(&jwks, Some(PUSHER))));
    let token = google.sign(&pubsub_claims(AUDIENCE, PUSHER));

    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (verifier, token) = (Arc::clone(&verifier), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), Ok(()));
    }
    assert_eq!(verifier.verify(&token).await, Ok(()));

    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_jwks_again() {
    let (old, new) = (GoogleSigner::key_a(), GoogleSigner::key_b());
    let jwks = FakeJwksHost::start(&[&old]).await;
    let verifier = OidcVerifier::with_min_refresh(config(&jwks, None), Duration::ZERO);
    assert_eq!(
        verifier
            .verify(&old.sign(&pubsub_claims(AUDIENCE, PUSHER)))
            .await,
        Ok(())
    );
    assert_eq!(jwks.fetches(), 1);

    // Google rotates: the new key is published, and tokens are signed with it.
    jwks.publish(&[&old, &new]);
    let rotated = new.sign(&pubsub_claims(AUDIENCE, PUSHER));

    assert_eq!(verifier.verify(&rotated).await, Ok(()));
    assert_eq!(jwks.fetches(), 2);
    assert_eq!(verifier.verify(&rotated).await, Ok(()));
    assert_eq!(jwks.fetches(), 2, "a known key needs no fetch");
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_does_not_hammer_the_issuer() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let verifier = OidcVerifier::new(config(&jwks, None));
    let claims = pubsub_claims(AUDIENCE, PUSHER);
    assert_eq!(verifier.verify(&google.sign(&claims)).await, Ok(()));

    for n in 0..100 {
        let forged = google.sign_with_header(
            &json!({"alg": "RS256", "kid": format!("made-up-{n}")}),
            &claims,
        );
        assert_eq!(
            refused(verifier.verify(&forged).await),
            OidcRefusal::UnknownKey
        );
    }

    assert_eq!(
        jwks.fetches(),
        1,
        "within {MIN_REFRESH:?} of the last fetch"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_refused() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let mut config = config(&jwks, None);
    config.jwks_url = format!("{}/nothing-here", config.jwks_url);
    let verifier = OidcVerifier::new(config);

    let result = verifier
        .verify(&google.sign(&pubsub_claims(AUDIENCE, PUSHER)))
        .await;

    assert!(
        matches!(&result, Err(OidcError::KeysUnavailable(reason)) if reason == "HTTP 404"),
        "{result:?}"
    );
}

#[test]
fn the_key_set_fetches_when_stale_or_unknown_but_not_more_often_than_allowed() {
    let start = Instant::now();
    let minute = Duration::from_secs(60);
    let mut set = KeySet::default();
    let key = || DecodingKey::from_rsa_raw_components(&[1], &[1]);
    let is = |lookup: Lookup| match lookup {
        Lookup::Use(_) => "use",
        Lookup::Fetch => "fetch",
        Lookup::Unknown => "unknown",
    };

    assert_eq!(
        is(set.lookup("a", start, minute)),
        "fetch",
        "nothing fetched yet"
    );
    set.attempted(start);
    set.replace(
        HashMap::from([("a".to_owned(), key())]),
        start + 10 * minute,
    );

    let soon = start + Duration::from_secs(1);
    assert_eq!(is(set.lookup("a", soon, minute)), "use");
    assert_eq!(is(set.lookup("b", soon, minute)), "unknown", "rate-limited");
    assert_eq!(is(set.lookup("b", start + minute, minute)), "fetch");
    let stale = start + 11 * minute;
    assert_eq!(is(set.lookup("a", stale, minute)), "fetch", "past max-age");
    set.attempted(stale);
    // The fetch failed: the stale key stays in use until the next may be tried.
    assert_eq!(
        is(set.lookup("a", stale + Duration::from_secs(1), minute)),
        "use"
    );
}

#[test]
fn max_age_is_read_from_cache_control() {
    assert_eq!(
        max_age("public, max-age=21817, must-revalidate, no-transform"),
        Some(Duration::from_secs(21817))
    );
    assert_eq!(max_age("Max-Age = 60"), Some(Duration::from_secs(60)));
    assert_eq!(max_age("no-cache"), None);
    assert_eq!(max_age("max-age=soon"), None);
}
