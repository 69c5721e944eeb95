//! (g) `segment-sync serve` under 64 concurrent clients posting `CustomerCreated`
//! messages about distinct generated customers.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use segment_sync_testkit::child_log::ChildLog;
use segment_sync_testkit::customers::customer_created;
use segment_sync_testkit::generate::{self, DEFAULT_SEED};

use super::process::{vm_hwm_kib, BenchState, ChildEnv, KillOnDrop, WEBHOOK_TOKEN};
use super::table::{millis, thousands, Met, Table};

/// Webhook requests in total, and how many are in flight at once.
const REQUESTS: usize = 12_000;
const CLIENTS: usize = 64;
/// The customers the messages are about start here, far from the file and API runs'.
const FIRST_CUSTOMER: u64 = 50_000_000;
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The throughput, latency and peak-RSS rows. The targets are those of the
/// SQLite state; on PostgreSQL the figures are shown beside them.
pub async fn run(
    binary: Result<&Path, &str>,
    env: &ChildEnv,
    state: Result<&BenchState, &str>,
    table: &mut Table,
) {
    let on = state.map_or(", PostgreSQL state", BenchState::label);
    let throughput = format!("webhook throughput, 64 clients{on}");
    let latency = format!("webhook latency p99{on}");
    let sqlite = matches!(state, Ok(BenchState::Sqlite));
    let (throughput_target, latency_target) = if sqlite {
        (">= 5,000 req/s", "<= 100 ms")
    } else {
        ("-", "-")
    };
    let load = match (binary, state) {
        (Ok(binary), Ok(state)) => load(binary, env, state).await,
        (Err(why), _) | (_, Err(why)) => Err(anyhow::anyhow!("{why}")),
    };
    match load {
        Ok(load) => {
            let rate = load.completed as f64 / load.elapsed.as_secs_f64();
            let mut note = format!(
                "{} requests in {:.2} s",
                thousands(load.completed as u64),
                load.elapsed.as_secs_f64()
            );
            if load.failed > 0 {
                let _ = write!(note, ", {} not 2xx", thousands(load.failed as u64));
            }
            let p99 = load.percentile(0.99);
            let rate_figure = format!("{} req/s ({note})", thousands(rate.round() as u64));
            let latency_figure = format!(
                "{:.1} ms (p50 {:.1} ms, max {:.1} ms)",
                millis(p99),
                millis(load.percentile(0.5)),
                millis(load.percentile(1.0))
            );
            if sqlite {
                let all_answered = load.failed == 0;
                table.check(
                    throughput,
                    rate_figure,
                    throughput_target,
                    rate >= 5_000.0 && all_answered,
                );
                table.check(
                    latency,
                    latency_figure,
                    latency_target,
                    p99 <= Duration::from_millis(100) && all_answered,
                );
            } else {
                table.add(throughput, rate_figure, throughput_target, Met::Neither);
                table.add(latency, latency_figure, latency_target, Met::Neither);
            }
            table.rss(
                format!("peak RSS, serve under load{on}"),
                load.peak_rss_kib,
                false,
            );
        }
        Err(e) => {
            let why = format!("{e:#}");
            table.not_available(throughput, throughput_target, &why);
            table.not_available(latency, latency_target, &why);
        }
    }
}

struct Load {
    completed: usize,
    failed: usize,
    elapsed: Duration,
    /// Sorted, one per completed request.
    latencies: Vec<Duration>,
    peak_rss_kib: Option<u64>,
}

impl Load {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

async fn load(binary: &Path, env: &ChildEnv, state: &BenchState) -> Result<Load> {
    // Port 0, and the address read back from the log: no window in which another
    // process could take a port picked in advance.
    let mut command = env.command(binary, "serve");
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(state.argument(env, "serve"))
        .stderr(Stdio::piped());
    let mut server = KillOnDrop(command.spawn().context("cannot start segment-sync serve")?);
    let stderr = server.0.stderr.take().context("serve's stderr is piped")?;
    let copy = fs::File::create(env.output_path("serve", "stderr"))
        .context("cannot create serve.stderr")?;
    let mut log = ChildLog::follow(stderr, Some(Box::new(copy)));
    let addr = log.listening_addr(STARTUP_TIMEOUT).await?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let healthy = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !healthy {
        bail!("/healthz does not answer 2xx at {base}");
    }

    // Bodies are made before the clock starts so that only the server is measured.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..REQUESTS as u64)
            .map(|i| {
                let customer = generate::customer(DEFAULT_SEED, FIRST_CUSTOMER + i);
                customer_created(&customer).to_string().into_bytes()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/webhooks/commercetools");
    let started = Instant::now();
    let stop_at = started + LOAD_TIMEOUT;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || Instant::now() > stop_at {
                    break;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(WEBHOOK_TOKEN)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await;
                let ok = match response {
                    Ok(response) => {
                        let success = response.status().is_success();
                        // Reading the body lets the connection go back to the pool.
                        let _ = response.bytes().await;
                        success
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut failed = 0;
    for client in clients {
        let (mine, my_failed) = client.await.context("a client task panicked")?;
        latencies.extend(mine);
        failed += my_failed;
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = vm_hwm_kib(server.0.id());
    drop(server);
    // The child is gone, so its log ends: every line is in serve.stderr now.
    log.wait_for_end();
    latencies.sort_unstable();
    if failed == latencies.len() {
        bail!("every request failed: {}", env.last_error_line("serve"));
    }
    Ok(Load {
        completed: latencies.len(),
        failed,
        elapsed,
        latencies,
        peak_rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let load = Load {
            completed: 100,
            failed: 0,
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_millis).collect(),
            peak_rss_kib: None,
        };
        assert_eq!(load.percentile(0.5), Duration::from_millis(50));
        assert_eq!(load.percentile(0.99), Duration::from_millis(99));
        assert_eq!(load.percentile(1.0), Duration::from_millis(100));
    }
}
