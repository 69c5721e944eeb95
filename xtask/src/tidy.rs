//! Tidy checks over the workspace's own files: dependencies point inward only,
//! the inner rings depend only on what their allow-lists name, and the
//! troubleshooting guide and the code's messages agree ([`messages`]), and the
//! deployment examples name only real settings and routes ([`deploy`]).
//!
//! Crates and their dependencies come from `cargo metadata`, so a new crate is
//! checked the day it is added (and must be placed in [`RINGS`] first).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

mod deploy;
mod messages;

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
