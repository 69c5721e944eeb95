//! The command line, as contract §7–§9 write it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keeps Segment user profiles in step with commercetools customers.
#[derive(Debug, Parser)]
#[command(name = "segment-sync", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send every customer (or those changed since the last run) to Segment.
    Sync(SyncArgs),
    /// Receive commercetools Subscription messages over HTTP.
    Serve(ServeArgs),
    /// What Segment refused or could not take, and sending it again.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// The history of runs.
    Runs(RunsArgs),
    /// Check the configuration against the real services.
    Check(StateArg),
}

/// Where the state is.
#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// Path of the SQLite state database [env: SEGMENT_SYNC_STATE] [default: segment-sync.db]
    #[arg(long, value_name = "PATH")]
    pub state: Option<String>,
}

/// `segment-sync sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Read customers from an export file (NDJSON, JSON array or {"results":[…]}); `-` is stdin.
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<PathBuf>,
    /// Read and send every customer, even those Segment already has.
    #[arg(long, conflicts_with = "since")]
    pub full: bool,
    /// Read the customers modified at or after this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub since: Option<time::OffsetDateTime>,
    /// Build and validate every payload and print them as NDJSON; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
}

/// `segment-sync serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Accept requests without a token when WEBHOOK_TOKEN is not set.
    #[arg(long)]
    pub allow_unauthenticated: bool,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
}

/// `segment-sync dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters.
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        /// The state database.
        state: StateArg,
    },
    /// Send the failed dead letters again.
    Replay {
        /// Print the summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        /// The state database.
        state: StateArg,
    },
}

/// `segment-sync runs`.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
}

fn parse_rfc3339(value: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 date-time (e.g. 2024-05-01T00:00:00Z): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn since_must_be_rfc3339() {
        assert!(Cli::try_parse_from(["segment-sync", "sync", "--since", "yesterday"]).is_err());
        let cli = Cli::try_parse_from([
            "segment-sync",
            "sync",
            "--since",
            "2024-05-01T00:00:00+02:00",
        ])
        .unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(args.since.unwrap().unix_timestamp(), 1_714_514_400);
    }

    #[test]
    fn full_and_since_exclude_each_other() {
        assert!(Cli::try_parse_from([
            "segment-sync",
            "sync",
            "--full",
            "--since",
            "2024-05-01T00:00:00Z"
        ])
        .is_err());
    }
}
