//! `HttpCustomerSource` over the testkit's fake commercetools API against the
//! customer source contract.
//!
//! The fake serves its records in id order (`sort=id asc`, the order the walk's
//! cursor relies on), which the suite allows for the API; a record without an
//! id is put first, under the empty id, so that the cursor moves past it.
//!
//! The suite runs twice: with one cursor, and with the id space split into
//! ranges walked at once (the fixture's ids all fall into one or two of them,
//! the rest are empty).

use std::time::Duration;

use secrecy::SecretString;
use segment_sync_adapters::commercetools::{CommercetoolsConfig, HttpCustomerSource};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_ports::CustomerSource;
use segment_sync_testkit::contract::source::SourceFixture;
use segment_sync_testkit::contract::Subject;
use segment_sync_testkit::fake_commercetools::{FakeCommercetools, CLIENT_ID, CLIENT_SECRET};

/// A source reading a fake that holds the fixture's records as given, walking
/// `concurrency` id ranges, with quick retries; the fake lives as long as the
/// source.
async fn holding(fixture: SourceFixture, concurrency: u32) -> Subject<dyn CustomerSource> {
    let api = FakeCommercetools::start(Vec::new()).await;
    for record in &fixture.records {
        let id = serde_json::from_str::<serde_json::Value>(record).expect("a record is JSON")["id"]
            .as_str()
            .map_or_else(String::new, str::to_owned);
        api.put_raw(&id, record);
    }
    let secret = SecretString::from(CLIENT_SECRET);
    let mut config =
        CommercetoolsConfig::new(api.url(), api.url(), api.project(), CLIENT_ID, secret);
    config.page_size = u32::try_from(fixture.page_size).expect("a small page size");
    config.concurrency = concurrency;
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::commercetools()
    };
    let source = HttpCustomerSource::new(config).expect("a valid configuration");
    Subject::from(source).keeping(api)
}

mod single_cursor {
    use super::*;

    segment_sync_testkit::customer_source_contract!(|fixture: SourceFixture| holding(fixture, 1));
}

mod id_ranges {
    use super::*;

    segment_sync_testkit::customer_source_contract!(|fixture: SourceFixture| holding(fixture, 16));
}
