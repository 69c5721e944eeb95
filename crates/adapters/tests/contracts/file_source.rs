//! `FileCustomerSource` over export files against the customer source contract.
//!
//! A stream (standard input) is not instantiated: it can be walked only once and
//! cannot be searched by id, as `FileCustomerSource::from_reader` documents.

use segment_sync_adapters::file_source::FileCustomerSource;
use segment_sync_ports::CustomerSource;
use segment_sync_testkit::contract::source::SourceFixture;
use segment_sync_testkit::contract::Subject;

/// An export file holding `contents`, in a temporary directory that lives as long
/// as the source.
fn export(name: &str, contents: &str, page_size: usize) -> Subject<dyn CustomerSource> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("the export is written");
    Subject::from(FileCustomerSource::from_path(path).with_page_size(page_size)).keeping(dir)
}

mod ndjson {
    use super::*;

    async fn holding(fixture: SourceFixture) -> Subject<dyn CustomerSource> {
        export("customers.ndjson", &fixture.ndjson(), fixture.page_size)
    }

    segment_sync_testkit::customer_source_contract!(holding);
}

mod json_array {
    use super::*;

    async fn holding(fixture: SourceFixture) -> Subject<dyn CustomerSource> {
        export("customers.json", &fixture.json_array(), fixture.page_size)
    }

    segment_sync_testkit::customer_source_contract!(holding);
}
