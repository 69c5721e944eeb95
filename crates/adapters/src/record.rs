//! What the sources share about a record that is not a valid customer.

use serde::Deserialize;

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
    use super::customer_id_of;

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
