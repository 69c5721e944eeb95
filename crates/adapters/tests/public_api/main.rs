//! `SegmentPublicApi` beyond its port's contract: retries, Retry-After, final
//! refusals, the wire format, timeouts, its `check` line and its secrecy.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use segment_sync_adapters::segment_public_api::{PublicApiConfig, SegmentPublicApi};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_ports::{RegulationClient, RegulationError, RegulationType, SelfCheck};
use segment_sync_testkit::fake_public_api::{FakePublicApi, PublicApiFailure, TOKEN};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Retries in milliseconds (a `Retry-After` is honoured all the same).
fn quick(base_url: &str, token: &str) -> PublicApiConfig {
    PublicApiConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::segment_public_api()
        },
        jitter_seed: Some(7),
        ..PublicApiConfig::new(base_url, SecretString::from(token))
    }
}

fn client_of(api: &FakePublicApi) -> SegmentPublicApi {
    SegmentPublicApi::new(quick(api.url(), TOKEN)).expect("a valid configuration")
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn statuses(api: &FakePublicApi) -> Vec<u16> {
    api.received().iter().map(|seen| seen.status).collect()
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_regulates_once() {
    let api = FakePublicApi::start().await;
    api.fail_next(
        1,
        PublicApiFailure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let client = client_of(&api);

    let started = Instant::now();
    let id = client
        .regulate(
            RegulationType::SuppressWithDelete,
            &ids(&["ada@example.com"]),
        )
        .await
        .unwrap();

    // The backoff alone is a few milliseconds: only Retry-After explains a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(statuses(&api), [429, 200]);
    let created = api.regulations();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].regulation_id.as_deref(), Some(id.as_str()));
    assert_eq!(created[0].subject_ids, ["ada@example.com"]);
}

#[tokio::test]
async fn two_server_errors_then_an_accept_is_one_regulation() {
    let api = FakePublicApi::start().await;
    api.fail_next(2, PublicApiFailure::ServerError);
    let client = client_of(&api);

    let id = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a", "b"]))
        .await
        .unwrap();

    assert_eq!(statuses(&api), [500, 500, 200]);
    assert_eq!(api.regulations().len(), 1);
    assert_eq!(client.status(&id).await.unwrap(), "INITIALIZED");
}

#[tokio::test]
async fn server_errors_past_the_attempts_are_unavailable_and_regulate_nothing() {
    let api = FakePublicApi::start().await;
    api.fail_next(5, PublicApiFailure::ServerError);
    let client = client_of(&api);

    let ended = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a"]))
        .await;

    assert_eq!(
        ended,
        Err(RegulationError::Unavailable {
            reason: "HTTP 500 after 3 attempts".to_owned()
        })
    );
    assert_eq!(statuses(&api), [500, 500, 500]);
    assert!(api.regulations().is_empty());
}

#[tokio::test]
async fn a_401_or_403_is_fatal_at_once_and_names_the_needed_access() {
    for status in [401, 403] {
        let api = FakePublicApi::start().await;
        api.refuse_token(status);
        let client = client_of(&api);

        let refused = client
            .regulate(RegulationType::SuppressWithDelete, &ids(&["a"]))
            .await
            .unwrap_err();

        assert_eq!(refused, RegulationError::Unauthorized { status });
        let message = refused.to_string();
        assert!(message.contains("SEGMENT_PUBLIC_API_TOKEN"), "{message}");
        assert!(message.contains("Workspace Owner"), "{message}");
        assert!(message.contains("End User Privacy Admin"), "{message}");
        assert_eq!(api.requests(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_segment_and_the_right_one_sent_as_bearer() {
    let api = FakePublicApi::start().await;
    let wrong = SegmentPublicApi::new(quick(api.url(), "not-the-token")).unwrap();
    let refused = wrong
        .regulate(RegulationType::SuppressOnly, &ids(&["a"]))
        .await;
    assert_eq!(refused, Err(RegulationError::Unauthorized { status: 401 }));

    client_of(&api)
        .regulate(RegulationType::SuppressOnly, &ids(&["a"]))
        .await
        .unwrap();
    let authorizations: Vec<Option<String>> = api
        .received()
        .into_iter()
        .map(|seen| seen.authorization)
        .collect();
    assert_eq!(
        authorizations,
        [
            Some("Bearer not-the-token".to_owned()),
            Some(format!("Bearer {TOKEN}"))
        ]
    );
}

#[tokio::test]
async fn the_request_is_segments_documented_shape() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/regulations"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "regulationType": "SUPPRESS_WITH_DELETE_INTERNAL",
            "subjectType": "USER_ID",
            "subjectIds": ["ada@example.com", "customer-2"],
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "regulateId": "1qJkfE1tpwvQcklImGksLN629wn" } })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/regulations/1qJkfE1tpwvQcklImGksLN629wn"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "regulation": {
                "id": "1qJkfE1tpwvQcklImGksLN629wn",
                "overallStatus": "PARTIAL_SUCCESS",
                "streamStatus": [],
            } }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = SegmentPublicApi::new(quick(&format!("{}/", server.uri()), TOKEN)).unwrap();

    let id = client
        .regulate(
            RegulationType::SuppressWithDeleteInternal,
            &ids(&["ada@example.com", "customer-2"]),
        )
        .await
        .unwrap();

    assert_eq!(id, "1qJkfE1tpwvQcklImGksLN629wn");
    assert_eq!(client.status(&id).await.unwrap(), "PARTIAL_SUCCESS");
}

#[tokio::test]
async fn a_validation_failure_is_refused_with_segments_message_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/regulations"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "errors": [{ "type": "validation", "message": "regulationType is not allowed" }]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = SegmentPublicApi::new(quick(&server.uri(), TOKEN)).unwrap();

    let refused = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a"]))
        .await;

    assert_eq!(
        refused,
        Err(RegulationError::Refused {
            status: 422,
            message: "regulationType is not allowed".to_owned()
        })
    );
}

#[tokio::test]
async fn an_accepted_answer_without_an_id_is_refused_rather_than_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/regulations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": {} })))
        .expect(1)
        .mount(&server)
        .await;
    let client = SegmentPublicApi::new(quick(&server.uri(), TOKEN)).unwrap();

    let refused = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a"]))
        .await;

    assert!(
        matches!(refused, Err(RegulationError::Refused { status: 200, ref message }) if message.contains("regulateId")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let config = PublicApiConfig {
        request_timeout: Duration::from_millis(100),
        retry: RetryPolicy {
            max_attempts: 2,
            ..quick(&server.uri(), TOKEN).retry
        },
        ..quick(&server.uri(), TOKEN)
    };
    let client = SegmentPublicApi::new(config).unwrap();

    let ended = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a"]))
        .await;

    assert_eq!(
        ended,
        Err(RegulationError::Unavailable {
            reason: "timeout after 2 attempts".to_owned()
        })
    );
}

#[tokio::test]
async fn a_status_is_read_as_segment_sets_it() {
    let api = FakePublicApi::start().await;
    let client = client_of(&api);
    let id = client
        .regulate(RegulationType::SuppressWithDelete, &ids(&["a"]))
        .await
        .unwrap();
    api.set_status(&id, "FINISHED");

    assert_eq!(client.status(&id).await.unwrap(), "FINISHED");
    assert_eq!(api.status_reads(&id), 1);
}

#[tokio::test]
async fn check_passes_with_the_token_and_fails_naming_the_variable_without_it() {
    let api = FakePublicApi::start().await;
    let lines = client_of(&api).self_check().await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0].passed(), "{}", lines[0]);
    assert!(lines[0].what.contains(api.url()), "{}", lines[0]);
    assert!(api.regulations().is_empty(), "check creates no regulation");

    api.refuse_token(403);
    let lines = client_of(&api).self_check().await;
    let fix = lines[0].result.as_ref().unwrap_err();
    assert!(fix.contains("SEGMENT_PUBLIC_API_TOKEN"), "{fix}");
    assert!(fix.contains("Access Management"), "{fix}");
}

#[tokio::test]
async fn the_token_never_appears_in_debug_output_or_errors() {
    let secret = "sekrit-public-api-token";
    let api = FakePublicApi::start().await;
    let config = quick(api.url(), secret);
    let client = SegmentPublicApi::new(config.clone()).unwrap();
    let refused = client
        .regulate(RegulationType::DeleteOnly, &ids(&["a"]))
        .await
        .unwrap_err();
    let lines = client.self_check().await;

    for printed in [
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{refused:?} {refused}"),
        format!("{lines:?}"),
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert_eq!(
        api.received()[0].authorization.as_deref(),
        Some("Bearer sekrit-public-api-token"),
        "the token itself was sent"
    );
}
