//! Tidy checks over the workspace's own files: dependencies point inward only.

use std::collections::BTreeMap;
use std::fs;

use crate::workspace_root;

/// Each internal crate, innermost first, with the crates of the workspace it may use.
const RINGS: &[(&str, &[&str])] = &[
    ("segment-sync-domain", &[]),
    ("segment-sync-ports", &["segment-sync-domain"]),
    (
        "segment-sync-adapters",
        &["segment-sync-domain", "segment-sync-ports"],
    ),
    (
        "segment-sync",
        &[
            "segment-sync-domain",
            "segment-sync-ports",
            "segment-sync-adapters",
        ],
    ),
];

/// Crates that do I/O, run an executor or talk to a network or database.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "rusqlite",
    "axum",
    "tower",
    "async-std",
    "mio",
    "wiremock",
    "tracing-subscriber",
    "sqlx",
    "ureq",
];

fn manifest(dir: &str) -> String {
    let path = workspace_root().join(dir).join("Cargo.toml");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The dependency names in the `[dependencies]`, `[dev-dependencies]` and
/// `[build-dependencies]` tables of a manifest, by table.
fn dependencies(manifest: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            current = table.ends_with("dependencies").then_some(table);
            continue;
        }
        let Some(table) = &current else { continue };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name
                .trim()
                .split('.')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            tables.entry(table.clone()).or_default().push(name);
        }
    }
    tables
}

fn crate_dir(package: &str) -> &'static str {
    match package {
        "segment-sync-domain" => "crates/domain",
        "segment-sync-ports" => "crates/ports",
        "segment-sync-adapters" => "crates/adapters",
        "segment-sync" => "crates/app",
        other => panic!("unknown crate {other}"),
    }
}

#[test]
fn dependencies_point_inward_only() {
    let internal: Vec<&str> = RINGS.iter().map(|(name, _)| *name).collect();
    for (package, allowed) in RINGS {
        let tables = dependencies(&manifest(crate_dir(package)));
        for (table, names) in &tables {
            for name in names {
                if internal.contains(&name.as_str()) {
                    assert!(
                        allowed.contains(&name.as_str()),
                        "{package} depends outward on {name} in [{table}]"
                    );
                }
            }
        }
    }
}

#[test]
fn domain_does_no_io() {
    let tables = dependencies(&manifest("crates/domain"));
    let normal = tables.get("dependencies").cloned().unwrap_or_default();
    for name in normal {
        assert!(
            !IO_CRATES.contains(&name.as_str()),
            "segment-sync-domain must stay pure but depends on {name}"
        );
    }
}

#[test]
fn ports_speak_domain_types_only() {
    let tables = dependencies(&manifest("crates/ports"));
    let normal = tables.get("dependencies").cloned().unwrap_or_default();
    for name in normal {
        assert!(
            !IO_CRATES.contains(&name.as_str()),
            "segment-sync-ports must not depend on the I/O crate {name}"
        );
    }
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    for dir in [
        "crates/domain",
        "crates/ports",
        "crates/adapters",
        "crates/app",
        "xtask",
    ] {
        let text = manifest(dir);
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{dir}/Cargo.toml does not say `[lints] workspace = true`"
        );
    }
}

#[test]
fn the_manifest_parser_sees_an_outward_dependency() {
    let tables = dependencies(
        "[package]\nname = \"x\"\n[dependencies]\nsegment-sync-adapters.workspace = true\ntokio = \"1\"\n[dev-dependencies]\nwiremock = \"0.6\"\n",
    );
    assert_eq!(
        tables["dependencies"],
        vec!["segment-sync-adapters".to_owned(), "tokio".to_owned()]
    );
    assert_eq!(tables["dev-dependencies"], vec!["wiremock".to_owned()]);
}
