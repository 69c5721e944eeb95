use super::*;
use crate::identify::IdentifyRules;

/// The contract's example (§4), as a user would write it.
const CONTRACT_EXAMPLE: &str = r#"
[traits]
exclude  = ["birthday", "phone"]                          # trait names of the table above
rename   = { firstName = "first_name", "address.postalCode" = "address.zip" }
constant = { source = "commercetools" }                   # added to every profile

[custom]
include   = ["loyaltyTier", "newsletter"]                 # default: every custom field
rename    = { loyaltyTier = "tier" }
placement = "top-level"                                   # or "nested" (default: under `custom`)

[consent.categories]                                      # → context.consent.categoryPreferences
Advertising = "newsletter"                                # a boolean custom field
Analytics   = { field = "consentLevel", true_when = ["all", "analytics"] }  # enum / set field
"#;

/// Every problem of a mapping file, one display line each.
fn problems(text: &str) -> Vec<String> {
    Mapping::from_toml(text, "mapping.toml")
        .expect_err("the mapping is refused")
        .errors()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The single problem of a mapping file.
fn problem(text: &str) -> String {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

#[test]
fn the_contract_example_is_a_valid_mapping() {
    let mapping = Mapping::from_toml(CONTRACT_EXAMPLE, "mapping.toml").unwrap();
    assert!(!mapping.is_empty());
    assert_eq!(
        mapping.summary(),
        "excludes birthday, phone; renames firstName → first_name, address.postalCode → zip; \
         1 constant; custom fields loyaltyTier, newsletter at the top level; \
         renames custom loyaltyTier → tier; consent Advertising, Analytics"
    );
    for strategy in [UserIdStrategy::Email, UserIdStrategy::CustomerId] {
        let rules = IdentifyRules::new(strategy, mapping.clone()).unwrap();
        assert_eq!(rules.mapping(), &mapping);
        assert_eq!(rules.strategy(), strategy);
    }
}

#[test]
fn an_empty_file_or_one_that_changes_nothing_is_the_empty_mapping() {
    for text in [
        "",
        "# nothing yet\n",
        "[traits]\n[custom]\n",
        "[traits]\nexclude = []\nrename = {}\nconstant = {}\n",
        "[custom]\nplacement = \"nested\"\nrename = {}\n",
        "[traits.rename]\nfirstName = \"firstName\"\n\"address.city\" = \"address.city\"\n",
        "[consent.categories]\n",
    ] {
        let mapping = Mapping::from_toml(text, "mapping.toml").unwrap();
        assert!(mapping.is_empty(), "{text}");
        assert_eq!(mapping, Mapping::default());
        assert_eq!(mapping.summary(), "the standard traits");
    }
}

#[test]
fn renames_of_nested_keys_may_be_written_as_nested_tables() {
    let dotted = "[traits]\nrename = { \"address.postalCode\" = \"address.zip\" }\n";
    let nested = "[traits.rename]\naddress.postalCode = \"address.zip\"\n";
    let inline = "[traits]\nrename = { address = { postalCode = \"address.zip\" } }\n";
    let expected = Mapping::from_toml(dotted, "a.toml").unwrap();
    assert_eq!(Mapping::from_toml(nested, "b.toml").unwrap(), expected);
    assert_eq!(Mapping::from_toml(inline, "c.toml").unwrap(), expected);
    assert_eq!(expected.summary(), "renames address.postalCode → zip");
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    // The first syntax error only: the ones after it are mostly its echoes.
    assert_eq!(
        problem("[traits]\nexclude = [\"birthday\"\nrename = {}\n"),
        "mapping.toml:3:1: TOML syntax error: missing comma between array elements, expected `,`"
    );
    assert_eq!(
        problem("[traits\n"),
        "mapping.toml:1:8: TOML syntax error: unclosed table, expected `]`"
    );
    let message = problem("[traits]\nexclude = []\nexclude = []\n");
    assert!(
        message.starts_with("mapping.toml:3:1: TOML syntax error: "),
        "{message}"
    );
}

#[test]
fn unknown_tables_and_keys_are_named_with_what_is_expected() {
    assert_eq!(
        problem("[trait]\nexclude = [\"phone\"]\n"),
        "mapping.toml:1:2: trait: unknown key; expected [traits], [custom] or [consent]"
    );
    assert_eq!(
        problem("[traits]\nexcludes = [\"phone\"]\n"),
        "mapping.toml:2:1: traits.excludes: unknown key; expected exclude, rename or constant"
    );
    assert_eq!(
        problem("[custom]\nfields = []\n"),
        "mapping.toml:2:1: custom.fields: unknown key; expected include, rename or placement"
    );
    assert_eq!(
        problem("[consent]\nAdvertising = \"newsletter\"\n"),
        "mapping.toml:2:1: consent.Advertising: unknown key; expected [consent.categories]"
    );
    assert_eq!(
        problem("[consent.categories]\nAds = { field = \"a\", true_if = [\"x\"] }\n"),
        "mapping.toml:2:22: consent.categories.Ads.true_if: unknown key; expected field or true_when"
    );
}

#[test]
fn an_unknown_trait_is_named_with_the_closest_valid_one() {
    assert_eq!(
        problem("[traits]\nexclude = [\"phone\", \"birthdate\"]\n"),
        r#"mapping.toml:2:21: traits.exclude: unknown trait "birthdate"; did you mean "birthday"?"#
    );
    assert_eq!(
        problem("[traits]\nrename = { firstname = \"first_name\" }\n"),
        r#"mapping.toml:2:12: traits.rename.firstname: unknown trait "firstname"; did you mean "firstName"?"#
    );
    assert_eq!(
        problem("[traits]\nexclude = [\"dateOfBirth\"]\n"),
        r#"mapping.toml:2:12: traits.exclude: unknown trait "dateOfBirth"; did you mean "birthday"?"#
    );
    assert_eq!(
        problem("[traits]\nrename = { \"address.zip\" = \"address.postcode\" }\n"),
        r#"mapping.toml:2:12: traits.rename."address.zip": unknown trait "address.zip"; did you mean "address.postalCode"?"#
    );
    assert_eq!(
        problem("[traits]\nexclude = [\"favouriteColour\"]\n"),
        r#"mapping.toml:2:12: traits.exclude: unknown trait "favouriteColour""#
    );
}

#[test]
fn empty_names_are_refused_wherever_a_name_goes() {
    let text = r#"[traits]
exclude = [" "]
rename = { firstName = "", "" = "x" }
constant = { "" = "x" }

[custom]
include = [""]
rename = { loyaltyTier = " " }

[consent.categories]
"" = "newsletter"
Ads = ""
Analytics = { field = "", true_when = ["all", ""] }
"#;
    assert_eq!(
        problems(text),
        [
            "mapping.toml:2:12: traits.exclude: name cannot be empty",
            "mapping.toml:3:24: traits.rename.firstName: name cannot be empty",
            "mapping.toml:3:28: traits.rename.\"\": name cannot be empty",
            "mapping.toml:4:14: traits.constant.\"\": name cannot be empty",
            "mapping.toml:7:12: custom.include: name cannot be empty",
            "mapping.toml:8:26: custom.rename.loyaltyTier: name cannot be empty",
            "mapping.toml:11:1: consent.categories.\"\": name cannot be empty",
            "mapping.toml:12:7: consent.categories.Ads: name cannot be empty",
            "mapping.toml:13:23: consent.categories.Analytics.field: name cannot be empty",
            "mapping.toml:13:47: consent.categories.Analytics.true_when: name cannot be empty",
        ]
    );
}

#[test]
fn user_id_is_reserved_for_every_strategy() {
    assert_eq!(
        problems(
            "[traits]\nrename = { customerNumber = \"userId\" }\nconstant = { userId = \"x\" }\n"
        ),
        [
            "mapping.toml:2:29: traits.rename.customerNumber: \"userId\" is reserved: it is the Segment userId, not a trait",
            "mapping.toml:3:14: traits.constant.userId: \"userId\" is reserved: it is the Segment userId, not a trait",
        ]
    );
    assert_eq!(
        problem("[custom]\ninclude = [\"userId\"]\nplacement = \"top-level\"\n"),
        "mapping.toml:2:12: custom.include: \"userId\" is reserved: it is the Segment userId, not a trait"
    );
    // Under `custom` it is only a custom field's name.
    Mapping::from_toml("[custom]\ninclude = [\"userId\"]\n", "mapping.toml").unwrap();
}

#[test]
fn email_is_reserved_when_it_is_the_identity() {
    let text = "[traits]\nexclude = [\"email\"]\nrename = { customerNumber = \"email\" }\n";
    let mapping = Mapping::from_toml(text, "mapping.toml").unwrap();
    let by_id = IdentifyRules::new(UserIdStrategy::CustomerId, mapping.clone());
    assert!(by_id.is_ok());
    let errors = IdentifyRules::new(UserIdStrategy::Email, mapping).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "mapping.toml:3:29: traits.rename.customerNumber: \"email\" is reserved: with the email user id strategy it holds the identity"
    );
    let error = &errors.errors()[0];
    assert_eq!(
        (error.file(), error.line(), error.column()),
        ("mapping.toml", 3, 29)
    );
    assert_eq!(error.key(), Some("traits.rename.customerNumber"));
    assert_eq!(error.problem(), &MappingProblem::ReservedEmail);

    // A constant or a top-level custom field named `email` is the same claim.
    for text in [
        "[traits]\nexclude = [\"email\"]\nconstant = { email = \"x@example.com\" }\n",
        "[traits]\nexclude = [\"email\"]\n[custom]\ninclude = [\"email\"]\nplacement = \"top-level\"\n",
    ] {
        let mapping = Mapping::from_toml(text, "mapping.toml").unwrap();
        assert!(IdentifyRules::new(UserIdStrategy::Email, mapping.clone()).is_err());
        assert!(IdentifyRules::new(UserIdStrategy::CustomerId, mapping).is_ok());
    }
    // Renaming the email trait away, or to itself, claims nothing.
    for text in [
        "[traits]\nrename = { email = \"mail\" }\n",
        "[traits]\nrename = { email = \"email\" }\n",
    ] {
        let mapping = Mapping::from_toml(text, "mapping.toml").unwrap();
        assert!(IdentifyRules::new(UserIdStrategy::Email, mapping).is_ok());
    }
}

#[test]
fn from_toml_with_a_strategy_reports_every_problem_at_once() {
    let text =
        "[traits]\nexclude = [\"email\", \"phones\"]\nrename = { customerNumber = \"email\" }\n";
    let errors = IdentifyRules::from_toml(UserIdStrategy::Email, text, "m.toml").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "m.toml:2:21: traits.exclude: unknown trait \"phones\"; did you mean \"phone\"?\n\
         m.toml:3:29: traits.rename.customerNumber: \"email\" is reserved: with the email user id strategy it holds the identity"
    );
    assert_eq!(
        IdentifyRules::from_toml(UserIdStrategy::CustomerId, text, "m.toml")
            .unwrap_err()
            .errors()
            .len(),
        1
    );
    let rules = IdentifyRules::from_toml(UserIdStrategy::CustomerId, "", "m.toml").unwrap();
    assert_eq!(rules, IdentifyRules::from(UserIdStrategy::CustomerId));
}

#[test]
fn a_name_is_given_only_once() {
    // Two renames to one target: the second is named, with the first.
    assert_eq!(
        problem("[traits]\nrename = { lastName = \"n\", firstName = \"n\" }\n"),
        "mapping.toml:2:40: traits.rename.firstName: \"n\" is already used by traits.rename.lastName"
    );
    // Onto a trait that is still there.
    assert_eq!(
        problem("[traits]\nrename = { firstName = \"name\" }\n"),
        "mapping.toml:2:24: traits.rename.firstName: \"name\" is already used by the trait \"name\""
    );
    // … which is fine once that trait is excluded or renamed itself.
    for text in [
        "[traits]\nexclude = [\"name\"]\nrename = { firstName = \"name\" }\n",
        "[traits]\nrename = { firstName = \"name\", name = \"fullName\" }\n",
        "[traits]\nrename = { firstName = \"lastName\", lastName = \"firstName\" }\n",
    ] {
        Mapping::from_toml(text, "mapping.toml").unwrap();
    }
    assert_eq!(
        problem("[traits]\nconstant = { locale = \"en\" }\n"),
        "mapping.toml:2:14: traits.constant.locale: \"locale\" is already used by the trait \"locale\""
    );
    assert_eq!(
        problem("[traits]\nrename = { key = \"source\" }\nconstant = { source = \"ct\" }\n"),
        "mapping.toml:3:14: traits.constant.source: \"source\" is already used by traits.rename.key"
    );
    assert_eq!(
        problem("[traits]\nrename = { \"address.postalCode\" = \"address.city\" }\n"),
        "mapping.toml:2:35: traits.rename.\"address.postalCode\": \"city\" is already used by the trait \"address.city\""
    );
    // Custom fields: among themselves under `custom`, with the traits at the top level.
    assert_eq!(
        problem("[custom]\ninclude = [\"a\", \"b\"]\nrename = { a = \"b\" }\n"),
        "mapping.toml:3:16: custom.rename.a: \"b\" is already used by the custom field \"b\""
    );
    assert_eq!(
        problem("[custom]\ninclude = [\"phone\"]\nplacement = \"top-level\"\n"),
        "mapping.toml:2:12: custom.include: \"phone\" is already used by the trait \"phone\""
    );
    assert_eq!(
        problem("[custom]\nrename = { tier = \"locale\" }\nplacement = \"top-level\"\n"),
        "mapping.toml:2:19: custom.rename.tier: \"locale\" is already used by the trait \"locale\""
    );
    Mapping::from_toml(
        "[custom]\ninclude = [\"phone\", \"phone\"]\n",
        "mapping.toml",
    )
    .unwrap();
}

#[test]
fn constants_are_never_blank_or_empty() {
    let text = r#"[traits.constant]
a = ""
b = "  "
c = []
d = {}
e = { inner = " " }
f = ["ok", ""]
g = nan
"#;
    assert_eq!(
        problems(text),
        [
            "mapping.toml:2:5: traits.constant.a: a constant cannot be blank or empty",
            "mapping.toml:3:5: traits.constant.b: a constant cannot be blank or empty",
            "mapping.toml:4:5: traits.constant.c: a constant cannot be blank or empty",
            "mapping.toml:5:5: traits.constant.d: a constant cannot be blank or empty",
            "mapping.toml:6:15: traits.constant.e.inner: a constant cannot be blank or empty",
            "mapping.toml:7:12: traits.constant.f: a constant cannot be blank or empty",
            "mapping.toml:8:5: traits.constant.g: expected a finite number, found infinity or nan",
        ]
    );
    let fine = r#"[traits.constant]
source = "commercetools"
weight = 2
ratio = 0.5
hex = 0xff
vip = false
since = 2024-05-01
tags = ["a", "b"]
origin = { system = "commercetools", region = "eu" }
"#;
    let mapping = Mapping::from_toml(fine, "mapping.toml").unwrap();
    let names: Vec<&str> = mapping
        .rules()
        .constants()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    // In file order.
    assert_eq!(
        names,
        ["source", "weight", "ratio", "hex", "vip", "since", "tags", "origin"]
    );
    let values: Vec<&Value> = mapping.rules().constants().iter().map(|(_, v)| v).collect();
    assert_eq!(values[3], &Value::from(255));
    assert_eq!(values[5], &Value::from("2024-05-01"));
    assert_eq!(
        values[7],
        &serde_json::json!({ "system": "commercetools", "region": "eu" })
    );
}

#[test]
fn values_of_the_wrong_kind_are_named() {
    assert_eq!(
        problems("traits = 1\n[custom]\ninclude = \"tier\"\nrename = { tier = 2 }\nplacement = \"top\"\n"),
        [
            "mapping.toml:1:10: traits: expected a table, found integer",
            "mapping.toml:3:11: custom.include: expected an array of custom field names, found string",
            "mapping.toml:4:19: custom.rename.tier: expected a new name (string), found integer",
            "mapping.toml:5:13: custom.placement: unknown placement \"top\"; expected \"nested\" or \"top-level\"",
        ]
    );
    assert_eq!(
        problem("[traits]\nexclude = [\"phone\", 3]\n"),
        "mapping.toml:2:21: traits.exclude: expected a name (string), found integer"
    );
    assert_eq!(
        problem("[custom]\nplacement = true\n"),
        "mapping.toml:2:13: custom.placement: expected \"nested\" or \"top-level\", found boolean"
    );
    assert_eq!(
        problem("[consent.categories]\nAds = true\n"),
        "mapping.toml:2:7: consent.categories.Ads: expected a custom field name or { field = \"…\", true_when = [\"…\"] }, found boolean"
    );
}

#[test]
fn renames_keep_nesting_as_it_is() {
    assert_eq!(
        problem("[traits]\nrename = { \"address.postalCode\" = \"zip\" }\n"),
        "mapping.toml:2:35: traits.rename.\"address.postalCode\": a key of address is renamed within it: write \"address.zip\""
    );
    assert_eq!(
        problem("[traits]\nrename = { \"company.name\" = \"organisation.name\" }\n"),
        "mapping.toml:2:29: traits.rename.\"company.name\": a key of company is renamed within it: write \"company.name\""
    );
    assert_eq!(
        problem("[traits]\nrename = { firstName = \"person.first\" }\n"),
        "mapping.toml:2:24: traits.rename.firstName: \"person.first\" has a dot: traits are not nested, except address.* and company.*"
    );
    assert_eq!(
        problems("[traits]\nconstant = { \"origin.system\" = \"ct\" }\n[custom]\nrename = { tier = \"loyalty.tier\" }\n"),
        [
            "mapping.toml:2:14: traits.constant.\"origin.system\": \"origin.system\" has a dot: traits are not nested, except address.* and company.*",
            "mapping.toml:4:19: custom.rename.tier: \"loyalty.tier\" has a dot: traits are not nested, except address.* and company.*",
        ]
    );
    // A dotted key without quotes is TOML for a table: a constant object.
    let mapping = Mapping::from_toml(
        "[traits]\nconstant = { origin.system = \"ct\" }\n",
        "m.toml",
    )
    .unwrap();
    assert_eq!(
        mapping.rules().constants(),
        [("origin".to_owned(), serde_json::json!({ "system": "ct" }))]
    );
}

#[test]
fn settings_that_could_have_no_effect_are_refused() {
    assert_eq!(
        problem("[traits]\nexclude = [\"address\"]\nrename = { \"address.city\" = \"address.town\" }\n"),
        "mapping.toml:3:12: traits.rename.\"address.city\": \"address\" is excluded, so this rename has no effect"
    );
    assert_eq!(
        problem("[traits]\nexclude = [\"phone\"]\nrename = { phone = \"tel\" }\n"),
        "mapping.toml:3:12: traits.rename.phone: \"phone\" is excluded, so this rename has no effect"
    );
    assert_eq!(
        problem("[traits]\nexclude = [\"custom\"]\n\n[custom]\ninclude = [\"tier\"]\n"),
        "mapping.toml:4:2: custom: custom is excluded in traits.exclude, so [custom] has no effect"
    );
    assert_eq!(
        problem("[traits]\nrename = { custom = \"attributes\" }\n[custom]\nplacement = \"top-level\"\n"),
        "mapping.toml:2:12: traits.rename.custom: custom fields are placed at the top level, so renaming custom has no effect"
    );
    assert_eq!(
        problem("[custom]\ninclude = [\"tier\"]\nrename = { points = \"score\" }\n"),
        "mapping.toml:3:12: custom.rename.points: custom field \"points\" is renamed but not in custom.include"
    );
    assert_eq!(
        problem("[consent.categories]\nAds = { field = \"level\", true_when = [] }\n"),
        "mapping.toml:2:38: consent.categories.Ads.true_when: true_when is empty, so the category could never be true"
    );
    assert_eq!(
        problem("[consent.categories]\nAds = { true_when = [\"all\"] }\n"),
        "mapping.toml:2:7: consent.categories.Ads: missing key \"field\""
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"[traits]
exclude = ["birthdate", "phone"]
rename = { firstName = "userId", lastName = "" }
constant = { source = "" }

[custom]
placement = "sideways"

[consent.categories]
Ads = { field = "newsletter", true_when = [] }

[extra]
"#;
    let errors = Mapping::from_toml(text, "shop/mapping.toml").unwrap_err();
    let lines: Vec<(usize, usize)> = errors
        .errors()
        .iter()
        .map(|e| (e.line(), e.column()))
        .collect();
    assert_eq!(
        lines,
        [
            (2, 12),
            (3, 24),
            (3, 45),
            (4, 23),
            (7, 13),
            (10, 43),
            (12, 2)
        ]
    );
    let display = errors.to_string();
    assert_eq!(display.lines().count(), 7, "{display}");
    assert!(display
        .lines()
        .all(|line| line.starts_with("shop/mapping.toml:")));
}

#[test]
fn every_trait_key_is_at_its_own_index() {
    for (index, key) in TraitKey::ALL.into_iter().enumerate() {
        assert_eq!(key as usize, index);
        assert_eq!(TraitKey::from_path(key.path()), Some(key));
        assert_eq!(TraitKey::STANDARD_NAMES[index].as_deref(), Some(key.leaf()));
    }
}
