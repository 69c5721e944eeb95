//! Customers for tests: one realistic commercetools customer shape, as JSON and
//! as the domain's [`Customer`], by id or numbered, and the messages made of them.
//!
//! For many varied customers (benchmarks, fixtures) use [`crate::generate`].

use segment_sync_domain::identify::identify;
use segment_sync_domain::{Customer, Identify, UserIdStrategy};
use serde_json::{json, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339 in UTC with milliseconds, as commercetools writes its timestamps.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The `lastModifiedAt` of every customer built here.
pub const LAST_MODIFIED_AT: &str = "2024-05-01T10:00:00.000Z";

/// A customer as the commercetools API returns it: names with stray spaces, one
/// London address with a phone (the default billing address), custom fields, and
/// `lastModifiedAt` [`LAST_MODIFIED_AT`]; `email` only when given.
pub fn customer_json(id: &str, version: i64, email: Option<&str>) -> Value {
    let mut customer = json!({
        "id": id,
        "version": version,
        "firstName": " Ada ",
        "lastName": "Lovelace",
        "customerNumber": "CN-1815",
        "addresses": [{"id": "a1", "streetName": "St James's Square", "streetNumber": "12",
                       "city": "London", "postalCode": "SW1Y 4JH", "country": "GB",
                       "phone": "+44 20 7946 0000"}],
        "defaultBillingAddressId": "a1",
        "isEmailVerified": true,
        "custom": {"type": {"typeId": "type", "id": "t1"},
                   "fields": {"loyaltyTier": {"key": "gold", "label": "Gold"}, "newsletter": true}},
        "createdAt": "2024-04-01T09:00:00.000Z",
        "lastModifiedAt": LAST_MODIFIED_AT,
        "authenticationMode": "Password"
    });
    if let Some(email) = email {
        customer["email"] = json!(email);
    }
    customer
}

/// [`customer_json`] as the domain type.
pub fn customer(id: &str, version: i64, email: Option<&str>) -> Customer {
    into_customer(customer_json(id, version, email))
}

/// The id of numbered customer `n`: `cust-` and eight digits, so that ids sort
/// in number order.
pub fn numbered_id(n: usize) -> String {
    format!("cust-{n:08}")
}

/// Numbered customer `n`: [`customer_json`] with id [`numbered_id`], version 1,
/// email `Customer{n}@Example.com` (mixed case, as shoppers type it) and first
/// name `First{n}`. Distinct numbers give distinct messages.
pub fn numbered_json(n: usize) -> Value {
    let mut customer = customer_json(
        &numbered_id(n),
        1,
        Some(&format!("Customer{n}@Example.com")),
    );
    customer["firstName"] = json!(format!("First{n}"));
    customer
}

/// The same customer without an email: skipped under the email strategy.
pub fn without_email(mut customer: Value) -> Value {
    if let Some(fields) = customer.as_object_mut() {
        fields.remove("email");
    }
    customer
}

/// [`numbered_json`] as the domain type.
pub fn numbered(n: usize) -> Customer {
    into_customer(numbered_json(n))
}

/// Numbered customers `0..count` as JSON.
pub fn numbered_jsons(count: usize) -> Vec<Value> {
    (0..count).map(numbered_json).collect()
}

/// The identify call for numbered customer `n`, identified by email.
pub fn message(n: usize) -> Identify {
    identify(&numbered(n), UserIdStrategy::Email).expect("a numbered customer has an email")
}

/// The identify calls for numbered customers `0..count`.
pub fn messages(count: usize) -> Vec<Identify> {
    (0..count).map(message).collect()
}

/// Customers as NDJSON, one line each.
pub fn ndjson(customers: &[Value]) -> String {
    customers.iter().map(|c| format!("{c}\n")).collect()
}

/// A commercetools Platform `CustomerCreated` message carrying `customer`.
pub fn customer_created(customer: &Value) -> Value {
    json!({
        "notificationType": "Message",
        "projectKey": "the-shop",
        "id": "5f1a0b2c-0000-4000-8000-000000000001",
        "version": 1,
        "sequenceNumber": 1,
        "resource": {"typeId": "customer", "id": customer["id"]},
        "resourceVersion": customer["version"],
        "resourceUserProvidedIdentifiers": {"customerNumber": "CN-1815"},
        "type": "CustomerCreated",
        "customer": customer,
        "createdAt": LAST_MODIFIED_AT,
        "lastModifiedAt": LAST_MODIFIED_AT
    })
}

/// Now, as commercetools writes a timestamp (UTC, milliseconds).
pub fn timestamp_now() -> String {
    OffsetDateTime::now_utc()
        .format(TIMESTAMP)
        .expect("the current time formats")
}

fn into_customer(json: Value) -> Customer {
    serde_json::from_value(json).expect("a valid customer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_and_the_domain_customer_agree() {
        let customer = customer("c1", 3, Some(" Ada@Example.COM "));
        assert_eq!(customer.id, "c1");
        assert_eq!(customer.version, 3);
        assert_eq!(customer.email.as_deref(), Some(" Ada@Example.COM "));
        assert_eq!(customer.last_modified_at.as_deref(), Some(LAST_MODIFIED_AT));
        assert!(customer_json("c2", 1, None).get("email").is_none());
    }

    #[test]
    fn numbered_customers_are_distinct_and_sort_by_number() {
        assert_eq!(numbered_id(7), "cust-00000007");
        assert!(numbered_id(9) < numbered_id(10));
        let (a, b) = (message(1), message(2));
        assert_ne!(a.message_id(), b.message_id());
        assert_eq!(a.customer_id(), "cust-00000001");
        let sent: Value = serde_json::from_str(a.json()).unwrap();
        assert_eq!(sent["userId"], "customer1@example.com");
        assert_eq!(sent["traits"]["firstName"], "First1");
        assert_eq!(messages(3).len(), 3);
    }

    #[test]
    fn ndjson_is_one_customer_per_line() {
        let text = ndjson(&numbered_jsons(3));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, numbered_jsons(3));
    }

    #[test]
    fn a_created_message_names_and_carries_its_customer() {
        let created = customer_created(&numbered_json(4));
        assert_eq!(created["resource"]["id"], "cust-00000004");
        assert_eq!(created["customer"]["id"], "cust-00000004");
        assert_eq!(created["resourceVersion"], 1);
    }

    #[test]
    fn now_is_utc_with_milliseconds() {
        let now = timestamp_now();
        assert_eq!(now.len(), "2024-05-01T10:00:00.000Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[19] == b'.', "{now}");
        assert!(now.as_str() > LAST_MODIFIED_AT);
    }
}
