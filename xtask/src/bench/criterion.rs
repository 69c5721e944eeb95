//! (a) The domain's criterion benchmark; each bench id ends with its batch size.

use std::collections::HashMap;
use std::process::Stdio;

use super::table::{per_second, Met, Table};

/// Runs `cargo bench` on the domain's `transform` bench and adds its two rows.
pub fn run(table: &mut Table) {
    const IDENTIFY: &str = "identify + serialise, 1 core (criterion)";
    const PARSE: &str = "JSON bytes -> identify, 1 core (criterion)";
    let mut command = crate::cargo();
    command
        .args([
            "bench",
            "-p",
            "segment-sync-domain",
            "--bench",
            "transform",
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "4",
            "--sample-size",
            "30",
            "--output-format",
            "bencher",
        ])
        .stdout(Stdio::piped());
    eprintln!(
        "$ cargo bench -p segment-sync-domain --bench transform -- --output-format bencher …"
    );
    let output = match command.output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            let why = format!("cargo bench failed with {}", output.status);
            table.not_available(IDENTIFY, ">= 250,000/s", &why);
            table.not_available(PARSE, "-", &why);
            return;
        }
        Err(e) => {
            let why = format!("cannot run cargo bench: {e}");
            table.not_available(IDENTIFY, ">= 250,000/s", &why);
            table.not_available(PARSE, "-", &why);
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rates = parse_bencher(&stdout);
    match rates.get("identify") {
        Some(&rate) => table.check(
            IDENTIFY,
            per_second(rate),
            ">= 250,000/s",
            rate >= 250_000.0,
        ),
        None => table.not_available(IDENTIFY, ">= 250,000/s", "no identify line in the output"),
    }
    match rates.get("parse_and_identify") {
        Some(&rate) => table.add(PARSE, per_second(rate), "-", Met::Neither),
        None => table.not_available(PARSE, "-", "no parse_and_identify line in the output"),
    }
}

/// Elements per second by bench function, from lines such as
/// `test transform/identify/1000 ... bench:     3,456,789 ns/iter (+/- 12,345)`.
fn parse_bencher(output: &str) -> HashMap<String, f64> {
    let mut rates = HashMap::new();
    for line in output.lines() {
        let Some((name, rest)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... bench:"))
        else {
            continue;
        };
        let Some(nanos) = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.replace(',', "").parse::<f64>().ok())
        else {
            continue;
        };
        let mut parts = name.trim().rsplit('/');
        let (Some(elements), Some(function)) = (
            parts.next().and_then(|n| n.parse::<f64>().ok()),
            parts.next(),
        ) else {
            continue;
        };
        if nanos > 0.0 {
            rates.insert(function.to_owned(), elements * 1e9 / nanos);
        }
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencher_lines_become_elements_per_second() {
        let output = "\
Gnuplot not found, using plotters backend
test transform/identify/1000 ... bench:     2,500,000 ns/iter (+/- 12,345)
test transform/parse_and_identify/1000 ... bench:     8000000 ns/iter (+/- 1)
test unrelated ... bench: garbage
";
        let rates = parse_bencher(output);
        assert_eq!(rates.len(), 2);
        assert!((rates["identify"] - 400_000.0).abs() < 1e-6);
        assert!((rates["parse_and_identify"] - 125_000.0).abs() < 1e-6);
    }
}
