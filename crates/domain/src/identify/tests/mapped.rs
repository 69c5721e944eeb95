//! The transformation under a mapping: what each setting does to the payload,
//! and the invariants that hold for any customer and any valid mapping.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::mapping::Mapping;

const CONTRACT_EXAMPLE: &str = r#"
[traits]
exclude  = ["birthday", "phone"]
rename   = { firstName = "first_name", "address.postalCode" = "address.zip" }
constant = { source = "commercetools" }

[custom]
include   = ["loyaltyTier", "newsletter"]
rename    = { loyaltyTier = "tier" }
placement = "top-level"

[consent.categories]
Advertising = "newsletter"
Analytics   = { field = "consentLevel", true_when = ["all", "analytics"] }
"#;

fn rules(strategy: UserIdStrategy, text: &str) -> IdentifyRules {
    IdentifyRules::from_toml(strategy, text, "mapping.toml")
        .unwrap_or_else(|errors| panic!("{errors}\nin\n{text}"))
}

fn mapped(text: &str, customer: &Customer) -> Value {
    let message = rules(UserIdStrategy::Email, text)
        .identify(customer)
        .expect("customer is accepted");
    parsed(&message)
}

#[test]
fn the_contract_example_shapes_the_full_customer() {
    let mut customer: Customer = serde_json::from_str(FULL_CUSTOMER).unwrap();
    customer.custom.as_mut().unwrap().fields.insert(
        "consentLevel".into(),
        json!({ "key": "analytics", "label": "Analytics only" }),
    );
    let json = mapped(CONTRACT_EXAMPLE, &customer);
    assert_eq!(
        json["traits"],
        json!({
            "email": "ada.lovelace@example.com",
            "first_name": "Ada",
            "lastName": "Lovelace",
            "name": "Ada Lovelace",
            "address": {
                "street": "St James's Square 12",
                "city": "London",
                "zip": "SW1Y 4JH",
                "state": "Greater London",
                "country": "GB"
            },
            "company": { "name": "Analytical Engines Ltd" },
            "createdAt": "2024-01-15T09:30:00.000Z",
            "salutation": "Ms.",
            "honorific": "Countess",
            "commercetoolsId": "9e5f0c2a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
            "customerNumber": "C-10001",
            "externalId": "crm-42",
            "key": "ada-lovelace",
            "locale": "en-GB",
            "isEmailVerified": true,
            "customerGroupId": "cg-vip",
            "stores": ["uk-store", "eu-store"],
            "tier": "gold",
            "newsletter": true,
            "source": "commercetools"
        })
    );
    assert_eq!(
        json["context"],
        json!({
            "library": library(),
            "consent": { "categoryPreferences": { "Advertising": true, "Analytics": true } }
        })
    );
    assert_eq!(json["userId"], "ada.lovelace@example.com");
    // Traits in the standard order, the custom fields where `custom` was, constants last.
    let message = rules(UserIdStrategy::Email, CONTRACT_EXAMPLE)
        .identify(&customer)
        .unwrap();
    let text = message.json();
    let order = [
        "\"first_name\"",
        "\"stores\"",
        "\"tier\"",
        "\"newsletter\"",
        "\"source\"",
    ];
    let positions: Vec<usize> = order.iter().map(|key| text.find(key).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn an_empty_mapping_gives_the_same_bytes_as_no_mapping() {
    let customer: Customer = serde_json::from_str(FULL_CUSTOMER).unwrap();
    for strategy in [UserIdStrategy::Email, UserIdStrategy::CustomerId] {
        let plain = identify(&customer, strategy).unwrap();
        for text in [
            "",
            "[traits]\nexclude = []\n",
            "[custom]\nplacement = \"nested\"\n",
        ] {
            let message = rules(strategy, text).identify(&customer).unwrap();
            assert_eq!(message, plain);
            assert_eq!(message.json(), plain.json());
        }
        assert_eq!(IdentifyRules::from(strategy).identify(&customer), Ok(plain));
    }
    assert_eq!(
        IdentifyRules::default(),
        IdentifyRules::from(UserIdStrategy::Email)
    );
}

#[test]
fn nested_keys_are_renamed_or_excluded_and_an_emptied_object_is_left_out() {
    let mut customer = base();
    customer.addresses = vec![Address {
        city: some("Munich"),
        postal_code: some("80331"),
        ..address("a")
    }];
    customer.company_name = some("Engines");
    let text = "[traits]\nexclude = [\"address.city\"]\nrename = { \"address.postalCode\" = \"address.zip\", \"company.name\" = \"company.legalName\", address = \"location\" }\n";
    let traits = mapped(text, &customer)["traits"].clone();
    assert_eq!(traits["location"], json!({ "zip": "80331" }));
    assert_eq!(traits["company"], json!({ "legalName": "Engines" }));
    assert!(traits.get("address").is_none());

    // Nothing left of the address: no `address` (nor `{}`) at all.
    customer.addresses[0].postal_code = None;
    let text = "[traits]\nexclude = [\"address.city\", \"company.name\"]\n";
    let traits = mapped(text, &customer)["traits"].clone();
    assert!(traits.get("address").is_none(), "{traits}");
    assert!(traits.get("company").is_none(), "{traits}");
}

#[test]
fn include_picks_custom_fields_and_rename_renames_them_under_custom() {
    let customer = with_fields(json!({
        "tier": { "key": "gold", "label": "Gold" }, "points": 3, "notes": "vip", "blank": " "
    }));
    let text =
        "[custom]\ninclude = [\"tier\", \"blank\", \"missing\"]\nrename = { tier = \"level\" }\n";
    assert_eq!(
        mapped(text, &customer)["traits"]["custom"],
        json!({ "level": "gold" })
    );
    // Selecting only fields without a value leaves no `custom` at all.
    let text = "[custom]\ninclude = [\"blank\", \"missing\"]\n";
    assert!(mapped(text, &customer)["traits"].get("custom").is_none());
    let text = "[custom]\ninclude = []\n";
    assert!(mapped(text, &customer)["traits"].get("custom").is_none());
    let text = "[traits]\nexclude = [\"custom\"]\n";
    assert!(mapped(text, &customer)["traits"].get("custom").is_none());
    let text = "[traits]\nrename = { custom = \"attributes\" }\n";
    assert_eq!(
        mapped(text, &customer)["traits"]["attributes"],
        json!({ "tier": "gold", "points": 3, "notes": "vip" })
    );
}

#[test]
fn a_renamed_custom_field_takes_the_place_of_one_with_its_new_name() {
    let customer = with_fields(json!({ "loyaltyTier": "gold", "tier": "old field" }));
    let text = "[custom]\nrename = { loyaltyTier = \"tier\" }\n";
    assert_eq!(
        mapped(text, &customer)["traits"]["custom"],
        json!({ "tier": "gold" })
    );
}

#[test]
fn custom_fields_at_the_top_level_never_displace_a_trait() {
    let customer = with_fields(json!({
        "email": "other@example.com", "phone": "123", "userId": "u", "birthday": "1999",
        "source": "custom", "loyalty": "gold", "custom": "x"
    }));
    let text = "[traits]\nexclude = [\"birthday\"]\nconstant = { source = \"commercetools\" }\n[custom]\nplacement = \"top-level\"\n";
    let traits = mapped(text, &customer)["traits"].clone();
    assert_eq!(
        traits,
        json!({
            "email": "ada@example.com", "commercetoolsId": "c1",
            "loyalty": "gold", "source": "commercetools"
        })
    );
    // Named by the file, a custom field may take an excluded trait's name.
    let text = "[traits]\nexclude = [\"birthday\", \"phone\"]\n[custom]\ninclude = [\"birthday\", \"loyalty\"]\nrename = { loyalty = \"phone\" }\nplacement = \"top-level\"\n";
    let traits = mapped(text, &customer)["traits"].clone();
    assert_eq!(traits["birthday"], "1999");
    assert_eq!(traits["phone"], "gold");
    // With the customer-id strategy, `email` is only a trait's name.
    let text = "[traits]\nexclude = [\"email\"]\n[custom]\nplacement = \"top-level\"\ninclude = [\"email\"]\n";
    let message = rules(UserIdStrategy::CustomerId, text)
        .identify(&customer)
        .unwrap();
    assert_eq!(parsed(&message)["traits"]["email"], "other@example.com");
}

const CONSENT: &str = r#"
[consent.categories]
Advertising = "newsletter"
Analytics = { field = "level", true_when = ["all", "analytics"] }
Personalization = { field = "channels", true_when = ["email", "sms"] }
"#;

fn preferences(fields: Value) -> Value {
    mapped(CONSENT, &with_fields(fields))["context"]["consent"]["categoryPreferences"].clone()
}

#[test]
fn consent_categories_follow_their_custom_fields() {
    assert_eq!(
        preferences(json!({
            "newsletter": true,
            "level": { "key": "analytics", "label": "Analytics" },
            "channels": [{ "key": "sms", "label": "SMS" }, "post"]
        })),
        json!({ "Advertising": true, "Analytics": true, "Personalization": true })
    );
    assert_eq!(
        preferences(json!({ "newsletter": false, "level": "none", "channels": ["post"] })),
        json!({ "Advertising": false, "Analytics": false, "Personalization": false })
    );
    // An empty set: the customer chose none of them.
    assert_eq!(
        preferences(json!({ "channels": [] })),
        json!({ "Personalization": false })
    );
    // A field that is missing, blank or not of the kind the category reads says nothing.
    assert_eq!(
        preferences(json!({ "newsletter": "yes", "level": " ", "channels": ["email"] })),
        json!({ "Personalization": true })
    );
    assert_eq!(
        preferences(json!({ "level": { "key": "all", "label": "All" } })),
        json!({ "Analytics": true })
    );
}

#[test]
fn without_any_consent_value_the_context_is_the_standard_one() {
    for customer in [
        base(),
        with_fields(json!({ "newsletter": null, "other": true })),
    ] {
        let message = rules(UserIdStrategy::Email, CONSENT)
            .identify(&customer)
            .unwrap();
        let plain = identify(&customer, UserIdStrategy::Email).unwrap();
        assert_eq!(message, plain);
    }
}

#[test]
fn consent_counts_in_the_fingerprint_and_is_read_back_from_a_dead_letter() {
    // Consent reads custom fields even when none is sent as a trait.
    let text = format!("[traits]\nexclude = [\"custom\"]\n{CONSENT}");
    let rules = rules(UserIdStrategy::Email, &text);
    let yes = rules
        .identify(&with_fields(json!({ "newsletter": true })))
        .unwrap();
    let no = rules
        .identify(&with_fields(json!({ "newsletter": false })))
        .unwrap();
    assert_eq!(parsed(&yes)["traits"], parsed(&no)["traits"]);
    assert_ne!(yes.fingerprint(), no.fingerprint());
    assert_ne!(yes.message_id(), no.message_id());
    let replayed = Identify::from_json("c1", 1, yes.json().to_owned()).unwrap();
    assert_eq!(replayed, yes);
}

#[test]
fn constants_count_towards_the_32_kib_limit() {
    let text = format!("[traits.constant]\nessay = \"{}\"\n", "x".repeat(33 * 1024));
    assert_eq!(
        rules(UserIdStrategy::Email, &text).identify(&base()),
        Err(NotSent::Rejected(DeliveryError::PayloadTooLarge))
    );
}

#[test]
fn a_mapping_change_changes_the_fingerprint_of_the_customers_it_affects_only() {
    let without_birthday = rules(
        UserIdStrategy::Email,
        "[traits]\nexclude = [\"birthday\"]\n",
    );
    let mut customer = base();
    let plain = identify(&customer, UserIdStrategy::Email).unwrap();
    assert_eq!(without_birthday.identify(&customer), Ok(plain));

    customer.date_of_birth = some("1815-12-10");
    let plain = identify(&customer, UserIdStrategy::Email).unwrap();
    let mapped = without_birthday.identify(&customer).unwrap();
    assert_ne!(mapped.fingerprint(), plain.fingerprint());
    assert_ne!(mapped.message_id(), plain.message_id());
}

// ---------------------------------------------------------------------------
// Properties over generated customers and mappings.

/// Custom field names a generated mapping may pick; generated customers often
/// have them.
const POOL: [&str; 4] = ["tier", "newsletter", "level", "channels"];

/// What a generated mapping does, kept next to its TOML so the test knows what
/// to expect. Every new name has a prefix no standard name or pool field has.
#[derive(Debug, Clone)]
struct Spec {
    /// Per trait key: `None` to keep it, `Some(None)` to exclude it, `Some(Some(n))`
    /// to rename it to `n` (a leaf name for a nested key).
    actions: Vec<(TraitKey, Option<Option<String>>)>,
    constants: Vec<(String, Value)>,
    include: Option<Vec<&'static str>>,
    custom_rename: Vec<(&'static str, String)>,
    top_level: bool,
    consent: Vec<(String, &'static str, Option<Vec<&'static str>>)>,
}

impl Spec {
    fn excluded(&self, key: TraitKey) -> bool {
        self.actions
            .iter()
            .any(|(k, a)| *k == key && *a == Some(None))
    }

    fn renamed(&self, key: TraitKey) -> Option<&str> {
        self.actions.iter().find_map(|(k, a)| match a {
            Some(Some(name)) if *k == key => Some(name.as_str()),
            _ => None,
        })
    }

    /// The payload name of a key, `None` when excluded.
    fn name(&self, key: TraitKey) -> Option<String> {
        if self.excluded(key) {
            return None;
        }
        Some(self.renamed(key).unwrap_or(leaf(key)).to_owned())
    }

    fn toml(&self) -> String {
        let quote = |s: &str| Value::from(s).to_string();
        let mut out = String::from("[traits]\nexclude = [");
        let excluded: Vec<String> = self
            .actions
            .iter()
            .filter(|(_, a)| *a == Some(None))
            .map(|(k, _)| quote(k.path()))
            .collect();
        out.push_str(&excluded.join(", "));
        out.push_str("]\n\n[traits.rename]\n");
        for (key, action) in &self.actions {
            if let Some(Some(name)) = action {
                let target = match key.parent() {
                    Some(parent) => format!("{}.{name}", parent.path()),
                    None => name.clone(),
                };
                out.push_str(&format!("{} = {}\n", quote(key.path()), quote(&target)));
            }
        }
        out.push_str("\n[traits.constant]\n");
        for (name, value) in &self.constants {
            out.push_str(&format!("{} = {value}\n", quote(name)));
        }
        // With `custom` excluded, any `[custom]` setting is an error.
        out.push_str("\n[custom]\n");
        if let Some(include) = &self.include {
            let names: Vec<String> = include.iter().map(|f| quote(f)).collect();
            out.push_str(&format!("include = [{}]\n", names.join(", ")));
        }
        if self.top_level {
            out.push_str("placement = \"top-level\"\n");
        }
        if !self.custom_rename.is_empty() {
            out.push_str("\n[custom.rename]\n");
        }
        for (from, to) in &self.custom_rename {
            out.push_str(&format!("{} = {}\n", quote(from), quote(to)));
        }
        out.push_str("\n[consent.categories]\n");
        for (category, field, true_when) in &self.consent {
            match true_when {
                None => out.push_str(&format!("{} = {}\n", quote(category), quote(field))),
                Some(values) => {
                    let values: Vec<String> = values.iter().map(|v| quote(v)).collect();
                    out.push_str(&format!(
                        "{} = {{ field = {}, true_when = [{}] }}\n",
                        quote(category),
                        quote(field),
                        values.join(", ")
                    ));
                }
            }
        }
        out
    }
}

fn leaf(key: TraitKey) -> &'static str {
    key.path().rsplit('.').next().unwrap()
}

fn any_spec() -> impl Strategy<Value = Spec> {
    let actions = proptest::collection::vec(0u8..10, TraitKey::ALL.len());
    let constants = proptest::collection::vec(
        prop_oneof![
            "[a-z ]{0,6}[a-z]".prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..3,
    );
    let custom = (
        proptest::option::of(proptest::sample::subsequence(POOL.to_vec(), 0..=4)),
        proptest::sample::subsequence(POOL.to_vec(), 0..=2),
        any::<bool>(),
    );
    let consent = proptest::collection::vec(
        (
            proptest::sample::select(POOL.to_vec()),
            proptest::option::of(proptest::sample::subsequence(
                vec!["gold", "all", "email", "yes"],
                1..=2,
            )),
        ),
        0..3,
    );
    (actions, constants, custom, consent).prop_map(
        |(actions, constants, (include, renamed, top_level), consent)| {
            let custom_settings = include.is_some() || !renamed.is_empty() || top_level;
            let mut spec = Spec {
                actions: Vec::new(),
                constants: constants
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| (format!("c_{i}"), value))
                    .collect(),
                custom_rename: renamed
                    .into_iter()
                    .filter(|f| include.as_ref().is_none_or(|i| i.contains(f)))
                    .map(|f| (f, format!("r_{f}")))
                    .collect(),
                include,
                top_level,
                consent: consent
                    .into_iter()
                    .enumerate()
                    .map(|(i, (field, when))| (format!("Category{i}"), field, when))
                    .collect(),
            };
            for (key, roll) in TraitKey::ALL.into_iter().zip(actions) {
                let parent_excluded = key.parent().is_some_and(|p| spec.excluded(p));
                let is_custom = key == TraitKey::Custom;
                let action = match roll {
                    _ if parent_excluded => None,
                    0 | 1 if !(is_custom && custom_settings) => Some(None),
                    2 | 3 if !(is_custom && top_level) => Some(Some(format!("m_{}", leaf(key)))),
                    _ => None,
                };
                spec.actions.push((key, action));
            }
            spec
        },
    )
}

/// A generated customer that often has the pool's custom fields.
fn customer_with_pool_fields() -> impl Strategy<Value = Customer> {
    let pool_value = prop_oneof![
        json_value(),
        any::<bool>().prop_map(Value::Bool),
        proptest::sample::select(vec!["gold", "all", "email", "no", " "]).prop_map(Value::from),
        proptest::sample::select(vec!["gold", "all", "sms"])
            .prop_map(|key| json!({ "key": key, "label": key.to_uppercase() })),
        proptest::collection::vec(
            proptest::sample::select(vec!["email", "sms", "post"]).prop_map(Value::from),
            0..3
        )
        .prop_map(Value::Array),
    ];
    (
        any_customer(),
        proptest::collection::vec(proptest::option::of(pool_value), POOL.len()),
    )
        .prop_map(|(mut customer, values)| {
            for (field, value) in POOL.into_iter().zip(values) {
                if let Some(value) = value {
                    customer
                        .custom
                        .get_or_insert_with(CustomFields::default)
                        .fields
                        .insert(field.into(), value);
                }
            }
            customer
        })
}

/// The traits a mapping should make of the standard ones: a model of the
/// mapping written from its description, not from its code.
fn expected_traits(plain: &Map<String, Value>, spec: &Spec, strategy: UserIdStrategy) -> Value {
    let mut out = Map::new();
    for key in TraitKey::ALL {
        if key.parent().is_some() || key == TraitKey::Custom {
            continue;
        }
        let (Some(value), Some(name)) = (plain.get(key.path()), spec.name(key)) else {
            continue;
        };
        let value = match value {
            Value::Object(object) if matches!(key, TraitKey::Address | TraitKey::Company) => {
                let mut inner = Map::new();
                for nested in TraitKey::ALL
                    .into_iter()
                    .filter(|k| k.parent() == Some(key))
                {
                    if let (Some(v), Some(n)) = (object.get(leaf(nested)), spec.name(nested)) {
                        inner.insert(n, v.clone());
                    }
                }
                if inner.is_empty() {
                    continue;
                }
                Value::Object(inner)
            }
            other => other.clone(),
        };
        out.insert(name, value);
    }
    let custom = plain.get("custom").and_then(Value::as_object);
    if let (Some(custom), Some(custom_name)) = (custom, spec.name(TraitKey::Custom)) {
        let renamed = |field: &str| {
            spec.custom_rename
                .iter()
                .find(|(from, _)| *from == field)
                .map(|(_, to)| to.clone())
        };
        let mut nested = Map::new();
        for (field, value) in custom {
            if spec
                .include
                .as_ref()
                .is_some_and(|i| !i.contains(&field.as_str()))
            {
                continue;
            }
            let name = match renamed(field) {
                Some(to) => to,
                // A field whose name a rename gives to another is left out.
                None if spec.custom_rename.iter().any(|(_, to)| to == field) => continue,
                None => field.clone(),
            };
            if spec.top_level {
                let named = spec.include.is_some() || renamed(field).is_some();
                let standard = TraitKey::ALL
                    .into_iter()
                    .any(|k| k.parent().is_none() && k.path() == name);
                let given = out.contains_key(&name)
                    || spec.constants.iter().any(|(c, _)| *c == name)
                    || spec.actions.iter().any(|(k, a)| {
                        k.parent().is_none() && matches!(a, Some(Some(n)) if *n == name)
                    });
                let reserved =
                    name == "userId" || (name == "email" && strategy == UserIdStrategy::Email);
                if named || !(standard || given || reserved) {
                    out.insert(name, value.clone());
                }
            } else {
                nested.insert(name, value.clone());
            }
        }
        if !nested.is_empty() {
            out.insert(custom_name, Value::Object(nested));
        }
    }
    for (name, value) in &spec.constants {
        out.insert(name.clone(), value.clone());
    }
    Value::Object(out)
}

/// `categoryPreferences` as the mapping describes it, or `None` for no consent.
fn expected_consent(customer: &Customer, spec: &Spec) -> Option<Value> {
    let fields = &customer.custom.as_ref()?.fields;
    let key_of = |value: &Value| -> Option<String> {
        let key = match value {
            Value::String(s) => s.clone(),
            Value::Object(o) if o.len() == 2 && o.contains_key("label") => {
                o.get("key")?.as_str()?.to_owned()
            }
            _ => return None,
        };
        (!key.trim().is_empty()).then_some(key)
    };
    let mut preferences = Map::new();
    for (category, field, true_when) in &spec.consent {
        let Some(value) = fields.get(*field) else {
            continue;
        };
        let preference = match true_when {
            None => value.as_bool(),
            Some(values) => match value {
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(key_of)
                        .any(|key| values.contains(&key.as_str())),
                ),
                single => key_of(single).map(|key| values.contains(&key.as_str())),
            },
        };
        if let Some(preference) = preference {
            preferences.insert(category.clone(), Value::Bool(preference));
        }
    }
    (!preferences.is_empty()).then_some(Value::Object(preferences))
}

/// Everything that must hold of a customer's payload under a generated mapping.
fn check_mapped(
    customer: &Customer,
    spec: &Spec,
    strategy: UserIdStrategy,
) -> Result<(), TestCaseError> {
    let text = spec.toml();
    let rules = IdentifyRules::from_toml(strategy, &text, "generated.toml")
        .map_err(|errors| TestCaseError::fail(format!("{errors}\nin\n{text}")))?;
    let plain = identify(customer, strategy);
    let outcome = rules.identify(customer);
    let (plain, message) = match (plain, &outcome) {
        (Ok(plain), Ok(message)) => (plain, message),
        // Mapping never changes who is skipped or has no userId.
        (Err(NotSent::Skipped(a)), Err(NotSent::Skipped(b))) => {
            prop_assert_eq!(a, *b);
            return Ok(());
        }
        (Err(a @ NotSent::Rejected(DeliveryError::EmptyUserId)), Err(b)) => {
            prop_assert_eq!(&a, b);
            return Ok(());
        }
        (_, Err(NotSent::Rejected(DeliveryError::PayloadTooLarge))) => return Ok(()),
        (Err(NotSent::Rejected(DeliveryError::PayloadTooLarge)), Ok(message)) => {
            prop_assert!(message.json().len() <= MAX_MESSAGE_BYTES);
            return Ok(());
        }
        (plain, outcome) => {
            return Err(TestCaseError::fail(format!("{plain:?} became {outcome:?}")));
        }
    };
    prop_assert!(message.json().len() <= MAX_MESSAGE_BYTES);
    let json: Value = serde_json::from_str(message.json())?;
    let plain_json = parsed(&plain);
    prop_assert_eq!(&json["userId"], &plain_json["userId"]);
    assert_nothing_blank(&json["traits"], "traits")?;
    assert_nothing_blank(&json["context"], "context")?;

    let traits = json["traits"].as_object().unwrap();
    let plain_traits = plain_json["traits"].as_object().unwrap();
    prop_assert_eq!(
        &json["traits"],
        &expected_traits(plain_traits, spec, strategy),
        "\n{}",
        text
    );
    let consent = expected_consent(customer, spec);
    prop_assert_eq!(
        json["context"]["consent"].get("categoryPreferences"),
        consent.as_ref()
    );

    // The two rules the issue names, stated on their own.
    for (key, action) in &spec.actions {
        match (key.parent(), action) {
            (None, Some(None)) => {
                prop_assert!(traits.get(key.path()).is_none(), "{} excluded", key.path());
            }
            (None, Some(Some(new))) => {
                prop_assert!(traits.get(key.path()).is_none(), "{} renamed", key.path());
                if !matches!(
                    key,
                    TraitKey::Address | TraitKey::Company | TraitKey::Custom
                ) {
                    prop_assert_eq!(traits.get(new.as_str()), plain_traits.get(key.path()));
                }
            }
            _ => {}
        }
    }

    prop_assert_eq!(&rules.identify(customer), &outcome, "not deterministic");
    let replayed = Identify::from_json(&customer.id, customer.version, message.json().to_owned());
    prop_assert_eq!(replayed.as_ref(), Ok(message), "dead-letter replay differs");
    Ok(())
}

proptest! {
    #[test]
    fn any_valid_mapping_gives_the_payload_it_describes(
        customer in customer_with_pool_fields(),
        spec in any_spec(),
        strategy in strategy(),
    ) {
        check_mapped(&customer, &spec, strategy)?;
    }

    #[test]
    fn an_empty_mapping_is_byte_identical_to_no_mapping(
        customer in any_customer(),
        strategy in strategy(),
        text in proptest::sample::select(vec![
            "",
            "[traits]\nexclude = []\nrename = {}\n",
            "[custom]\nplacement = \"nested\"\n",
            "[traits.rename]\nemail = \"email\"\n\"address.city\" = \"address.city\"\n",
        ]),
    ) {
        let rules = IdentifyRules::from_toml(strategy, text, "empty.toml").unwrap();
        prop_assert!(rules.mapping().is_empty());
        let mapped = rules.identify(&customer);
        let plain = identify(&customer, strategy);
        prop_assert_eq!(&mapped, &plain);
        if let (Ok(mapped), Ok(plain)) = (mapped, plain) {
            prop_assert_eq!(mapped.json(), plain.json());
            prop_assert_eq!(mapped.fingerprint(), plain.fingerprint());
            prop_assert_eq!(mapped.message_id(), plain.message_id());
        }
    }

    #[test]
    fn excluding_a_trait_changes_only_the_fingerprints_of_customers_that_have_it(
        customer in any_customer(),
        strategy in strategy(),
        excluded in proptest::sample::select(TraitKey::ALL.to_vec()),
    ) {
        let text = format!("[traits]\nexclude = [\"{}\"]\n", excluded.path());
        let rules = IdentifyRules::from_toml(strategy, &text, "m.toml").unwrap();
        if let (Ok(plain), Ok(mapped)) = (identify(&customer, strategy), rules.identify(&customer)) {
            let traits = parsed(&plain)["traits"].clone();
            let has_it = match excluded.parent() {
                Some(parent) => traits.get(parent.path()).and_then(|p| p.get(leaf(excluded))).is_some(),
                None => traits.get(excluded.path()).is_some(),
            };
            prop_assert_eq!(mapped.fingerprint() != plain.fingerprint(), has_it);
            prop_assert_eq!(mapped.message_id() != plain.message_id(), has_it);
        }
    }

    #[test]
    fn a_mapping_never_parses_to_a_panic(text in "[ -~\n]{0,200}") {
        let _ = Mapping::from_toml(&text, "random.toml");
    }
}

proptest! {
    // Each case builds and serialises up to ~100 KB; fewer cases keep debug runs quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mapped_messages_stay_within_32_kib(
        customer in customer_with_a_huge_field(),
        spec in any_spec(),
        strategy in strategy(),
    ) {
        check_mapped(&customer, &spec, strategy)?;
    }
}

#[test]
fn the_example_mapping_file_shapes_the_sample_customers() {
    let text = include_str!("../../../../../examples/mapping.toml");
    let rules = rules(UserIdStrategy::Email, text);
    let samples = include_str!("../../../../../examples/customers.ndjson");
    let mut sent = 0;
    for line in samples.lines() {
        let Ok(customer) = serde_json::from_str::<Customer>(line) else {
            continue; // the sample holds a malformed record on purpose
        };
        let (Ok(plain), Ok(message)) = (
            identify(&customer, UserIdStrategy::Email),
            rules.identify(&customer),
        ) else {
            continue;
        };
        sent += 1;
        let (plain, json) = (parsed(&plain), parsed(&message));
        let traits = &json["traits"];
        for gone in [
            "birthday",
            "phone",
            "firstName",
            "lastName",
            "custom",
            "loyaltyTier",
        ] {
            assert!(traits.get(gone).is_none(), "{gone} in {traits}");
        }
        assert_eq!(traits["first_name"], plain["traits"]["firstName"]);
        assert_eq!(traits["tier"], plain["traits"]["custom"]["loyaltyTier"]);
        assert_eq!(traits["interests"], plain["traits"]["custom"]["interests"]);
        assert_eq!(traits["source"], "commercetools");
        if let Some(address) = traits.get("address") {
            assert!(address.get("street").is_none());
            assert_eq!(
                address.get("zip"),
                plain["traits"]["address"].get("postalCode")
            );
        }
        assert_eq!(
            json["context"]["consent"]["categoryPreferences"].get("Advertising"),
            plain["traits"]["custom"].get("newsletter")
        );
    }
    assert!(sent >= 20, "only {sent} sample customers sent");
}
