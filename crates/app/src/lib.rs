//! The `segment-sync` application: configuration, the commands, the webhook
//! server, and the wiring of adapters to ports. `main.rs` only calls [`run`].

pub mod check;
pub mod cli;
pub mod commands;
pub mod output;
pub mod pipeline;
pub mod privacy;
pub mod serve;
pub mod service;
pub mod settings;
pub mod signal;
pub mod telemetry;
pub mod wiring;

use clap::Parser;

use crate::cli::{Cli, Command, DeadLettersCommand, StateCommand};
use crate::settings::{ConfigError, ConfigErrors, Env, Flags, Settings};

/// The process exit codes of contract §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every customer sent, unchanged or skipped.
    Success = 0,
    /// Some rejected or failed; they are in the dead letters.
    Partial = 1,
    /// A configuration or usage error; nothing was sent.
    Usage = 2,
    /// Aborted by a fatal error: invalid write key, commercetools credentials or scope.
    Fatal = 3,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted = 130,
}

/// A command that could not do its job, with the one line to print.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Configuration or usage: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Fatal for the run: exit 3.
    #[error("{0}")]
    Fatal(String),
    /// Anything else: exit 1.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Self::Usage(error.to_string())
    }
}

impl From<ConfigErrors> for Failure {
    fn from(errors: ConfigErrors) -> Self {
        Self::Usage(errors.to_string())
    }
}

impl Failure {
    fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Fatal(_) => Exit::Fatal,
            Self::Other(_) => Exit::Partial,
        }
    }
}

/// Parses the command line and the settings, runs the command and returns the
/// process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let env = match std::env::current_dir()
        .map_err(|e| ConfigError::DotEnv(e.to_string()))
        .and_then(|dir| Env::load(&dir))
    {
        Ok(env) => env,
        Err(error) => {
            eprintln!("{error}");
            return Exit::Usage as i32;
        }
    };
    let settings = Settings::parse(&env, &Flags::of(&cli.command));
    match &settings.log {
        Ok(log) => {
            // `check` reports through its list; retry warnings would only come first.
            let default = if matches!(cli.command, Command::Check(_)) {
                "error"
            } else {
                "info"
            };
            telemetry::init(log, default);
        }
        // `check` shows it among its lines; every other command stops here.
        Err(errors) if !matches!(cli.command, Command::Check(_)) => {
            eprintln!("{errors}");
            return Exit::Usage as i32;
        }
        Err(_) => {}
    }
    // Blocking work is SQLite's, one call at a time; a few threads suffice, and
    // each thread more costs the allocator a heap of its own.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return Exit::Partial as i32;
        }
    };
    let result = runtime.block_on(dispatch(cli.command, settings));
    match result {
        Ok(exit) => exit as i32,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit() as i32
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> Result<Exit, Failure> {
    match command {
        Command::Sync(args) => commands::sync(&args, &settings).await,
        Command::Serve(args) => commands::serve(&args, &settings).await,
        Command::DeadLetters(DeadLettersCommand::List { json, .. }) => {
            commands::dead_letters_list(json, &settings).await
        }
        Command::DeadLetters(DeadLettersCommand::Replay { json, .. }) => {
            commands::dead_letters_replay(json, &settings).await
        }
        Command::DeadLetters(DeadLettersCommand::Purge { older_than, .. }) => {
            commands::dead_letters_purge(older_than, &settings).await
        }
        Command::Runs(args) => commands::runs(&args, &settings).await,
        Command::Check(args) => check::run(&settings, args.json).await,
        Command::State(StateCommand::Copy { from, to }) => commands::state_copy(&from, &to).await,
        Command::Forget(args) => privacy::forget(&args, &settings).await,
        Command::Deletions(args) => privacy::deletions(&args, &settings).await,
    }
}
