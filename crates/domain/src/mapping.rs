//! What goes to Segment: a mapping file that excludes or renames the standard
//! traits, picks and places custom fields, adds constant traits and builds
//! `context.consent.categoryPreferences` from custom fields.
//!
//! A [`Mapping`] is read from TOML text by [`Mapping::from_toml`], which checks the
//! whole file and reports every problem at once ([`MappingErrors`]), each with the
//! file, line, column and key. Reading the file is the caller's job; this module
//! does no I/O. The default mapping is empty: the payload is exactly the standard
//! one of [`crate::identify`]. A mapping is applied by
//! [`IdentifyRules`](crate::identify::IdentifyRules), together with the `userId`
//! strategy, inside the transformation.
//!
//! ```
//! use segment_sync_domain::Mapping;
//!
//! let mapping = Mapping::from_toml(r#"
//! [traits]
//! exclude = ["birthday", "phone"]
//! rename = { firstName = "first_name" }
//! "#, "mapping.toml").unwrap();
//! assert!(!mapping.is_empty());
//!
//! let errors = Mapping::from_toml("[traits]\nexclude = [\"birthdate\"]\n", "mapping.toml").unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     r#"mapping.toml:2:12: traits.exclude: unknown trait "birthdate"; did you mean "birthday"?"#
//! );
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::customer::Customer;
use crate::identity::UserIdStrategy;

mod read;

/// Which traits, custom fields and consent categories go to Segment, and under
/// which names. Cheap to clone: the rules are shared.
///
/// The default is the empty mapping, which leaves the payload exactly as the
/// standard traits make it: same bytes, same fingerprints, same `messageId`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping(Option<Arc<Rules>>);

impl Mapping {
    /// Reads a mapping from the text of a TOML file. `file` is the name the errors
    /// give (usually the path as the user wrote it).
    ///
    /// Every problem is reported at once, in file order. Checks that depend on the
    /// `userId` strategy (`email` is reserved when it is the identity) are made by
    /// [`IdentifyRules::new`](crate::identify::IdentifyRules::new) and
    /// [`IdentifyRules::from_toml`](crate::identify::IdentifyRules::from_toml).
    pub fn from_toml(text: &str, file: &str) -> Result<Self, MappingErrors> {
        Self::read(text, file, None)
    }

    /// [`Mapping::from_toml`], with the checks for `strategy` too when one is given.
    pub(crate) fn read(
        text: &str,
        file: &str,
        strategy: Option<UserIdStrategy>,
    ) -> Result<Self, MappingErrors> {
        let (rules, mut errors) = read::read(text, file);
        if strategy == Some(UserIdStrategy::Email) {
            errors.extend(rules.email_claim.clone());
        }
        if errors.is_empty() {
            Ok(Self::from_rules(rules))
        } else {
            Err(MappingErrors::new(errors))
        }
    }

    /// Whether this mapping changes nothing: the payload is the standard one.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// One line saying what the mapping does, for `check` and logs, e.g.
    /// `excludes birthday, phone; renames firstName → first_name; 1 constant;
    /// custom fields loyaltyTier, newsletter at the top level; consent Advertising`,
    /// or `the standard traits` for the empty mapping.
    pub fn summary(&self) -> String {
        self.rules().summary()
    }

    fn from_rules(rules: Rules) -> Self {
        if rules == *Rules::standard() {
            Self(None)
        } else {
            Self(Some(Arc::new(rules)))
        }
    }

    pub(crate) fn rules(&self) -> &Rules {
        self.0.as_deref().unwrap_or(Rules::standard())
    }

    /// The error for a name given as `email` while it is the identity, if any.
    pub(crate) fn email_claim(&self) -> Option<&MappingError> {
        self.rules().email_claim.as_ref()
    }
}

/// Every problem found in a mapping file, in file order. Its `Display` prints one
/// line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct MappingErrors(Vec<MappingError>);

impl MappingErrors {
    pub(crate) fn new(mut errors: Vec<MappingError>) -> Self {
        errors.sort_by_key(|error| (error.line, error.column));
        Self(errors)
    }

    /// The problems, in file order; never empty.
    pub fn errors(&self) -> &[MappingError] {
        &self.0
    }
}

impl IntoIterator for MappingErrors {
    type Item = MappingError;
    type IntoIter = std::vec::IntoIter<MappingError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

struct Lines<'a>(&'a [MappingError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// One problem in a mapping file, where it is: `file:line:column: key: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{problem}", KeyPrefix(.key))]
pub struct MappingError {
    file: Arc<str>,
    line: usize,
    column: usize,
    key: Option<String>,
    problem: MappingProblem,
}

impl MappingError {
    /// The file name given to [`Mapping::from_toml`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, counted from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column, in characters, counted from 1.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The dotted key the problem is about (`traits.rename.firstName`); `None` for a
    /// TOML syntax error.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong.
    pub fn problem(&self) -> &MappingProblem {
        &self.problem
    }
}

struct KeyPrefix<'a>(&'a Option<String>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "{key}: "),
            None => Ok(()),
        }
    }
}

/// What is wrong at one place of a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingProblem {
    /// The text is not TOML.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// A table or key the mapping file does not have.
    #[error("unknown key; expected {expected}")]
    UnknownKey {
        /// The keys allowed here.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("missing key \"{key}\"")]
    MissingKey {
        /// The key to add.
        key: &'static str,
    },
    /// A value of the wrong kind.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What belongs here.
        expected: &'static str,
        /// What was written (`string`, `integer`, `table`, …).
        found: &'static str,
    },
    /// Not a trait of the standard payload.
    #[error("unknown trait \"{name}\"{}", DidYouMean(*.closest))]
    UnknownTrait {
        /// The name as written.
        name: String,
        /// The closest valid name, when one is close.
        closest: Option<&'static str>,
    },
    /// A trait, field, category or constant name that is empty or only whitespace.
    #[error("name cannot be empty")]
    EmptyName,
    /// A name given as `userId`, which is the message's own identity.
    #[error("\"userId\" is reserved: it is the Segment userId, not a trait")]
    ReservedUserId,
    /// A name given as `email` while the `email` strategy makes the email the identity.
    #[error("\"email\" is reserved: with the email user id strategy it holds the identity")]
    ReservedEmail,
    /// A name that something else in the payload already has.
    #[error("\"{name}\" is already used by {by}")]
    AlreadyUsed {
        /// The name given twice.
        name: String,
        /// What has it first: a standard trait or another key of the file.
        by: String,
    },
    /// A rename of a trait (or of a key inside one) that is excluded.
    #[error("\"{excluded}\" is excluded, so this rename has no effect")]
    ExcludedAndRenamed {
        /// The excluded trait.
        excluded: &'static str,
    },
    /// A rename of an `address` or `company` key that leaves its object.
    #[error("a key of {parent} is renamed within it: write \"{parent}.{name}\"")]
    RenameLeavesParent {
        /// `address` or `company`.
        parent: &'static str,
        /// The new name as written.
        name: String,
    },
    /// A new name with a dot for a top-level trait: only `address` and `company`
    /// keys are nested.
    #[error("\"{name}\" has a dot: traits are not nested, except address.* and company.*")]
    DottedName {
        /// The new name as written.
        name: String,
    },
    /// A constant that would send a blank string, an empty array or an empty table.
    #[error("a constant cannot be blank or empty")]
    BlankConstant,
    /// A `placement` other than `nested` or `top-level`.
    #[error("unknown placement \"{found}\"; expected \"nested\" or \"top-level\"")]
    UnknownPlacement {
        /// The value as written.
        found: String,
    },
    /// A `[custom]` table while `custom` is excluded in `[traits]`.
    #[error("custom is excluded in traits.exclude, so [custom] has no effect")]
    CustomExcluded,
    /// A rename of `custom` while custom fields are placed at the top level.
    #[error("custom fields are placed at the top level, so renaming custom has no effect")]
    CustomRenamedAtTopLevel,
    /// A rename of a custom field that `include` leaves out.
    #[error("custom field \"{name}\" is renamed but not in custom.include")]
    RenamedNotIncluded {
        /// The custom field.
        name: String,
    },
    /// A consent category with an empty `true_when`, which could never be true.
    #[error("true_when is empty, so the category could never be true")]
    EmptyTrueWhen,
}

struct DidYouMean(Option<&'static str>);

impl fmt::Display for DidYouMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "; did you mean \"{name}\"?"),
            None => Ok(()),
        }
    }
}

/// A trait of the standard payload, or a key inside `address` or `company`: what a
/// mapping may exclude or rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TraitKey {
    Email,
    FirstName,
    LastName,
    Name,
    Birthday,
    Phone,
    Address,
    Company,
    CreatedAt,
    Salutation,
    Honorific,
    CommercetoolsId,
    CustomerNumber,
    ExternalId,
    Key,
    Locale,
    IsEmailVerified,
    CustomerGroupId,
    Stores,
    Custom,
    AddressStreet,
    AddressCity,
    AddressPostalCode,
    AddressState,
    AddressCountry,
    CompanyName,
}

/// How many [`TraitKey`]s there are.
const TRAIT_KEYS: usize = 26;

impl TraitKey {
    /// Every key, in the order the payload writes them.
    pub(crate) const ALL: [Self; TRAIT_KEYS] = [
        Self::Email,
        Self::FirstName,
        Self::LastName,
        Self::Name,
        Self::Birthday,
        Self::Phone,
        Self::Address,
        Self::Company,
        Self::CreatedAt,
        Self::Salutation,
        Self::Honorific,
        Self::CommercetoolsId,
        Self::CustomerNumber,
        Self::ExternalId,
        Self::Key,
        Self::Locale,
        Self::IsEmailVerified,
        Self::CustomerGroupId,
        Self::Stores,
        Self::Custom,
        Self::AddressStreet,
        Self::AddressCity,
        Self::AddressPostalCode,
        Self::AddressState,
        Self::AddressCountry,
        Self::CompanyName,
    ];

    /// The name in the mapping file: `firstName`, `address.postalCode`.
    pub(crate) const fn path(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::FirstName => "firstName",
            Self::LastName => "lastName",
            Self::Name => "name",
            Self::Birthday => "birthday",
            Self::Phone => "phone",
            Self::Address => "address",
            Self::Company => "company",
            Self::CreatedAt => "createdAt",
            Self::Salutation => "salutation",
            Self::Honorific => "honorific",
            Self::CommercetoolsId => "commercetoolsId",
            Self::CustomerNumber => "customerNumber",
            Self::ExternalId => "externalId",
            Self::Key => "key",
            Self::Locale => "locale",
            Self::IsEmailVerified => "isEmailVerified",
            Self::CustomerGroupId => "customerGroupId",
            Self::Stores => "stores",
            Self::Custom => "custom",
            Self::AddressStreet => "address.street",
            Self::AddressCity => "address.city",
            Self::AddressPostalCode => "address.postalCode",
            Self::AddressState => "address.state",
            Self::AddressCountry => "address.country",
            Self::CompanyName => "company.name",
        }
    }

    /// The name in the payload, inside its parent for a nested key.
    const fn leaf(self) -> &'static str {
        match self {
            Self::AddressStreet => "street",
            Self::AddressCity => "city",
            Self::AddressPostalCode => "postalCode",
            Self::AddressState => "state",
            Self::AddressCountry => "country",
            Self::CompanyName => "name",
            top => top.path(),
        }
    }

    /// `address` or `company` for a nested key.
    pub(crate) const fn parent(self) -> Option<Self> {
        match self {
            Self::AddressStreet
            | Self::AddressCity
            | Self::AddressPostalCode
            | Self::AddressState
            | Self::AddressCountry => Some(Self::Address),
            Self::CompanyName => Some(Self::Company),
            _ => None,
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.path() == path)
    }

    /// The standard names, as the payload has them without a mapping.
    const STANDARD_NAMES: [Option<Cow<'static, str>>; TRAIT_KEYS] = {
        const fn leaf(index: usize) -> Option<Cow<'static, str>> {
            Some(Cow::Borrowed(TraitKey::ALL[index].leaf()))
        }
        [
            leaf(0),
            leaf(1),
            leaf(2),
            leaf(3),
            leaf(4),
            leaf(5),
            leaf(6),
            leaf(7),
            leaf(8),
            leaf(9),
            leaf(10),
            leaf(11),
            leaf(12),
            leaf(13),
            leaf(14),
            leaf(15),
            leaf(16),
            leaf(17),
            leaf(18),
            leaf(19),
            leaf(20),
            leaf(21),
            leaf(22),
            leaf(23),
            leaf(24),
            leaf(25),
        ]
    };
}

/// Where selected custom fields go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Under the `custom` trait, as without a mapping.
    #[default]
    Nested,
    /// Each one a trait of its own.
    TopLevel,
}

/// A consent category's source: a custom field, read as a boolean, or compared
/// with the values that mean consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsentSource {
    field: String,
    true_when: Option<BTreeSet<String>>,
}

impl ConsentSource {
    /// The preference a customer's field value gives, or `None` when the value
    /// says nothing (absent, blank, or of a kind this source does not read).
    fn preference(&self, value: &Value) -> Option<bool> {
        let Some(true_when) = &self.true_when else {
            return value.as_bool();
        };
        let consents = |value: &Value| -> Option<bool> {
            let key = match value {
                Value::String(text) => text.as_str(),
                Value::Object(fields) => crate::identify::enum_key(fields)?,
                _ => return None,
            };
            (!key.trim().is_empty()).then(|| true_when.contains(key))
        };
        match value {
            // A set says "none of these" when nothing in it matches, even when empty.
            Value::Array(items) => Some(items.iter().any(|item| consents(item) == Some(true))),
            single => consents(single),
        }
    }
}

/// The rules a [`Mapping`] holds, checked and ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    /// The payload name of each [`TraitKey`], `None` when excluded.
    names: [Option<Cow<'static, str>>; TRAIT_KEYS],
    /// Custom fields to send; `None` for all of them.
    include: Option<BTreeSet<String>>,
    /// Custom field → its new name.
    custom_rename: BTreeMap<String, String>,
    /// The new names of `custom_rename`, which an unrenamed field may not take.
    custom_targets: BTreeSet<String>,
    placement: Placement,
    /// Constant traits, in file order.
    constants: Vec<(String, Value)>,
    /// Consent categories, in file order.
    consent: Vec<(String, ConsentSource)>,
    /// Top-level names a custom field placed at the top level (and not named by
    /// the file) may not take: every standard trait's, excluded or not, and every
    /// name the file gives. (`userId` always, and `email` as the identity, are
    /// checked apart.)
    taken: BTreeSet<String>,
    /// Where the file gives something the name `email` other than the email trait:
    /// an error only with the `email` strategy.
    email_claim: Option<MappingError>,
}

static STANDARD: Rules = Rules {
    names: TraitKey::STANDARD_NAMES,
    include: None,
    custom_rename: BTreeMap::new(),
    custom_targets: BTreeSet::new(),
    placement: Placement::Nested,
    constants: Vec::new(),
    consent: Vec::new(),
    taken: BTreeSet::new(),
    email_claim: None,
};

impl Rules {
    /// The rules of the empty mapping.
    pub(crate) fn standard() -> &'static Self {
        &STANDARD
    }

    /// The payload name of a trait or nested key; `None` when it is excluded.
    #[inline]
    pub(crate) fn name(&self, key: TraitKey) -> Option<&str> {
        self.names[key as usize].as_deref()
    }

    /// The name a custom field is sent under, or `None` when it is not sent: left
    /// out by `include`, or its own name is the new name of another field.
    #[inline]
    pub(crate) fn custom_name<'a>(&'a self, field: &'a str) -> Option<&'a str> {
        if let Some(include) = &self.include {
            if !include.contains(field) {
                return None;
            }
        }
        match self.custom_rename.get(field) {
            Some(renamed) => Some(renamed),
            None if self.custom_targets.contains(field) => None,
            None => Some(field),
        }
    }

    /// Whether custom fields are traits of their own rather than under `custom`.
    #[inline]
    pub(crate) fn custom_at_top_level(&self) -> bool {
        self.placement == Placement::TopLevel
    }

    /// The name a custom field is sent under when custom fields are placed at the
    /// top level, or `None` when it is not sent. A field the file names (by
    /// `include` or `rename`) was checked with the file; any other may not take a
    /// standard trait's name or one the file gives, nor `userId`, nor `email` when
    /// it is the identity.
    pub(crate) fn top_level_custom_name<'a>(
        &'a self,
        field: &'a str,
        strategy: UserIdStrategy,
    ) -> Option<&'a str> {
        let name = self.custom_name(field)?;
        let named_by_file = self.include.is_some() || self.custom_rename.contains_key(field);
        let free = name != "userId"
            && !(name == "email" && strategy == UserIdStrategy::Email)
            && !self.taken.contains(name);
        (named_by_file || free).then_some(name)
    }

    /// The constant traits, in file order.
    #[inline]
    pub(crate) fn constants(&self) -> &[(String, Value)] {
        &self.constants
    }

    /// `{"categoryPreferences":{…}}` for a customer, or `None` when no category
    /// has a value (no consent mapping, or none of its fields set).
    pub(crate) fn consent_json(&self, customer: &Customer) -> Option<String> {
        if self.consent.is_empty() {
            return None;
        }
        let fields: &Map<String, Value> = &customer.custom.as_ref()?.fields;
        let mut preferences = self
            .consent
            .iter()
            .filter_map(|(category, source)| {
                let value = fields.get(&source.field)?;
                Some((category, source.preference(value)?))
            })
            .peekable();
        preferences.peek()?;
        let mut out = String::from(r#"{"categoryPreferences":{"#);
        for (index, (category, preference)) in preferences.enumerate() {
            if index > 0 {
                out.push(',');
            }
            // A string always serialises.
            out.push_str(&Value::from(category.as_str()).to_string());
            out.push(':');
            out.push_str(if preference { "true" } else { "false" });
        }
        out.push_str("}}");
        Some(out)
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        let excluded: Vec<&str> = TraitKey::ALL
            .into_iter()
            .filter(|key| self.name(*key).is_none())
            .filter(|key| {
                key.parent()
                    .is_none_or(|parent| self.name(parent).is_some())
            })
            .map(TraitKey::path)
            .collect();
        if !excluded.is_empty() {
            parts.push(format!("excludes {}", excluded.join(", ")));
        }
        let renamed: Vec<String> = TraitKey::ALL
            .into_iter()
            .filter_map(|key| {
                let name = self.name(key)?;
                (name != key.leaf()).then(|| format!("{} → {name}", key.path()))
            })
            .collect();
        if !renamed.is_empty() {
            parts.push(format!("renames {}", renamed.join(", ")));
        }
        match self.constants.len() {
            0 => {}
            1 => parts.push("1 constant".to_owned()),
            n => parts.push(format!("{n} constants")),
        }
        if self.name(TraitKey::Custom).is_some() {
            let which = match &self.include {
                None => "every custom field".to_owned(),
                Some(fields) if fields.is_empty() => "no custom field".to_owned(),
                Some(fields) => {
                    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
                    format!("custom fields {}", names.join(", "))
                }
            };
            let where_ = match self.placement {
                Placement::Nested => "",
                Placement::TopLevel => " at the top level",
            };
            if self.include.is_some() || self.placement == Placement::TopLevel {
                parts.push(format!("{which}{where_}"));
            }
            if !self.custom_rename.is_empty() {
                let renamed: Vec<String> = self
                    .custom_rename
                    .iter()
                    .map(|(from, to)| format!("{from} → {to}"))
                    .collect();
                parts.push(format!("renames custom {}", renamed.join(", ")));
            }
        }
        if !self.consent.is_empty() {
            let categories: Vec<&str> = self.consent.iter().map(|(c, _)| c.as_str()).collect();
            parts.push(format!("consent {}", categories.join(", ")));
        }
        if parts.is_empty() {
            "the standard traits".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests;
