//! The transformation: a commercetools [`Customer`] becomes one Segment identify
//! message, or a typed reason why none is sent.
//!
//! [`identify`] builds the standard payload; [`IdentifyRules`] builds it as a
//! [`Mapping`] says, for a long-running caller that holds its rules.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::batch::MAX_MESSAGE_BYTES;
use crate::customer::{Address, Customer};
use crate::delivery::DeliveryError;
use crate::identity::{Email, EmailError, MessageId, UserId, UserIdStrategy};
use crate::mapping::{Mapping, MappingErrors, Rules, TraitKey};
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

/// A hash of what Segment would store for a customer: its `userId`, traits and
/// consent preferences (when a mapping sends them). Equal content gives equal
/// fingerprints whatever the customer's version or modification time, so an
/// update that changes no trait sends nothing, and a mapping change resends only
/// the customers whose payload it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// The fingerprint of a `userId`, the serialised traits and the serialised
    /// `context.consent`. Without consent it is the fingerprint of the first two
    /// alone, as before mappings existed, so stored fingerprints stay valid.
    fn of(user_id: &str, traits_json: &str, consent_json: Option<&str>) -> Self {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(user_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(traits_json.as_bytes());
        if let Some(consent) = consent_json {
            // JSON never holds a raw NUL, so the parts cannot run into each other.
            hasher.update(&[0]);
            hasher.update(consent.as_bytes());
        }
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
    version: i64,
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

    /// The customer's version the message was built from: a delivery of an older
    /// version never replaces a newer one.
    pub fn version(&self) -> i64 {
        self.version
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
    /// replayed) and the customer version it was built from: the `userId`,
    /// `messageId`, traits and consent are read back from it.
    pub fn from_json(customer_id: &str, version: i64, json: String) -> Result<Self, NotSent> {
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
            #[serde(borrow, default)]
            context: Option<StoredContext<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct StoredContext<'a> {
            #[serde(borrow, default)]
            consent: Option<&'a serde_json::value::RawValue>,
        }
        let stored: Stored<'_> = serde_json::from_str(&json)
            .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
        let user_id = UserId::parse(&stored.user_id)
            .map_err(|_| NotSent::Rejected(DeliveryError::EmptyUserId))?;
        let consent = stored
            .context
            .and_then(|context| context.consent)
            .map(|consent| consent.get());
        let fingerprint = Fingerprint::of(user_id.as_ref(), stored.traits.get(), consent);
        if stored.message_id.is_empty() || stored.message_id.len() >= 100 {
            return Err(NotSent::Rejected(DeliveryError::InvalidPayload));
        }
        let message_id = MessageId::stored(&stored.message_id);
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(NotSent::Rejected(DeliveryError::PayloadTooLarge));
        }
        Ok(Self {
            customer_id: customer_id.to_owned(),
            version,
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

/// Builds the identify message for a customer, with the standard traits (no
/// mapping).
///
/// Skipped with the email strategy when the email is missing or invalid; rejected
/// when the `userId` would be empty or the message is over 32 KiB.
pub fn identify(customer: &Customer, strategy: UserIdStrategy) -> Result<Identify, NotSent> {
    build(customer, strategy, Rules::standard())
}

/// How identify messages are built: the `userId` strategy and the [`Mapping`] of
/// traits, custom fields and consent. Made once at start-up and shared (cloning is
/// cheap: the mapping's rules are behind an `Arc`).
///
/// The default is the `email` strategy with the empty mapping, which builds
/// exactly what [`identify`] builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifyRules {
    strategy: UserIdStrategy,
    mapping: Mapping,
}

impl IdentifyRules {
    /// Rules for a strategy and a mapping. Fails when the mapping gives something
    /// the name `email` while the `email` strategy makes the email the identity.
    pub fn new(strategy: UserIdStrategy, mapping: Mapping) -> Result<Self, MappingErrors> {
        match (strategy, mapping.email_claim()) {
            (UserIdStrategy::Email, Some(claim)) => Err(MappingErrors::new(vec![claim.clone()])),
            _ => Ok(Self { strategy, mapping }),
        }
    }

    /// Reads a mapping file's text (`file` names it in errors) and makes the rules
    /// for `strategy`, reporting every problem of the file at once, including
    /// those that depend on the strategy. This is what a program given
    /// `--mapping FILE` calls.
    pub fn from_toml(
        strategy: UserIdStrategy,
        text: &str,
        file: &str,
    ) -> Result<Self, MappingErrors> {
        let mapping = Mapping::read(text, file, Some(strategy))?;
        Ok(Self { strategy, mapping })
    }

    /// The `userId` strategy.
    pub fn strategy(&self) -> UserIdStrategy {
        self.strategy
    }

    /// The mapping applied.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// A fingerprint of these rules, hex: equal rules give equal fingerprints
    /// within a build, so that an application can tell that the rules changed
    /// since its last run (and compare every profile once). A new build may give
    /// other fingerprints for the same rules; that costs one full comparison.
    pub fn fingerprint(&self) -> String {
        // Every part of the rules is ordered (no hash maps), so the debug form is
        // stable within a build.
        format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(format!("{self:?}").as_bytes())
        )
    }

    /// Builds the identify message for a customer under these rules: the same
    /// outcomes as [`identify`], with the payload the mapping asks for. The 32 KiB
    /// limit applies to the mapped message.
    pub fn identify(&self, customer: &Customer) -> Result<Identify, NotSent> {
        build(customer, self.strategy, self.mapping.rules())
    }
}

impl From<UserIdStrategy> for IdentifyRules {
    /// The rules of a strategy with no mapping.
    fn from(strategy: UserIdStrategy) -> Self {
        Self {
            strategy,
            mapping: Mapping::default(),
        }
    }
}

fn build(
    customer: &Customer,
    strategy: UserIdStrategy,
    rules: &Rules,
) -> Result<Identify, NotSent> {
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
    let traits_json = serde_json::to_string(&MappedTraits {
        traits: &traits,
        rules,
        strategy,
    })
    .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
    let consent_json = rules.consent_json(customer);
    let fingerprint = Fingerprint::of(user_id.as_ref(), &traits_json, consent_json.as_deref());
    let message_id = MessageId::for_content(customer, fingerprint);
    let timestamp = nonblank(&customer.last_modified_at).or(nonblank(&customer.created_at));

    let json = Envelope {
        user_id: user_id.as_ref(),
        message_id: message_id.as_ref(),
        timestamp,
        consent: consent_json.as_deref(),
        traits: &traits_json,
    }
    .to_json()
    .map_err(|_| NotSent::Rejected(DeliveryError::InvalidPayload))?;
    if json.len() > MAX_MESSAGE_BYTES {
        return Err(NotSent::Rejected(DeliveryError::PayloadTooLarge));
    }
    Ok(Identify {
        customer_id: customer.id.clone(),
        version: customer.version,
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
    /// `context.consent`, when the mapping builds one.
    consent: Option<&'a str>,
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
        if let Some(consent) = self.consent {
            out.extend_from_slice(br#","consent":"#);
            out.extend_from_slice(consent.as_bytes());
        }
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
/// values are `None` (or empty) and are left out rather than sent as `null` or `""`.
#[derive(Debug)]
struct Traits<'a> {
    email: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    name: Option<String>,
    birthday: Option<&'a str>,
    phone: Option<&'a str>,
    address: Option<TraitAddress<'a>>,
    company_name: Option<&'a str>,
    created_at: Option<&'a str>,
    salutation: Option<&'a str>,
    honorific: Option<&'a str>,
    commercetools_id: Option<&'a str>,
    customer_number: Option<&'a str>,
    external_id: Option<&'a str>,
    key: Option<&'a str>,
    locale: Option<&'a str>,
    is_email_verified: Option<bool>,
    customer_group_id: Option<&'a str>,
    stores: Vec<&'a str>,
    /// The raw custom fields; what is sent of them depends on the mapping.
    custom: Option<&'a Map<String, Value>>,
}

#[derive(Debug)]
struct TraitAddress<'a> {
    street: Option<String>,
    city: Option<&'a str>,
    postal_code: Option<&'a str>,
    state: Option<&'a str>,
    country: Option<&'a str>,
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
        let custom = customer.custom.as_ref().map(|custom| &custom.fields);
        Self {
            email: email.map(AsRef::as_ref),
            first_name,
            last_name,
            name,
            birthday: nonblank(&customer.date_of_birth),
            phone: phone(customer),
            address: primary_address(customer).and_then(TraitAddress::of),
            company_name: nonblank(&customer.company_name),
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

/// The traits as the rules name and place them, in the standard order, with
/// the constants last.
struct MappedTraits<'t, 'a> {
    traits: &'t Traits<'a>,
    rules: &'t Rules,
    strategy: UserIdStrategy,
}

impl Serialize for MappedTraits<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self {
            traits: t,
            rules,
            strategy,
        } = *self;
        let mut map = serializer.serialize_map(None)?;
        let mut put = Entries {
            map: &mut map,
            rules,
        };
        put.entry(TraitKey::Email, t.email)?;
        put.entry(TraitKey::FirstName, t.first_name)?;
        put.entry(TraitKey::LastName, t.last_name)?;
        put.entry(TraitKey::Name, t.name.as_deref())?;
        put.entry(TraitKey::Birthday, t.birthday)?;
        put.entry(TraitKey::Phone, t.phone)?;
        let address = t
            .address
            .as_ref()
            .map(|address| MappedAddress { address, rules });
        put.entry(
            TraitKey::Address,
            address.filter(|a| !a.is_empty()).as_ref(),
        )?;
        let company = t.company_name.map(|name| MappedCompany { name, rules });
        put.entry(
            TraitKey::Company,
            company.filter(|c| !c.is_empty()).as_ref(),
        )?;
        put.entry(TraitKey::CreatedAt, t.created_at)?;
        put.entry(TraitKey::Salutation, t.salutation)?;
        put.entry(TraitKey::Honorific, t.honorific)?;
        put.entry(TraitKey::CommercetoolsId, t.commercetools_id)?;
        put.entry(TraitKey::CustomerNumber, t.customer_number)?;
        put.entry(TraitKey::ExternalId, t.external_id)?;
        put.entry(TraitKey::Key, t.key)?;
        put.entry(TraitKey::Locale, t.locale)?;
        put.entry(TraitKey::IsEmailVerified, t.is_email_verified.as_ref())?;
        put.entry(TraitKey::CustomerGroupId, t.customer_group_id)?;
        put.entry(TraitKey::Stores, Some(&t.stores).filter(|s| !s.is_empty()))?;
        if let (Some(fields), Some(name)) = (t.custom, rules.name(TraitKey::Custom)) {
            if rules.custom_at_top_level() {
                for (field, value) in fields {
                    let Some(name) = rules.top_level_custom_name(field, strategy) else {
                        continue;
                    };
                    if is_present(value) {
                        map.serialize_entry(name, &CleanValue(value))?;
                    }
                }
            } else {
                let custom = CleanFields { fields, rules };
                if !custom.is_empty() {
                    map.serialize_entry(name, &custom)?;
                }
            }
        }
        for (name, value) in rules.constants() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Writes a trait under its mapped name when it has a value and is not excluded.
struct Entries<'m, 'r, M> {
    map: &'m mut M,
    rules: &'r Rules,
}

impl<M: SerializeMap> Entries<'_, '_, M> {
    #[inline]
    fn entry<V: Serialize + ?Sized>(
        &mut self,
        key: TraitKey,
        value: Option<&V>,
    ) -> Result<(), M::Error> {
        match (value, self.rules.name(key)) {
            (Some(value), Some(name)) => self.map.serialize_entry(name, value),
            _ => Ok(()),
        }
    }
}

/// The `address` trait with its keys as the rules name them.
struct MappedAddress<'t, 'a> {
    address: &'t TraitAddress<'a>,
    rules: &'t Rules,
}

impl MappedAddress<'_, '_> {
    fn parts(&self) -> [(TraitKey, Option<&str>); 5] {
        let a = self.address;
        [
            (TraitKey::AddressStreet, a.street.as_deref()),
            (TraitKey::AddressCity, a.city),
            (TraitKey::AddressPostalCode, a.postal_code),
            (TraitKey::AddressState, a.state),
            (TraitKey::AddressCountry, a.country),
        ]
    }

    /// True when every key with a value is excluded: nothing would be left.
    fn is_empty(&self) -> bool {
        self.parts()
            .iter()
            .all(|(key, value)| value.is_none() || self.rules.name(*key).is_none())
    }
}

impl Serialize for MappedAddress<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut put = Entries {
            map: &mut map,
            rules: self.rules,
        };
        for (key, value) in self.parts() {
            put.entry(key, value)?;
        }
        map.end()
    }
}

/// The `company` trait, `{ "name": companyName }`, with its key as the rules name it.
struct MappedCompany<'t, 'a> {
    name: &'a str,
    rules: &'t Rules,
}

impl MappedCompany<'_, '_> {
    fn is_empty(&self) -> bool {
        self.rules.name(TraitKey::CompanyName).is_none()
    }
}

impl Serialize for MappedCompany<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        Entries {
            map: &mut map,
            rules: self.rules,
        }
        .entry(TraitKey::CompanyName, Some(self.name))?;
        map.end()
    }
}

/// Custom field values as Segment should see them: the fields the rules select,
/// under their mapped names, enum values `{key, label}` by their key, and nulls,
/// blank strings and containers left empty by that removed, at any depth.
struct CleanFields<'a> {
    fields: &'a Map<String, Value>,
    rules: &'a Rules,
}

impl CleanFields<'_> {
    fn selected(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().filter_map(|(field, value)| {
            let name = self.rules.custom_name(field)?;
            is_present(value).then_some((name, value))
        })
    }

    fn is_empty(&self) -> bool {
        self.selected().next().is_none()
    }
}

impl Serialize for CleanFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.selected() {
            map.serialize_entry(name, &CleanValue(value))?;
        }
        map.end()
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
pub(crate) fn enum_key(fields: &Map<String, Value>) -> Option<&str> {
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
