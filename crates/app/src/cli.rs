//! The command line, as contract §7–§9 write it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use segment_sync_domain::walk::MAX_CONCURRENCY;

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
    #[command(after_help = SYNC_HELP)]
    Sync(SyncArgs),
    /// Receive commercetools Subscription messages over HTTP.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// What Segment refused or could not take, and sending it again.
    #[command(subcommand, after_help = STATE_HELP)]
    DeadLetters(DeadLettersCommand),
    /// The history of runs.
    #[command(after_help = STATE_HELP)]
    Runs(RunsArgs),
    /// Check the configuration against the real services.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Work on the state itself.
    #[command(subcommand)]
    State(StateCommand),
    /// Erase customers here and, with SEGMENT_DELETION on, in Segment.
    #[command(after_help = PRIVACY_HELP)]
    Forget(ForgetArgs),
    /// The deletions asked of Segment and their status.
    #[command(after_help = PRIVACY_HELP)]
    Deletions(DeletionsArgs),
}

/// `segment-sync forget`.
#[derive(Debug, Clone, Args)]
pub struct ForgetArgs {
    /// Customer ids, or emails (a userId under SEGMENT_SYNC_USER_ID=email)
    #[arg(value_name = "CUSTOMER_ID|EMAIL")]
    pub subjects: Vec<String>,
    /// Read more of them from a file, one a line (`-`: standard input)
    #[arg(long, value_name = "PATH|-")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
}

/// `segment-sync deletions`.
#[derive(Debug, Clone, Args)]
pub struct DeletionsArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    /// Read each unfinished regulation's status from Segment first.
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
}

/// `segment-sync state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy deliveries, dead letters, runs and the high-water mark from one state
    /// to another (from a SQLite file to PostgreSQL, say), so that nothing is
    /// sent again.
    Copy {
        /// The state to copy: a SQLite path or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        /// Where to copy it: a SQLite path or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        to: String,
    },
}

const SYNC_HELP: &str = "\
Variables (environment, else .env; docs/configuration.md):
  SEGMENT_WRITE_KEY (not for --dry-run), SEGMENT_ENDPOINT, SEGMENT_MAX_ATTEMPTS,
  SEGMENT_MAX_IN_FLIGHT, SEGMENT_GZIP, SEGMENT_SYNC_USER_ID, SEGMENT_SYNC_STATE,
  SEGMENT_SYNC_MAPPING, SEGMENT_SYNC_RETENTION, SEGMENT_DELETION,
  SEGMENT_PUBLIC_API_URL, SEGMENT_PUBLIC_API_TOKEN, CTP_PROJECT_KEY, CTP_CLIENT_ID,
  CTP_CLIENT_SECRET, CTP_REGION or CTP_AUTH_URL and CTP_API_URL, CTP_SCOPES,
  CTP_CONCURRENCY (not with --input), RUST_LOG, LOG_FORMAT

Exit codes:
  0    every customer sent, unchanged or skipped
  1    some rejected or failed (in the dead letters)
  2    configuration or usage error; nothing sent
  3    aborted: invalid write key, commercetools credentials or scope
  130  interrupted (Ctrl-C, SIGTERM); run again to continue";

const SERVE_HELP: &str = "\
Routes:
  POST /webhooks/commercetools   Subscription messages (Platform, Pub/Sub push,
                                 CloudEvents, SNS); Bearer token or ?token=,
                                 or a Pub/Sub push OIDC token; SNS signed
  GET  /healthz                  alive
  GET  /readyz                   ready: the state answers
  GET  /metrics                  Prometheus text

Variables (environment, else .env; docs/configuration.md):
  WEBHOOK_TOKEN, WEBHOOK_MAX_CONNECTIONS, PORT, SEGMENT_WRITE_KEY, SEGMENT_ENDPOINT,
  WEBHOOK_OIDC_AUDIENCE, WEBHOOK_OIDC_EMAIL, WEBHOOK_OIDC_JWKS_URL (Pub/Sub push
  tokens), WEBHOOK_SNS_CERT_HOSTS (tests only),
  SEGMENT_MAX_ATTEMPTS, SEGMENT_MAX_IN_FLIGHT, SEGMENT_GZIP, SEGMENT_SYNC_USER_ID,
  SEGMENT_SYNC_STATE, SEGMENT_SYNC_MAPPING, SEGMENT_DELETION,
  SEGMENT_PUBLIC_API_URL, SEGMENT_PUBLIC_API_TOKEN,
  CTP_PROJECT_KEY, CTP_CLIENT_ID, CTP_CLIENT_SECRET, CTP_REGION or CTP_AUTH_URL
  and CTP_API_URL, CTP_SCOPES, RUST_LOG, LOG_FORMAT

Exit codes:
  0    stopped by SIGTERM or SIGINT after finishing what was in flight
  1    the server failed, or Segment did not drain on shutdown
  2    configuration or usage error (e.g. no WEBHOOK_TOKEN)";

const STATE_HELP: &str = "\
Variables: SEGMENT_SYNC_STATE (the state database), SEGMENT_SYNC_RETENTION (how
  long dead letters are kept; replay and purge), plus for a replay
  SEGMENT_WRITE_KEY, SEGMENT_ENDPOINT and the Segment tuning variables;
  RUST_LOG, LOG_FORMAT

Exit codes:
  0    done
  1    a replay left some rejected or failed
  2    configuration or usage error (e.g. no state database there)
  3    a replay aborted: invalid write key";

const PRIVACY_HELP: &str = "\
Variables: SEGMENT_SYNC_STATE, SEGMENT_DELETION, SEGMENT_PUBLIC_API_URL,
  SEGMENT_PUBLIC_API_TOKEN; RUST_LOG, LOG_FORMAT

Exit codes:
  0    done
  1    erased here, but the deletion in Segment is still queued (Segment unavailable)
  2    configuration or usage error
  3    Segment refused the Public API token";

const CHECK_HELP: &str = "\
Variables: every variable the other commands read (docs/configuration.md).

Exit codes:
  0    every check passed
  1    some check failed; each ✗ says how to fix it";

/// Where the state is.
#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// The state: a SQLite file path, or a postgres:// URL shared by replicas [env: SEGMENT_SYNC_STATE] [default: segment-sync.db]
    #[arg(long, value_name = "PATH|URL")]
    pub state: Option<String>,
}

/// Which trait mapping applies.
#[derive(Debug, Clone, Default, Args)]
pub struct MappingArg {
    /// The trait mapping file (TOML) [env: SEGMENT_SYNC_MAPPING] [default: the standard traits]
    #[arg(long, value_name = "PATH")]
    pub mapping: Option<PathBuf>,
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
    /// Id ranges of the API read at once (1 = one cursor) [default: CTP_CONCURRENCY, else 16]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: Option<u32>,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
    #[command(flatten)]
    /// The trait mapping.
    pub mapping: MappingArg,
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
    #[command(flatten)]
    /// The trait mapping.
    pub mapping: MappingArg,
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
        #[command(flatten)]
        /// The trait mapping (a replay sends the payloads as they were built).
        mapping: MappingArg,
    },
    /// Remove the dead letters older than a duration (they hold customers'
    /// personal data); each sync and replay does it for SEGMENT_SYNC_RETENTION.
    Purge {
        /// Remove those recorded longer ago than this (e.g. 30d, 12h)
        /// [default: SEGMENT_SYNC_RETENTION, else 30d]
        #[arg(long, value_name = "DURATION", value_parser = crate::settings::parse_duration)]
        older_than: Option<std::time::Duration>,
        #[command(flatten)]
        /// The state database.
        state: StateArg,
    },
}

/// `segment-sync check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// One JSON array of `{"check","ok","detail"|"fix"}` on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// The state database.
    pub state: StateArg,
    #[command(flatten)]
    /// The trait mapping.
    pub mapping: MappingArg,
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
    use crate::Exit;
    use clap::CommandFactory;

    #[test]
    fn every_variable_the_settings_read_is_in_a_commands_help() {
        let settings = include_str!("settings/mod.rs");
        // Every quoted upper-case name in the settings is a variable they read.
        let read: Vec<&str> = settings
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|quoted| {
                quoted.len() >= 4 && quoted.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .collect();
        assert!(read.len() >= 15, "the settings read {read:?}");
        for name in read {
            assert!(
                SYNC_HELP.contains(name) || SERVE_HELP.contains(name),
                "{name} is read but no command's --help names it"
            );
        }
    }

    #[test]
    fn the_help_names_every_route_and_every_exit_code() {
        for route in [
            crate::serve::WEBHOOK_PATH,
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(SERVE_HELP.contains(route), "serve --help lacks {route}");
        }
        for code in [
            Exit::Success,
            Exit::Partial,
            Exit::Usage,
            Exit::Fatal,
            Exit::Interrupted,
        ] {
            let line = format!("\n  {:<4} ", code as i32);
            assert!(
                SYNC_HELP.contains(&line),
                "sync --help lacks exit {}",
                code as i32
            );
        }
        for help in [SERVE_HELP, STATE_HELP, CHECK_HELP] {
            assert!(help.contains("Exit codes:\n  0 "), "{help}");
        }
    }

    /// The `--long` flags of each command in configuration.md's synopsis,
    /// keyed by the command's words (`dead-letters list`).
    fn documented_flags() -> std::collections::BTreeMap<String, Vec<String>> {
        include_str!("../../../docs/configuration.md")
            .lines()
            .filter_map(|line| line.strip_prefix("segment-sync "))
            .map(|rest| {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let command = words
                    .iter()
                    .take_while(|w| !w.starts_with(['[', '-']))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut flags: Vec<String> = words
                    .iter()
                    .filter_map(|w| w.trim_start_matches('[').strip_prefix("--"))
                    .map(|f| f.trim_end_matches(']').to_owned())
                    .collect();
                flags.sort();
                (command, flags)
            })
            .collect()
    }

    #[test]
    fn configuration_md_shows_every_command_with_exactly_its_flags() {
        let documented = documented_flags();
        let cli = Cli::command();
        let mut commands = Vec::new();
        for command in cli.get_subcommands() {
            let subcommands: Vec<&clap::Command> = command.get_subcommands().collect();
            if subcommands.is_empty() {
                commands.push((command.get_name().to_owned(), command));
            } else {
                for sub in subcommands {
                    commands.push((format!("{} {}", command.get_name(), sub.get_name()), sub));
                }
            }
        }
        for (name, command) in &commands {
            let mut flags: Vec<String> = command
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .filter(|long| long != "help")
                .collect();
            flags.sort();
            assert_eq!(
                documented.get(name),
                Some(&flags),
                "docs/configuration.md's synopsis of `segment-sync {name}`"
            );
        }
        assert_eq!(documented.len(), commands.len(), "{documented:?}");
    }

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
