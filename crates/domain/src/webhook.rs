//! commercetools Subscription payloads, bare or in the envelope of the queue that
//! carried them, decoded into the one event the webhook acts on.
//!
//! Accepted shapes:
//! - a Platform-format payload: `notificationType` `Message`, `ResourceCreated`,
//!   `ResourceUpdated` or `ResourceDeleted`;
//! - a Google Pub/Sub push envelope, `{"message":{"data":<base64 payload>},"subscription":…}`;
//! - a CloudEvents JSON event (`specversion`) whose `data` is the payload;
//! - an AWS SNS `Notification` whose `Message` is the payload, or a
//!   `SubscriptionConfirmation`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::customer::Customer;

/// What a webhook body asks of us.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// The customer's full current state came with the message (`CustomerCreated`).
    CustomerUpserted(Box<Customer>),
    /// The customer changed; fetch it by id to see how.
    CustomerChanged {
        /// The customer id.
        id: String,
        /// The customer version the message was about, when known.
        version: Option<i64>,
    },
    /// The customer was deleted.
    CustomerDeleted {
        /// The customer id.
        id: String,
    },
    /// AWS SNS asks that the subscription be confirmed by visiting this URL.
    SnsSubscriptionConfirmation {
        /// The SubscribeURL.
        subscribe_url: String,
    },
    /// A valid payload that needs nothing from us.
    NotForUs {
        /// Why, for the log.
        why: String,
    },
}

/// Why a body can never be processed. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not any payload or envelope we know.
    #[error("unrecognised payload: {0}")]
    Unrecognised(String),
    /// A Pub/Sub envelope whose `message.data` is missing or not base64.
    #[error("Pub/Sub message.data is {0}")]
    PubSubData(&'static str),
    /// An envelope whose inner payload is not valid.
    #[error("{envelope} payload: {source}")]
    Inner {
        /// Which envelope.
        envelope: &'static str,
        /// What is wrong inside.
        source: Box<WebhookError>,
    },
    /// A payload with a required field missing or of the wrong type.
    #[error("{0}")]
    Field(String),
}

/// Decodes a webhook body into the event it carries.
pub fn decode(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    decode_value(value, 0)
}

/// Envelopes inside envelopes are unwrapped up to this depth.
const MAX_NESTING: u8 = 3;

fn decode_value(value: Value, depth: u8) -> Result<WebhookEvent, WebhookError> {
    let Value::Object(object) = &value else {
        return Err(WebhookError::Unrecognised(
            "expected a JSON object".to_owned(),
        ));
    };
    if depth > MAX_NESTING {
        return Err(WebhookError::Unrecognised(
            "envelopes nested too deep".to_owned(),
        ));
    }
    if object.contains_key("notificationType") {
        return decode_platform(value);
    }
    if let Some(message) = object.get("message").filter(|_| is_pubsub(object)) {
        let data = message
            .get("data")
            .ok_or(WebhookError::PubSubData("missing"))?
            .as_str()
            .ok_or(WebhookError::PubSubData("not a string"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data.trim()))
            .map_err(|_| WebhookError::PubSubData("not valid base64"))?;
        let inner: Value = serde_json::from_slice(&decoded).map_err(|e| WebhookError::Inner {
            envelope: "Pub/Sub",
            source: Box::new(WebhookError::NotJson(e.to_string())),
        })?;
        return wrap("Pub/Sub", decode_value(inner, depth + 1));
    }
    if object.contains_key("specversion") {
        let data = match object.get("data") {
            Some(Value::String(text)) => {
                serde_json::from_str(text).map_err(|e| WebhookError::Inner {
                    envelope: "CloudEvents",
                    source: Box::new(WebhookError::NotJson(e.to_string())),
                })?
            }
            Some(data @ Value::Object(_)) => data.clone(),
            Some(_) => {
                return Err(WebhookError::Field(
                    "CloudEvents data is not an object".to_owned(),
                ))
            }
            None => {
                return Err(WebhookError::Field(
                    "CloudEvents event has no data".to_owned(),
                ))
            }
        };
        return wrap("CloudEvents", decode_value(data, depth + 1));
    }
    if let Some(kind) = object.get("Type").and_then(Value::as_str) {
        return decode_sns(kind, object, depth);
    }
    Err(WebhookError::Unrecognised(
        "no notificationType, Pub/Sub message, CloudEvents specversion or SNS Type".to_owned(),
    ))
}

/// A Pub/Sub push envelope: a `message` with `data`, or beside a `subscription`.
fn is_pubsub(object: &serde_json::Map<String, Value>) -> bool {
    object
        .get("message")
        .is_some_and(|message| object.contains_key("subscription") || message.get("data").is_some())
}

/// The body's SNS message, when the body is one itself (rather than a payload,
/// or another envelope around it): the message whose signature the webhook checks.
pub fn sns_message(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(object)
            if !object.contains_key("notificationType")
                && !is_pubsub(&object)
                && !object.contains_key("specversion")
                && object.get("Type").is_some_and(Value::is_string) =>
        {
            Some(object)
        }
        _ => None,
    }
}

fn wrap(
    envelope: &'static str,
    result: Result<WebhookEvent, WebhookError>,
) -> Result<WebhookEvent, WebhookError> {
    result.map_err(|source| WebhookError::Inner {
        envelope,
        source: Box::new(source),
    })
}

fn decode_sns(
    kind: &str,
    object: &serde_json::Map<String, Value>,
    depth: u8,
) -> Result<WebhookEvent, WebhookError> {
    let field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| WebhookError::Field(format!("SNS {kind} has no {name}")))
    };
    match kind {
        "Notification" => {
            let message = field("Message")?;
            let inner: Value = serde_json::from_str(message).map_err(|e| WebhookError::Inner {
                envelope: "SNS",
                source: Box::new(WebhookError::NotJson(e.to_string())),
            })?;
            wrap("SNS", decode_value(inner, depth + 1))
        }
        "SubscriptionConfirmation" => Ok(WebhookEvent::SnsSubscriptionConfirmation {
            subscribe_url: field("SubscribeURL")?.to_owned(),
        }),
        "UnsubscribeConfirmation" => Ok(WebhookEvent::NotForUs {
            why: "SNS UnsubscribeConfirmation".to_owned(),
        }),
        other => Err(WebhookError::Unrecognised(format!(
            "unknown SNS Type `{other}`"
        ))),
    }
}

/// The longest customer id accepted from a message; commercetools ids are UUIDs.
pub const MAX_CUSTOMER_ID_CHARS: usize = 256;

/// Checks a customer id from a message before it goes into a URL: not empty, at
/// most [`MAX_CUSTOMER_ID_CHARS`] characters, no control characters, and no `.`
/// or `..` path segment.
pub fn check_customer_id(id: &str) -> Result<(), WebhookError> {
    let problem = if id.trim().is_empty() {
        Some("is empty")
    } else if id.chars().count() > MAX_CUSTOMER_ID_CHARS {
        Some("is longer than 256 characters")
    } else if id.chars().any(char::is_control) {
        Some("holds a control character")
    } else if id
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        Some("holds a `.` or `..` path segment")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(WebhookError::Field(format!(
            "resource.id {problem}: it cannot be a customer id"
        ))),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformPayload {
    notification_type: String,
    resource: Option<ResourceRef>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    resource_version: Option<i64>,
    version: Option<i64>,
    customer: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceRef {
    type_id: String,
    id: String,
}

fn decode_platform(value: Value) -> Result<WebhookEvent, WebhookError> {
    // The path names the offending field; serde_json's own message does not.
    let payload: PlatformPayload = serde_path_to_error::deserialize(&value).map_err(|e| {
        WebhookError::Field(format!(
            "invalid commercetools payload: `{}`: {}",
            e.path(),
            e.inner()
        ))
    })?;
    let resource = payload
        .resource
        .ok_or_else(|| WebhookError::Field("commercetools payload has no resource".to_owned()))?;
    if resource.type_id == "subscription" {
        return Ok(WebhookEvent::NotForUs {
            why: "Subscription test message".to_owned(),
        });
    }
    if resource.type_id != "customer" {
        return Ok(WebhookEvent::NotForUs {
            why: format!("resource type `{}`", resource.type_id),
        });
    }
    check_customer_id(&resource.id)?;
    let id = resource.id;
    match payload.notification_type.as_str() {
        "Message" => {
            let message_type = payload.message_type.ok_or_else(|| {
                WebhookError::Field("commercetools Message has no type".to_owned())
            })?;
            match message_type.as_str() {
                "CustomerCreated" => {
                    let customer = payload.customer.ok_or_else(|| {
                        WebhookError::Field("CustomerCreated has no customer".to_owned())
                    })?;
                    let customer: Customer =
                        serde_path_to_error::deserialize(&customer).map_err(|e| {
                            WebhookError::Field(format!(
                                "CustomerCreated customer is invalid: `customer.{}`: {}",
                                e.path(),
                                e.inner()
                            ))
                        })?;
                    if customer.id != id {
                        return Err(WebhookError::Field(
                            "CustomerCreated customer.id differs from resource.id".to_owned(),
                        ));
                    }
                    Ok(WebhookEvent::CustomerUpserted(Box::new(customer)))
                }
                "CustomerDeleted" => Ok(WebhookEvent::CustomerDeleted { id }),
                _ => Ok(WebhookEvent::CustomerChanged {
                    id,
                    version: payload.resource_version,
                }),
            }
        }
        "ResourceCreated" | "ResourceUpdated" => Ok(WebhookEvent::CustomerChanged {
            id,
            version: payload.version,
        }),
        "ResourceDeleted" => Ok(WebhookEvent::CustomerDeleted { id }),
        other => Err(WebhookError::Unrecognised(format!(
            "unknown notificationType `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests;
