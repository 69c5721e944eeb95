//! The README's commands work as written.

use crate::helpers::*;

/// The lines of the README's first shell block, without trailing comments.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let block = readme
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README opens with a sh block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_readme_opens_with_the_main_job_and_the_test_command() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands[0].contains("sync --input examples/customers.ndjson --dry-run"));
    assert_eq!(commands[1], "cargo xtask ci");
}

#[tokio::test]
async fn the_readme_main_job_runs_on_the_sample() {
    let commands = readme_commands();
    let args: Vec<&str> = commands[0]
        .split_once(" -- ")
        .expect("cargo run … -- <args>")
        .1
        .split_whitespace()
        .collect();
    let mut command = App::new().command(&args);
    command.current_dir(workspace_root());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let payloads = stdout(&output).lines().count();
    assert!(
        payloads >= 25,
        "{payloads} payloads; stderr: {}",
        stderr(&output)
    );
    // One sample customer is deliberately over Segment's 32 KB limit.
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("rejected 1"),
        "stderr: {}",
        stderr(&output)
    );
}
