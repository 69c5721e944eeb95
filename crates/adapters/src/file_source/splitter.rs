//! Cuts an export into records without parsing it: one NDJSON line, or one
//! element of a top-level array or of a query response's `results` array, at a
//! time. It tracks only string, escape and bracket state, so each record is
//! parsed on its own and the buffer holds little more than one record and one
//! read.

use std::fmt;

/// The UTF-8 byte order mark some tools write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a record was in its export, as users are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// A line of an NDJSON file, from 1.
    Line(u64),
    /// An element of an array: its index, from 0, and the line and column (from
    /// 1, in bytes) of the file where it starts.
    Element { index: u64, line: u64, column: u64 },
}

impl Position {
    /// The file's line and column where the record starts.
    pub(crate) fn start(self) -> (u64, u64) {
        match self {
            Self::Line(line) => (line, 1),
            Self::Element { line, column, .. } => (line, column),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Element { index, line, .. } => write!(f, "line {line} (array index {index})"),
        }
    }
}

/// One record cut out of the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// The record's bytes, not yet parsed.
    Record {
        /// Where it was.
        position: Position,
        /// Its JSON text (possibly invalid).
        bytes: &'a [u8],
    },
    /// A record longer than the limit; its bytes were dropped as they came.
    Oversized {
        /// Where it was.
        position: Position,
    },
}

/// What [`Splitter::next_piece`] came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cut<'a> {
    /// A record.
    Piece(Piece<'a>),
    /// More input is needed to find the next record.
    NeedInput,
    /// Every record has been handed out.
    Finished,
}

/// What the splitter is looking at.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Before the first significant byte.
    Start,
    /// Inside a first top-level object, which is either a query response or the
    /// first line of an NDJSON file.
    Sniff(Sniff),
    /// NDJSON.
    Lines(Lines),
    /// Inside the array whose elements are the records.
    Elements(Elements),
    /// Nothing more to cut.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Sniff {
    depth: u32,
    text: TextState,
    key_start: usize,
    awaiting: Awaiting,
}

/// Progress towards `"results"` `:` `[` at the first object's top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Colon,
    Array,
}

#[derive(Debug, Clone, Copy)]
struct Lines {
    start: usize,
    number: u64,
    skipping: bool,
}

#[derive(Debug, Clone, Copy)]
struct Elements {
    start: Option<usize>,
    /// The line and column where `start` is.
    start_at: (u64, u64),
    depth: u32,
    text: TextState,
    index: u64,
    skipping: bool,
}

/// Whether the scanner is inside a JSON string, and just after a backslash.
#[derive(Debug, Clone, Copy, Default)]
struct TextState {
    in_string: bool,
    escaped: bool,
}

impl TextState {
    /// Feeds one byte; true when the byte is structural (outside any string).
    fn structural(&mut self, byte: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
            false
        } else if byte == b'"' {
            self.in_string = true;
            false
        } else {
            true
        }
    }
}

/// A record found by a step: its position and its bytes, or `None` when it was
/// over the limit.
type Found = (Position, Option<(usize, usize)>);

/// The incremental cutter. Offsets are absolute positions in the stream; the
/// buffer holds the bytes from `base` on.
pub(crate) struct Splitter {
    buf: Vec<u8>,
    base: usize,
    pos: usize,
    keep_from: usize,
    content_start: usize,
    mode: Mode,
    eof: bool,
    max_record: usize,
    /// The newlines before `counted_to`, and where the line `counted_to` is on
    /// starts: enough to give an array element its file line and column.
    newlines: u64,
    counted_to: usize,
    line_start: usize,
}

impl Splitter {
    /// A splitter that drops records longer than `max_record` bytes.
    pub(crate) fn new(max_record: usize) -> Self {
        Self {
            buf: Vec::new(),
            base: 0,
            pos: 0,
            keep_from: 0,
            content_start: 0,
            mode: Mode::Start,
            eof: false,
            max_record,
            newlines: 0,
            counted_to: 0,
            line_start: 0,
        }
    }

    /// Counts the newlines up to `offset`, which must still be in the buffer
    /// (offsets counted already are not counted again).
    fn count_lines_to(&mut self, offset: usize) {
        if offset <= self.counted_to {
            return;
        }
        let from = self.counted_to;
        for (i, &byte) in self.buf[from - self.base..offset - self.base]
            .iter()
            .enumerate()
        {
            if byte == b'\n' {
                self.newlines += 1;
                self.line_start = from + i + 1;
            }
        }
        self.counted_to = offset;
    }

    /// The file's line and column (from 1) of `offset`, at or after what was
    /// counted so far.
    fn line_and_column(&mut self, offset: usize) -> (u64, u64) {
        self.count_lines_to(offset);
        (self.newlines + 1, (offset - self.line_start) as u64 + 1)
    }

    /// Says the input has ended.
    pub(crate) fn end_of_input(&mut self) {
        self.eof = true;
    }

    /// Releases what earlier records used and returns the buffer to read more
    /// into, with room for `additional` bytes.
    pub(crate) fn buffer_for_read(&mut self, additional: usize) -> &mut Vec<u8> {
        // What is released is counted first, so that later elements' lines stay
        // right. NDJSON numbers its lines itself and never turns into an array.
        if !matches!(self.mode, Mode::Lines(_) | Mode::Done) {
            self.count_lines_to(self.keep_from);
        }
        let release = self.keep_from - self.base;
        self.buf.drain(..release);
        self.base = self.keep_from;
        self.buf.reserve_exact(additional);
        &mut self.buf
    }

    /// The memory the buffer holds now.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// The next record, or what keeps it from being found.
    pub(crate) fn next_piece(&mut self) -> Cut<'_> {
        let (position, range) = loop {
            let step = match self.mode {
                Mode::Start => self.start(),
                Mode::Sniff(sniff) => self.sniff(sniff),
                Mode::Lines(lines) => self.lines(lines),
                Mode::Elements(elements) => self.elements(elements),
                Mode::Done => return Cut::Finished,
            };
            match step {
                Step::Found(found) => break found,
                Step::NeedInput => return Cut::NeedInput,
                Step::Switched => continue,
            }
        };
        Cut::Piece(match range {
            Some((start, end)) => Piece::Record {
                position,
                bytes: &self.buf[start - self.base..end - self.base],
            },
            None => Piece::Oversized { position },
        })
    }

    fn end(&self) -> usize {
        self.base + self.buf.len()
    }

    fn byte(&self, at: usize) -> u8 {
        self.buf[at - self.base]
    }

    fn start(&mut self) -> Step {
        if self.pos == 0 {
            let head = &self.buf[..self.buf.len().min(BOM.len())];
            if head.len() < BOM.len() && BOM.starts_with(head) && !self.eof {
                return Step::NeedInput;
            }
            if head == BOM {
                self.pos = BOM.len();
                self.content_start = BOM.len();
            }
        }
        while self.pos < self.end() && self.byte(self.pos).is_ascii_whitespace() {
            self.pos += 1;
        }
        if self.pos == self.end() {
            if self.eof {
                self.mode = Mode::Done;
                return Step::Switched;
            }
            return Step::NeedInput;
        }
        match self.byte(self.pos) {
            b'[' => {
                self.pos += 1;
                self.keep_from = self.pos;
                self.mode = Mode::Elements(Elements::at(0));
            }
            b'{' => {
                // Nothing is released while sniffing: it may be line 1.
                self.mode = Mode::Sniff(Sniff {
                    depth: 0,
                    text: TextState::default(),
                    key_start: self.pos,
                    awaiting: Awaiting::Nothing,
                });
            }
            _ => self.switch_to_lines(),
        }
        Step::Switched
    }

    fn switch_to_lines(&mut self) {
        self.pos = self.content_start;
        self.mode = Mode::Lines(Lines {
            start: self.content_start,
            number: 1,
            skipping: false,
        });
    }

    fn sniff(&mut self, mut sniff: Sniff) -> Step {
        while self.pos < self.end() {
            let at = self.pos;
            let byte = self.byte(at);
            self.pos += 1;
            let was_in_string = sniff.text.in_string;
            if !sniff.text.structural(byte) {
                if !was_in_string {
                    sniff.key_start = self.pos;
                    sniff.awaiting = Awaiting::Nothing;
                } else if !sniff.text.in_string && sniff.depth == 1 {
                    let key = &self.buf[sniff.key_start - self.base..at - self.base];
                    sniff.awaiting = if key == b"results" {
                        Awaiting::Colon
                    } else {
                        Awaiting::Nothing
                    };
                }
                continue;
            }
            match byte {
                b if b.is_ascii_whitespace() => {}
                b':' if sniff.depth == 1 && sniff.awaiting == Awaiting::Colon => {
                    sniff.awaiting = Awaiting::Array;
                }
                b'[' if sniff.depth == 1 && sniff.awaiting == Awaiting::Array => {
                    self.keep_from = self.pos;
                    self.mode = Mode::Elements(Elements::at(0));
                    return Step::Switched;
                }
                b'{' | b'[' => {
                    sniff.depth += 1;
                    sniff.awaiting = Awaiting::Nothing;
                }
                b'}' | b']' => {
                    sniff.depth = sniff.depth.saturating_sub(1);
                    sniff.awaiting = Awaiting::Nothing;
                    if sniff.depth == 0 {
                        // A whole object without a results array: NDJSON.
                        self.switch_to_lines();
                        return Step::Switched;
                    }
                }
                _ => sniff.awaiting = Awaiting::Nothing,
            }
        }
        if self.eof || self.end() - self.content_start > self.max_record {
            self.switch_to_lines();
            return Step::Switched;
        }
        self.mode = Mode::Sniff(sniff);
        Step::NeedInput
    }

    fn lines(&mut self, mut lines: Lines) -> Step {
        loop {
            let newline = self.buf[self.pos - self.base..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| self.pos + i);
            let line_end = match newline {
                Some(at) => at,
                None if self.eof => self.end(),
                None => {
                    self.pos = self.end();
                    if !lines.skipping && self.end() - lines.start > self.max_record {
                        lines.skipping = true;
                    }
                    // A line being skipped keeps none of its bytes.
                    self.keep_from = if lines.skipping {
                        self.end()
                    } else {
                        lines.start
                    };
                    self.mode = Mode::Lines(lines);
                    return Step::NeedInput;
                }
            };
            let position = Position::Line(lines.number);
            let (start, skipped) = (lines.start, lines.skipping);
            let at_eof = newline.is_none();
            self.pos = if at_eof { line_end } else { line_end + 1 };
            self.keep_from = self.pos;
            lines = Lines {
                start: self.pos,
                number: lines.number + 1,
                skipping: false,
            };
            self.mode = if at_eof {
                Mode::Done
            } else {
                Mode::Lines(lines)
            };
            if skipped {
                return Step::Found((position, None));
            }
            let (start, end) = self.trim(start, line_end);
            if start < end {
                return Step::Found((position, Some((start, end))));
            }
            if at_eof {
                return Step::Switched;
            }
        }
    }

    fn elements(&mut self, mut elements: Elements) -> Step {
        while self.pos < self.end() {
            let at = self.pos;
            let byte = self.byte(at);
            self.pos += 1;
            let Some(start) = elements.start else {
                match byte {
                    b if b.is_ascii_whitespace() || b == b',' => self.keep_from = self.pos,
                    b']' => {
                        self.keep_from = self.pos;
                        self.mode = Mode::Done;
                        return Step::Switched;
                    }
                    _ => {
                        elements.start = Some(at);
                        elements.start_at = self.line_and_column(at);
                        elements.depth = 0;
                        elements.text = TextState::default();
                        // The first byte of an element is scanned like the rest.
                        self.pos = at;
                    }
                }
                continue;
            };
            if !elements.text.structural(byte) {
                continue;
            }
            let closes_array = match byte {
                b'{' | b'[' => {
                    elements.depth += 1;
                    continue;
                }
                b'}' | b']' if elements.depth > 0 => {
                    elements.depth -= 1;
                    continue;
                }
                b']' => true,
                b',' if elements.depth == 0 => false,
                _ => continue,
            };
            let found = self.element_found(&mut elements, start, at);
            self.mode = if closes_array {
                Mode::Done
            } else {
                Mode::Elements(elements)
            };
            return Step::Found(found);
        }
        if let Some(start) = elements.start {
            if self.eof {
                // Cut short: handed out as it is, so that parsing says why.
                let found = self.element_found(&mut elements, start, self.end());
                self.mode = Mode::Done;
                return Step::Found(found);
            }
            if !elements.skipping && self.end() - start > self.max_record {
                elements.skipping = true;
            }
            self.keep_from = if elements.skipping { self.end() } else { start };
        } else if self.eof {
            tracing::warn!("export ended inside its array: the closing `]` is missing");
            self.mode = Mode::Done;
            return Step::Switched;
        }
        self.mode = Mode::Elements(elements);
        Step::NeedInput
    }

    fn element_found(&mut self, elements: &mut Elements, start: usize, end: usize) -> Found {
        let (line, column) = elements.start_at;
        let position = Position::Element {
            index: elements.index,
            line,
            column,
        };
        let skipped = elements.skipping;
        *elements = Elements::at(elements.index + 1);
        self.keep_from = self.pos;
        if skipped {
            (position, None)
        } else {
            (position, Some(self.trim(start, end)))
        }
    }

    fn trim(&self, mut start: usize, mut end: usize) -> (usize, usize) {
        while start < end && self.byte(start).is_ascii_whitespace() {
            start += 1;
        }
        while end > start && self.byte(end - 1).is_ascii_whitespace() {
            end -= 1;
        }
        (start, end)
    }
}

impl Elements {
    fn at(index: u64) -> Self {
        Self {
            start: None,
            start_at: (0, 0),
            depth: 0,
            text: TextState::default(),
            index,
            skipping: false,
        }
    }
}

/// What one step of the current mode came to.
enum Step {
    Found(Found),
    NeedInput,
    Switched,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and collects every piece.
    fn split(input: &[u8], chunk: usize, max_record: usize) -> Vec<(String, Option<String>)> {
        let mut splitter = Splitter::new(max_record);
        let mut chunks = input.chunks(chunk);
        let mut out = Vec::new();
        loop {
            match splitter.next_piece() {
                Cut::Piece(Piece::Record { position, bytes }) => out.push((
                    position.to_string(),
                    Some(String::from_utf8_lossy(bytes).into_owned()),
                )),
                Cut::Piece(Piece::Oversized { position }) => out.push((position.to_string(), None)),
                Cut::Finished => return out,
                Cut::NeedInput => match chunks.next() {
                    Some(c) => splitter.buffer_for_read(c.len()).extend_from_slice(c),
                    None => splitter.end_of_input(),
                },
            }
        }
    }

    fn records(pieces: &[(String, Option<String>)]) -> Vec<&str> {
        pieces.iter().filter_map(|(_, r)| r.as_deref()).collect()
    }

    #[test]
    fn ndjson_lines_are_numbered_and_blank_lines_skipped() {
        let input = b"{\"id\":\"a\"}\r\n\n  \n{\"id\":\"b\"}\nnot json\n{\"id\":\"c\"}";
        for chunk in [1, 3, 1000] {
            let pieces = split(input, chunk, 1024);
            let positions: Vec<_> = pieces.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(
                positions,
                ["line 1", "line 4", "line 5", "line 6"],
                "chunk {chunk}"
            );
            assert_eq!(
                records(&pieces),
                [
                    r#"{"id":"a"}"#,
                    r#"{"id":"b"}"#,
                    "not json",
                    r#"{"id":"c"}"#
                ]
            );
        }
    }

    #[test]
    fn array_elements_ignore_brackets_and_commas_inside_strings() {
        let input = br#" [ {"id":"a,]}","x":[1,{"y":"\"]"}]} ,
            {"id":"b"} , 42 ] trailing"#;
        for chunk in [1, 2, 7, 1000] {
            let pieces = split(input, chunk, 1024);
            assert_eq!(
                records(&pieces),
                [
                    r#"{"id":"a,]}","x":[1,{"y":"\"]"}]}"#,
                    r#"{"id":"b"}"#,
                    "42"
                ],
                "chunk {chunk}"
            );
            assert_eq!(pieces[2].0, "line 2 (array index 2)");
        }
    }

    #[test]
    fn a_query_response_yields_its_results_whatever_the_layout() {
        let input = b"\xEF\xBB\xBF{\n  \"limit\": 2, \"note\": \"results\",\n  \"nested\": {\"results\": [9]},\n  \"results\" : [\n    {\"id\": \"a\"},\n    {\"id\": \"b\"}\n  ],\n  \"total\": 2\n}\n";
        for chunk in [1, 5, 1000] {
            let pieces = split(input, chunk, 1024);
            assert_eq!(records(&pieces), [r#"{"id": "a"}"#, r#"{"id": "b"}"#]);
            assert_eq!(pieces[1].0, "line 6 (array index 1)");
        }
    }

    #[test]
    fn an_element_is_placed_at_its_files_line_and_column_whatever_the_reads() {
        let input =
            b"[\n  {\"id\": \"a\",\n   \"x\": 1},\n\n\n  {\"id\": \"b\"},   {\"id\": \"c\"}\n]\n";
        for chunk in [1, 3, 7, 1000] {
            let mut splitter = Splitter::new(1024);
            let mut chunks = input.chunks(chunk);
            let mut positions = Vec::new();
            loop {
                match splitter.next_piece() {
                    Cut::Piece(Piece::Record { position, .. }) => positions.push(position),
                    Cut::Piece(Piece::Oversized { .. }) => unreachable!("all are small"),
                    Cut::Finished => break,
                    Cut::NeedInput => match chunks.next() {
                        Some(c) => splitter.buffer_for_read(c.len()).extend_from_slice(c),
                        None => splitter.end_of_input(),
                    },
                }
            }
            let starts: Vec<(u64, u64)> = positions.iter().map(|p| p.start()).collect();
            assert_eq!(starts, [(2, 3), (6, 3), (6, 18)], "chunk {chunk}");
        }
    }

    #[test]
    fn a_first_object_without_results_makes_the_file_ndjson() {
        let input = b"{\"id\":\"a\",\"x\":{\"results\":[]}}\n{\"id\":\"b\"}\n";
        let pieces = split(input, 4, 1024);
        assert_eq!(pieces[0].0, "line 1");
        assert_eq!(
            records(&pieces),
            [r#"{"id":"a","x":{"results":[]}}"#, r#"{"id":"b"}"#]
        );
    }

    fn element(index: u64, column: u64) -> Position {
        Position::Element {
            index,
            line: 1,
            column,
        }
    }

    #[test]
    fn records_over_the_limit_are_reported_and_their_bytes_dropped() {
        let long = "x".repeat(100);
        let ndjson = format!("{{\"id\":\"a\"}}\n{{\"id\":\"{long}\"}}\n{{\"id\":\"c\"}}\n");
        let pieces = split(ndjson.as_bytes(), 8, 32);
        assert_eq!(pieces[1], ("line 2".to_owned(), None));
        assert_eq!(records(&pieces), [r#"{"id":"a"}"#, r#"{"id":"c"}"#]);

        let array = format!("[{{\"id\":\"a\"}},{{\"id\":\"{long}\"}},{{\"id\":\"c\"}}]");
        let mut splitter = Splitter::new(32);
        let mut peak = 0;
        let mut out = Vec::new();
        let mut chunks = array.as_bytes().chunks(8);
        loop {
            match splitter.next_piece() {
                Cut::Piece(Piece::Record { position, .. }) => out.push((position, true)),
                Cut::Piece(Piece::Oversized { position }) => out.push((position, false)),
                Cut::Finished => break,
                Cut::NeedInput => match chunks.next() {
                    Some(c) => {
                        splitter.buffer_for_read(c.len()).extend_from_slice(c);
                        peak = peak.max(splitter.buf.len());
                    }
                    None => splitter.end_of_input(),
                },
            }
        }
        assert_eq!(
            out,
            [
                (element(0, 2), true),
                (element(1, 13), false),
                (element(2, 123), true)
            ]
        );
        assert!(peak <= 32 + 8, "buffer held {peak} bytes");
    }

    #[test]
    fn a_truncated_array_hands_out_the_partial_element() {
        let pieces = split(br#"[{"id":"a"},{"id":"#, 3, 1024);
        assert_eq!(records(&pieces), [r#"{"id":"a"}"#, r#"{"id":"#]);
        assert!(split(b"   \n ", 2, 1024).is_empty());
    }
}
