//! The in-memory ports against their ports' contract suites, as every adapter is.

use std::time::Duration;

use segment_sync_domain::DeliveryError;
use segment_sync_testkit::contract::segment::SegmentScript;
use segment_sync_testkit::contract::source::SourceFixture;
use segment_sync_testkit::contract::Subject;
use segment_sync_testkit::memory::{
    Gate, MemorySegment, MemorySource, MemoryStateStore, SegmentBehaviour,
};

mod state_store {
    use super::*;

    async fn empty() -> MemoryStateStore {
        MemoryStateStore::new()
    }

    segment_sync_testkit::state_store_contract!(empty);
}

mod source {
    use super::*;

    async fn holding(fixture: SourceFixture) -> MemorySource {
        let source = MemorySource::new().with_page_size(fixture.page_size);
        for record in &fixture.records {
            source.put_json(record);
        }
        source
    }

    segment_sync_testkit::customer_source_contract!(holding);

    /// Like an export: a snapshot that cannot be searched by id.
    mod without_by_id {
        use segment_sync_ports::SourceCapabilities;

        use super::*;

        async fn holding(fixture: SourceFixture) -> MemorySource {
            super::holding(fixture)
                .await
                .with_capabilities(SourceCapabilities {
                    tracks_changes: false,
                    by_id: false,
                })
        }

        segment_sync_testkit::customer_source_contract!(holding);
    }
}

mod segment {
    use super::*;

    async fn scripted(script: SegmentScript) -> Subject<dyn segment_sync_ports::SegmentClient> {
        let behaviour = match script {
            SegmentScript::Accepting => SegmentBehaviour::Deliver,
            SegmentScript::Slow => SegmentBehaviour::DeliverAfter(Duration::from_millis(50)),
            SegmentScript::Failing => SegmentBehaviour::Fail(DeliveryError::MaxRetriesExceeded {
                last: Box::new(DeliveryError::ServerError { status: 503 }),
            }),
            SegmentScript::Rejecting => {
                SegmentBehaviour::Reject(DeliveryError::BadRequest { detail: None })
            }
            SegmentScript::Unauthorized => SegmentBehaviour::Unauthorized,
            SegmentScript::Unresponsive => {
                let never = Gate::new();
                return Subject::from(MemorySegment::behaving(SegmentBehaviour::Gated(
                    never.clone(),
                )))
                .keeping(never);
            }
        };
        MemorySegment::behaving(behaviour).into()
    }

    segment_sync_testkit::segment_client_contract!(scripted);
}

mod regulations {
    use segment_sync_ports::RegulationError;
    use segment_sync_testkit::contract::regulations::RegulationScript;
    use segment_sync_testkit::memory::MemoryRegulations;

    async fn scripted(script: RegulationScript) -> MemoryRegulations {
        let client = MemoryRegulations::new();
        match script {
            RegulationScript::Accepting => {}
            RegulationScript::Unauthorized => {
                client.fail_always(Some(RegulationError::Unauthorized { status: 401 }));
            }
        }
        client
    }

    segment_sync_testkit::regulation_client_contract!(scripted);
}
