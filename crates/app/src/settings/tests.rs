use super::*;

fn parse(pairs: &[(&str, &str)]) -> Settings {
    Settings::parse(&Env::from_pairs(pairs.iter().copied()), &Flags::default())
}

fn messages(errors: &ConfigErrors) -> Vec<String> {
    errors.0.iter().map(ToString::to_string).collect()
}

const CTP: [(&str, &str); 4] = [
    ("CTP_PROJECT_KEY", "shop"),
    ("CTP_CLIENT_ID", "id"),
    ("CTP_CLIENT_SECRET", "secret"),
    ("CTP_REGION", "europe-west1.gcp"),
];

#[test]
fn write_key_errors_are_the_contract_lines() {
    let none = parse(&[]);
    assert_eq!(
        messages(&none.segment.unwrap_err()),
        ["Missing SEGMENT_WRITE_KEY"]
    );
    let empty = parse(&[("SEGMENT_WRITE_KEY", "")]);
    assert_eq!(
        messages(&empty.segment.unwrap_err()),
        ["Missing SEGMENT_WRITE_KEY"]
    );
    let blank = parse(&[("SEGMENT_WRITE_KEY", "  ")]);
    assert_eq!(
        messages(&blank.segment.unwrap_err()),
        ["Write key cannot be empty or whitespace only"]
    );
}

#[test]
fn every_missing_commercetools_variable_is_named_at_once() {
    let settings = parse(&[("CTP_CLIENT_ID", "id")]);
    assert_eq!(
        messages(&settings.commercetools.unwrap_err()),
        ["Missing CTP_PROJECT_KEY, CTP_CLIENT_SECRET, CTP_REGION (or CTP_AUTH_URL and CTP_API_URL)"]
    );
}

#[test]
fn region_derives_urls_and_explicit_urls_win() {
    let mut pairs = CTP.to_vec();
    pairs.push(("CTP_API_URL", "http://127.0.0.1:9/"));
    pairs.push(("CTP_SCOPES", "view_customers:shop, manage_project:shop"));
    let config = parse(&pairs).commercetools.unwrap();
    assert_eq!(
        config.auth_url,
        "https://auth.europe-west1.gcp.commercetools.com"
    );
    assert_eq!(config.api_url, "http://127.0.0.1:9");
    assert_eq!(
        config.scopes,
        ["view_customers:shop", "manage_project:shop"]
    );
    assert!(!format!("{config:?}").contains("secret\""));
}

#[test]
fn whitespace_is_an_error_for_every_variable_and_empty_is_unset() {
    let settings = parse(&[
        ("WEBHOOK_TOKEN", "  "),
        ("CTP_REGION", " "),
        ("SEGMENT_SYNC_STATE", "\t"),
        ("SEGMENT_SYNC_USER_ID", ""),
    ]);
    assert_eq!(
        messages(&settings.webhook.unwrap_err()),
        ["WEBHOOK_TOKEN cannot be empty or whitespace only"]
    );
    assert!(messages(&settings.commercetools.unwrap_err())
        .contains(&"CTP_REGION cannot be empty or whitespace only".to_owned()));
    assert_eq!(
        messages(&settings.state.unwrap_err()),
        ["SEGMENT_SYNC_STATE cannot be empty or whitespace only"]
    );
    assert_eq!(settings.user_id.unwrap(), UserIdStrategy::Email);
}

#[test]
fn a_blank_token_is_refused_even_when_running_open() {
    let flags = Flags {
        allow_unauthenticated: true,
        ..Flags::default()
    };
    let open = Settings::parse(&Env::from_pairs([]), &flags);
    assert!(open.webhook.unwrap().token.is_none());
    let blank = Settings::parse(&Env::from_pairs([("WEBHOOK_TOKEN", " ")]), &flags);
    assert!(blank.webhook.is_err());
}

#[test]
fn serve_refuses_to_run_open_unless_told() {
    assert_eq!(
        messages(&parse(&[]).webhook.unwrap_err()),
        ["WEBHOOK_TOKEN is not set: set it, or pass --allow-unauthenticated to accept unauthenticated requests"]
    );
}

#[test]
fn booleans_take_the_usual_words_in_any_case_and_nothing_else() {
    for (value, expected) in [
        ("TRUE", true),
        ("Yes", true),
        ("on", true),
        ("1", true),
        ("false", false),
        ("NO", false),
        ("Off", false),
        ("0", false),
    ] {
        let settings = parse(&[("SEGMENT_WRITE_KEY", "k"), ("SEGMENT_GZIP", value)]);
        assert_eq!(settings.segment.unwrap().gzip, expected, "{value}");
    }
    let settings = parse(&[("SEGMENT_WRITE_KEY", "k"), ("SEGMENT_GZIP", "maybe")]);
    assert_eq!(
        messages(&settings.segment.unwrap_err()),
        ["SEGMENT_GZIP: `maybe` is not a boolean (true/false, 1/0, yes/no, on/off)"]
    );
}

#[test]
fn every_error_of_a_section_is_reported_at_once() {
    let settings = parse(&[
        ("SEGMENT_ENDPOINT", "ftp://x"),
        ("SEGMENT_MAX_ATTEMPTS", "0"),
        ("SEGMENT_MAX_IN_FLIGHT", "many"),
    ]);
    assert_eq!(
        messages(&settings.segment.unwrap_err()),
        [
            "Missing SEGMENT_WRITE_KEY",
            "SEGMENT_ENDPOINT: ftp://x: the scheme must be https, not ftp",
            "SEGMENT_MAX_ATTEMPTS: `0` is not a positive whole number",
            "SEGMENT_MAX_IN_FLIGHT: `many` is not a positive whole number",
        ]
    );
    let settings = parse(&[("SEGMENT_WRITE_KEY", "k"), ("SEGMENT_ENDPOINT", "ftp://x")]);
    let errors = messages(&settings.segment.unwrap_err());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("SEGMENT_ENDPOINT: ftp://x"),
        "{errors:?}"
    );
}

#[test]
fn require_gathers_the_errors_of_every_section_asked_for() {
    let settings = parse(&[("SEGMENT_SYNC_USER_ID", "phone"), ("LOG_FORMAT", "xml")]);
    let errors =
        Settings::require((&settings.user_id, &settings.segment, &settings.log)).unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "SEGMENT_SYNC_USER_ID: unknown user id strategy \"phone\": expected \"email\" or \"customer-id\"",
            "Missing SEGMENT_WRITE_KEY",
            "LOG_FORMAT: `xml` is neither json nor pretty",
        ]
    );
    let (state,) = Settings::require((&settings.state,)).unwrap();
    assert_eq!(state, &StateLocation::Sqlite(DEFAULT_STATE_PATH.into()));
}

#[test]
fn the_state_flag_beats_the_variable() {
    let env = Env::from_pairs([("SEGMENT_SYNC_STATE", "from-env.db")]);
    let flags = Flags {
        state: Some("from-flag.db".to_owned()),
        ..Flags::default()
    };
    assert_eq!(
        Settings::parse(&env, &flags).state.unwrap(),
        StateLocation::Sqlite("from-flag.db".into())
    );
    assert_eq!(
        Settings::parse(&env, &Flags::default()).state.unwrap(),
        StateLocation::Sqlite("from-env.db".into())
    );
}

#[test]
fn listen_comes_from_the_flag_then_port_then_the_default() {
    let mut pairs = vec![("WEBHOOK_TOKEN", "t")];
    assert_eq!(
        parse(&pairs).webhook.unwrap().listen,
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    pairs.push(("PORT", "9000"));
    assert_eq!(
        parse(&pairs).webhook.unwrap().listen,
        SocketAddr::from(([0, 0, 0, 0], 9000))
    );
    pairs.push(("PORT", "ninety"));
    let env = Env::from_pairs([("WEBHOOK_TOKEN", "t"), ("PORT", "ninety")]);
    assert_eq!(
        messages(
            &Settings::parse(&env, &Flags::default())
                .webhook
                .unwrap_err()
        ),
        ["PORT: `ninety` is not a port number"]
    );
    let flags = Flags {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Flags::default()
    };
    assert_eq!(
        Settings::parse(&env, &flags).webhook.unwrap().listen.port(),
        0
    );
}

#[test]
fn an_input_directory_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let flags = Flags {
        input: Some(dir.path().to_path_buf()),
        ..Flags::default()
    };
    let settings = Settings::parse(&Env::default(), &flags);
    let errors = messages(&settings.source.unwrap_err());
    assert!(errors[0].contains("is a directory"), "{errors:?}");
    let missing = Flags {
        input: Some(dir.path().join("nope.ndjson")),
        ..Flags::default()
    };
    let errors = messages(
        &Settings::parse(&Env::default(), &missing)
            .source
            .unwrap_err(),
    );
    assert!(errors[0].contains("no such file"), "{errors:?}");
}

#[test]
fn an_export_source_needs_no_commercetools_variables() {
    let flags = Flags {
        input: Some("-".into()),
        ..Flags::default()
    };
    let settings = Settings::parse(&Env::default(), &flags);
    assert!(matches!(settings.source, Ok(SourceSettings::Stdin)));
    assert!(settings.commercetools.is_err());
}

#[test]
fn dot_env_fills_what_the_environment_leaves_unset_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".env");
    std::fs::write(
        &file,
        "ONLY_IN_FILE=file\nEMPTY_IN_PROCESS=file\nSET_IN_BOTH=file\n",
    )
    .unwrap();
    let process = [
        ("EMPTY_IN_PROCESS".to_owned(), String::new()),
        ("SET_IN_BOTH".to_owned(), "process".to_owned()),
    ];
    let env = Env::from_process_and_file(process, &file).unwrap();
    assert_eq!(env.get("ONLY_IN_FILE").unwrap(), Some("file"));
    assert_eq!(env.get("EMPTY_IN_PROCESS").unwrap(), Some("file"));
    assert_eq!(env.get("SET_IN_BOTH").unwrap(), Some("process"));
}

#[test]
fn debug_shows_names_not_values() {
    let env = Env::from_pairs([("SEGMENT_WRITE_KEY", "sekrit")]);
    assert!(!format!("{env:?}").contains("sekrit"));
    let settings = Settings::parse(&env, &Flags::default());
    assert!(!format!("{settings:?}").contains("sekrit"));
}

#[test]
fn log_format_and_filter_are_checked() {
    let settings = parse(&[("LOG_FORMAT", "JSON"), ("RUST_LOG", "debug")]);
    assert_eq!(
        settings.log.unwrap(),
        LogSettings {
            filter: Some("debug".to_owned()),
            format: Some(LogFormat::Json)
        }
    );
    let bad = parse(&[("RUST_LOG", "[[[")]);
    assert!(messages(&bad.log.unwrap_err())[0].starts_with("RUST_LOG: `[[[` is not a log filter"));
}

#[test]
fn service_urls_are_https_unless_the_host_is_loopback_and_never_show_credentials() {
    let mut pairs = CTP.to_vec();
    pairs.push(("SEGMENT_WRITE_KEY", "k"));
    pairs.push(("SEGMENT_ENDPOINT", "http://collector.example.com"));
    pairs.push(("CTP_AUTH_URL", "http://user:hunter2@auth.example.com"));
    pairs.push(("CTP_API_URL", "ftp://api.example.com"));
    let settings = parse(&pairs);
    let segment = messages(&settings.segment.unwrap_err());
    assert_eq!(
        segment,
        ["SEGMENT_ENDPOINT: http://collector.example.com is plain http; use https (http is allowed only to a loopback host)"]
    );
    let ctp = messages(&settings.commercetools.unwrap_err()).join("\n");
    assert!(
        ctp.contains("CTP_AUTH_URL: http://***@auth.example.com/ is plain http"),
        "{ctp}"
    );
    assert!(
        ctp.contains("CTP_API_URL: ftp://api.example.com: the scheme must be https, not ftp"),
        "{ctp}"
    );
    assert!(!ctp.contains("hunter2"));

    for local in [
        "http://127.0.0.1:9000",
        "http://localhost:9000/",
        "http://[::1]:9000",
        "https://api.segment.io",
    ] {
        let settings = parse(&[("SEGMENT_WRITE_KEY", "k"), ("SEGMENT_ENDPOINT", local)]);
        assert!(settings.segment.is_ok(), "{local}");
    }
}

/// A mapping file in a fresh directory, and flags naming it.
fn mapping_file(text: &str) -> (tempfile::TempDir, Flags) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mapping.toml");
    std::fs::write(&path, text).unwrap();
    let flags = Flags {
        mapping: Some(path),
        ..Flags::default()
    };
    (dir, flags)
}

#[test]
fn the_mapping_flag_beats_the_variable() {
    let (_dir, flags) = mapping_file("[traits]\nexclude = [\"phone\"]\n");
    let env = Env::from_pairs([("SEGMENT_SYNC_MAPPING", "no/such/mapping.toml")]);
    let rules = Settings::parse(&env, &flags).rules.unwrap();
    assert_eq!(rules.mapping().summary(), "excludes phone");
    assert_eq!(
        messages(&Settings::parse(&env, &Flags::default()).rules.unwrap_err()),
        ["cannot read the mapping file no/such/mapping.toml: No such file or directory (os error 2)"]
    );
}

#[test]
fn mapping_problems_are_reported_with_the_strategy_errors_at_once() {
    let (dir, flags) = mapping_file("[traits]\nexclude = [\"birthdate\"]\n");
    let env = Env::from_pairs([("SEGMENT_SYNC_USER_ID", "phone")]);
    let shown = dir.path().join("mapping.toml").display().to_string();
    assert_eq!(
        messages(&Settings::parse(&env, &flags).rules.unwrap_err()),
        [
            "SEGMENT_SYNC_USER_ID: unknown user id strategy \"phone\": expected \"email\" or \"customer-id\"".to_owned(),
            format!("{shown}:2:12: traits.exclude: unknown trait \"birthdate\"; did you mean \"birthday\"?"),
        ]
    );
    let blank = Env::from_pairs([
        ("SEGMENT_SYNC_USER_ID", "phone"),
        ("SEGMENT_SYNC_MAPPING", " "),
    ]);
    assert_eq!(
        messages(&Settings::parse(&blank, &Flags::default()).rules.unwrap_err()),
        [
            "SEGMENT_SYNC_USER_ID: unknown user id strategy \"phone\": expected \"email\" or \"customer-id\"",
            "SEGMENT_SYNC_MAPPING cannot be empty or whitespace only",
        ]
    );
    let blank_flag = Flags {
        mapping: Some(" ".into()),
        ..Flags::default()
    };
    assert_eq!(
        messages(
            &Settings::parse(&Env::default(), &blank_flag)
                .rules
                .unwrap_err()
        ),
        ["--mapping cannot be empty or whitespace only"]
    );
}

#[test]
fn email_is_reserved_only_under_the_email_strategy() {
    let (_dir, flags) =
        mapping_file("[traits]\nexclude = [\"email\"]\nrename = { lastName = \"email\" }\n");
    let by_email = Settings::parse(&Env::default(), &flags).rules.unwrap_err();
    assert_eq!(messages(&by_email).len(), 1);
    assert!(
        messages(&by_email)[0].ends_with(
            "traits.rename.lastName: \"email\" is reserved: with the email user id strategy it holds the identity"
        ),
        "{by_email}"
    );
    let by_id = Env::from_pairs([("SEGMENT_SYNC_USER_ID", "customer-id")]);
    let rules = Settings::parse(&by_id, &flags).rules.unwrap();
    assert_eq!(rules.strategy(), UserIdStrategy::CustomerId);
}

#[test]
fn oidc_settings_default_to_google_and_stand_in_for_the_token() {
    let webhook = parse(&[("WEBHOOK_OIDC_AUDIENCE", " https://hooks.example.com ")])
        .webhook
        .expect("an audience alone authenticates");
    assert!(webhook.token.is_none());
    assert_eq!(
        webhook.oidc,
        Some(OidcConfig {
            audience: "https://hooks.example.com".to_owned(),
            jwks_url: GOOGLE_JWKS_URL.to_owned(),
            email: None,
        })
    );
    assert_eq!(webhook.sns_cert_hosts, SnsCertHosts::default());

    let local = parse(&[
        ("WEBHOOK_OIDC_AUDIENCE", "aud"),
        ("WEBHOOK_OIDC_JWKS_URL", "http://127.0.0.1:9/certs"),
        ("WEBHOOK_OIDC_EMAIL", "push@p.iam.gserviceaccount.com"),
        ("WEBHOOK_SNS_CERT_HOSTS", "127.0.0.1:9"),
    ])
    .webhook
    .unwrap();
    let oidc = local.oidc.unwrap();
    assert_eq!(oidc.jwks_url, "http://127.0.0.1:9/certs");
    assert_eq!(
        oidc.email.as_deref(),
        Some("push@p.iam.gserviceaccount.com")
    );
    assert_eq!(
        local.sns_cert_hosts,
        SnsCertHosts::parse("127.0.0.1:9").unwrap()
    );
}

#[test]
fn every_oidc_and_sns_setting_error_is_reported_at_once() {
    let errors = parse(&[
        ("WEBHOOK_TOKEN", "t"),
        ("WEBHOOK_OIDC_JWKS_URL", "https://keys.example.com/certs"),
        ("WEBHOOK_OIDC_EMAIL", "push@p.iam.gserviceaccount.com"),
        ("WEBHOOK_SNS_CERT_HOSTS", "*.amazonaws.com,"),
    ])
    .webhook
    .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "WEBHOOK_OIDC_JWKS_URL: is used only with WEBHOOK_OIDC_AUDIENCE, which is not set",
            "WEBHOOK_OIDC_EMAIL: is used only with WEBHOOK_OIDC_AUDIENCE, which is not set",
            "WEBHOOK_SNS_CERT_HOSTS: `` is not a host pattern (host names whose labels may be `*`, each with an optional :port, separated by commas)",
        ]
    );
    let errors = parse(&[
        ("WEBHOOK_OIDC_AUDIENCE", "aud"),
        ("WEBHOOK_OIDC_JWKS_URL", "ftp://keys.example.com/certs"),
        ("WEBHOOK_OIDC_EMAIL", "push"),
    ])
    .webhook
    .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "WEBHOOK_OIDC_JWKS_URL: ftp://keys.example.com/certs: the scheme must be https, not ftp",
            "WEBHOOK_OIDC_EMAIL: `push` is not a service account's email address",
        ]
    );
}

#[test]
fn concurrency_is_a_whole_number_up_to_the_most_ranges_and_the_flag_beats_it() {
    let with = |value: &'static str| {
        let mut pairs = CTP.to_vec();
        pairs.push(("CTP_CONCURRENCY", value));
        pairs
    };
    assert_eq!(parse(&CTP).commercetools.unwrap().concurrency, 16);
    assert_eq!(parse(&with("1")).commercetools.unwrap().concurrency, 1);
    assert_eq!(parse(&with(" 64 ")).commercetools.unwrap().concurrency, 64);
    for (value, reason) in [
        ("0", "`0` is not a positive whole number"),
        ("many", "`many` is not a positive whole number"),
        (
            "65",
            "`65` is more than 64, the most id ranges read at once",
        ),
    ] {
        assert_eq!(
            messages(&parse(&with(value)).commercetools.unwrap_err()),
            [format!("CTP_CONCURRENCY: {reason}")]
        );
    }

    let flags = Flags {
        concurrency: Some(4),
        ..Flags::default()
    };
    let env = Env::from_pairs(with("many"));
    assert_eq!(
        Settings::parse(&env, &flags)
            .commercetools
            .unwrap()
            .concurrency,
        4
    );
}
