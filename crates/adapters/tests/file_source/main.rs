//! `FileCustomerSource` over the three export formats, streams and large files.

use std::io::{BufWriter, Cursor, Write};
use std::path::PathBuf;

use segment_sync_adapters::file_source::FileCustomerSource;
use segment_sync_ports::{CustomerPages, CustomerQuery, CustomerSource, SourceError, SourceRecord};
use segment_sync_testkit::customers::{numbered_id, numbered_json};
use time::macros::datetime;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What a walk yielded, in order: `Ok(id)` or `Err(position)`.
type Walked = Vec<Result<String, String>>;

async fn walk(pages: &mut dyn CustomerPages) -> Result<Walked, SourceError> {
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await? {
        assert!(!page.records.is_empty(), "no empty pages");
        for record in page.records {
            seen.push(match record {
                SourceRecord::Customer(customer) => Ok(customer.id),
                SourceRecord::Malformed {
                    position, reason, ..
                } => {
                    assert!(!reason.is_empty());
                    Err(position)
                }
            });
        }
    }
    Ok(seen)
}

async fn walk_source(source: &FileCustomerSource, query: CustomerQuery) -> Walked {
    let mut pages = source.customers(query).await.expect("walk starts");
    walk(pages.as_mut()).await.expect("walk ends")
}

fn ok(id: &str) -> Result<String, String> {
    Ok(id.to_owned())
}

fn bad(position: &str) -> Result<String, String> {
    Err(position.to_owned())
}

/// The walk with each malformed record's position after the name of `input`,
/// which every one must start with.
fn relative(walked: Walked, input: &std::path::Path) -> Walked {
    let prefix = format!("{} ", input.display());
    walked
        .into_iter()
        .map(|record| {
            record.map_err(|position| {
                position
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{position:?} names the input {prefix:?}"))
                    .to_owned()
            })
        })
        .collect()
}

#[tokio::test]
async fn malformed_lines_of_two_files_have_positions_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("customers.ndjson")).unwrap();
    let mut positions = Vec::new();
    for name in ["monday.ndjson", "tuesday.ndjson"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &plain).unwrap();
        let walked = walk_source(&FileCustomerSource::from_path(&path), CustomerQuery::All).await;
        positions.extend(walked.into_iter().filter_map(Result::err));
    }
    let stdin = FileCustomerSource::from_reader("standard input", Cursor::new(plain));
    positions.extend(
        walk_source(&stdin, CustomerQuery::All)
            .await
            .into_iter()
            .filter_map(Result::err),
    );

    assert_eq!(
        positions,
        [
            format!("{} line 3", dir.path().join("monday.ndjson").display()),
            format!("{} line 3", dir.path().join("tuesday.ndjson").display()),
            "standard input line 3".to_owned(),
        ]
    );
}

#[tokio::test]
async fn ndjson_reports_a_malformed_line_by_number_and_reads_on() {
    let source = FileCustomerSource::from_path(fixture("customers.ndjson"));
    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let page = pages.next_page().await.unwrap().unwrap();
    assert!(matches!(
        &page.records[2],
        SourceRecord::Malformed { position, reason, .. }
            if *position == format!("{} line 3", fixture("customers.ndjson").display())
                && reason.contains("invalid type")
    ));
    let SourceRecord::Customer(first) = &page.records[0] else {
        panic!("line 1 is a customer");
    };
    assert_eq!(first.first_name.as_deref(), Some("Ada"));
    assert_eq!(
        relative(
            walk_source(&source, CustomerQuery::All).await,
            &fixture("customers.ndjson")
        ),
        [ok("c1"), ok("c2"), bad("line 3"), ok("c4")],
        "the blank line 4 is skipped, line 5 still read"
    );
}

#[tokio::test]
async fn a_pretty_printed_array_reports_a_malformed_element_by_its_files_line() {
    let source = FileCustomerSource::from_path(fixture("customers-array.json"));
    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let page = pages.next_page().await.unwrap().unwrap();
    let SourceRecord::Malformed { reason, .. } = &page.records[1] else {
        panic!("element 1 is malformed");
    };
    assert!(
        reason.starts_with("invalid type") && reason.ends_with("(line 12, column 29)"),
        "the error is placed in the file, not in the record: {reason}"
    );
    assert_eq!(
        relative(
            walk_source(&source, CustomerQuery::All).await,
            &fixture("customers-array.json")
        ),
        [ok("c1"), bad("line 9 (array index 1)"), ok("c3")]
    );
}

#[tokio::test]
async fn a_pretty_printed_query_response_yields_its_results() {
    let source = FileCustomerSource::from_path(fixture("query-response.json"));
    assert_eq!(
        walk_source(&source, CustomerQuery::All).await,
        [ok("c1"), ok("c2"), ok("c3")]
    );
}

#[tokio::test]
async fn a_stream_is_read_once_and_a_second_walk_says_why_not() {
    let bytes = std::fs::read(fixture("query-response.json")).unwrap();
    let source = FileCustomerSource::from_reader("standard input", Cursor::new(bytes));
    assert_eq!(
        walk_source(&source, CustomerQuery::All).await,
        [ok("c1"), ok("c2"), ok("c3")]
    );
    let Err(error) = source.customers(CustomerQuery::All).await else {
        panic!("a second walk of a stream must fail");
    };
    assert!(
        matches!(&error, SourceError::Io { path, reason }
            if path == "standard input" && reason.contains("only once")),
        "{error:?}"
    );
    assert!(matches!(
        source.customer_by_id("c1").await,
        Err(SourceError::Protocol(_))
    ));
}

/// `bytes` gzipped, as `gzip -c` writes them.
fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_gzipped_export_is_read_whatever_its_name() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture_name, expected) in [
        (
            "customers.ndjson",
            vec![ok("c1"), ok("c2"), bad("line 3"), ok("c4")],
        ),
        (
            "customers-array.json",
            vec![ok("c1"), bad("line 9 (array index 1)"), ok("c3")],
        ),
    ] {
        let plain = std::fs::read(fixture(fixture_name)).unwrap();
        for name in [
            format!("{fixture_name}.gz"),
            format!("{fixture_name}.export"),
        ] {
            let path = dir.path().join(&name);
            std::fs::write(&path, gzipped(&plain)).unwrap();
            let source = FileCustomerSource::from_path(&path);
            assert_eq!(
                relative(walk_source(&source, CustomerQuery::All).await, &path),
                expected,
                "{name}"
            );
        }
        // Two gzip members one after the other, as `cat a.gz b.gz` makes.
        if fixture_name.ends_with(".ndjson") {
            let mut twice = gzipped(&plain);
            twice.extend(gzipped(&plain));
            let source = FileCustomerSource::from_reader("twice", Cursor::new(twice));
            assert_eq!(walk_source(&source, CustomerQuery::All).await.len(), 8);
        }
    }
}

#[tokio::test]
async fn a_walk_counts_the_stored_bytes_it_read_against_the_stored_size() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("customers.ndjson")).unwrap();
    let gz = dir.path().join("customers.ndjson.gz");
    std::fs::write(&gz, gzipped(&plain)).unwrap();
    for path in [fixture("customers.ndjson"), gz] {
        let source = FileCustomerSource::from_path(&path);
        let size = source.stored_size().expect("a file has a size");
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let read = source.bytes_read();
        let mut pages = source.customers(CustomerQuery::All).await.unwrap();
        assert!(read.load(std::sync::atomic::Ordering::Relaxed) <= size);
        while pages.next_page().await.unwrap().is_some() {}
        assert_eq!(
            read.load(std::sync::atomic::Ordering::Relaxed),
            size,
            "{} read whole, as stored",
            path.display()
        );
    }
    assert_eq!(FileCustomerSource::stdin().stored_size(), None);
    assert_eq!(
        FileCustomerSource::from_path(dir.path()).stored_size(),
        None
    );
}

#[tokio::test]
async fn a_dash_reads_standard_input() {
    let shown = format!("{:?}", FileCustomerSource::from_input("-"));
    assert!(shown.contains("standard input"), "{shown}");
    let shown = format!("{:?}", FileCustomerSource::from_input("export.ndjson"));
    assert!(shown.contains("export.ndjson"), "{shown}");
}

#[tokio::test]
async fn changed_since_keeps_later_customers_and_those_without_a_date() {
    let since = CustomerQuery::ChangedSince(datetime!(2024-05-01 00:00 UTC));
    let ndjson = FileCustomerSource::from_path(fixture("customers.ndjson"));
    assert_eq!(
        relative(
            walk_source(&ndjson, since).await,
            &fixture("customers.ndjson")
        ),
        [ok("c2"), bad("line 3"), ok("c4")]
    );
    let array = FileCustomerSource::from_path(fixture("customers-array.json"));
    assert_eq!(
        relative(
            walk_source(&array, since).await,
            &fixture("customers-array.json")
        ),
        [bad("line 9 (array index 1)"), ok("c3")]
    );
}

#[tokio::test]
async fn a_file_is_searched_by_id() {
    let source = FileCustomerSource::from_path(fixture("customers-array.json"));
    let found = source.customer_by_id("c3").await.unwrap().unwrap();
    assert_eq!(found.email.as_deref(), Some("quote\"and}brace@example.com"));
    assert_eq!(source.customer_by_id("c9").await.unwrap(), None);
}

#[tokio::test]
async fn an_unreadable_file_is_an_io_error_naming_it() {
    let missing = fixture("no-such-export.ndjson");
    let source = FileCustomerSource::from_path(&missing);
    let Err(error) = source.customers(CustomerQuery::All).await else {
        panic!("a missing file must fail");
    };
    let SourceError::Io { path, reason } = error else {
        panic!("expected Io, got {error:?}");
    };
    assert_eq!(path, missing.display().to_string());
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn empty_inputs_have_no_pages() {
    for input in ["", "  \n\n", "[]", "{\"results\": []}"] {
        let source =
            FileCustomerSource::from_reader("test", Cursor::new(input.as_bytes().to_vec()));
        assert_eq!(
            walk_source(&source, CustomerQuery::All).await,
            [],
            "{input:?}"
        );
    }
}

fn customer_line(i: usize) -> String {
    numbered_json(i).to_string()
}

#[tokio::test]
async fn a_large_ndjson_export_is_read_with_bounded_buffering() {
    const COUNT: usize = 50_000;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    {
        let mut out = BufWriter::new(file.as_file_mut());
        for i in 0..COUNT {
            writeln!(out, "{}", customer_line(i)).unwrap();
        }
        out.flush().unwrap();
    }
    let size = file.as_file().metadata().unwrap().len();
    assert!(size > 10 * 1024 * 1024, "the export is {size} bytes");

    let source = FileCustomerSource::from_path(file.path());
    let mut pages = source.pages(CustomerQuery::All).await.unwrap();
    let mut next = 0;
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.records.len() == 500 || next + page.records.len() == COUNT);
        for record in page.records {
            let SourceRecord::Customer(customer) = record else {
                panic!("record {next} is malformed");
            };
            assert_eq!(customer.id, numbered_id(next));
            next += 1;
        }
    }
    assert_eq!(next, COUNT, "every record once");
    let peak = pages.peak_buffered_bytes();
    assert!(peak > 0 && peak < 1024 * 1024, "peak buffer {peak} bytes");
    assert_eq!(source.peak_buffered_bytes(), peak);
}

#[tokio::test]
async fn a_large_compact_query_response_is_read_with_bounded_buffering() {
    const COUNT: usize = 20_000;
    let mut body = String::from(r#"{"limit":20000,"count":20000,"results":["#);
    for i in 0..COUNT {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&customer_line(i));
    }
    body.push_str("]}");
    let source = FileCustomerSource::from_reader("test", Cursor::new(body.into_bytes()));
    let walked = walk_source(&source, CustomerQuery::All).await;
    assert_eq!(walked.len(), COUNT);
    assert!(walked.iter().all(Result::is_ok));
    let peak = source.peak_buffered_bytes();
    assert!(peak < 1024 * 1024, "peak buffer {peak} bytes");
}
