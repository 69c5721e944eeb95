//! The webhook's connections, with what `axum::serve` leaves out: a timer for
//! hyper (so that a client slow to send its headers, or a kept-alive connection
//! left idle, is closed), a cap on open connections, and a shutdown that closes
//! idle connections at once and waits a bounded time for the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::ServeOptions;

/// The connections accepted, once accepting has stopped.
pub(super) struct Connections(GracefulShutdown);

impl Connections {
    /// Closes idle connections now and waits up to `grace` for the requests in
    /// flight; connections still open then are dropped.
    pub(super) async fn finish(self, grace: Duration) {
        if tokio::time::timeout(grace, self.0.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at the shutdown deadline are closed");
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown`
/// resolves; then the listener is closed.
pub(super) async fn accept_until(
    listener: TcpListener,
    app: Router,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Connections {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let service = TowerToHyperService::new(app);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            metrics::counter!("webhook_connections_refused_total").increment(1);
            tracing::warn!(
                max = options.max_connections,
                "connection refused: too many open connections"
            );
            drop(stream);
            continue;
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _open = permit;
            // A client that goes away or times out ends its connection; nothing
            // to do about it here.
            let _ = connection.await;
        });
    }
    drop(listener);
    Connections(graceful)
}
