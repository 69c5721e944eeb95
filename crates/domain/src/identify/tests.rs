use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::customer::{CustomFields, KeyReference, Reference};

const FULL_CUSTOMER: &str = include_str!("../../tests/fixtures/customer_full.json");
const FULL_IDENTIFY: &str = include_str!("../../tests/fixtures/identify_full.json");

mod mapped;

fn parsed(message: &Identify) -> Value {
    serde_json::from_str(message.json()).expect("identify JSON parses")
}

fn accepted(customer: &Customer) -> Value {
    parsed(&identify(customer, UserIdStrategy::Email).expect("customer is accepted"))
}

fn traits_of(customer: &Customer) -> Value {
    accepted(customer)["traits"].clone()
}

/// A customer with a valid email and nothing else; each test adds what it studies.
fn base() -> Customer {
    Customer {
        id: "c1".into(),
        version: 1,
        email: Some("ada@example.com".into()),
        ..Customer::default()
    }
}

/// [`base`] with these custom fields (a JSON object).
fn with_fields(fields: Value) -> Customer {
    let Value::Object(fields) = fields else {
        panic!("fields are an object")
    };
    Customer {
        custom: Some(CustomFields {
            type_ref: None,
            fields,
        }),
        ..base()
    }
}

fn address(id: &str) -> Address {
    Address {
        id: Some(id.into()),
        ..Address::default()
    }
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// `ctp-<id>-<version>-<32 hex>`, the hex being the content fingerprint.
fn assert_message_id_format(message_id: &str, customer: &Customer, fingerprint: Fingerprint) {
    let prefix = format!("ctp-{}-{}-", customer.id, customer.version);
    let hex = message_id
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{message_id} does not start with {prefix}"));
    assert_eq!(hex.len(), 32, "{message_id}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{message_id}"
    );
    assert_eq!(hex, fingerprint.to_hex());
    assert!(message_id.len() < 100);
}

#[test]
fn golden_full_customer_becomes_the_expected_identify() {
    let customer: Customer = serde_json::from_str(FULL_CUSTOMER).unwrap();
    let message = identify(&customer, UserIdStrategy::Email).unwrap();
    let actual = parsed(&message);

    let message_id = actual["messageId"].as_str().unwrap();
    assert_eq!(message_id, message.message_id().as_ref());
    assert_message_id_format(message_id, &customer, message.fingerprint());
    assert_eq!(
        actual["context"]["library"],
        json!({ "name": "segment-sync", "version": env!("CARGO_PKG_VERSION") })
    );

    let mut expected: Value = serde_json::from_str(FULL_IDENTIFY).unwrap();
    expected["messageId"] = json!(message_id);
    expected["context"]["library"]["version"] = json!(LIBRARY_VERSION);
    assert_eq!(actual, expected);
    assert_eq!(message.customer_id(), customer.id);
    assert_eq!(message.user_id().as_ref(), "ada.lovelace@example.com");
}

#[test]
fn golden_customer_with_the_customer_id_strategy_keeps_the_same_traits() {
    let customer: Customer = serde_json::from_str(FULL_CUSTOMER).unwrap();
    let by_email = parsed(&identify(&customer, UserIdStrategy::Email).unwrap());
    let by_id = parsed(&identify(&customer, UserIdStrategy::CustomerId).unwrap());
    assert_eq!(by_id["userId"], json!(customer.id));
    assert_eq!(by_id["traits"], by_email["traits"]);
    assert_ne!(by_id["messageId"], by_email["messageId"]);
}

#[test]
fn address_is_default_billing_else_default_shipping_else_first() {
    let mut customer = base();
    customer.addresses = ["first", "ship", "bill"]
        .into_iter()
        .map(|id| Address {
            city: some(&format!("{id} city")),
            ..address(id)
        })
        .collect();
    customer.default_billing_address_id = some("bill");
    customer.default_shipping_address_id = some("ship");
    assert_eq!(traits_of(&customer)["address"]["city"], "bill city");

    customer.default_billing_address_id = None;
    assert_eq!(traits_of(&customer)["address"]["city"], "ship city");

    // An id that names no address is as good as none.
    customer.default_billing_address_id = some("gone");
    assert_eq!(traits_of(&customer)["address"]["city"], "ship city");

    customer.default_shipping_address_id = None;
    assert_eq!(traits_of(&customer)["address"]["city"], "first city");

    customer.addresses.clear();
    assert!(traits_of(&customer).get("address").is_none());
}

#[test]
fn phone_is_billing_phone_then_mobile_then_shipping_then_first_with_one() {
    let mut customer = base();
    customer.addresses = vec![
        Address {
            phone: some("first phone"),
            ..address("first")
        },
        Address {
            phone: some("ship phone"),
            mobile: some("ship mobile"),
            ..address("ship")
        },
        Address {
            phone: some("bill phone"),
            mobile: some("bill mobile"),
            ..address("bill")
        },
    ];
    customer.default_billing_address_id = some("bill");
    customer.default_shipping_address_id = some("ship");
    assert_eq!(traits_of(&customer)["phone"], "bill phone");

    customer.addresses[2].phone = some("  ");
    assert_eq!(traits_of(&customer)["phone"], "bill mobile");

    customer.addresses[2].mobile = None;
    assert_eq!(traits_of(&customer)["phone"], "ship phone");

    customer.addresses[1].phone = None;
    assert_eq!(traits_of(&customer)["phone"], "ship mobile");

    customer.addresses[1].mobile = some("");
    assert_eq!(traits_of(&customer)["phone"], "first phone");

    // The first address *that has one*, not merely the first address.
    customer.addresses[0].phone = None;
    customer.addresses[2].mobile = some("later mobile");
    customer.default_billing_address_id = None;
    assert_eq!(traits_of(&customer)["phone"], "later mobile");

    customer.addresses[2].mobile = None;
    assert!(traits_of(&customer).get("phone").is_none());
}

#[test]
fn name_is_first_and_last_or_whichever_exists() {
    let mut customer = base();
    customer.first_name = some(" Ada ");
    customer.last_name = some("  Lovelace");
    let traits = traits_of(&customer);
    assert_eq!(traits["name"], "Ada Lovelace");
    assert_eq!(traits["firstName"], "Ada");
    assert_eq!(traits["lastName"], "Lovelace");

    customer.last_name = some("   ");
    let traits = traits_of(&customer);
    assert_eq!(traits["name"], "Ada");
    assert!(traits.get("lastName").is_none());

    customer.first_name = None;
    customer.last_name = some("Lovelace");
    assert_eq!(traits_of(&customer)["name"], "Lovelace");

    customer.last_name = None;
    customer.middle_name = some("Augusta");
    let traits = traits_of(&customer);
    assert!(traits.get("name").is_none(), "{traits}");
    assert!(traits.get("firstName").is_none());
}

#[test]
fn state_is_state_else_region() {
    let mut customer = base();
    customer.addresses = vec![Address {
        state: some("Bavaria"),
        region: some("Oberbayern"),
        ..address("a")
    }];
    assert_eq!(traits_of(&customer)["address"]["state"], "Bavaria");

    customer.addresses[0].state = some(" ");
    assert_eq!(traits_of(&customer)["address"]["state"], "Oberbayern");

    customer.addresses[0].region = None;
    customer.addresses[0].country = some("DE");
    let address = &traits_of(&customer)["address"];
    assert!(address.get("state").is_none());
    assert_eq!(address, &json!({ "country": "DE" }));
}

#[test]
fn street_is_street_name_then_number() {
    let mut customer = base();
    customer.addresses = vec![Address {
        street_name: some(" Main Street "),
        street_number: some(" 5 "),
        postal_code: some("80331"),
        city: some("Munich"),
        ..address("a")
    }];
    assert_eq!(
        traits_of(&customer)["address"],
        json!({ "street": "Main Street 5", "city": "Munich", "postalCode": "80331" })
    );

    customer.addresses[0].street_number = None;
    assert_eq!(traits_of(&customer)["address"]["street"], "Main Street");

    customer.addresses[0].street_name = some("");
    customer.addresses[0].street_number = some("5");
    assert_eq!(traits_of(&customer)["address"]["street"], "5");

    // An address with nothing the trait uses is left out entirely.
    customer.addresses[0] = Address {
        street_name: some("  "),
        phone: some("+49 89 0"),
        ..address("a")
    };
    let traits = traits_of(&customer);
    assert!(traits.get("address").is_none(), "{traits}");
    assert_eq!(traits["phone"], "+49 89 0");
}

#[test]
fn honorific_comes_from_title_and_title_is_not_sent() {
    let mut customer = base();
    customer.title = some(" Dr. ");
    customer.salutation = some("Ms.");
    let traits = traits_of(&customer);
    assert_eq!(traits["honorific"], "Dr.");
    assert_eq!(traits["salutation"], "Ms.");
    assert!(traits.get("title").is_none());
}

#[test]
fn customer_id_strategy_sends_every_customer_by_id() {
    let mut customer = Customer {
        id: " c-42 ".into(),
        version: 3,
        ..Customer::default()
    };
    let message = identify(&customer, UserIdStrategy::CustomerId).unwrap();
    let json = parsed(&message);
    assert_eq!(message.user_id().as_ref(), "c-42");
    assert_eq!(json["userId"], "c-42");
    assert_eq!(json["traits"], json!({ "commercetoolsId": "c-42" }));

    customer.email = some("not an address");
    let json = parsed(&identify(&customer, UserIdStrategy::CustomerId).unwrap());
    assert!(json["traits"].get("email").is_none());

    customer.email = some(" Ada@Example.com");
    let json = parsed(&identify(&customer, UserIdStrategy::CustomerId).unwrap());
    assert_eq!(json["userId"], "c-42");
    assert_eq!(json["traits"]["email"], "ada@example.com");

    customer.id = "  ".into();
    let err = identify(&customer, UserIdStrategy::CustomerId).unwrap_err();
    assert_eq!(err, NotSent::Rejected(DeliveryError::EmptyUserId));
    assert_eq!(err.to_string(), "rejected: userId cannot be empty");
}

#[test]
fn customers_without_a_usable_email_are_skipped_with_the_reason() {
    for email in [None, some(""), some(" \t\n")] {
        let customer = Customer { email, ..base() };
        let err = identify(&customer, UserIdStrategy::Email).unwrap_err();
        assert_eq!(err, NotSent::Skipped(SkipReason::NoEmail));
        assert_eq!(SkipReason::NoEmail.to_string(), "customer has no email");
        assert_eq!(err.to_string(), "skipped: customer has no email");
    }
    for bad in ["ada", "ada@", "@example.com", "ada lovelace@example.com"] {
        let customer = Customer {
            email: some(bad),
            ..base()
        };
        let err = identify(&customer, UserIdStrategy::Email).unwrap_err();
        assert_eq!(err, NotSent::Skipped(SkipReason::InvalidEmail), "{bad}");
        assert_eq!(err.to_string(), "skipped: invalid email");
        assert_eq!(SkipReason::InvalidEmail.to_string(), "invalid email");
    }
}

fn with_custom_text(len: usize) -> Customer {
    with_fields(json!({ "essay": "x".repeat(len) }))
}

#[test]
fn a_message_over_32_kib_is_rejected_as_too_large() {
    let err = identify(&with_custom_text(40 * 1024), UserIdStrategy::Email).unwrap_err();
    assert_eq!(err, NotSent::Rejected(DeliveryError::PayloadTooLarge));
    let NotSent::Rejected(reason) = &err else {
        unreachable!()
    };
    assert_eq!(reason.to_string(), "message over 32 KB");
    assert_eq!(reason.code(), "payload_too_large");
    assert_eq!(err.to_string(), "rejected: message over 32 KB");
}

#[test]
fn exactly_32_kib_is_accepted_and_one_byte_more_is_not() {
    let overhead = identify(&with_custom_text(0), UserIdStrategy::Email)
        .unwrap()
        .json()
        .len();
    // The blank essay is dropped, so its field name and quotes count as overhead too.
    let overhead = overhead + r#","custom":{"essay":""}"#.len();
    let fits = MAX_MESSAGE_BYTES - overhead;
    let message = identify(&with_custom_text(fits), UserIdStrategy::Email).unwrap();
    assert_eq!(message.json().len(), 32_768);
    assert_eq!(
        identify(&with_custom_text(fits + 1), UserIdStrategy::Email),
        Err(NotSent::Rejected(DeliveryError::PayloadTooLarge))
    );
}

#[test]
fn timestamp_is_last_modified_at() {
    let mut customer = Customer {
        created_at: some("2024-01-01T00:00:00.000Z"),
        last_modified_at: some("2024-05-01T10:00:00.000Z"),
        ..base()
    };
    assert_eq!(accepted(&customer)["timestamp"], "2024-05-01T10:00:00.000Z");

    // Exports without lastModifiedAt still carry when the customer came to be.
    customer.last_modified_at = None;
    assert_eq!(accepted(&customer)["timestamp"], "2024-01-01T00:00:00.000Z");

    customer.created_at = some(" ");
    assert!(accepted(&customer).get("timestamp").is_none());
}

#[test]
fn context_library_names_this_tool_and_its_version() {
    let json = accepted(&base());
    assert_eq!(json["type"], "identify");
    assert_eq!(
        json["context"],
        json!({ "library": { "name": "segment-sync", "version": env!("CARGO_PKG_VERSION") } })
    );
    assert_eq!(library(), json["context"]["library"]);
}

#[test]
fn blank_groups_stores_and_custom_fields_are_left_out() {
    let mut fields = Map::new();
    fields.insert("nothing".into(), Value::Null);
    fields.insert("blank".into(), json!("  "));
    fields.insert("empty".into(), json!([null, " ", {}]));
    fields.insert("blankEnum".into(), json!({ "key": " ", "label": "None" }));
    let customer = Customer {
        customer_group: Some(Reference {
            type_id: some("customer-group"),
            id: " ".into(),
        }),
        stores: vec![KeyReference {
            type_id: some("store"),
            key: String::new(),
        }],
        custom: Some(CustomFields {
            type_ref: None,
            fields,
        }),
        ..base()
    };
    assert_eq!(
        traits_of(&customer),
        json!({ "email": "ada@example.com", "commercetoolsId": "c1" })
    );
}

#[test]
fn a_stored_message_is_read_back_as_it_was_built() {
    let customer: Customer = serde_json::from_str(FULL_CUSTOMER).unwrap();
    let message = identify(&customer, UserIdStrategy::Email).unwrap();
    let replayed =
        Identify::from_json(&customer.id, customer.version, message.json().to_owned()).unwrap();
    assert_eq!(replayed, message);
    assert_eq!(
        Identify::from_json("c1", 1, "not json".into()),
        Err(NotSent::Rejected(DeliveryError::InvalidPayload))
    );
}

#[test]
fn a_stored_message_whose_user_id_needs_escaping_is_read_back() {
    // JSON escapes `"` and `\`, which an email's local part may hold.
    let customer = Customer {
        email: some(r#"a"b\c@example.com"#),
        ..base()
    };
    let message = identify(&customer, UserIdStrategy::Email).unwrap();
    assert_eq!(message.user_id().as_ref(), r#"a"b\c@example.com"#);
    let replayed = Identify::from_json("c1", 1, message.json().to_owned());
    assert_eq!(replayed, Ok(message));
}

// ---------------------------------------------------------------------------
// Properties over generated customers.

/// Text as it arrives from a shop: words, padding, blanks, any unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z][A-Za-z .'-]{0,15}",
        " {0,3}[A-Za-zÀ-ÿİΣ]{1,10} {0,3}",
        "[ \t\n\u{a0}\u{2003}\u{3000}]{0,4}",
        any::<String>(),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn email() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        3 => r#"[ \t]{0,2}[A-Za-z0-9._%+"\\-]{1,12}@[A-Za-z0-9.-]{1,12}[ \t]{0,2}"#,
        1 => "[a-zß-ÿ]{1,6}@[A-ZÀ-Þİ]{1,6}\\.[a-z]{2,3}",
        1 => (any::<String>(), any::<String>()).prop_map(|(local, domain)| format!("{local}@{domain}")),
        1 => text(),
    ])
}

/// Any JSON value, with commercetools enum values `{key,label}` among the objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner.clone(), 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            (text(), inner).prop_map(|(key, label)| json!({ "key": key, "label": label })),
        ]
    })
}

fn custom_fields() -> impl Strategy<Value = Option<CustomFields>> {
    proptest::option::of(
        proptest::collection::btree_map(text(), json_value(), 0..6).prop_map(|fields| {
            CustomFields {
                type_ref: None,
                fields: fields.into_iter().collect(),
            }
        }),
    )
}

fn address_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("a1".to_owned()),
        Just("a2".to_owned()),
        Just("a3".to_owned()),
        text(),
    ])
}

fn any_address() -> impl Strategy<Value = Address> {
    (
        address_id(),
        (opt_text(), opt_text(), opt_text(), opt_text()),
        (opt_text(), opt_text(), opt_text()),
        (opt_text(), opt_text()),
    )
        .prop_map(
            |(
                id,
                (street_name, street_number, postal_code, city),
                (region, state, country),
                (phone, mobile),
            )| {
                Address {
                    id,
                    street_name,
                    street_number,
                    postal_code,
                    city,
                    region,
                    state,
                    country,
                    phone,
                    mobile,
                    ..Address::default()
                }
            },
        )
}

fn any_customer() -> impl Strategy<Value = Customer> {
    let identity = (
        prop_oneof![
            "[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
            text()
        ],
        any::<i64>(),
        email(),
        (opt_text(), opt_text(), opt_text()),
    );
    let person = (
        (opt_text(), opt_text(), opt_text()),
        (opt_text(), opt_text(), opt_text()),
        (opt_text(), opt_text(), proptest::option::of(any::<bool>())),
    );
    let links = (
        proptest::collection::vec(any_address(), 0..4),
        (address_id(), address_id()),
        proptest::option::of(text().prop_map(|id| Reference {
            type_id: Some("customer-group".into()),
            id,
        })),
        proptest::collection::vec(
            text().prop_map(|key| KeyReference {
                type_id: Some("store".into()),
                key,
            }),
            0..3,
        ),
        custom_fields(),
        (opt_text(), opt_text()),
    );
    (identity, person, links).prop_map(
        |(
            (id, version, email, (key, customer_number, external_id)),
            (
                (first_name, last_name, middle_name),
                (title, salutation, date_of_birth),
                (company_name, locale, is_email_verified),
            ),
            (
                addresses,
                (default_billing_address_id, default_shipping_address_id),
                customer_group,
                stores,
                custom,
                (created_at, last_modified_at),
            ),
        )| Customer {
            id,
            version,
            key,
            customer_number,
            external_id,
            email,
            first_name,
            last_name,
            middle_name,
            title,
            salutation,
            date_of_birth,
            company_name,
            addresses,
            default_shipping_address_id,
            default_billing_address_id,
            is_email_verified,
            customer_group,
            custom,
            locale,
            stores,
            created_at,
            last_modified_at,
            ..Customer::default()
        },
    )
}

/// A text of up to ~100 KB, printable or not.
fn huge_text() -> impl Strategy<Value = String> {
    ("[ -~]{1,8}|\\PC{1,4}|[ \t]{1,2}", 0usize..12_000).prop_map(|(unit, times)| unit.repeat(times))
}

/// A generated customer with one field made huge.
fn customer_with_a_huge_field() -> impl Strategy<Value = Customer> {
    (any_customer(), huge_text(), 0u8..6).prop_map(|(mut customer, huge, slot)| {
        match slot {
            0 => customer.first_name = Some(huge),
            1 => {
                customer
                    .custom
                    .get_or_insert_with(CustomFields::default)
                    .fields
                    .insert("huge".into(), Value::String(huge));
            }
            2 => customer.addresses.push(Address {
                city: Some(huge),
                ..Address::default()
            }),
            3 => customer.id = huge,
            4 => customer.email = Some(format!("{huge}@example.com")),
            _ => customer.stores.push(KeyReference {
                type_id: None,
                key: huge,
            }),
        }
        customer
    })
}

fn strategy() -> impl Strategy<Value = UserIdStrategy> {
    prop_oneof![
        Just(UserIdStrategy::Email),
        Just(UserIdStrategy::CustomerId)
    ]
}

/// Fails on a null, a blank string or a container left empty anywhere under `value`.
fn assert_nothing_blank(value: &Value, path: &str) -> Result<(), TestCaseError> {
    match value {
        Value::Null => prop_assert!(false, "null at {path}"),
        Value::String(s) => prop_assert!(!s.trim().is_empty(), "blank string at {path}"),
        Value::Array(items) => {
            prop_assert!(!items.is_empty(), "empty array at {path}");
            for (index, item) in items.iter().enumerate() {
                assert_nothing_blank(item, &format!("{path}[{index}]"))?;
            }
        }
        Value::Object(fields) => {
            prop_assert!(!fields.is_empty(), "empty object at {path}");
            for (name, field) in fields {
                assert_nothing_blank(field, &format!("{path}.{name}"))?;
            }
        }
        Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Everything that must hold of the outcome for any customer.
fn check_outcome(customer: &Customer, strategy: UserIdStrategy) -> Result<(), TestCaseError> {
    let outcome = identify(customer, strategy);
    match &outcome {
        Ok(message) => {
            prop_assert!(message.json().len() <= 32_768);
            let json: Value = serde_json::from_str(message.json())?;
            prop_assert_eq!(json["type"].as_str(), Some("identify"));
            prop_assert_eq!(json["userId"].as_str(), Some(message.user_id().as_ref()));
            prop_assert_eq!(
                json["messageId"].as_str(),
                Some(message.message_id().as_ref())
            );

            let message_id = message.message_id().as_ref();
            prop_assert!(message_id.len() < 100, "{}", message_id);
            prop_assert!(
                message_id.bytes().all(|b| b.is_ascii_graphic()),
                "{}",
                message_id
            );
            prop_assert!(message_id.starts_with("ctp-"), "{}", message_id);
            let version_and_hash = format!("-{}-{}", customer.version, message.fingerprint());
            prop_assert!(message_id.ends_with(&version_and_hash), "{}", message_id);

            prop_assert!(json["traits"].is_object());
            assert_nothing_blank(&json["traits"], "traits")?;

            match strategy {
                UserIdStrategy::Email => {
                    let raw = customer.email.as_deref().unwrap_or_default();
                    let expected = raw.trim().to_lowercase();
                    prop_assert_eq!(message.user_id().as_ref(), expected.as_str());
                    prop_assert!(Email::parse(&expected).is_ok());
                    prop_assert_eq!(json["traits"]["email"].as_str(), Some(expected.as_str()));
                }
                UserIdStrategy::CustomerId => {
                    prop_assert_eq!(message.user_id().as_ref(), customer.id.trim());
                }
            }

            prop_assert_eq!(&identify(customer, strategy), &outcome, "not deterministic");
            let replayed =
                Identify::from_json(&customer.id, customer.version, message.json().to_owned());
            prop_assert_eq!(replayed.as_ref(), Ok(message), "dead-letter replay differs");
        }
        Err(NotSent::Skipped(reason)) => {
            prop_assert_eq!(strategy, UserIdStrategy::Email);
            let parsed = Email::parse(customer.email.as_deref().unwrap_or_default());
            let expected = match parsed {
                Err(EmailError::Missing) => SkipReason::NoEmail,
                Err(EmailError::Invalid) => SkipReason::InvalidEmail,
                Ok(email) => return Err(TestCaseError::fail(format!("{email} was skipped"))),
            };
            prop_assert_eq!(*reason, expected);
        }
        Err(NotSent::Rejected(DeliveryError::EmptyUserId)) => {
            prop_assert_eq!(strategy, UserIdStrategy::CustomerId);
            prop_assert!(customer.id.trim().is_empty());
        }
        Err(NotSent::Rejected(DeliveryError::PayloadTooLarge)) => {
            // Every trait is a copy of customer data, at most doubled (email twice,
            // name from first and last); well under 16 KiB of it cannot make 32 KiB.
            let source = serde_json::to_string(customer)?;
            prop_assert!(source.len() > 15_000, "rejected {} bytes", source.len());
        }
        Err(other) => prop_assert!(false, "unexpected outcome {:?}", other),
    }
    Ok(())
}

/// A change that alters exactly one trait, whatever the customer held before.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    Email,
    FirstName,
    LastName,
    Birthday,
    Locale,
    Key,
    Company,
    Honorific,
    Verified,
    City,
    Store,
    Group,
    CustomField,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use Mutation::*;
    proptest::sample::select(vec![
        Email,
        FirstName,
        LastName,
        Birthday,
        Locale,
        Key,
        Company,
        Honorific,
        Verified,
        City,
        Store,
        Group,
        CustomField,
    ])
}

/// A value whose trimmed form differs from the trimmed `old`, and is not blank.
fn changed(old: &Option<String>) -> Option<String> {
    Some(format!("{}x", old.as_deref().map(str::trim).unwrap_or("")))
}

fn mutate(customer: &mut Customer, mutation: Mutation) {
    match mutation {
        Mutation::Email => {
            let old = customer.email.as_deref().unwrap_or_default();
            customer.email = Some(match Email::parse(old) {
                Ok(email) => format!("x{email}"),
                Err(_) => "mutated@example.com".to_owned(),
            });
        }
        Mutation::FirstName => customer.first_name = changed(&customer.first_name),
        Mutation::LastName => customer.last_name = changed(&customer.last_name),
        Mutation::Birthday => customer.date_of_birth = changed(&customer.date_of_birth),
        Mutation::Locale => customer.locale = changed(&customer.locale),
        Mutation::Key => customer.key = changed(&customer.key),
        Mutation::Company => customer.company_name = changed(&customer.company_name),
        Mutation::Honorific => customer.title = changed(&customer.title),
        Mutation::Verified => {
            customer.is_email_verified = Some(!customer.is_email_verified.unwrap_or(false));
        }
        Mutation::City => {
            // Changing every city changes the primary one, whichever it is.
            if customer.addresses.is_empty() {
                customer.addresses.push(Address::default());
            }
            for address in &mut customer.addresses {
                address.city = changed(&address.city);
            }
        }
        Mutation::Store => customer.stores.push(KeyReference {
            type_id: None,
            key: "added-store".into(),
        }),
        Mutation::Group => {
            let old = customer
                .customer_group
                .as_ref()
                .map(|group| group.id.clone());
            customer.customer_group = Some(Reference {
                type_id: None,
                id: changed(&old).unwrap_or_default(),
            });
        }
        Mutation::CustomField => {
            let fields = &mut customer
                .custom
                .get_or_insert_with(CustomFields::default)
                .fields;
            let old = fields
                .get("mutated")
                .and_then(Value::as_str)
                .map(str::to_owned);
            fields.insert(
                "mutated".into(),
                Value::String(changed(&old).unwrap_or_default()),
            );
        }
    }
}

proptest! {
    #[test]
    fn any_customer_gives_a_valid_message_or_a_true_reason(
        customer in any_customer(),
        strategy in strategy(),
    ) {
        check_outcome(&customer, strategy)?;
    }

    #[test]
    fn email_strategy_user_id_is_the_trimmed_lowercased_email(
        customer in any_customer(),
        raw in r#"[ \t\n]{0,3}[A-Za-zÀ-Þİ0-9._%+"\\-]{1,20}@[A-Za-z0-9.-]{1,20}[ \t\n]{0,3}"#,
    ) {
        let customer = Customer { email: Some(raw.clone()), ..customer };
        match identify(&customer, UserIdStrategy::Email) {
            Ok(message) => {
                let expected = raw.trim().to_lowercase();
                prop_assert_eq!(message.user_id().as_ref(), expected.as_str());
                prop_assert_eq!(Email::parse(message.user_id().as_ref()), Email::parse(&raw));
            }
            Err(NotSent::Rejected(DeliveryError::PayloadTooLarge)) => {}
            Err(other) => prop_assert!(false, "{} was not accepted: {:?}", raw, other),
        }
    }

    #[test]
    fn equal_content_gives_equal_message_ids(
        customer in any_customer(),
        strategy in strategy(),
        other_time in opt_text(),
        other_version in any::<i64>(),
    ) {
        let Ok(first) = identify(&customer, strategy) else { return Ok(()) };
        let again = identify(&customer, strategy).unwrap();
        prop_assert_eq!(again.message_id(), first.message_id());
        prop_assert_eq!(again.fingerprint(), first.fingerprint());

        let touched = Customer { last_modified_at: other_time, ..customer.clone() };
        let touched = identify(&touched, strategy).unwrap();
        prop_assert_eq!(touched.message_id(), first.message_id());
        prop_assert_eq!(touched.fingerprint(), first.fingerprint());

        // A new version with the same traits: same content, so the same fingerprint;
        // the id names the version so that Segment keeps both events apart.
        let bumped = Customer { version: other_version, ..customer.clone() };
        let bumped = identify(&bumped, strategy).unwrap();
        prop_assert_eq!(bumped.fingerprint(), first.fingerprint());
        prop_assert_eq!(
            bumped.message_id() == first.message_id(),
            other_version == customer.version
        );
    }

    #[test]
    fn a_changed_trait_changes_the_message_id_and_fingerprint(
        customer in any_customer(),
        strategy in strategy(),
        mutation in mutation(),
    ) {
        let mut mutated = customer.clone();
        mutate(&mut mutated, mutation);
        if let (Ok(before), Ok(after)) = (identify(&customer, strategy), identify(&mutated, strategy)) {
            let before_traits = parsed(&before)["traits"].clone();
            let after_traits = parsed(&after)["traits"].clone();
            prop_assert_ne!(&before_traits, &after_traits, "{:?} changed no trait", mutation);
            prop_assert_ne!(before.fingerprint(), after.fingerprint());
            prop_assert_ne!(before.message_id(), after.message_id());
        }
    }
}

proptest! {
    // Each case builds and serialises up to ~100 KB; fewer cases keep debug runs quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn huge_fields_are_accepted_within_32_kib_or_rejected_as_too_large(
        customer in customer_with_a_huge_field(),
        strategy in strategy(),
    ) {
        check_outcome(&customer, strategy)?;
    }
}

#[test]
fn rules_fingerprints_tell_rules_apart_and_stay_the_same_for_the_same_rules() {
    let standard = IdentifyRules::from(UserIdStrategy::Email);
    assert_eq!(
        standard.fingerprint(),
        IdentifyRules::from(UserIdStrategy::Email).fingerprint()
    );
    assert_ne!(
        standard.fingerprint(),
        IdentifyRules::from(UserIdStrategy::CustomerId).fingerprint()
    );
    let mapped = IdentifyRules::from_toml(
        UserIdStrategy::Email,
        "[traits]\nexclude = [\"birthday\"]\n",
        "mapping.toml",
    )
    .unwrap();
    assert_ne!(standard.fingerprint(), mapped.fingerprint());
    assert_eq!(standard.fingerprint().len(), 32);
}
