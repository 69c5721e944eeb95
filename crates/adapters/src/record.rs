//! What the sources share about a record that is not a valid customer.

use segment_sync_domain::Customer;
use serde::Deserialize;

/// A customer record parsed, or why it is not one, in words that never quote the
/// record's values (they are personal data, and the reason reaches logs and dead
/// letters): what kind of problem, the field's path, the line and column.
pub(crate) fn parse_customer(json: &str) -> Result<Customer, String> {
    parse_customer_placed(json, |line, column| (line as u64, column as u64))
}

/// As [`parse_customer`], with the record's line and column of a fault turned
/// into those a reader should look at by `place` (the file's, say).
pub(crate) fn parse_customer_placed(
    json: &str,
    place: impl Fn(usize, usize) -> (u64, u64),
) -> Result<Customer, String> {
    // Tracking the path costs an allocation per key of every record; only a
    // record that fails is read again to say where.
    if let Ok(customer) = serde_json::from_str(json) {
        return Ok(customer);
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let customer = serde_path_to_error::deserialize::<_, Customer>(&mut deserializer)
        .map_err(|error| describe(&error.path().to_string(), error.inner(), &place))?;
    deserializer
        .end()
        .map_err(|error| describe(".", &error, &place))?;
    Ok(customer)
}

/// What went wrong at `path` (`.`: the record itself), without the value.
fn describe(
    path: &str,
    error: &serde_json::Error,
    place: &impl Fn(usize, usize) -> (u64, u64),
) -> String {
    use serde_json::error::Category;
    let (line, column) = place(error.line().max(1), error.column());
    let place = format!("line {line}, column {column}");
    match error.classify() {
        Category::Data => {
            let message = error.to_string();
            // "invalid type: string \"…\", expected …": the words before the
            // value; "missing field `id`" names a field, never a value.
            let kind = message.split(':').next().unwrap_or_default();
            let kind = kind.split(" at line ").next().unwrap_or(kind);
            if path == "." {
                format!("{kind} ({place})")
            } else {
                format!("{kind} at `{path}` ({place})")
            }
        }
        Category::Eof => format!("the JSON ends early ({place})"),
        Category::Syntax | Category::Io => format!("not valid JSON ({place})"),
    }
}

/// Just the id of a record.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// The `id` of a customer record that failed to parse as a whole, when it has a
/// non-blank one: its dead letter is then keyed by the customer, not the position.
pub(crate) fn customer_id_of(json: &str) -> Option<String> {
    serde_json::from_str::<IdOnly>(json)
        .ok()
        .map(|record| record.id)
        .filter(|id| !id.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::{customer_id_of, parse_customer};

    #[test]
    fn a_reason_names_the_field_and_place_never_the_value() {
        let cases = [
            (
                r#"{"id":"c1","version":1,"email":"jane@example.com","firstName":42}"#,
                "invalid type at `firstName` (line 1, column 64)",
            ),
            (
                r#"{"id":"c1","version":"Jane Doe secret"}"#,
                "invalid type at `version` (line 1, column 38)",
            ),
            (
                r#"{"id":"c1","version":1,"addresses":[{"streetName":["Main Street 1"]}]}"#,
                "invalid type at `addresses[0].streetName` (line 1, column 50)",
            ),
            (
                r#"{"id":"c1", "email": "jane@exa"#,
                "the JSON ends early (line 1, column 30)",
            ),
            (
                r#"{"id":"c1"} trailing secret"#,
                "not valid JSON (line 1, column 13)",
            ),
        ];
        for (json, expected) in cases {
            let reason = parse_customer(json).unwrap_err();
            assert_eq!(reason, expected, "{json}");
            for secret in ["Jane", "jane", "Main Street", "secret", "42"] {
                assert!(!reason.contains(secret), "{reason} quotes {secret}");
            }
        }
    }

    #[test]
    fn a_valid_record_is_read_whole() {
        let customer = parse_customer(
            r#"{"id":"c1","version":3,"email":"jane@example.com","addresses":[{"id":"a1","city":"Berlin"}]}"#,
        )
        .unwrap();
        assert_eq!(customer.id, "c1");
        assert_eq!(customer.version, 3);
        assert_eq!(customer.email.as_deref(), Some("jane@example.com"));
        assert_eq!(customer.addresses[0].city.as_deref(), Some("Berlin"));
    }

    #[test]
    fn the_id_survives_a_record_that_is_otherwise_invalid() {
        assert_eq!(
            customer_id_of(r#"{"id":"c1","version":"not a number"}"#),
            Some("c1".to_owned())
        );
        assert_eq!(customer_id_of(r#"{"id":" "}"#), None);
        assert_eq!(customer_id_of("not json"), None);
    }
}
