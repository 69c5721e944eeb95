//! [`CustomerSource`] over an export (`--input`): NDJSON, a JSON array, or a
//! query response `{"results":[…]}`, from a file or standard input.
//!
//! A gzipped export (by its magic bytes, whatever its name) is decompressed as it
//! is read. The input is read as a stream: a splitter cuts out one record at a time and
//! only that record is parsed, so memory stays at about one read
//! buffer plus one record however large the export is. A record that is not a
//! customer becomes [`SourceRecord::Malformed`] with its line or index, and the
//! rest is read.

mod splitter;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use segment_sync_domain::Customer;
use segment_sync_ports::{
    CheckLine, CustomerPages, CustomerQuery, CustomerSource, Page, SelfCheck, SourceCapabilities,
    SourceError, SourceRecord,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt};

use splitter::{Cut, Piece, Position, Splitter};

/// Records per page, as the API source hands them out.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// Bytes asked of the reader at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The longest record kept; a longer one is reported malformed and skipped
/// without being held in memory. commercetools customers are far smaller.
const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// How standard input is named in errors.
const STDIN_NAME: &str = "standard input";

/// A reader of an export, boxed so that files, stdin and test streams are alike.
type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Customers from an export file or stream.
///
/// A file can be walked any number of times; a stream (standard input, or a
/// reader given to [`FileCustomerSource::from_reader`]) only once.
pub struct FileCustomerSource {
    input: Input,
    page_size: usize,
    peak_buffered: Arc<AtomicUsize>,
    bytes_read: Arc<AtomicU64>,
}

enum Input {
    Path(PathBuf),
    Stream {
        name: String,
        reader: Mutex<Option<Reader>>,
    },
}

impl FileCustomerSource {
    /// The source the `--input` argument names: `-` is standard input, anything
    /// else a path.
    pub fn from_input(argument: &str) -> Self {
        if argument == "-" {
            Self::stdin()
        } else {
            Self::from_path(argument)
        }
    }

    /// An export file; it is opened at the start of each walk.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self::with_input(Input::Path(path.into()))
    }

    /// Standard input, which can be walked once.
    pub fn stdin() -> Self {
        Self::from_reader(STDIN_NAME, tokio::io::stdin())
    }

    /// Any byte stream, walked once; `name` says what it is in errors.
    pub fn from_reader(
        name: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Self {
        Self::with_input(Input::Stream {
            name: name.into(),
            reader: Mutex::new(Some(Box::new(reader))),
        })
    }

    fn with_input(input: Input) -> Self {
        Self {
            input,
            page_size: DEFAULT_PAGE_SIZE,
            peak_buffered: Arc::default(),
            bytes_read: Arc::default(),
        }
    }

    /// Sets the records per page (at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The bytes the current walk has read of the input as it is stored (before
    /// any gzip is undone), to set against [`FileCustomerSource::stored_size`]:
    /// a handle a progress display may read while the walk goes on.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_read)
    }

    /// The size of the export file as stored, when it is a file whose size is
    /// known (not a stream).
    pub fn stored_size(&self) -> Option<u64> {
        match &self.input {
            Input::Path(path) => std::fs::metadata(path)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len()),
            Input::Stream { .. } => None,
        }
    }

    /// The most bytes any walk of this source has buffered at once.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered.load(Ordering::Relaxed)
    }

    /// Starts a walk, as [`CustomerSource::customers`] does, returning the
    /// concrete walker.
    pub async fn pages(&self, query: CustomerQuery) -> Result<FilePages, SourceError> {
        let (name, reader): (String, Reader) = match &self.input {
            Input::Path(path) => {
                let name = path.display().to_string();
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| SourceError::Io {
                        path: name.clone(),
                        reason: e.to_string(),
                    })?;
                (name, Box::new(file))
            }
            Input::Stream { name, reader } => {
                let taken = reader
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let reader = taken.ok_or_else(|| SourceError::Io {
                    path: name.clone(),
                    reason:
                        "a stream can be read only once; save the export to a file to read it again"
                            .to_owned(),
                })?;
                (name.clone(), reader)
            }
        };
        self.bytes_read.store(0, Ordering::Relaxed);
        let counted: Reader = Box::new(Counted {
            inner: reader,
            count: Arc::clone(&self.bytes_read),
        });
        let reader = gunzipped_if_needed(counted)
            .await
            .map_err(|e| SourceError::Io {
                path: name.clone(),
                reason: e.to_string(),
            })?;
        let changed_since = match query {
            CustomerQuery::All => None,
            CustomerQuery::ChangedSince(since) => Some(since),
        };
        Ok(FilePages {
            name,
            reader,
            splitter: Splitter::new(MAX_RECORD_BYTES),
            changed_since,
            page_size: self.page_size,
            peak_buffered: 0,
            source_peak: Arc::clone(&self.peak_buffered),
        })
    }
}

impl fmt::Debug for FileCustomerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match &self.input {
            Input::Path(path) => path.display().to_string(),
            Input::Stream { name, .. } => name.clone(),
        };
        f.debug_struct("FileCustomerSource")
            .field("input", &input)
            .field("page_size", &self.page_size)
            .finish()
    }
}

#[async_trait]
impl CustomerSource for FileCustomerSource {
    /// An export is a snapshot, never the live data; a stream cannot be searched.
    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities {
            tracks_changes: false,
            by_id: matches!(self.input, Input::Path(_)),
        }
    }

    async fn customers(&self, query: CustomerQuery) -> Result<Box<dyn CustomerPages>, SourceError> {
        Ok(Box::new(self.pages(query).await?))
    }

    /// Scans a file for the customer; a stream cannot be searched.
    async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SourceError> {
        if let Input::Stream { name, .. } = &self.input {
            return Err(SourceError::Protocol(format!(
                "an export read from {name} cannot be searched by id"
            )));
        }
        let mut pages = self.pages(CustomerQuery::All).await?;
        while let Some(record) = pages.next_record().await? {
            if let SourceRecord::Customer(customer) = record {
                if customer.id == id {
                    return Ok(Some(*customer));
                }
            }
        }
        Ok(None)
    }
}

/// The gzip magic bytes (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The reader itself, or a decompressing reader when the stream starts with the
/// gzip magic bytes (a `.json.gz` export, or one piped through `gzip -c`).
/// A reader that adds what it reads to a shared count.
struct Counted {
    inner: Reader,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.count.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

async fn gunzipped_if_needed(reader: Reader) -> std::io::Result<Reader> {
    let mut buffered = tokio::io::BufReader::with_capacity(READ_CHUNK, reader);
    let start = buffered.fill_buf().await?;
    if start.starts_with(&GZIP_MAGIC) {
        let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(buffered);
        // `cat a.gz b.gz` is a valid gzip stream too.
        decoder.multiple_members(true);
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(buffered))
    }
}

#[async_trait]
impl SelfCheck for FileCustomerSource {
    /// One line: the export opens and its first page reads. A stream is not read
    /// (it can be read only once).
    async fn self_check(&self) -> Vec<CheckLine> {
        let Input::Path(path) = &self.input else {
            return Vec::new();
        };
        let what = format!("export {} readable", path.display());
        let first = async { self.pages(CustomerQuery::All).await?.next_page().await };
        vec![match first.await {
            Ok(page) => CheckLine::pass(
                what,
                format!(
                    "{} record(s) on the first page",
                    page.map_or(0, |p| p.records.len())
                ),
            ),
            Err(error) => CheckLine::fail(what, error.to_string()),
        }]
    }
}

/// One walk over an export, a page of records at a time.
pub struct FilePages {
    name: String,
    reader: Reader,
    splitter: Splitter,
    changed_since: Option<OffsetDateTime>,
    page_size: usize,
    peak_buffered: usize,
    source_peak: Arc<AtomicUsize>,
}

impl FilePages {
    /// The most bytes this walk has buffered at once.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }

    /// The next record the query selects, or `None` at the end of the input.
    async fn next_record(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        loop {
            match self.splitter.next_piece() {
                Cut::Piece(piece) => {
                    let record = to_record(piece, &self.name);
                    if self.selects(&record) {
                        return Ok(Some(record));
                    }
                }
                Cut::Finished => return Ok(None),
                Cut::NeedInput => self.read_more().await?,
            }
        }
    }

    async fn read_more(&mut self) -> Result<(), SourceError> {
        let buffer = self.splitter.buffer_for_read(READ_CHUNK);
        let read = self
            .reader
            .read_buf(buffer)
            .await
            .map_err(|e| SourceError::Io {
                path: self.name.clone(),
                reason: e.to_string(),
            })?;
        if read == 0 {
            self.splitter.end_of_input();
        }
        self.peak_buffered = self.peak_buffered.max(self.splitter.buffered_bytes());
        self.source_peak
            .fetch_max(self.peak_buffered, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the query wants this record. Customers without a readable
    /// `lastModifiedAt` are kept: dropping them would lose them for good.
    fn selects(&self, record: &SourceRecord) -> bool {
        let (Some(since), SourceRecord::Customer(customer)) = (self.changed_since, record) else {
            return true;
        };
        customer
            .last_modified_at
            .as_deref()
            .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            .is_none_or(|at| at >= since)
    }
}

impl fmt::Debug for FilePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePages")
            .field("input", &self.name)
            .field("peak_buffered", &self.peak_buffered)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CustomerPages for FilePages {
    async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        let mut records = Vec::with_capacity(self.page_size.min(DEFAULT_PAGE_SIZE));
        while records.len() < self.page_size {
            match self.next_record().await? {
                Some(record) => records.push(record),
                None => break,
            }
        }
        Ok((!records.is_empty()).then_some(Page { records }))
    }
}

/// The file's line and column of a place in a record (its `line`, `column`): a
/// record of an array may start anywhere in the file and span many lines.
fn in_the_file(position: Position, line: usize, column: usize) -> (u64, u64) {
    let (start_line, start_column) = position.start();
    let in_file_line = start_line + line as u64 - 1;
    let in_file_column = if line == 1 {
        start_column + column as u64 - 1
    } else {
        column as u64
    };
    (in_file_line, in_file_column)
}

/// The record of a piece of the input `name`. A malformed record's position
/// names the input as well as the line or index (`customers.ndjson line 3`): a
/// record without an id is keyed by it, which must not collide across files.
fn to_record(piece: Piece<'_>, name: &str) -> SourceRecord {
    let (position, parsed, text) = match piece {
        Piece::Record { position, bytes } => {
            // One UTF-8 check for the record instead of one per string inside it.
            let text = std::str::from_utf8(bytes).ok();
            let parsed = match text {
                Some(text) => crate::record::parse_customer_placed(text, |line, column| {
                    in_the_file(position, line, column)
                }),
                None => Err("not UTF-8".to_owned()),
            };
            (position, parsed, text)
        }
        Piece::Oversized { position } => (
            position,
            Err(format!("record longer than {MAX_RECORD_BYTES} bytes")),
            None,
        ),
    };
    let position = || format!("{name} {position}");
    match parsed {
        Ok(customer) if !customer.id.is_empty() => SourceRecord::Customer(Box::new(customer)),
        Ok(_) => SourceRecord::Malformed {
            position: position(),
            customer_id: None,
            reason: "customer has no id".to_owned(),
        },
        Err(reason) => SourceRecord::Malformed {
            position: position(),
            customer_id: text.and_then(crate::record::customer_id_of),
            reason,
        },
    }
}
