//! The mapping file (`--mapping`, `SEGMENT_SYNC_MAPPING`) through the real binary:
//! what the payloads become, every invalid file refused with exit 2, a changed
//! mapping resending exactly the profiles it changes, `check`, and `serve`.

use std::process::Output;

use serde_json::{json, Value};

use crate::helpers::*;

/// Drops `birthday` and `phone`, renames `firstName`, keeps two custom fields as
/// traits of their own, and sends two consent categories.
const MAPPING: &str = r#"
[traits]
exclude = ["birthday", "phone"]
rename = { firstName = "first_name" }

[custom]
include = ["loyaltyTier", "favouriteStore"]
placement = "top-level"

[consent.categories]
Advertising = "newsletter"
Analytics = { field = "consentLevel", true_when = ["all", "analytics"] }
"#;

/// What `check` says [`MAPPING`] does.
const MAPPING_SUMMARY: &str = "excludes birthday, phone; renames firstName → first_name; \
     custom fields favouriteStore, loyaltyTier at the top level; consent Advertising, Analytics";

/// Numbered customer 1 with a birthday and every custom field the mapping reads,
/// plus one it leaves out.
fn full_customer() -> Value {
    let mut customer = numbered_json(1);
    customer["dateOfBirth"] = json!("1990-12-10");
    let fields = &mut customer["custom"]["fields"];
    fields["favouriteStore"] = json!("berlin");
    fields["internalNote"] = json!("vip");
    fields["consentLevel"] = json!({"key": "all", "label": "All"});
    customer
}

/// Numbered customer 2, who said no to both categories and has no store.
fn declining_customer() -> Value {
    let mut customer = numbered_json(2);
    customer["custom"]["fields"]["newsletter"] = json!(false);
    customer["custom"]["fields"]["consentLevel"] = json!({"key": "none", "label": "None"});
    customer
}

/// Numbered customer 3, without any custom field.
fn plain_customer() -> Value {
    let mut customer = numbered_json(3);
    customer.as_object_mut().unwrap().remove("custom");
    customer
}

/// The traits [`MAPPING`] gives numbered customer `n` (of those above), beside
/// its custom fields.
fn mapped_traits(n: usize, custom: Value) -> Value {
    let mut traits = json!({
        "email": format!("customer{n}@example.com"),
        "first_name": format!("First{n}"),
        "lastName": "Lovelace",
        "name": format!("First{n} Lovelace"),
        "address": {"street": "St James's Square 12", "city": "London",
                    "postalCode": "SW1Y 4JH", "country": "GB"},
        "createdAt": "2024-04-01T09:00:00.000Z",
        "commercetoolsId": numbered_id(n),
        "customerNumber": "CN-1815",
        "isEmailVerified": true,
    });
    for (name, value) in custom.as_object().unwrap() {
        traits[name] = value.clone();
    }
    traits
}

fn payloads(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each stdout line is a payload"))
        .collect()
}

fn library() -> Value {
    json!({"name": "segment-sync", "version": env!("CARGO_PKG_VERSION")})
}

#[tokio::test]
async fn a_dry_run_with_a_mapping_shows_exactly_the_mapped_payloads_by_flag_or_variable() {
    let app = App::new();
    let input = app.write_file(
        "in.ndjson",
        &ndjson(&[full_customer(), declining_customer(), plain_customer()]),
    );
    let input = input.to_str().unwrap();
    app.write_file("mapping.toml", MAPPING);

    let by_flag = app
        .run(&[
            "sync",
            "--input",
            input,
            "--dry-run",
            "--mapping",
            "mapping.toml",
        ])
        .await;
    assert_eq!(by_flag.status.code(), Some(0), "{}", stderr(&by_flag));
    let sent = payloads(&by_flag);
    assert_eq!(sent.len(), 3, "{}", stdout(&by_flag));

    assert_eq!(
        sent[0]["traits"],
        mapped_traits(
            1,
            json!({"loyaltyTier": "gold", "favouriteStore": "berlin"})
        )
    );
    assert_eq!(
        sent[0]["context"],
        json!({"library": library(),
               "consent": {"categoryPreferences": {"Advertising": true, "Analytics": true}}})
    );
    assert_eq!(
        sent[1]["traits"],
        mapped_traits(2, json!({"loyaltyTier": "gold"}))
    );
    assert_eq!(
        sent[1]["context"]["consent"],
        json!({"categoryPreferences": {"Advertising": false, "Analytics": false}})
    );
    assert_eq!(sent[2]["traits"], mapped_traits(3, json!({})));
    assert_eq!(
        sent[2]["context"],
        json!({"library": library()}),
        "no consent field, no consent"
    );
    for payload in &sent {
        assert_eq!(payload["type"], "identify");
        let keys: Vec<&String> = payload["traits"].as_object().unwrap().keys().collect();
        for gone in [
            "birthday",
            "phone",
            "firstName",
            "custom",
            "internalNote",
            "newsletter",
        ] {
            assert!(!keys.iter().any(|k| *k == gone), "{gone} in {keys:?}");
        }
    }
    // Custom fields take the place of `custom`: after the standard traits.
    assert!(
        stdout(&by_flag)
            .contains(r#""isEmailVerified":true,"favouriteStore":"berlin","loyaltyTier":"gold"}}"#),
        "{}",
        stdout(&by_flag)
    );

    let by_variable = App::new().env("SEGMENT_SYNC_MAPPING", "mapping.toml");
    by_variable.write_file("mapping.toml", MAPPING);
    let output = by_variable
        .run(&["sync", "--input", input, "--dry-run"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        stdout(&by_flag),
        "the same payloads, byte for byte"
    );

    let standard = by_variable
        .run(&[
            "sync",
            "--input",
            input,
            "--dry-run",
            "--mapping",
            "standard.toml",
        ])
        .await;
    assert_eq!(standard.status.code(), Some(2));
    assert_eq!(
        stderr(&standard).trim_end(),
        "cannot read the mapping file standard.toml: No such file or directory (os error 2)",
        "the flag beats the variable"
    );
}

/// Runs a real `sync` (not a dry run) with `mapping` as `bad.toml`.
async fn refused(mapping: &str, env: &[(&str, &str)]) -> (Output, FakeSegment, App) {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let mut app = App::new().with_fakes(&segment, None);
    for (name, value) in env {
        app = app.env(name, value);
    }
    app.write_file("bad.toml", mapping);
    let input = app.write_file("in.ndjson", &ndjson(&[full_customer()]));
    let output = app
        .run(&[
            "sync",
            "--input",
            input.to_str().unwrap(),
            "--mapping",
            "bad.toml",
        ])
        .await;
    (output, segment, app)
}

#[tokio::test]
async fn each_invalid_mapping_exits_2_naming_file_line_and_key_and_sends_nothing() {
    let cases: [(&str, &str); 7] = [
        (
            "[traits]\nexclude = [\"birthdate\"]\n",
            r#"bad.toml:2:12: traits.exclude: unknown trait "birthdate"; did you mean "birthday"?"#,
        ),
        (
            "[traits]\nrename = { firstName = \"userId\" }\n",
            r#"bad.toml:2:24: traits.rename.firstName: "userId" is reserved: it is the Segment userId, not a trait"#,
        ),
        (
            "[traits]\nexclude = [\"email\"]\nrename = { lastName = \"email\" }\n",
            r#"bad.toml:3:23: traits.rename.lastName: "email" is reserved: with the email user id strategy it holds the identity"#,
        ),
        (
            "[traits]\nrename = { firstName = \"given\", lastName = \"given\" }\n",
            r#"bad.toml:2:44: traits.rename.lastName: "given" is already used by traits.rename.firstName"#,
        ),
        (
            "[traits]\nrename = { firstName = \" \" }\n",
            "bad.toml:2:24: traits.rename.firstName: name cannot be empty",
        ),
        (
            "[traits]\nexclude = [\"\"]\n",
            "bad.toml:2:12: traits.exclude: name cannot be empty",
        ),
        (
            "[traits\nexclude = [\"phone\"]\n",
            "bad.toml:1:8: TOML syntax error: unclosed table, expected `]`",
        ),
    ];
    for (mapping, expected) in cases {
        let (output, segment, app) = refused(mapping, &[]).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{mapping}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output).trim_end(), expected, "{mapping}");
        assert_eq!(stdout(&output), "");
        assert_eq!(segment.requests(), 0, "nothing sent");
        assert!(!app.state_path().exists(), "no state written");
    }
}

#[tokio::test]
async fn every_problem_of_a_mapping_file_is_reported_at_once_in_file_order() {
    let mapping = "\
[traits]
exclude = [\"birthdate\", \"phone\"]
rename = { firstName = \"userId\", lastName = \"given\", customerNumber = \"given\" }
constant = { \"\" = 1 }

[custom]
placement = \"sideways\"
";
    let (output, segment, _app) = refused(mapping, &[("SEGMENT_GZIP", "maybe")]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        [
            r#"bad.toml:2:12: traits.exclude: unknown trait "birthdate"; did you mean "birthday"?"#,
            r#"bad.toml:3:24: traits.rename.firstName: "userId" is reserved: it is the Segment userId, not a trait"#,
            r#"bad.toml:3:71: traits.rename.customerNumber: "given" is already used by traits.rename.lastName"#,
            "bad.toml:4:14: traits.constant.\"\": name cannot be empty",
            r#"bad.toml:7:13: custom.placement: unknown placement "sideways"; expected "nested" or "top-level""#,
            "SEGMENT_GZIP: `maybe` is not a boolean (true/false, 1/0, yes/no, on/off)",
        ]
        .join("\n")
    );
    assert_eq!(segment.requests(), 0);
}

#[tokio::test]
async fn email_is_free_to_take_when_the_customer_id_is_the_identity() {
    let app = App::new().env("SEGMENT_SYNC_USER_ID", "customer-id");
    app.write_file(
        "mapping.toml",
        "[traits]\nexclude = [\"email\"]\nrename = { lastName = \"email\" }\n",
    );
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let output = app
        .run(&[
            "sync",
            "--input",
            input.to_str().unwrap(),
            "--dry-run",
            "--mapping",
            "mapping.toml",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let sent = payloads(&output);
    assert_eq!(sent[0]["userId"], numbered_id(1));
    assert_eq!(sent[0]["traits"]["email"], "Lovelace");
}

#[tokio::test]
async fn a_mapping_file_that_cannot_be_read_is_named_with_exit_2() {
    let app = App::new().env("SEGMENT_SYNC_MAPPING", "no-such-mapping.toml");
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let output = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--dry-run"])
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).trim_end(),
        "cannot read the mapping file no-such-mapping.toml: No such file or directory (os error 2)"
    );
    assert_eq!(stdout(&output), "");
}

/// Ten API customers; the even ones have a birthday.
fn with_some_birthdays() -> Vec<Value> {
    (0..10)
        .map(|n| {
            let mut customer = numbered_json(n);
            if n % 2 == 0 {
                customer["dateOfBirth"] = json!("1990-12-10");
            }
            customer
        })
        .collect()
}

const NO_BIRTHDAYS: &str = "[traits]\nexclude = [\"birthday\"]\n";

const RULES_CHANGED: &str = "the identify rules changed since the last run";

fn ids_of(messages: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m["traits"]["commercetoolsId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_changed_mapping_resends_exactly_the_profiles_it_changes_once() {
    // Modified long before the first run: an incremental run reads none of them.
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(with_some_birthdays()).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    app.write_file("mapping.toml", NO_BIRTHDAYS);

    let first = app.run(&["sync", "--json"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(summary(&first)["sent"], 10);
    assert!(summary(&first).get("rules_changed").is_none());
    assert!(
        !stderr(&first).contains(RULES_CHANGED),
        "{}",
        stderr(&first)
    );

    let second = app
        .run(&["sync", "--json", "--mapping", "mapping.toml"])
        .await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let counts = summary(&second);
    assert_eq!(counts["read"], 10, "every customer compared");
    assert_eq!(counts["sent"], 5);
    assert_eq!(counts["unchanged"], 5);
    assert_eq!(counts["rules_changed"], true);
    assert!(
        stderr(&second).lines().any(|line| line
            == "the identify rules changed since the last run: every customer was compared; 5 changed profiles sent"),
        "{}",
        stderr(&second)
    );
    let resent = segment.messages()[10..].to_vec();
    assert_eq!(
        ids_of(&resent),
        [0, 2, 4, 6, 8].map(numbered_id),
        "exactly those that had a birthday"
    );
    assert!(resent.iter().all(|m| m["traits"].get("birthday").is_none()));

    let third = app
        .run(&["sync", "--json", "--mapping", "mapping.toml"])
        .await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert_eq!(summary(&third)["sent"], 0);
    assert_eq!(summary(&third)["read"], 0, "incremental again");
    assert!(summary(&third).get("rules_changed").is_none());
    assert!(
        !stderr(&third).contains(RULES_CHANGED),
        "{}",
        stderr(&third)
    );
    assert_eq!(segment.message_count(), 15);
}

#[tokio::test]
async fn a_mapping_change_met_by_a_since_run_is_still_compared_by_the_next_sync() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(with_some_birthdays()).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    app.write_file("mapping.toml", NO_BIRTHDAYS);
    let first = app.run(&["sync"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

    // Reads only the customers changed since an instant none of them was.
    let since = app
        .run(&[
            "sync",
            "--json",
            "--mapping",
            "mapping.toml",
            "--since",
            "2030-01-01T00:00:00Z",
        ])
        .await;
    assert_eq!(since.status.code(), Some(0), "{}", stderr(&since));
    assert_eq!(summary(&since)["read"], 0);
    assert!(
        stderr(&since).lines().any(|line| line
            == "the identify rules changed since the last run: 0 changed profiles sent, \
                but not every customer was compared; the next sync without --since compares every customer"),
        "{}",
        stderr(&since)
    );

    let next = app
        .run(&["sync", "--json", "--mapping", "mapping.toml"])
        .await;
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert_eq!(summary(&next)["read"], 10, "{}", stderr(&next));
    assert_eq!(summary(&next)["sent"], 5);
    assert!(stderr(&next).contains("every customer was compared; 5 changed profiles sent"));
}

#[tokio::test]
async fn a_state_from_before_the_rules_were_recorded_compares_every_customer_once() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(with_some_birthdays()).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    app.write_file("mapping.toml", NO_BIRTHDAYS);
    {
        // A mark and no rules: what an earlier version's state holds.
        use segment_sync_ports::SyncStateStore as _;
        let store =
            segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        store.set_high_water_mark(now).await.unwrap();
    }

    let output = app
        .run(&["sync", "--json", "--mapping", "mapping.toml"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(summary(&output)["read"], 10, "{}", stderr(&output));
    assert_eq!(summary(&output)["sent"], 10);
    assert!(segment
        .messages()
        .iter()
        .all(|m| m["traits"].get("birthday").is_none()));
}

fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` line in:\n{text}"))
}

#[tokio::test]
async fn check_shows_the_mapping_with_its_summary_or_its_errors() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![numbered_json(1)]).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    app.write_file("mapping.toml", MAPPING);
    app.write_file(
        "bad.toml",
        "[traits]\nexclude = [\"birthdate\"]\nrename = { firstName = \"userId\" }\n",
    );

    let good = app.run(&["check", "--mapping", "mapping.toml"]).await;
    let text = stdout(&good);
    assert_eq!(good.status.code(), Some(0), "{text}{}", stderr(&good));
    assert_eq!(
        line_starting(&text, "✓ trait mapping"),
        format!("✓ trait mapping valid ({MAPPING_SUMMARY})")
    );

    let none = app.run(&["check"]).await;
    assert_eq!(
        line_starting(&stdout(&none), "✓ trait mapping"),
        "✓ trait mapping valid (no mapping: the standard traits)"
    );

    let bad = app.run(&["check", "--mapping", "bad.toml"]).await;
    let text = stdout(&bad);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "✗ trait mapping valid\n    fix: \
             bad.toml:2:12: traits.exclude: unknown trait \"birthdate\"; did you mean \"birthday\"?; \
             bad.toml:3:24: traits.rename.firstName: \"userId\" is reserved: it is the Segment userId, not a trait\n"
        ),
        "{text}"
    );
    assert_eq!(
        text.matches('✗').count(),
        1,
        "only the mapping fails: {text}"
    );

    let json = app.run(&["check", "--json", "--mapping", "bad.toml"]).await;
    let lines: Value = serde_json::from_str(&stdout(&json)).unwrap();
    let mapping = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["check"] == "trait mapping valid")
        .unwrap();
    assert_eq!(mapping["ok"], false);
    assert!(mapping["fix"]
        .as_str()
        .unwrap()
        .starts_with("bad.toml:2:12: "));
}

#[tokio::test]
async fn check_names_the_mapping_setting_at_fault_not_the_strategy() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![numbered_json(1)]).await;
    let blank = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_SYNC_MAPPING", "  ");
    let text = stdout(&blank.run(&["check"]).await);
    assert!(
        text.contains(
            "✗ trait mapping valid\n    fix: SEGMENT_SYNC_MAPPING cannot be empty or whitespace only\n"
        ),
        "{text}"
    );

    // A broken strategy has its own line; the file's own problems are still shown.
    let both = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_SYNC_USER_ID", "phone");
    both.write_file("bad.toml", "[traits]\nexclude = [\"birthdate\"]\n");
    let text = stdout(&both.run(&["check", "--mapping", "bad.toml"]).await);
    assert!(
        text.contains(
            "✗ trait mapping valid\n    fix: bad.toml:2:12: traits.exclude: unknown trait \"birthdate\"; did you mean \"birthday\"?\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("✗ settings RUST_LOG, LOG_FORMAT, SEGMENT_SYNC_USER_ID valid"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_applies_the_mapping_to_a_created_customer() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token");
    app.write_file("mapping.toml", MAPPING);
    let served = app.serve(&["--mapping", "mapping.toml"]).await;

    let answer = reqwest::Client::new()
        .post(served.webhook())
        .bearer_auth("hook-token")
        .json(&customer_created(&full_customer()))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    assert_eq!((status, body), (200, json!({"status": "delivered"})));

    served.terminate();
    served.exits_cleanly().await;

    let sent = segment.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["traits"],
        mapped_traits(
            1,
            json!({"loyaltyTier": "gold", "favouriteStore": "berlin"})
        )
    );
    assert_eq!(
        sent[0]["context"]["consent"],
        json!({"categoryPreferences": {"Advertising": true, "Analytics": true}})
    );
}
