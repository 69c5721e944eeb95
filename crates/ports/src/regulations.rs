use std::fmt;

use async_trait::async_trait;

/// The most subject ids Segment takes in one regulation request.
pub const MAX_SUBJECTS_PER_REGULATION: usize = 5_000;

/// The users Segment regulates per calendar month before it stops promising its
/// 30-day deletion SLA.
pub const MONTHLY_REGULATED_USERS_LIMIT: u64 = 110_000;

/// What a workspace regulation does to the users it names, as Segment's Public
/// API calls it (`regulationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegulationType {
    /// Blocks new data and deletes what Segment and its destinations hold.
    SuppressWithDelete,
    /// Deletes what Segment and its destinations hold; new data still flows.
    DeleteOnly,
    /// Blocks new data; nothing is deleted.
    SuppressOnly,
    /// Blocks new data and deletes from Segment's own systems only.
    SuppressWithDeleteInternal,
}

impl RegulationType {
    /// Every type, in the order the settings list them.
    pub const ALL: [Self; 4] = [
        Self::SuppressWithDelete,
        Self::DeleteOnly,
        Self::SuppressOnly,
        Self::SuppressWithDeleteInternal,
    ];

    /// The Public API's name: `SUPPRESS_WITH_DELETE`, ….
    pub fn as_api_str(self) -> &'static str {
        match self {
            Self::SuppressWithDelete => "SUPPRESS_WITH_DELETE",
            Self::DeleteOnly => "DELETE_ONLY",
            Self::SuppressOnly => "SUPPRESS_ONLY",
            Self::SuppressWithDeleteInternal => "SUPPRESS_WITH_DELETE_INTERNAL",
        }
    }

    /// The type the Public API names so; `None` for a type segment-sync never
    /// creates (`UNSUPPRESS`, `DELETE_INTERNAL`, …).
    pub fn from_api_str(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_api_str() == name)
    }

    /// The value of `SEGMENT_DELETION` that chooses it: `suppress_with_delete`, ….
    pub fn setting_name(self) -> &'static str {
        match self {
            Self::SuppressWithDelete => "suppress_with_delete",
            Self::DeleteOnly => "delete_only",
            Self::SuppressOnly => "suppress_only",
            Self::SuppressWithDeleteInternal => "suppress_with_delete_internal",
        }
    }

    /// The type a `SEGMENT_DELETION` value chooses, in any case; `None` for
    /// anything else (`off` included).
    pub fn from_setting(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.setting_name().eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for RegulationType {
    /// The Public API's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api_str())
    }
}

/// Why a regulation was not created, or its status not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegulationError {
    /// Segment refused the token (401/403). Fatal: the client sends nothing more,
    /// every later call fails the same way without a request.
    #[error("Segment refused the Public API token (HTTP {status}): SEGMENT_PUBLIC_API_TOKEN needs Workspace Owner access, or Workspace Member access with the End User Privacy Admin role")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
    },
    /// Segment could not be reached or kept failing (network, 5xx, 429) after
    /// every retry. Nothing is known to be regulated: send it again later.
    #[error(
        "Segment's Public API is unavailable ({reason}); nothing was regulated, try again later"
    )]
    Unavailable {
        /// The last failure, e.g. `HTTP 503` or `timeout`.
        reason: String,
    },
    /// Segment refused the request itself (a 4xx other than 401, 403 and 429),
    /// or answered without what it must: retrying the same request cannot help.
    #[error("Segment's Public API refused the request (HTTP {status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What Segment said, shortened.
        message: String,
    },
    /// More than [`MAX_SUBJECTS_PER_REGULATION`] subject ids in one call; nothing
    /// was sent.
    #[error("{given} subject ids in one regulation; Segment takes at most 5000 per request")]
    TooMany {
        /// How many were given.
        given: usize,
    },
    /// No subject id at all; nothing was sent.
    #[error("a regulation needs at least one subject id")]
    Empty,
}

impl RegulationError {
    /// The subject ids' count refused before any request: `TooMany` or `Empty`.
    pub fn check_count(subject_ids: &[String]) -> Result<(), Self> {
        match subject_ids.len() {
            0 => Err(Self::Empty),
            given if given > MAX_SUBJECTS_PER_REGULATION => Err(Self::TooMany { given }),
            _ => Ok(()),
        }
    }
}

/// Creates workspace regulations (deletion, suppression) in Segment by `userId`,
/// and reads their status.
///
/// A call with zero or more than [`MAX_SUBJECTS_PER_REGULATION`] ids is refused
/// without a request. Once Segment refuses the token, every call returns
/// [`RegulationError::Unauthorized`] without a request.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RegulationClient: Send + Sync {
    /// Asks Segment to regulate these `userId`s; returns Segment's regulation id
    /// once Segment accepted the request (retrying 429 and 5xx meanwhile).
    async fn regulate(
        &self,
        kind: RegulationType,
        subject_ids: &[String],
    ) -> Result<String, RegulationError>;

    /// Segment's overall status of a regulation: `INITIALIZED`, `RUNNING`,
    /// `FINISHED`, `FAILED`, `PARTIAL_SUCCESS`, `INVALID`, `NOT_SUPPORTED`, ….
    async fn status(&self, regulation_id: &str) -> Result<String, RegulationError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_setting_names_round_trip() {
        for kind in RegulationType::ALL {
            assert_eq!(RegulationType::from_api_str(kind.as_api_str()), Some(kind));
            assert_eq!(
                RegulationType::from_setting(kind.setting_name()),
                Some(kind)
            );
            assert_eq!(
                kind.setting_name().to_ascii_uppercase(),
                kind.as_api_str(),
                "the setting is the API name in lower case"
            );
        }
        assert_eq!(
            RegulationType::from_setting(" Delete_Only "),
            Some(RegulationType::DeleteOnly)
        );
        assert_eq!(RegulationType::from_setting("off"), None);
        assert_eq!(RegulationType::from_api_str("UNSUPPRESS"), None);
        assert_eq!(RegulationType::from_api_str("delete_only"), None);
    }

    #[test]
    fn counts_outside_one_to_five_thousand_are_refused() {
        let ids = |n: usize| vec!["u".to_owned(); n];
        assert_eq!(
            RegulationError::check_count(&ids(0)),
            Err(RegulationError::Empty)
        );
        assert_eq!(RegulationError::check_count(&ids(1)), Ok(()));
        assert_eq!(
            RegulationError::check_count(&ids(MAX_SUBJECTS_PER_REGULATION)),
            Ok(())
        );
        assert_eq!(
            RegulationError::check_count(&ids(MAX_SUBJECTS_PER_REGULATION + 1)),
            Err(RegulationError::TooMany { given: 5_001 })
        );
    }

    #[test]
    fn the_unauthorized_message_names_the_variable_and_the_role() {
        let message = RegulationError::Unauthorized { status: 403 }.to_string();
        assert!(message.contains("SEGMENT_PUBLIC_API_TOKEN"), "{message}");
        assert!(message.contains("Workspace Owner"), "{message}");
        assert!(message.contains("End User Privacy Admin"), "{message}");
        assert!(message.contains("403"), "{message}");
    }
}
