//! A harmless request that tells whether Segment answers and takes the write key.

use std::sync::Arc;

use segment_sync_domain::retry::RetryPolicy;
use segment_sync_domain::DeliveryError;

use super::config::SegmentConfig;
use super::sender::{BatchSender, Sent, Shared};

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
