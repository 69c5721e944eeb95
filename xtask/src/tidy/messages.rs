//! The troubleshooting guide and the code's user-visible messages agree: every
//! message the product can show a user is a row of docs/troubleshooting.md, and
//! every row is still a message of the code.
//!
//! A user meets messages in several places, and each is found by its shape in the
//! source: error types (`#[error("…")]`), warnings and errors in the logs
//! (`tracing::warn!` / `tracing::error!`, whose message is the first literal that
//! is not a field's value), lines written straight to stderr (`eprintln!`),
//! contexts added to an error (`.context("…")`), the webhook's JSON bodies
//! (`"error": "…"` or `"error": format!("…")`, and the reasons of a 400:
//! `WebhookError::Field("…")`) and the fixes `check` prints
//! (`CheckLine::fail(what, fix)`, every literal of the fix).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::workspace_root;

/// Every `.rs` file below `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
/// the testkit or xtask), each file without its `#[cfg(test)]` module.
fn product_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for package in super::packages().iter().filter(|p| p.publishable) {
        let dir = package.manifest.parent().expect("a manifest has a folder");
        rust_files(&dir.join("src"), &mut files);
    }
    files
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "tests"))
        .filter(|p| !p.ends_with("tests.rs"))
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let product = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            (p, product)
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

/// A string literal of the source, and whether it is a field's value (`code =
/// "…"`) rather than a message.
#[derive(Debug, PartialEq)]
struct Literal {
    text: String,
    depth: usize,
    after_equals: bool,
}

/// The text of each call that starts with `opener` (which ends in `(`), up to its
/// closing parenthesis.
fn calls<'a>(source: &'a str, opener: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(opener) {
        let before = rest[..start].chars().next_back();
        rest = &rest[start + opener.len()..];
        // `error!(` must not match the end of `my_error!(`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = closing_parenthesis(rest);
        found.push(&rest[..end]);
        rest = &rest[end..];
    }
    found
}

/// Where the parenthesis opened just before `text` closes, string literals
/// skipped.
fn closing_parenthesis(text: &str) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => {
                if depth == 0 {
                    return at;
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    text.len()
}

/// The string literals of a call's arguments, in order, with their nesting.
fn literals(arguments: &str) -> Vec<Literal> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    let mut escaped = false;
    let mut last_code_char = ' ';
    let mut after_equals = false;
    for c in arguments.chars() {
        if let Some(text) = current.as_mut() {
            match c {
                _ if escaped => {
                    escaped = false;
                    match c {
                        // A line continuation: the newline and indent vanish.
                        ' ' | '\n' => {}
                        'n' => text.push('\n'),
                        _ => text.push(c),
                    }
                }
                '\\' => escaped = true,
                '"' => {
                    found.push(Literal {
                        text: current.take().expect("in a literal"),
                        depth,
                        after_equals,
                    });
                }
                _ => text.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                after_equals = last_code_char == '=';
                current = Some(String::new());
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !c.is_whitespace() {
            last_code_char = c;
        }
    }
    found
}

/// The message of a `tracing` event or an `eprintln!`: the first top-level
/// literal that is not a field's value.
fn event_message(arguments: &str) -> Option<String> {
    literals(arguments)
        .into_iter()
        .find(|l| l.depth == 0 && !l.after_equals)
        .map(|l| l.text)
}

/// The literal messages of `#[error("…")]` attributes.
fn error_attributes(source: &str) -> Vec<String> {
    calls(source, "#[error(")
        .into_iter()
        .filter_map(|arguments| literals(arguments).into_iter().next())
        .map(|l| l.text)
        .collect()
}

/// What a user can be shown, from one file's source.
fn messages_in(source: &str) -> Vec<String> {
    // Calls and attributes may be split over lines; the text is read as one line.
    let flat = source.split_whitespace().collect::<Vec<_>>().join(" ");
    let source = flat.as_str();
    let mut messages = error_attributes(source);
    // `warn!(` also finds `tracing::warn!(`.
    for opener in ["warn!(", "error!(", "eprintln!("] {
        messages.extend(calls(source, opener).into_iter().filter_map(event_message));
    }
    for arguments in calls(source, ".context(") {
        messages.extend(literals(arguments).into_iter().next().map(|l| l.text));
    }
    for arguments in calls(source, "WebhookError::Field(") {
        messages.extend(literals(arguments).into_iter().next().map(|l| l.text));
    }
    let mut rest = source;
    while let Some(start) = rest.find("\"error\": ") {
        rest = &rest[start + "\"error\": ".len()..];
        if rest.starts_with('"') || rest.starts_with("format!(") {
            messages.extend(literals(rest).into_iter().next().map(|l| l.text));
        }
    }
    for arguments in calls(source, "CheckLine::fail(") {
        // The first argument names the line; the second, literal or format, is the fix.
        let fix_starts = top_level_comma(arguments).unwrap_or(arguments.len());
        messages.extend(
            literals(&arguments[fix_starts..])
                .into_iter()
                .next()
                .map(|l| l.text),
        );
    }
    messages
}

/// Where the first argument of a call's arguments ends.
fn top_level_comma(arguments: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in arguments.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => depth = depth.saturating_sub(1),
            ',' if !in_string && depth == 0 => return Some(at),
            _ => {}
        }
    }
    None
}

/// Every user-visible message in the product's code, placeholders normalised;
/// those that are only placeholders (wrappers of another message) are left out.
fn messages_in_code() -> BTreeSet<String> {
    product_sources()
        .iter()
        .flat_map(|(_, source)| messages_in(source))
        .map(|m| normalise(m.trim()))
        .filter(|m| m.chars().any(char::is_alphabetic))
        .collect()
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
fn every_user_visible_message_in_the_code_is_in_the_troubleshooting_guide() {
    let documented = documented_messages();
    let missing: Vec<String> = messages_in_code()
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
        // As one line, line continuations joined, so that a message split over
        // lines is found whole.
        .map(|(_, text)| {
            text.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("\\ ", "")
                .replace("\\\"", "\"")
        })
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

#[test]
fn every_kind_of_user_visible_message_is_found() {
    let source = r###"
        #[derive(Debug, thiserror::Error)]
        enum E {
            #[error("cannot open {path}: {reason}")]
            Open { path: String, reason: String },
            #[error(transparent)]
            Other(std::io::Error),
        }
        fn f() {
            tracing::warn!(customer_id, code = "busy", %error, "customer skipped: {why}");
            tracing::error!(
                "cannot listen \
                 for SIGINT"
            );
            my_error!("not a log line");
            tracing::info!("an info line is not a warning");
            eprintln!("interrupted again: stopping now");
            Err(error).context("cannot write to stdout");
            json!({"error": "Unauthorized"});
            json!({"error": format!(
                "not found: {method}; go to {}", PATH)});
            json!({"error": reason});
            Err(WebhookError::Field(format!("SNS {kind} has no {name}")));
            CheckLine::fail(WHAT, format!("{error}: copy the key ({})", "where"));
            CheckLine::fail("line label", "needs the key first");
        }
    "###;
    let found: Vec<String> = messages_in(source).iter().map(|m| normalise(m)).collect();
    assert_eq!(
        found,
        [
            "cannot open …: …",
            "customer skipped: …",
            "cannot listen for SIGINT",
            "interrupted again: stopping now",
            "cannot write to stdout",
            "SNS … has no …",
            "Unauthorized",
            "not found: …; go to …",
            "…: copy the key (…)",
            "needs the key first",
        ]
    );
}
