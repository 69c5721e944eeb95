//! `SEGMENT_DELETION`, `SEGMENT_PUBLIC_API_URL`, `SEGMENT_PUBLIC_API_TOKEN`: what a
//! customer deletion does in Segment, and how the Public API is reached.

use secrecy::SecretString;
use segment_sync_adapters::segment_public_api::{PublicApiConfig, DEFAULT_PUBLIC_API_URL};
use segment_sync_ports::RegulationType;

use super::{service_url, ConfigError, Env, Errors, Parsed};

/// The value of `SEGMENT_DELETION` that turns deletion off (its default).
pub const DELETION_OFF: &str = "off";

/// Deletion in Segment, when `SEGMENT_DELETION` is not `off`. `Debug` never
/// shows the token.
#[derive(Debug, Clone)]
pub struct DeletionSettings {
    /// The regulation a deletion creates.
    pub kind: RegulationType,
    /// `SEGMENT_PUBLIC_API_URL`: the Public API's base URL.
    pub url: String,
    /// `SEGMENT_PUBLIC_API_TOKEN`.
    pub token: SecretString,
}

impl DeletionSettings {
    /// The Public API client's configuration, with its default timeouts and retries.
    pub fn public_api(&self) -> PublicApiConfig {
        PublicApiConfig::new(self.url.clone(), self.token.clone())
    }
}

/// `None` when `SEGMENT_DELETION` is `off` or unset; else the settings, or every
/// error the three variables have. A set `SEGMENT_PUBLIC_API_URL` is checked even
/// with deletion off; the token is required only with deletion on.
pub(super) fn deletion(env: &Env) -> Parsed<Option<DeletionSettings>> {
    let mut errors = Errors::default();
    let kind = errors
        .keep(env.get("SEGMENT_DELETION").and_then(|value| {
            match value {
                None => Ok(None),
                Some(value) if value.eq_ignore_ascii_case(DELETION_OFF) => Ok(None),
                Some(value) => RegulationType::from_setting(value)
                    .map(Some)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "SEGMENT_DELETION",
                        reason: format!("`{value}` is not one of {}", choices()),
                    }),
            }
        }))
        .flatten();
    let url = errors
        .keep(env.get("SEGMENT_PUBLIC_API_URL").and_then(|value| {
            value
                .map(|url| service_url("SEGMENT_PUBLIC_API_URL", url))
                .transpose()
        }))
        .flatten()
        .unwrap_or_else(|| DEFAULT_PUBLIC_API_URL.to_owned());
    let token = errors
        .keep(env.get("SEGMENT_PUBLIC_API_TOKEN"))
        .flatten()
        .map(|token| SecretString::from(token.to_owned()));
    let blank_token = ConfigError::Blank {
        name: "SEGMENT_PUBLIC_API_TOKEN",
    };
    if let (Some(kind), None) = (kind, &token) {
        // A blank token already has its own error.
        if !errors.0.contains(&blank_token) {
            errors.0.push(ConfigError::Invalid {
                name: "SEGMENT_PUBLIC_API_TOKEN",
                reason: format!(
                    "missing; SEGMENT_DELETION={} needs a Public API token with Workspace Owner access, or the End User Privacy Admin role",
                    kind.setting_name()
                ),
            });
        }
    }
    let probe = PublicApiConfig::new(url.clone(), SecretString::from(String::new()));
    if let Err(error) = probe.regulations_url() {
        errors.0.push(ConfigError::Refused(error.to_string()));
    }
    errors.section(|| {
        Some(kind.map(|kind| DeletionSettings {
            kind,
            url,
            token: token.expect("a token, or its error was kept"),
        }))
    })
}

/// The values `SEGMENT_DELETION` takes, as an error lists them.
fn choices() -> String {
    std::iter::once(DELETION_OFF)
        .chain(
            RegulationType::ALL
                .into_iter()
                .map(RegulationType::setting_name),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::Flags;
    use super::*;
    use crate::settings::Settings;

    fn parsed(pairs: &[(&str, &str)]) -> Parsed<Option<DeletionSettings>> {
        Settings::parse(&Env::from_pairs(pairs.iter().copied()), &Flags::default()).deletion
    }

    fn messages(pairs: &[(&str, &str)]) -> Vec<String> {
        parsed(pairs)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn deletion_is_off_by_default_and_when_said_so() {
        assert!(parsed(&[]).unwrap().is_none());
        assert!(parsed(&[("SEGMENT_DELETION", "OFF")]).unwrap().is_none());
        // A token without deletion is harmless.
        assert!(parsed(&[("SEGMENT_PUBLIC_API_TOKEN", "t")])
            .unwrap()
            .is_none());
    }

    #[test]
    fn each_type_is_chosen_by_its_name_with_the_default_url() {
        for kind in RegulationType::ALL {
            let settings = parsed(&[
                ("SEGMENT_DELETION", kind.setting_name()),
                ("SEGMENT_PUBLIC_API_TOKEN", " tok "),
            ])
            .unwrap()
            .unwrap();
            assert_eq!(settings.kind, kind);
            assert_eq!(settings.url, "https://api.segmentapis.com");
            use secrecy::ExposeSecret;
            assert_eq!(settings.token.expose_secret(), "tok");
        }
    }

    #[test]
    fn an_unknown_value_lists_the_choices() {
        assert_eq!(
            messages(&[("SEGMENT_DELETION", "delete")]),
            ["SEGMENT_DELETION: `delete` is not one of off, suppress_with_delete, delete_only, suppress_only, suppress_with_delete_internal"]
        );
    }

    #[test]
    fn deletion_on_needs_the_token_and_says_which_access() {
        let missing = messages(&[("SEGMENT_DELETION", "suppress_with_delete")]);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with(
                "SEGMENT_PUBLIC_API_TOKEN: missing; SEGMENT_DELETION=suppress_with_delete needs"
            ),
            "{missing:?}"
        );
        assert!(missing[0].contains("Workspace Owner"), "{missing:?}");
        assert_eq!(
            messages(&[
                ("SEGMENT_DELETION", "delete_only"),
                ("SEGMENT_PUBLIC_API_TOKEN", "  ")
            ]),
            ["SEGMENT_PUBLIC_API_TOKEN cannot be empty or whitespace only"]
        );
    }

    #[test]
    fn every_error_is_found_at_once_and_the_url_follows_the_https_rule() {
        let all = messages(&[
            ("SEGMENT_DELETION", "suppress_only"),
            ("SEGMENT_PUBLIC_API_URL", "http://api.example.com"),
        ]);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all[0].starts_with("SEGMENT_PUBLIC_API_URL: http://api.example.com is plain http"),
            "{all:?}"
        );
        assert!(
            all[1].starts_with("SEGMENT_PUBLIC_API_TOKEN: missing"),
            "{all:?}"
        );
        // A bad URL is reported even with deletion off.
        assert_eq!(messages(&[("SEGMENT_PUBLIC_API_URL", "ftp://x")]).len(), 1);
        let local = parsed(&[
            ("SEGMENT_DELETION", "delete_only"),
            ("SEGMENT_PUBLIC_API_URL", "http://127.0.0.1:9/"),
            ("SEGMENT_PUBLIC_API_TOKEN", "t"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(local.url, "http://127.0.0.1:9/");
        assert_eq!(
            local.public_api().regulations_url().unwrap().as_str(),
            "http://127.0.0.1:9/regulations"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let settings = parsed(&[
            ("SEGMENT_DELETION", "delete_only"),
            ("SEGMENT_PUBLIC_API_TOKEN", "sekrit-token"),
        ])
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("DeleteOnly"), "{printed}");
    }
}
