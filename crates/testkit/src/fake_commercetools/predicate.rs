//! The commercetools query predicates the fake understands: comparisons of `id`
//! and `lastModifiedAt` with string literals, joined by `and`.
//!
//! That covers what the adapter sends today (`id > "<last>"`, optionally after
//! `lastModifiedAt >= "<since>"`) and what an id-range walk sends
//! (`id >= "4" and id < "8" and id > "<last>"`). Anything else is refused with
//! the position where reading stopped, so a test learns at once that the adapter
//! sent something the fake (and perhaps commercetools) would not take.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A field a predicate can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The customer's `id`, compared as a string (byte order), as commercetools does.
    Id,
    /// `lastModifiedAt`, compared as an instant.
    LastModifiedAt,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "id" => Some(Self::Id),
            "lastModifiedAt" => Some(Self::LastModifiedAt),
            _ => None,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Id => "id",
            Self::LastModifiedAt => "lastModifiedAt",
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Op {
    /// Whether `ordering` (a field's value against the literal) satisfies it.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Self::Lt => ordering.is_lt(),
            Self::Le => ordering.is_le(),
            Self::Eq => ordering.is_eq(),
            Self::Ne => ordering.is_ne(),
            Self::Ge => ordering.is_ge(),
            Self::Gt => ordering.is_gt(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Ge => ">=",
            Self::Gt => ">",
        })
    }
}

/// One `field op "literal"` term.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    field: Field,
    op: Op,
    value: String,
    /// The literal as an instant, for `lastModifiedAt`; parsed once.
    instant: Option<OffsetDateTime>,
}

impl Comparison {
    /// The field compared.
    pub fn field(&self) -> Field {
        self.field
    }

    /// The operator.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The literal, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a customer whose `field` is `actual` satisfies this term.
    ///
    /// Timestamps compare as instants when both sides are RFC 3339 (so
    /// `…10:00:00.5Z` is after `…10:00:00.123Z` though it sorts before it as text),
    /// and as text otherwise.
    pub fn holds(&self, actual: &str) -> bool {
        let ordering = match (self.field, self.instant) {
            (Field::LastModifiedAt, Some(literal)) => {
                match OffsetDateTime::parse(actual, &Rfc3339) {
                    Ok(actual) => actual.cmp(&literal),
                    Err(_) => actual.cmp(self.value.as_str()),
                }
            }
            _ => actual.cmp(self.value.as_str()),
        };
        self.op.accepts(ordering)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{} {} \"{escaped}\"", self.field, self.op)
    }
}

/// A conjunction of comparisons; the empty one matches every customer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predicate {
    comparisons: Vec<Comparison>,
}

/// The ids a predicate allows, as bounds on the id's string order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRange {
    /// The lowest id allowed.
    pub lower: Bound<String>,
    /// The highest id allowed.
    pub upper: Bound<String>,
}

impl IdRange {
    /// Whether `id` is at or above the lower bound.
    pub fn above_lower(&self, id: &str) -> bool {
        match &self.lower {
            Bound::Included(low) => id >= low.as_str(),
            Bound::Excluded(low) => id > low.as_str(),
            Bound::Unbounded => true,
        }
    }

    /// Whether `id` is at or below the upper bound.
    pub fn below_upper(&self, id: &str) -> bool {
        match &self.upper {
            Bound::Included(high) => id <= high.as_str(),
            Bound::Excluded(high) => id < high.as_str(),
            Bound::Unbounded => true,
        }
    }
}

/// Why a predicate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed predicate at byte {position}: {reason}")]
pub struct PredicateError {
    /// Where in the text reading stopped.
    pub position: usize,
    /// What was expected there.
    pub reason: String,
}

impl Predicate {
    /// Reads `field op "literal" [and field op "literal"]…`.
    ///
    /// Fields are `id` and `lastModifiedAt`; operators `<`, `<=`, `=`, `!=`,
    /// `>=`, `>`; literals are double-quoted with `\"` and `\\` as the only
    /// escapes; `and` in any case. A blank text is the empty predicate.
    pub fn parse(text: &str) -> Result<Self, PredicateError> {
        let mut reader = Reader { text, at: 0 };
        let mut comparisons = Vec::new();
        reader.skip_space();
        if reader.at_end() {
            return Ok(Self::default());
        }
        loop {
            comparisons.push(reader.comparison()?);
            reader.skip_space();
            if reader.at_end() {
                break;
            }
            let word_at = reader.at;
            let word = reader.word();
            if !word.eq_ignore_ascii_case("and") {
                return Err(PredicateError {
                    position: word_at,
                    reason: format!(
                        "expected `and` or the end, found {:?}",
                        reader.rest_from(word_at)
                    ),
                });
            }
            reader.skip_space();
        }
        Ok(Self { comparisons })
    }

    /// The terms, in the order written.
    pub fn comparisons(&self) -> &[Comparison] {
        &self.comparisons
    }

    /// The tightest id bounds the terms set (every `id` term but `!=`).
    pub fn id_range(&self) -> IdRange {
        let mut range = IdRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        };
        for term in self.comparisons.iter().filter(|c| c.field == Field::Id) {
            let value = term.value.clone();
            let (lower, upper) = match term.op {
                Op::Gt => (Some(Bound::Excluded(value)), None),
                Op::Ge => (Some(Bound::Included(value)), None),
                Op::Lt => (None, Some(Bound::Excluded(value))),
                Op::Le => (None, Some(Bound::Included(value))),
                Op::Eq => (
                    Some(Bound::Included(value.clone())),
                    Some(Bound::Included(value)),
                ),
                Op::Ne => (None, None),
            };
            if let Some(lower) = lower {
                range.lower = tighter(range.lower, lower, Ordering::Greater);
            }
            if let Some(upper) = upper {
                range.upper = tighter(range.upper, upper, Ordering::Less);
            }
        }
        range
    }

    /// Whether any term is about something other than the id, so that a
    /// customer inside [`Predicate::id_range`] may still not match.
    pub fn filters_beyond_id(&self) -> bool {
        self.comparisons
            .iter()
            .any(|c| c.field != Field::Id || c.op == Op::Ne)
    }

    /// Whether a customer with this id and `lastModifiedAt` satisfies every term.
    /// A customer without `lastModifiedAt` fails every term about it.
    pub fn matches(&self, id: &str, last_modified_at: Option<&str>) -> bool {
        self.comparisons.iter().all(|term| match term.field {
            Field::Id => term.holds(id),
            Field::LastModifiedAt => last_modified_at.is_some_and(|at| term.holds(at)),
        })
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.comparisons.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

/// The tighter of two bounds; `wanted` is the ordering of a tighter value
/// (greater for a lower bound, less for an upper one).
fn tighter(current: Bound<String>, new: Bound<String>, wanted: Ordering) -> Bound<String> {
    let value = |bound: &Bound<String>| match bound {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    match (value(&current), value(&new)) {
        (None, _) => new,
        (_, None) => current,
        (Some(old), Some(candidate)) => match candidate.cmp(&old) {
            ordering if ordering == wanted => new,
            Ordering::Equal if matches!(new, Bound::Excluded(_)) => new,
            _ => current,
        },
    }
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn rest_from(&self, at: usize) -> &'a str {
        let rest = &self.text[at..];
        rest.char_indices()
            .nth(24)
            .map_or(rest, |(end, _)| &rest[..end])
    }

    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.at += c.len_utf8();
        }
    }

    fn error(&self, reason: impl Into<String>) -> PredicateError {
        PredicateError {
            position: self.at,
            reason: reason.into(),
        }
    }

    /// A run of letters, digits and underscores (possibly empty).
    fn word(&mut self) -> &'a str {
        let start = self.at;
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            self.at += c.len_utf8();
        }
        &self.text[start..self.at]
    }

    fn comparison(&mut self) -> Result<Comparison, PredicateError> {
        let field_at = self.at;
        let name = self.word();
        let field = Field::parse(name).ok_or_else(|| PredicateError {
            position: field_at,
            reason: if name.is_empty() {
                format!("expected a field, found {:?}", self.rest_from(field_at))
            } else {
                format!("the fake knows only `id` and `lastModifiedAt`, not `{name}`")
            },
        })?;
        self.skip_space();
        let op = self.op()?;
        self.skip_space();
        let value = self.literal()?;
        let instant = match field {
            Field::LastModifiedAt => OffsetDateTime::parse(&value, &Rfc3339).ok(),
            Field::Id => None,
        };
        Ok(Comparison {
            field,
            op,
            value,
            instant,
        })
    }

    fn op(&mut self) -> Result<Op, PredicateError> {
        let rest = &self.text[self.at..];
        let (op, len) = if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with("!=") || rest.starts_with("<>") {
            (Op::Ne, 2)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else {
            return Err(self.error(format!(
                "expected an operator, found {:?}",
                self.rest_from(self.at)
            )));
        };
        self.at += len;
        Ok(op)
    }

    fn literal(&mut self) -> Result<String, PredicateError> {
        if self.peek() != Some('"') {
            return Err(self.error(format!(
                "expected a string literal in double quotes, found {:?}",
                self.rest_from(self.at)
            )));
        }
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(PredicateError {
                    position: start,
                    reason: "the string literal is not closed".to_owned(),
                });
            };
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(value),
                '\\' => match self.peek() {
                    Some(escaped @ ('"' | '\\')) => {
                        value.push(escaped);
                        self.at += 1;
                    }
                    _ => {
                        self.at -= 1;
                        return Err(self.error("only \\\" and \\\\ may follow a backslash"));
                    }
                },
                other => value.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Predicate {
        Predicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn what_the_adapter_sends_today_reads_back() {
        let cursor = parse(r#"id > "c00499""#);
        assert_eq!(cursor.comparisons().len(), 1);
        assert_eq!(cursor.comparisons()[0].field(), Field::Id);
        assert_eq!(cursor.comparisons()[0].op(), Op::Gt);
        assert_eq!(cursor.comparisons()[0].value(), "c00499");

        let changed = parse(r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z" and id > "c00499""#);
        let terms = changed.comparisons();
        assert_eq!(terms.len(), 2);
        assert_eq!(
            (terms[0].field(), terms[0].op(), terms[0].value()),
            (Field::LastModifiedAt, Op::Ge, "2024-05-01T10:00:00.123Z")
        );
        assert_eq!((terms[1].field(), terms[1].op()), (Field::Id, Op::Gt));
    }

    #[test]
    fn escapes_in_literals_are_undone_and_written_again() {
        let text = r#"id > "a\"b\\c""#;
        let predicate = parse(text);
        assert_eq!(predicate.comparisons()[0].value(), r#"a"b\c"#);
        assert_eq!(predicate.to_string(), text);
        // A quote that is escaped does not end the literal; the next one does.
        assert_eq!(parse(r#"id > "\"" and id < "z""#).comparisons().len(), 2);
    }

    #[test]
    fn id_ranges_of_a_partitioned_walk_are_the_tightest_bounds() {
        let range = parse(r#"id >= "4" and id < "8" and id > "4f""#).id_range();
        assert_eq!(range.lower, Bound::Excluded("4f".to_owned()));
        assert_eq!(range.upper, Bound::Excluded("8".to_owned()));
        assert!(!range.above_lower("4f"));
        assert!(range.above_lower("4f0"));
        assert!(range.below_upper("7fff"));
        assert!(!range.below_upper("8"));

        let range = parse(r#"id > "4" and id >= "4""#).id_range();
        assert_eq!(range.lower, Bound::Excluded("4".to_owned()));
        let range = parse(r#"id <= "9" and id < "9" and id < "a""#).id_range();
        assert_eq!(range.upper, Bound::Excluded("9".to_owned()));
        let open = parse(r#"lastModifiedAt >= "2024-01-01T00:00:00.000Z""#).id_range();
        assert_eq!(
            (open.lower, open.upper),
            (Bound::Unbounded, Bound::Unbounded)
        );
    }

    #[test]
    fn matching_joins_every_term() {
        let predicate =
            parse(r#"id >= "4" and id < "8" and lastModifiedAt >= "2024-05-01T10:00:00.123Z""#);
        assert!(predicate.matches("5abc", Some("2024-05-01T10:00:00.123Z")));
        assert!(!predicate.matches("8", Some("2024-06-01T00:00:00.000Z")));
        assert!(!predicate.matches("3", Some("2024-06-01T00:00:00.000Z")));
        assert!(!predicate.matches("5", Some("2024-05-01T10:00:00.122Z")));
        assert!(!predicate.matches("5", None));
        assert!(predicate.filters_beyond_id());
        assert!(!parse(r#"id > "a""#).filters_beyond_id());
        assert!(Predicate::default().matches("anything", None));
    }

    #[test]
    fn timestamps_compare_as_instants_not_as_text() {
        let since = parse(r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z""#);
        // Later, though `.5Z` sorts before `.123Z` as text.
        assert!(since.matches("x", Some("2024-05-01T10:00:00.5Z")));
        assert!(since.matches("x", Some("2024-05-01T12:00:00.123+02:00")));
        assert!(since.matches("x", Some("2024-05-01T10:00:00.123456789Z")));
        assert!(!since.matches("x", Some("2024-05-01T10:00:00.1229Z")));
    }

    #[test]
    fn blank_text_is_the_empty_predicate() {
        assert_eq!(parse("  "), Predicate::default());
        assert_eq!(Predicate::default().to_string(), "");
    }

    #[test]
    fn anything_else_is_refused_where_it_goes_wrong() {
        let cases = [
            (r#"email = "a""#, 0, "not `email`"),
            (r#"id ~ "a""#, 3, "operator"),
            (r#"id > a"#, 5, "double quotes"),
            (r#"id > "a"#, 5, "not closed"),
            (r#"id > "a\n""#, 7, "backslash"),
            (r#"id > "a" or id < "b""#, 9, "`and`"),
            (r#"id > "a" and"#, 12, "field"),
            (r#"(id > "a")"#, 0, "field"),
        ];
        for (text, position, reason) in cases {
            let error = Predicate::parse(text).expect_err(text);
            assert_eq!(error.position, position, "{text}: {error}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn and_is_case_insensitive_and_space_is_free() {
        let predicate = parse(r#"  id>="4"AND id<"8"   and  id>"5" "#);
        assert_eq!(predicate.comparisons().len(), 3);
        assert_eq!(
            predicate.to_string(),
            r#"id >= "4" and id < "8" and id > "5""#
        );
    }
}
