//! Values that are checked once, when they are made, and trusted from then on.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// A syntactically valid email address, trimmed and lowercased.
///
/// commercetools keeps an email's letter case but compares emails without it, so
/// the lowercased form is the customer's stable identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not an [`Email`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Absent, empty or only whitespace.
    #[error("customer has no email")]
    Missing,
    /// Present but not of the form `local@domain` without spaces.
    #[error("invalid email")]
    Invalid,
}

/// The longest address a mail system accepts (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

impl Email {
    /// Trims, lowercases and checks an address: one `@` with text on both sides,
    /// no whitespace or control characters, a domain without `@`, at most 254 bytes.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Missing);
        }
        let lowered = trimmed.to_lowercase();
        let Some((local, domain)) = lowered.rsplit_once('@') else {
            return Err(EmailError::Invalid);
        };
        let well_formed = !local.is_empty()
            && !domain.is_empty()
            && !local.contains('@')
            && lowered.len() <= MAX_EMAIL_LEN
            && !lowered.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(Self(lowered))
        } else {
            Err(EmailError::Invalid)
        }
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a customer's Segment `userId` is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserIdStrategy {
    /// The trimmed, lowercased email; customers without a valid one are skipped.
    #[default]
    Email,
    /// The commercetools customer id; no customer is skipped.
    CustomerId,
}

/// Why a strategy name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown user id strategy \"{0}\": expected \"email\" or \"customer-id\"")]
pub struct UnknownStrategy(pub String);

impl FromStr for UserIdStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "email" => Ok(Self::Email),
            "customer-id" | "customer_id" | "id" => Ok(Self::CustomerId),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

impl fmt::Display for UserIdStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Email => "email",
            Self::CustomerId => "customer-id",
        })
    }
}

/// A Segment `userId`: never empty, never only whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

/// A `userId` that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("userId cannot be empty")]
pub struct EmptyUserId;

impl UserId {
    /// Accepts any non-blank string, trimmed.
    pub fn parse(raw: &str) -> Result<Self, EmptyUserId> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            Err(EmptyUserId)
        } else {
            Ok(Self(trimmed.to_owned()))
        }
    }
}

impl From<Email> for UserId {
    fn from(email: Email) -> Self {
        Self(email.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Segment source write key. Its `Debug` and `Display` print `***`.
#[derive(Clone)]
pub struct WriteKey(SecretString);

/// Why a write key cannot be used. The messages are the ones users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteKeyError {
    /// Not set, or set to the empty string.
    #[error("Missing SEGMENT_WRITE_KEY")]
    Missing,
    /// Set to whitespace only.
    #[error("Write key cannot be empty or whitespace only")]
    Blank,
}

impl WriteKey {
    /// Takes the raw variable: `None` or `""` is missing, whitespace is blank;
    /// anything else is kept trimmed.
    pub fn parse(raw: Option<&str>) -> Result<Self, WriteKeyError> {
        match raw {
            None | Some("") => Err(WriteKeyError::Missing),
            Some(s) if s.trim().is_empty() => Err(WriteKeyError::Blank),
            Some(s) => Ok(Self(SecretString::from(s.trim().to_owned()))),
        }
    }

    /// The key itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteKey(***)")
    }
}

impl fmt::Display for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A Segment `messageId`: printable ASCII, under 100 characters, made by
/// [`MessageId::new`] from what identifies the content it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

/// The longest customer id that is used verbatim in a message id.
const MAX_ID_IN_MESSAGE_ID: usize = 40;

impl MessageId {
    /// `ctp-{customer id}-{version}-{content hash}`. A customer id that is long or
    /// not plain ASCII is replaced by its hash so that the result stays short and clean.
    pub fn new(customer_id: &str, version: i64, content_hash: u128) -> Self {
        let plain = customer_id.len() <= MAX_ID_IN_MESSAGE_ID
            && customer_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let id = if plain && !customer_id.is_empty() {
            customer_id.to_owned()
        } else {
            format!(
                "h{:016x}",
                xxhash_rust::xxh3::xxh3_64(customer_id.as_bytes())
            )
        };
        Self(format!("ctp-{id}-{version}-{content_hash:032x}"))
    }
}

impl MessageId {
    /// A message id read back from a message this crate built.
    pub(crate) fn stored(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM \n").unwrap();
        assert_eq!(email.as_ref(), "ada.lovelace@example.com");
    }

    #[test]
    fn email_rejections_name_the_reason() {
        assert_eq!(Email::parse(""), Err(EmailError::Missing));
        assert_eq!(Email::parse(" \t"), Err(EmailError::Missing));
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "ada lovelace@example.com",
            "a@b@c",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad}");
        }
    }

    #[test]
    fn write_key_errors_are_the_contract_lines() {
        assert_eq!(
            WriteKey::parse(None).unwrap_err().to_string(),
            "Missing SEGMENT_WRITE_KEY"
        );
        assert_eq!(
            WriteKey::parse(Some("")).unwrap_err().to_string(),
            "Missing SEGMENT_WRITE_KEY"
        );
        assert_eq!(
            WriteKey::parse(Some("  ")).unwrap_err().to_string(),
            "Write key cannot be empty or whitespace only"
        );
    }

    #[test]
    fn write_key_never_prints() {
        let key = WriteKey::parse(Some("sekrit-key")).unwrap();
        assert_eq!(format!("{key:?}"), "WriteKey(***)");
        assert_eq!(key.to_string(), "***");
        assert_eq!(key.expose(), "sekrit-key");
    }

    #[test]
    fn message_id_is_short_for_any_customer_id() {
        let long = "x".repeat(500);
        for id in ["c1", long.as_str(), "ünï cödé", ""] {
            let message_id = MessageId::new(id, i64::MIN, u128::MAX);
            assert!(message_id.as_ref().len() < 100, "{message_id}");
            assert!(message_id.as_ref().is_ascii());
        }
    }

    #[test]
    fn strategy_parses_its_names() {
        assert_eq!("email".parse(), Ok(UserIdStrategy::Email));
        assert_eq!("customer-id".parse(), Ok(UserIdStrategy::CustomerId));
        assert!("phone".parse::<UserIdStrategy>().is_err());
    }
}
