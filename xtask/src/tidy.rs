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

/// Every `.rs` file below `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source of the product's crates (not tests, benches or xtask).
fn product_sources() -> Vec<(std::path::PathBuf, String)> {
    let mut files = Vec::new();
    for krate in ["domain", "ports", "adapters", "app"] {
        rust_files(
            &workspace_root().join("crates").join(krate).join("src"),
            &mut files,
        );
    }
    files
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "tests"))
        .filter(|p| !p.ends_with("tests.rs"))
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// A message with each `{…}` placeholder written as `…`, as the guide writes it.
fn normalise(message: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push('…');
                }
                depth += 1;
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The literal messages of `#[error("…")]` attributes, placeholders normalised;
/// those that are only placeholders (wrappers of another error) are left out.
fn error_messages_in_code() -> std::collections::BTreeSet<String> {
    let mut messages = std::collections::BTreeSet::new();
    for (_, text) in product_sources() {
        // Attributes may be split over lines; join the text first.
        let flat: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("#[error( \"", "#[error(\"");
        let mut rest = flat.as_str();
        while let Some(start) = rest.find("#[error(\"") {
            rest = &rest[start + "#[error(\"".len()..];
            let mut end = 0;
            let bytes = rest.as_bytes();
            while end < bytes.len()
                && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
            {
                end += 1;
            }
            let message = normalise(&rest[..end].replace("\\\"", "\""));
            if message.chars().any(char::is_alphabetic) {
                messages.insert(message);
            }
            rest = &rest[end..];
        }
    }
    messages
}

/// The messages the troubleshooting guide documents: the first cell of each
/// table row, in backticks.
fn documented_messages() -> Vec<String> {
    let guide = fs::read_to_string(workspace_root().join("docs/troubleshooting.md"))
        .expect("docs/troubleshooting.md exists");
    guide
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|cell| {
            cell.split_once("` |")
                .map(|(message, _)| message.to_owned())
        })
        .collect()
}

#[test]
fn every_error_message_in_the_code_is_in_the_troubleshooting_guide() {
    let documented = documented_messages();
    let missing: Vec<String> = error_messages_in_code()
        .into_iter()
        .filter(|m| !documented.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "add these messages to docs/troubleshooting.md (as | `message` | cause | fix |):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_documented_message_still_exists_in_the_code() {
    let sources: String = product_sources()
        .into_iter()
        .map(|(_, text)| text.replace("\\\"", "\""))
        .collect::<Vec<_>>()
        .join("\n");
    let stale: Vec<String> = documented_messages()
        .into_iter()
        .filter(|message| {
            !message
                .split('…')
                .filter(|fragment| !fragment.trim().is_empty())
                .all(|fragment| sources.contains(fragment))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "docs/troubleshooting.md documents messages the code no longer has:\n{}",
        stale.join("\n")
    );
}

#[test]
fn placeholders_are_normalised_the_way_the_guide_writes_them() {
    assert_eq!(normalise("Missing {}"), "Missing …");
    assert_eq!(
        normalise("cannot open state database {path}: {reason}"),
        "cannot open state database …: …"
    );
    assert_eq!(normalise("within {0:?}"), "within …");
}
