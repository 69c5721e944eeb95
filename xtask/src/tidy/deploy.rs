//! The deployment examples and the docs name only what the binary has: every
//! variable they set is a setting, every route they probe is a route, every
//! command they run is a command; configuration.md lists exactly the settings;
//! and a token the docs generate is exported before a later line uses it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::workspace_root;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The variables the settings read: every quoted upper-case name in them (the
/// settings are the one place that reads the environment).
fn settings_variables() -> BTreeSet<String> {
    let folder = workspace_root().join("crates/app/src/settings");
    let mut settings = String::new();
    for entry in fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
        let path = entry.expect("a readable folder entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".rs") && name != "tests.rs" {
            settings.push_str(&read(&path));
        }
    }
    settings
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.len() >= 4 && quoted.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The routes the webhook serves: its `.route("…"` paths and `WEBHOOK_PATH`.
fn routes() -> BTreeSet<String> {
    let serve = read(&workspace_root().join("crates/app/src/serve/mod.rs"));
    let mut routes: BTreeSet<String> = serve
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_owned()))
        .collect();
    let webhook = serve
        .split_once("pub const WEBHOOK_PATH: &str = \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(path, _)| path.to_owned())
        .expect("serve/mod.rs defines WEBHOOK_PATH");
    routes.insert(webhook);
    routes
}

/// The commands configuration.md's synopsis lists: `sync`, `dead-letters list`, …
fn commands() -> BTreeSet<String> {
    let configuration = read(&workspace_root().join("docs/configuration.md"));
    configuration
        .lines()
        .filter_map(|line| line.strip_prefix("segment-sync "))
        .map(|rest| {
            rest.split_whitespace()
                .take_while(|word| !word.starts_with(['[', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The words that may be the product's variables: the prefixes its settings use,
/// and the few plain names it reads.
fn looks_like_a_setting(word: &str) -> bool {
    let prefixed = ["SEGMENT_", "CTP_", "WEBHOOK_"]
        .iter()
        .any(|prefix| word.starts_with(prefix) && word.len() > prefix.len());
    let plain = ["PORT", "RUST_LOG", "LOG_FORMAT"].contains(&word);
    (prefixed || plain) && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// Upper-case words of `text` that look like the product's variables.
fn variables_named_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| looks_like_a_setting(word))
        .map(str::to_owned)
        .collect()
}

/// Every file below `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The deployment examples, and operations.md's Deployments section.
fn deployment_texts() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    files(&workspace_root().join("examples/deploy"), &mut paths);
    paths.sort();
    let mut texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.display().to_string(), read(p)))
        .collect();
    let operations = read(&workspace_root().join("docs/operations.md"));
    let section = operations
        .split_once("## Deployments")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest).to_owned())
        .expect("docs/operations.md has a Deployments section");
    texts.push(("docs/operations.md#deployments".to_owned(), section));
    texts
}

/// The paths a text probes or posts to: `path: /…` in YAML, and `/…` right
/// after `$URL` or a port in commands.
fn paths_used_in(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for marker in ["path: ", "$URL", ":8080"] {
        for rest in text.split(marker).skip(1) {
            if let Some(path) = rest.strip_prefix('/') {
                let path: String = path
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
                    .collect();
                paths.insert(format!("/{path}"));
            }
        }
    }
    paths
}

#[test]
fn configuration_md_lists_exactly_the_variables_the_settings_read() {
    let configuration = read(&workspace_root().join("docs/configuration.md"));
    let documented: BTreeSet<String> = configuration
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| row.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| looks_like_a_setting(name))
        .collect();
    let read = settings_variables();
    assert!(read.len() >= 15, "the settings read {read:?}");
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "configuration.md's variables and the settings differ: not documented {undocumented:?}, \
         not read {unknown:?}"
    );
}

#[test]
fn the_deployment_examples_set_only_real_variables_and_probe_real_routes() {
    let settings = settings_variables();
    let routes = routes();
    assert!(
        routes.contains("/healthz") && routes.contains("/readyz"),
        "{routes:?}"
    );
    let texts = deployment_texts();
    assert!(
        texts.len() >= 6,
        "systemd, Kubernetes, Cloud Run and the docs"
    );
    let mut named = BTreeSet::new();
    for (name, text) in &texts {
        for variable in variables_named_in(text) {
            assert!(
                settings.contains(&variable),
                "{name} names {variable}, which is not a setting"
            );
            named.insert(variable);
        }
        for path in paths_used_in(text) {
            let route = path.split('?').next().unwrap_or(&path);
            assert!(
                routes.contains(route),
                "{name} uses {route}, which the webhook does not serve ({routes:?})"
            );
        }
    }
    for needed in ["WEBHOOK_TOKEN", "SEGMENT_SYNC_STATE", "SEGMENT_WRITE_KEY"] {
        assert!(named.contains(needed), "no deployment sets {needed}");
    }
    let all: String = texts.iter().map(|(_, text)| text.as_str()).collect();
    for route in ["/healthz", "/readyz", "/webhooks/commercetools"] {
        assert!(all.contains(route), "no deployment uses {route}");
    }
}

/// The commands `text` runs: `segment-sync …` at the start of a line, after
/// `bin/` or in backticks (not in prose), as one or two words (`dead-letters
/// list`), and the first of a container's `args: ["serve"]`.
fn commands_run_in(text: &str) -> Vec<String> {
    let word = |w: &&str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    };
    text.match_indices("segment-sync ")
        .filter(|(at, _)| {
            let before = text[..*at].trim_end_matches([' ', '\t']);
            before.is_empty() || before.ends_with(['\n', '`']) || before.ends_with("bin/")
        })
        .map(|(at, found)| {
            text[at + found.len()..]
                .split_whitespace()
                .map(|w| w.trim_end_matches(['`', ':', ',', '.', ')', ';']))
                .take(2)
                .take_while(word)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|command| !command.is_empty())
        .chain(
            text.split("args: [\"")
                .skip(1)
                .filter_map(|rest| rest.split_once('"').map(|(word, _)| word.to_owned())),
        )
        .collect()
}

/// Whether `run` (one or two words) starts with a real command: `sync`, or
/// `dead-letters list` but not `dead-letters lists`.
fn is_a_command(run: &str, commands: &BTreeSet<String>) -> bool {
    let first = run.split(' ').next().unwrap_or_default();
    let has_subcommands = commands.iter().any(|c| c.starts_with(&format!("{first} ")));
    if has_subcommands {
        commands.contains(run)
    } else {
        commands.contains(first)
    }
}

#[test]
fn the_docs_and_the_deployment_examples_run_only_real_commands() {
    let commands = commands();
    assert!(commands.contains("sync") && commands.contains("dead-letters list"));
    let root = workspace_root();
    let mut texts = deployment_texts();
    let mut docs = vec![root.join("README.md")];
    files(&root.join("docs"), &mut docs);
    texts.extend(
        docs.iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .map(|p| (p.display().to_string(), read(p))),
    );
    let mut seen = BTreeSet::new();
    for (name, text) in texts {
        for run in commands_run_in(&text) {
            assert!(
                is_a_command(&run, &commands),
                "{name} runs `segment-sync {run}`, which is not a command ({commands:?})"
            );
            seen.insert(run);
        }
    }
    assert!(seen.len() >= 8, "the docs run {seen:?}");
}

#[test]
fn a_token_the_docs_generate_is_exported_before_it_is_used() {
    let root = workspace_root();
    let mut docs = vec![root.join("README.md")];
    files(&root.join("docs"), &mut docs);
    for path in docs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        for line in read(path).lines() {
            let line = line.trim();
            if line.contains("WEBHOOK_TOKEN=$(") {
                assert!(
                    line.starts_with("export WEBHOOK_TOKEN=$("),
                    "{}: `{line}` sets the token for one command only; export it so that the \
                     commands after it (the sender's URL) have it",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_checks_catch_a_wrong_variable_route_and_command() {
    assert_eq!(
        variables_named_in("SEGMENT_SYNC_DB=x\n- name: WEBHOOK_TOKEN\nHOME=/root PORT"),
        BTreeSet::from([
            "PORT".to_owned(),
            "SEGMENT_SYNC_DB".to_owned(),
            "WEBHOOK_TOKEN".to_owned()
        ])
    );
    assert_eq!(
        paths_used_in("httpGet: {path: /health}\n--push-endpoint=\"$URL/webhooks/ct?token=x\""),
        BTreeSet::from(["/health".to_owned(), "/webhooks/ct".to_owned()])
    );
    assert!(!settings_variables().contains("SEGMENT_SYNC_DB"));
    assert!(!routes().contains("/health"));
    let commands = commands();
    assert_eq!(
        commands_run_in(
            "`segment-sync dead-letters lists`\nsegment-sync webhook --x\n  args: [\"sync\"]"
        ),
        ["dead-letters lists", "webhook", "sync"]
    );
    assert!(!is_a_command("dead-letters lists", &commands));
    assert!(!is_a_command("webhook", &commands));
    assert!(is_a_command("sync --full", &commands) || is_a_command("sync", &commands));
}
