//! The composition root: adapters built from configuration and handed out as ports.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use segment_sync_adapters::commercetools::{CommercetoolsConfig, HttpCustomerSource};
use segment_sync_adapters::file_source::FileCustomerSource;
use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::WriteKey;
use segment_sync_ports::{CustomerSource, SegmentClient, SyncStateStore};

use crate::cli::ServeArgs;
use crate::config::{ConfigError, Vars};
use crate::serve::{self, ServeDeps, ServeOptions, WebhookToken};
use crate::{Exit, Failure};

/// Messages waiting for Segment at most, per process.
pub const SEGMENT_QUEUE_CAPACITY: usize = 4_096;

/// How long `serve`'s Segment client waits to fill a batch before sending it.
pub const SERVE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// The state database at `path`, created when missing.
pub fn state_store(path: &Path) -> Result<Arc<dyn SyncStateStore>, Failure> {
    let store = SqliteStateStore::open(path).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Arc::new(store))
}

/// The Segment client for the configured endpoint.
pub fn segment_client(vars: &Vars, write_key: WriteKey) -> Result<Arc<dyn SegmentClient>, Failure> {
    segment_client_with(segment_config(vars, write_key)?)
}

/// The Segment client for these settings.
pub fn segment_client_with(config: SegmentConfig) -> Result<Arc<dyn SegmentClient>, Failure> {
    let client = HttpSegmentClient::new(config).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Arc::new(client))
}

/// The Segment client's settings: the endpoint and the tuning variables.
pub fn segment_config(vars: &Vars, write_key: WriteKey) -> Result<SegmentConfig, ConfigError> {
    let mut config = SegmentConfig::new(vars.segment_endpoint(), write_key);
    // Four batches in flight need far fewer queued messages than the adapter's
    // default; a smaller queue keeps a sync's memory well under 64 MiB.
    config.queue_capacity = SEGMENT_QUEUE_CAPACITY;
    if let Some(attempts) = vars.get("SEGMENT_MAX_ATTEMPTS") {
        config.retry.max_attempts = parse_number("SEGMENT_MAX_ATTEMPTS", attempts)?;
    }
    if let Some(in_flight) = vars.get("SEGMENT_MAX_IN_FLIGHT") {
        config.max_in_flight = parse_number("SEGMENT_MAX_IN_FLIGHT", in_flight)?;
    }
    if let Some(gzip) = vars.get("SEGMENT_GZIP") {
        config.gzip = matches!(gzip, "1" | "true" | "yes" | "on");
    }
    Ok(config)
}

fn parse_number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .ok()
        .filter(|_| value != "0")
        .ok_or(ConfigError::Invalid {
            name,
            reason: format!("`{value}` is not a positive whole number"),
        })
}

/// The commercetools API source's settings.
pub fn commercetools_config(vars: &Vars) -> Result<CommercetoolsConfig, ConfigError> {
    let settings = vars.commercetools()?;
    let mut config = CommercetoolsConfig::new(
        settings.auth_url,
        settings.api_url,
        settings.project_key,
        settings.client_id,
        settings.client_secret,
    );
    config.scopes = settings.scopes;
    Ok(config)
}

/// Customers from `--input` when given, else from the commercetools API.
pub fn customer_source(
    vars: &Vars,
    input: Option<&Path>,
) -> Result<Arc<dyn CustomerSource>, Failure> {
    match input {
        Some(path) if path == Path::new("-") => Ok(Arc::new(FileCustomerSource::stdin())),
        Some(path) if !path.is_file() => Err(Failure::Usage(format!(
            "cannot read --input {}: no such file",
            path.display()
        ))),
        Some(path) => Ok(Arc::new(FileCustomerSource::from_path(path))),
        None => api_source(vars),
    }
}

/// The commercetools API source.
pub fn api_source(vars: &Vars) -> Result<Arc<dyn CustomerSource>, Failure> {
    let source = HttpCustomerSource::new(commercetools_config(vars)?)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Arc::new(source))
}

/// Where `serve` listens: the flag, else `0.0.0.0:$PORT`, else `127.0.0.1:8080`.
pub fn listen_address(args: &ServeArgs, vars: &Vars) -> Result<SocketAddr, ConfigError> {
    if let Some(listen) = args.listen {
        return Ok(listen);
    }
    match vars.get("PORT") {
        Some(port) => {
            let port: u16 = port.parse().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                reason: format!("`{port}` is not a port number"),
            })?;
            Ok(SocketAddr::from(([0, 0, 0, 0], port)))
        }
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
    }
}

/// `segment-sync serve`: checks the configuration, wires the adapters, serves
/// until SIGTERM or SIGINT.
pub async fn serve(args: &ServeArgs, vars: &Vars) -> Result<Exit, Failure> {
    let token = vars
        .get("WEBHOOK_TOKEN")
        .map(WebhookToken::parse)
        .transpose()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    serve::check_auth_config(&token, args.allow_unauthenticated)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let options = ServeOptions {
        listen: listen_address(args, vars)?,
        allow_unauthenticated: args.allow_unauthenticated,
        ..ServeOptions::default()
    };
    let write_key = vars.write_key()?;
    let strategy = vars.user_id_strategy()?;
    // The recorder must exist before the Segment client records its metrics.
    serve::install_metrics();
    let mut segment = segment_config(vars, write_key)?;
    // Each request waits for its own message: a short interval keeps latency low
    // while concurrent requests still share batches.
    segment.flush_interval = SERVE_FLUSH_INTERVAL;
    let deps = ServeDeps {
        segment: segment_client_with(segment)?,
        source: api_source(vars)?,
        state: state_store(&vars.state_path(args.state.state.as_deref()))?,
        strategy,
        token,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", options.listen)))?;
    serve::serve(listener, deps, &options, serve::shutdown_signal())
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    Ok(Exit::Success)
}
