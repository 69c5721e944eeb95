//! What became of a message sent to Segment, in the words and codes users see.

use serde::{Deserialize, Serialize};

/// Why a message was not delivered. `Display` is the contract's `error.message`,
/// [`DeliveryError::code`] its `error.code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryError {
    /// Segment did not answer within the request timeout.
    #[error("Network timeout")]
    NetworkTimeout,
    /// No connection could be made, or it broke.
    #[error("Connection failed")]
    ConnectionFailed,
    /// 401 or 403: the write key is wrong. Fatal for a run.
    #[error("Invalid write key")]
    Unauthorized,
    /// Segment refused the message as malformed.
    #[error("400 Bad Request")]
    BadRequest {
        /// What Segment said, when it said anything.
        detail: Option<String>,
    },
    /// A 5xx answer.
    #[error("{}", status_line(*status))]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// 429 until the attempts ran out.
    #[error("Rate limited")]
    RateLimited,
    /// Every attempt failed with something worth retrying; the last one's cause
    /// is named.
    #[error("Max retries exceeded (last: {last})")]
    MaxRetriesExceeded {
        /// The failure of the last attempt.
        last: Box<DeliveryError>,
    },
    /// The customer has no usable `userId`.
    #[error("userId cannot be empty")]
    EmptyUserId,
    /// The message could not be built or encoded.
    #[error("Invalid payload")]
    InvalidPayload,
    /// The serialised message is over Segment's 32 KiB per-message limit.
    #[error("message over 32 KB")]
    PayloadTooLarge,
    /// Another process (a webhook replica, another run) kept sending this customer
    /// for longer than this one could wait; nothing was sent.
    #[error("another process was delivering this customer")]
    Busy,
    /// A status Segment does not document for the Tracking API (404, 413, …).
    #[error("{}", status_line(*status))]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
    },
}

impl DeliveryError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NetworkTimeout => "network_timeout",
            Self::ConnectionFailed => "connection_failed",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest { .. } => "bad_request",
            Self::ServerError { .. } => "server_error",
            Self::RateLimited => "rate_limited",
            Self::MaxRetriesExceeded { .. } => "max_retries_exceeded",
            Self::EmptyUserId => "empty_user_id",
            Self::InvalidPayload => "invalid_payload",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Busy => "busy",
            Self::UnexpectedStatus { .. } => "unexpected_status",
        }
    }

    /// The error for an HTTP status that ended an attempt.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest { detail: None },
            401 | 403 => Self::Unauthorized,
            429 => Self::RateLimited,
            500..=599 => Self::ServerError { status },
            _ => Self::UnexpectedStatus { status },
        }
    }
}

/// `"503 Service Unavailable"`: the status and its reason phrase.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    };
    if reason.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("{status} {reason}")
    }
}

/// The one outcome every message ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Segment acknowledged the batch that held it.
    Delivered,
    /// Segment refused this message itself; sending it again will not help.
    Rejected(DeliveryError),
    /// It could not be delivered now; it may be sent again later.
    Failed(DeliveryError),
}

impl Outcome {
    /// True for [`Outcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_are_the_contract_ones() {
        let cases = [
            (
                DeliveryError::NetworkTimeout,
                "Network timeout",
                "network_timeout",
            ),
            (
                DeliveryError::ConnectionFailed,
                "Connection failed",
                "connection_failed",
            ),
            (
                DeliveryError::Unauthorized,
                "Invalid write key",
                "unauthorized",
            ),
            (
                DeliveryError::BadRequest { detail: None },
                "400 Bad Request",
                "bad_request",
            ),
            (
                DeliveryError::ServerError { status: 500 },
                "500 Internal Server Error",
                "server_error",
            ),
            (
                DeliveryError::ServerError { status: 503 },
                "503 Service Unavailable",
                "server_error",
            ),
            (DeliveryError::RateLimited, "Rate limited", "rate_limited"),
            (
                DeliveryError::MaxRetriesExceeded {
                    last: Box::new(DeliveryError::RateLimited),
                },
                "Max retries exceeded (last: Rate limited)",
                "max_retries_exceeded",
            ),
            (
                DeliveryError::EmptyUserId,
                "userId cannot be empty",
                "empty_user_id",
            ),
            (
                DeliveryError::InvalidPayload,
                "Invalid payload",
                "invalid_payload",
            ),
            (
                DeliveryError::PayloadTooLarge,
                "message over 32 KB",
                "payload_too_large",
            ),
        ];
        for (error, message, code) in cases {
            assert_eq!(error.to_string(), message);
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn statuses_map_to_errors() {
        assert_eq!(DeliveryError::from_status(401), DeliveryError::Unauthorized);
        assert_eq!(DeliveryError::from_status(403), DeliveryError::Unauthorized);
        assert_eq!(DeliveryError::from_status(429), DeliveryError::RateLimited);
        assert_eq!(DeliveryError::from_status(502).code(), "server_error");
        assert_eq!(DeliveryError::from_status(404).to_string(), "404 Not Found");
    }
}
