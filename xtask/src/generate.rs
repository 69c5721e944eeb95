//! `cargo xtask generate`: the testkit's customer generator, written to a file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use segment_sync_testkit::generate::{write_ndjson, DEFAULT_SEED};

const USAGE: &str = "usage: cargo xtask generate --count N --out PATH [--seed S]";

/// `cargo xtask generate --count N --out PATH [--seed S]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut count = None;
    let mut out = None;
    let mut seed = DEFAULT_SEED;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => count = Some(value()?.parse().context("--count must be a number")?),
            "--out" => out = Some(value()?.clone()),
            "--seed" => seed = value()?.parse().context("--seed must be a number")?,
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    let (Some(count), Some(out)) = (count, out) else {
        bail!("{USAGE}");
    };
    write_ndjson(Path::new(&out), count, seed).with_context(|| format!("cannot write {out}"))?;
    eprintln!("wrote {count} customers to {out}");
    Ok(())
}
