//! Tidy checks over the workspace's own files: dependencies point inward only,
//! the inner rings depend only on what their allow-lists name, and the
//! troubleshooting guide and the code's messages agree.
//!
//! Crates and their dependencies come from `cargo metadata`, so a new crate is
//! checked the day it is added (and must be placed in [`RINGS`] first).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::workspace_root;

/// Each workspace crate, innermost first, with the workspace crates it may use as a
/// normal dependency. Any crate may also use the testkit in its tests.
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
    (
        "segment-sync-testkit",
        &["segment-sync-domain", "segment-sync-ports"],
    ),
    ("xtask", &["segment-sync-domain", "segment-sync-testkit"]),
];

/// The test-support crate: allowed in any crate's dev-dependencies, never in a
/// product crate's normal ones.
const TESTKIT: &str = "segment-sync-testkit";

/// Everything the pure core may depend on: parsing, hashing and error types, no
/// executor, network, database or clock.
const DOMAIN_ALLOWED: &[&str] = &[
    "base64",
    "httpdate",
    "secrecy",
    "serde",
    "serde_json",
    "serde_path_to_error",
    "thiserror",
    "toml",
    "xxhash-rust",
];

/// Everything the ports may depend on: the domain, trait plumbing and the types
/// their signatures use.
const PORTS_ALLOWED: &[&str] = &[
    "segment-sync-domain",
    "async-trait",
    "mockall",
    "thiserror",
    "time",
];

/// A dependency as `cargo metadata` lists it.
#[derive(Debug, Clone)]
struct Dependency {
    name: String,
    /// `None` for a normal dependency, else `dev` or `build`.
    kind: Option<String>,
}

/// A workspace crate as `cargo metadata` lists it.
#[derive(Debug, Clone)]
struct Package {
    name: String,
    manifest: PathBuf,
    publishable: bool,
    dependencies: Vec<Dependency>,
}

impl Package {
    fn normal_dependencies(&self) -> impl Iterator<Item = &str> {
        self.dependencies
            .iter()
            .filter(|d| d.kind.as_deref() != Some("dev"))
            .map(|d| d.name.as_str())
    }
}

/// The workspace's crates, read once per test process.
fn packages() -> &'static [Package] {
    static PACKAGES: OnceLock<Vec<Package>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let output = crate::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        parse_packages(&metadata)
    })
}

fn parse_packages(metadata: &Value) -> Vec<Package> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    metadata["packages"]
        .as_array()
        .expect("metadata lists packages")
        .iter()
        .map(|package| Package {
            name: text(&package["name"]),
            manifest: PathBuf::from(text(&package["manifest_path"])),
            // `publish = false` reads as an empty list of registries.
            publishable: package["publish"]
                .as_array()
                .is_none_or(|registries| !registries.is_empty()),
            dependencies: package["dependencies"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|d| Dependency {
                    name: text(&d["name"]),
                    kind: d["kind"].as_str().map(str::to_owned),
                })
                .collect(),
        })
        .collect()
}

/// What is wrong with the workspace's dependency graph, one line per problem.
fn ring_violations(packages: &[Package]) -> Vec<String> {
    let rings: BTreeMap<&str, &[&str]> = RINGS.iter().copied().collect();
    let internal: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut violations = Vec::new();
    for package in packages {
        let Some(allowed) = rings.get(package.name.as_str()) else {
            violations.push(format!(
                "{} is not in tidy's RINGS: say which ring it is in and what it may use",
                package.name
            ));
            continue;
        };
        for dependency in &package.dependencies {
            let name = dependency.name.as_str();
            if !internal.contains(&name) || name == package.name {
                continue;
            }
            let dev = dependency.kind.as_deref() == Some("dev");
            let fine = allowed.contains(&name) || (dev && name == TESTKIT);
            if !fine {
                let table = dependency.kind.as_deref().unwrap_or("normal");
                violations.push(format!(
                    "{} depends outward on {name} ({table} dependency)",
                    package.name
                ));
            }
        }
    }
    violations
}

/// Normal dependencies of `crate_name` that its allow-list does not name.
fn not_allowed(packages: &[Package], crate_name: &str, allowed: &[&str]) -> Vec<String> {
    let package = packages
        .iter()
        .find(|p| p.name == crate_name)
        .unwrap_or_else(|| panic!("{crate_name} is in the workspace"));
    package
        .normal_dependencies()
        .filter(|name| !allowed.contains(name))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dependencies_point_inward_only() {
    let violations = ring_violations(packages());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_domain_depends_only_on_its_allow_list() {
    let extra = not_allowed(packages(), "segment-sync-domain", DOMAIN_ALLOWED);
    assert!(
        extra.is_empty(),
        "segment-sync-domain must stay pure; add to DOMAIN_ALLOWED only what does no I/O: {extra:?}"
    );
}

#[test]
fn the_ports_depend_only_on_their_allow_list() {
    let extra = not_allowed(packages(), "segment-sync-ports", PORTS_ALLOWED);
    assert!(
        extra.is_empty(),
        "segment-sync-ports speaks domain types only, yet depends on {extra:?}"
    );
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    for package in packages() {
        let text = fs::read_to_string(&package.manifest).expect("manifest readable");
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} does not say `[lints] workspace = true`",
            package.manifest.display()
        );
    }
}

#[test]
fn the_rules_catch_an_outward_dependency_and_an_unplaced_crate() {
    let metadata = serde_json::json!({"packages": [
        {"name": "segment-sync-domain", "manifest_path": "/w/crates/domain/Cargo.toml",
         "publish": null, "dependencies": [
            {"name": "segment-sync-adapters", "kind": null},
            {"name": "tokio", "kind": null}]},
        {"name": "segment-sync-adapters", "manifest_path": "/w/crates/adapters/Cargo.toml",
         "publish": null, "dependencies": [
            {"name": "segment-sync-testkit", "kind": "dev"},
            {"name": "segment-sync-testkit", "kind": null}]},
        {"name": "segment-sync-testkit", "manifest_path": "/w/crates/testkit/Cargo.toml",
         "publish": [], "dependencies": []},
        {"name": "newcomer", "manifest_path": "/w/crates/newcomer/Cargo.toml",
         "publish": null, "dependencies": []},
    ]});
    let packages = parse_packages(&metadata);
    assert!(!packages[2].publishable && packages[0].publishable);
    assert_eq!(
        ring_violations(&packages),
        [
            "segment-sync-domain depends outward on segment-sync-adapters (normal dependency)",
            "segment-sync-adapters depends outward on segment-sync-testkit (normal dependency)",
            "newcomer is not in tidy's RINGS: say which ring it is in and what it may use",
        ]
    );
    assert_eq!(
        not_allowed(&packages, "segment-sync-domain", DOMAIN_ALLOWED),
        ["segment-sync-adapters", "tokio"]
    );
}

/// Every `.rs` file below `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
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

/// The source of the product's crates (the publishable ones; not tests, benches,
/// the testkit or xtask).
fn product_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for package in packages().iter().filter(|p| p.publishable) {
        let dir = package.manifest.parent().expect("a manifest has a folder");
        rust_files(&dir.join("src"), &mut files);
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
