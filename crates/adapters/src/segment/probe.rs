//! A harmless request that tells whether Segment answers and takes the write key.

use std::sync::Arc;

use async_trait::async_trait;
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_domain::DeliveryError;
use segment_sync_ports::{CheckLine, SelfCheck};

use super::config::SegmentConfig;
use super::sender::{BatchSender, Sent, Shared};
use super::HttpSegmentClient;

#[async_trait]
impl SelfCheck for HttpSegmentClient {
    /// One line: the endpoint answers a probe (an empty batch) without refusing
    /// the write key.
    async fn self_check(&self) -> Vec<CheckLine> {
        let what = format!("Segment endpoint {} reachable", self.config.endpoint);
        vec![match probe(&self.config).await {
            Ok(()) => CheckLine::pass(
                what,
                "it answered; the Tracking API answers 200 even for an unknown write key, so this proves the endpoint, not the key",
            ),
            Err(DeliveryError::Unauthorized) => CheckLine::fail(
                what,
                "Invalid write key: Segment refused it; copy the key of the right source (EU workspaces also need SEGMENT_ENDPOINT=https://events.eu1.segmentapis.com)",
            ),
            Err(error @ (DeliveryError::NetworkTimeout | DeliveryError::ConnectionFailed)) => {
                CheckLine::fail(
                    what,
                    format!("{error}: check SEGMENT_ENDPOINT, DNS, proxies and outbound HTTPS from this host"),
                )
            }
            Err(error) => CheckLine::fail(what, format!("{error}: is SEGMENT_ENDPOINT the Tracking API?")),
        }]
    }
}

/// Posts one empty batch, once, with the configured key: `Ok` when Segment
/// answers without refusing the key (a 400 for the empty batch counts as an
/// answer), else the error the attempt ended with. No message is sent.
pub async fn probe(config: &SegmentConfig) -> Result<(), DeliveryError> {
    let url = config
        .batch_url()
        .map_err(|_| DeliveryError::ConnectionFailed)?;
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
        .map_err(|_| DeliveryError::ConnectionFailed)?;
    let once = RetryPolicy {
        max_attempts: 1,
        ..config.retry
    };
    let sender = BatchSender::new(
        http,
        url,
        &config.write_key,
        false,
        once,
        None,
        Arc::new(Shared::default()),
    );
    match sender.send(&[]).await {
        Sent::Delivered | Sent::BadRequest(_) => Ok(()),
        Sent::Failed(DeliveryError::MaxRetriesExceeded { last }) => Err(*last),
        Sent::Failed(error) => Err(error),
    }
}
