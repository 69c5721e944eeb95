//! The transformation: a commercetools [`Customer`] becomes one Segment identify
//! message, or a typed reason why none is sent.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::batch::MAX_MESSAGE_BYTES;
use crate::customer::{Address, Customer};
use crate::delivery::DeliveryError;
use crate::identity::{Email, EmailError, MessageId, UserId, UserIdStrategy};
use crate::{LIBRARY_NAME, LIBRARY_VERSION};

/// Why a customer is deliberately not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkipReason {
    /// The email is absent, empty or whitespace.
    #[error("customer has no email")]
    NoEmail,
    /// The email is not an address.
    #[error("invalid email")]
    InvalidEmail,
}

/// Why no identify message came out of a customer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSent {
    /// Not sent on purpose; nothing is wrong.
    #[error("skipped: {0}")]
    Skipped(SkipReason),
    /// Cannot be sent as it is; it goes to the dead letters.
    #[error("rejected: {0}")]
    Rejected(DeliveryError),
}

/// A hash of what Segment would store for a customer: its `userId` and traits.
/// Equal content gives equal fingerprints whatever the customer's version or
/// modification time, so an update that changes no trait sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// The fingerprint of a `userId` and the serialised traits.
    fn of(user_id: &str, traits_json: &str) -> Self {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(user_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(traits_json.as_bytes());
        Self(hasher.digest128())
    }

    /// The 32-hex-digit form that is stored.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Reads the stored form back.
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 32)
            .then(|| u128::from_str_radix(hex, 16).ok())
            .flatten()
            .map(Self)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One identify message, built and serialised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    customer_id: String,
    user_id: UserId,
    message_id: MessageId,
    fingerprint: Fingerprint,
    json: Arc<str>,
}

impl Identify {
    /// The commercetools id of the customer it is about.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The Segment `userId`.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The deterministic `messageId`.
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// The content fingerprint, for "unchanged since last delivered".
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The message as it goes into a batch: compact JSON, at most 32 KiB.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The serialised message, shared rather than copied: the client that sends
    /// it and the caller that may need it for a dead letter hold the same bytes.
    pub fn shared_json(&self) -> Arc<str> {
        Arc::clone(&self.json)
    }

    /// Takes the serialised message out.
    pub fn into_json(self) -> Arc<str> {
        self.json
    }

    /// Rebuilds a message from the JSON this module produced (a dead letter being
    /// replayed): the `userId`, `messageId` and traits are read back from it.
    pub fn from_json(customer_id: &str, json: String) -> Result<Self, NotSent> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Stored<'a> {
            // A `userId` holding `"` or `\` is escaped in the JSON and cannot be borrowed.
            #[serde(borrow)]
            user_id: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            message_id: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            traits: &'a serde_json::value::RawValue,
        }
        let stored: Stored<'_> = serde_json::from_str(&json)
            .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
        let user_id = UserId::parse(&stored.user_id)
            .map_err(|_| NotSent::Rejected(DeliveryError::EmptyUserId))?;
        let fingerprint = Fingerprint::of(user_id.as_ref(), stored.traits.get());
        if stored.message_id.is_empty() || stored.message_id.len() >= 100 {
            return Err(NotSent::Rejected(DeliveryError::InvalidPayload));
        }
        let message_id = MessageId::stored(&stored.message_id);
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(NotSent::Rejected(DeliveryError::PayloadTooLarge));
        }
        Ok(Self {
            customer_id: customer_id.to_owned(),
            user_id,
            message_id,
            fingerprint,
            json: json.into(),
        })
    }
}

impl MessageId {
    fn for_content(customer: &Customer, fingerprint: Fingerprint) -> Self {
        Self::new(&customer.id, customer.version, fingerprint.0)
    }
}

/// Builds the identify message for a customer.
///
/// Skipped with the email strategy when the email is missing or invalid; rejected
/// when the `userId` would be empty or the message is over 32 KiB.
pub fn identify(customer: &Customer, strategy: UserIdStrategy) -> Result<Identify, NotSent> {
    let email = customer.email.as_deref().map(Email::parse);
    let user_id = match strategy {
        UserIdStrategy::Email => match &email {
            Some(Ok(email)) => UserId::from(email.clone()),
            None | Some(Err(EmailError::Missing)) => {
                return Err(NotSent::Skipped(SkipReason::NoEmail))
            }
            Some(Err(EmailError::Invalid)) => {
                return Err(NotSent::Skipped(SkipReason::InvalidEmail))
            }
        },
        UserIdStrategy::CustomerId => UserId::parse(&customer.id)
            .map_err(|_| NotSent::Rejected(DeliveryError::EmptyUserId))?,
    };
    let email = email.and_then(Result::ok);

    let traits = Traits::of(customer, email.as_ref());
    let traits_json = serde_json::to_string(&traits)
        .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
    let fingerprint = Fingerprint::of(user_id.as_ref(), &traits_json);
    let message_id = MessageId::for_content(customer, fingerprint);
    let timestamp = nonblank(&customer.last_modified_at).or(nonblank(&customer.created_at));

    let json = Envelope {
        user_id: user_id.as_ref(),
        message_id: message_id.as_ref(),
        timestamp,
        traits: &traits_json,
    }
    .to_json()
    .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
    if json.len() > MAX_MESSAGE_BYTES {
        return Err(NotSent::Rejected(DeliveryError::PayloadTooLarge));
    }
    Ok(Identify {
        customer_id: customer.id.clone(),
        user_id,
        message_id,
        fingerprint,
        json: json.into(),
    })
}

/// The parts of the message around the traits, written in Segment's field order.
struct Envelope<'a> {
    user_id: &'a str,
    message_id: &'a str,
    timestamp: Option<&'a str>,
    traits: &'a str,
}

impl Envelope<'_> {
    fn to_json(&self) -> serde_json::Result<String> {
        let mut out = Vec::with_capacity(self.traits.len() + 256);
        out.extend_from_slice(br#"{"type":"identify","userId":"#);
        serde_json::to_writer(&mut out, self.user_id)?;
        out.extend_from_slice(br#","messageId":"#);
        serde_json::to_writer(&mut out, self.message_id)?;
        if let Some(timestamp) = self.timestamp {
            out.extend_from_slice(br#","timestamp":"#);
            serde_json::to_writer(&mut out, timestamp)?;
        }
        out.extend_from_slice(br#","context":{"library":"#);
        out.extend_from_slice(library_json().as_bytes());
        out.extend_from_slice(br#"},"traits":"#);
        out.extend_from_slice(self.traits.as_bytes());
        out.push(b'}');
        // Every piece above is valid UTF-8 JSON.
        String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
    }
}

/// `{"name":"segment-sync","version":…}`, the `context.library` of every message.
pub fn library() -> Value {
    serde_json::json!({ "name": LIBRARY_NAME, "version": LIBRARY_VERSION })
}

/// [`library`] serialised, built once: every message and batch body carries it.
pub fn library_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| library().to_string())
}

/// The traits of contract §4, in the order they are written. Absent or blank
/// values are left out rather than sent as `null` or `""`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Traits<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    birthday: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<TraitAddress<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company: Option<Company<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    salutation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    honorific: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commercetools_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stores: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<CleanFields<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TraitAddress<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Company<'a> {
    name: &'a str,
}

impl<'a> Traits<'a> {
    fn of(customer: &'a Customer, email: Option<&'a Email>) -> Self {
        let first_name = nonblank(&customer.first_name);
        let last_name = nonblank(&customer.last_name);
        let name = match (first_name, last_name) {
            (Some(first), Some(last)) => Some(format!("{first} {last}")),
            (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
            (None, None) => None,
        };
        let custom = customer
            .custom
            .as_ref()
            .map(|custom| CleanFields(&custom.fields))
            .filter(|fields| !fields.is_empty());
        Self {
            email: email.map(AsRef::as_ref),
            first_name,
            last_name,
            name,
            birthday: nonblank(&customer.date_of_birth),
            phone: phone(customer),
            address: primary_address(customer).and_then(TraitAddress::of),
            company: nonblank(&customer.company_name).map(|name| Company { name }),
            created_at: nonblank(&customer.created_at),
            salutation: nonblank(&customer.salutation),
            honorific: nonblank(&customer.title),
            commercetools_id: nonblank_str(&customer.id),
            customer_number: nonblank(&customer.customer_number),
            external_id: nonblank(&customer.external_id),
            key: nonblank(&customer.key),
            locale: nonblank(&customer.locale),
            is_email_verified: customer.is_email_verified,
            customer_group_id: customer
                .customer_group
                .as_ref()
                .and_then(|group| nonblank_str(&group.id)),
            stores: customer
                .stores
                .iter()
                .filter_map(|store| nonblank_str(&store.key))
                .collect(),
            custom,
        }
    }
}

impl<'a> TraitAddress<'a> {
    fn of(address: &'a Address) -> Option<Self> {
        let street = match (
            nonblank(&address.street_name),
            nonblank(&address.street_number),
        ) {
            (Some(name), Some(number)) => Some(format!("{name} {number}")),
            (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
            (None, None) => None,
        };
        let trait_address = Self {
            street,
            city: nonblank(&address.city),
            postal_code: nonblank(&address.postal_code),
            state: nonblank(&address.state).or(nonblank(&address.region)),
            country: nonblank(&address.country),
        };
        let empty = trait_address.street.is_none()
            && trait_address.city.is_none()
            && trait_address.postal_code.is_none()
            && trait_address.state.is_none()
            && trait_address.country.is_none();
        (!empty).then_some(trait_address)
    }
}

fn address_by_id<'a>(customer: &'a Customer, id: &Option<String>) -> Option<&'a Address> {
    let id = id.as_deref()?;
    customer
        .addresses
        .iter()
        .find(|address| address.id.as_deref() == Some(id))
}

/// Default billing, else default shipping, else the first address.
fn primary_address(customer: &Customer) -> Option<&Address> {
    address_by_id(customer, &customer.default_billing_address_id)
        .or_else(|| address_by_id(customer, &customer.default_shipping_address_id))
        .or_else(|| customer.addresses.first())
}

fn phone_of(address: &Address) -> Option<&str> {
    nonblank(&address.phone).or(nonblank(&address.mobile))
}

/// The phone (else mobile) of the default billing address, else of the default
/// shipping address, else of the first address that has one.
fn phone(customer: &Customer) -> Option<&str> {
    address_by_id(customer, &customer.default_billing_address_id)
        .and_then(phone_of)
        .or_else(|| {
            address_by_id(customer, &customer.default_shipping_address_id).and_then(phone_of)
        })
        .or_else(|| customer.addresses.iter().find_map(phone_of))
}

fn nonblank(value: &Option<String>) -> Option<&str> {
    value.as_deref().and_then(nonblank_str)
}

fn nonblank_str(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// Custom field values as Segment should see them: enum values `{key, label}` by
/// their key, and nulls, blank strings and containers left empty by that removed,
/// at any depth.
#[derive(Debug)]
struct CleanFields<'a>(&'a Map<String, Value>);

impl CleanFields<'_> {
    fn is_empty(&self) -> bool {
        self.0.values().all(|value| !is_present(value))
    }
}

impl Serialize for CleanFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_object(self.0, serializer)
    }
}

struct CleanValue<'a>(&'a Value);

impl Serialize for CleanValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                serializer.collect_seq(items.iter().filter(|v| is_present(v)).map(CleanValue))
            }
            Value::Object(fields) => match enum_key(fields) {
                Some(key) => serializer.serialize_str(key),
                None => serialize_object(fields, serializer),
            },
            other => other.serialize(serializer),
        }
    }
}

fn serialize_object<S: Serializer>(
    fields: &Map<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let present = fields.iter().filter(|(_, value)| is_present(value));
    let mut map = serializer.serialize_map(None)?;
    for (name, value) in present {
        map.serialize_entry(name, &CleanValue(value))?;
    }
    map.end()
}

/// A commercetools enum value: exactly `key` and `label`, the key a string.
fn enum_key(fields: &Map<String, Value>) -> Option<&str> {
    if fields.len() != 2 || !fields.contains_key("label") {
        return None;
    }
    fields.get("key")?.as_str()
}

/// Whether a value survives cleaning: not null, not a blank string, not a
/// container with nothing present in it, not an enum with a blank key.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(fields) => match enum_key(fields) {
            Some(key) => !key.trim().is_empty(),
            None => fields.values().any(is_present),
        },
        Value::Bool(_) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests;
