//! `SegmentPublicApi` over the testkit's fake Public API against the regulation
//! client contract.

use std::time::Duration;

use secrecy::SecretString;
use segment_sync_adapters::segment_public_api::{PublicApiConfig, SegmentPublicApi};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_testkit::contract::regulations::{RegulationScript, RegulationSubject};
use segment_sync_testkit::fake_public_api::{FakePublicApi, TOKEN};

/// A client of a fake Public API answering as `script` says, with retries that
/// give up within milliseconds; the fake lives as long as the client.
async fn scripted(script: RegulationScript) -> RegulationSubject {
    let api = FakePublicApi::start().await;
    match script {
        RegulationScript::Accepting => {}
        RegulationScript::Unauthorized => api.refuse_token(401),
    }
    let config = PublicApiConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::segment_public_api()
        },
        ..PublicApiConfig::new(api.url(), SecretString::from(TOKEN))
    };
    let client = SegmentPublicApi::new(config).expect("a valid configuration");
    RegulationSubject::new(client, api)
}

segment_sync_testkit::regulation_client_contract!(scripted);
