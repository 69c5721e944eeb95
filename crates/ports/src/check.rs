use std::fmt;

use async_trait::async_trait;

/// One line of `segment-sync check`: what was checked, and either a detail or how
/// to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked, e.g. `state database segment-sync.db writable`.
    pub what: String,
    /// `Ok` with a detail (may be empty), or `Err` with the fix.
    pub result: Result<String, String>,
}

impl CheckLine {
    /// A check that passed.
    pub fn pass(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            result: Ok(detail.into()),
        }
    }

    /// A check that failed, with its fix.
    pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            result: Err(fix.into()),
        }
    }

    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

impl fmt::Display for CheckLine {
    /// `✓ what (detail)`, or `✗ what` and the fix on the next line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(detail) if detail.is_empty() => write!(f, "✓ {}", self.what),
            Ok(detail) => write!(f, "✓ {} ({detail})", self.what),
            Err(fix) => write!(f, "✗ {}\n    fix: {fix}", self.what),
        }
    }
}

/// An adapter that can say whether it works here, for `segment-sync check`: it
/// tries the real service (a token, a probe, a write rolled back) and describes
/// each step as a [`CheckLine`]. It never sends a customer or changes any data.
#[async_trait]
pub trait SelfCheck: Send + Sync {
    /// The adapter's checklist lines, in order.
    async fn self_check(&self) -> Vec<CheckLine>;
}
