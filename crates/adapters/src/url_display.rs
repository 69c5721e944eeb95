//! URLs as they may be shown: never with the credentials they may carry.

use reqwest::Url;

/// `url` as it may appear in a log or an error: a `user:password@` part is
/// replaced by `***@`. Text that is not a URL is shown only up to a `@`, for the
/// same reason.
pub fn without_credentials(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // Both only fail for URLs that cannot have credentials.
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => match url.rsplit_once('@') {
            Some((_, after)) => format!("***@{after}"),
            None => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            without_credentials("https://user:s3cret@api.segment.io/v1"),
            "https://***@api.segment.io/v1"
        );
        assert_eq!(
            without_credentials("postgres://app:pw@db:5432/state"),
            "postgres://***@db:5432/state"
        );
        assert_eq!(
            without_credentials("https://api.segment.io"),
            "https://api.segment.io"
        );
        assert_eq!(without_credentials("not a url:pw@host"), "***@host");
    }
}
