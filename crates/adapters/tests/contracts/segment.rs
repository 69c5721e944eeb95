//! `HttpSegmentClient` over the testkit's fake Segment against the Segment
//! client contract.

use std::time::Duration;

use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_domain::WriteKey;
use segment_sync_ports::SegmentClient;
use segment_sync_testkit::contract::segment::SegmentScript;
use segment_sync_testkit::contract::Subject;
use segment_sync_testkit::fake_segment::{FakeSegment, Reply, SegmentMode, WRITE_KEY};

/// A client of a fake Segment answering as `script` says, with retries that
/// give up within milliseconds; the fake lives as long as the client.
async fn scripted(script: SegmentScript) -> Subject<dyn SegmentClient> {
    let segment = match script {
        SegmentScript::Accepting => FakeSegment::start(SegmentMode::Accept).await,
        SegmentScript::Slow => {
            FakeSegment::start(SegmentMode::Slow(Duration::from_millis(50))).await
        }
        SegmentScript::Failing => FakeSegment::start(SegmentMode::Down).await,
        // Every batch, down to one message, is refused: the client splits, then rejects.
        SegmentScript::Rejecting => FakeSegment::scripted(|_| Reply::status(400).body("bad")).await,
        SegmentScript::Unauthorized => FakeSegment::start(SegmentMode::Unauthorized).await,
        // Answers long after any rule's deadline (and the client's request timeout).
        SegmentScript::Unresponsive => {
            FakeSegment::scripted(|_| Reply::ok().after(Duration::from_secs(3600))).await
        }
    };
    let config = SegmentConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::segment()
        },
        ..SegmentConfig::new(
            segment.url(),
            WriteKey::parse(Some(WRITE_KEY)).expect("a write key"),
        )
    };
    let client = HttpSegmentClient::new(config).expect("a valid configuration");
    Subject::from(client).keeping(segment)
}

segment_sync_testkit::segment_client_contract!(scripted);
