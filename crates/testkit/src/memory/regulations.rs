//! [`MemoryRegulations`]: a regulation client that keeps what it is asked and
//! can be told to fail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_ports::{RegulationClient, RegulationError, RegulationType};
use tokio::sync::watch;

use crate::lock;

/// The status a regulation has until a test sets another (as Segment's).
pub const INITIAL_STATUS: &str = "INITIALIZED";

/// One regulation [`MemoryRegulations`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRegulation {
    /// The id it answered.
    pub id: String,
    /// What it does.
    pub kind: RegulationType,
    /// The `userId`s, in order.
    pub subject_ids: Vec<String>,
    /// Its overall status.
    pub status: String,
}

/// A [`RegulationClient`] in memory: every call that would reach Segment is
/// recorded ([`MemoryRegulations::calls`]), accepted ones become regulations
/// ([`MemoryRegulations::regulations`]) with a settable status. Calls can be made
/// to fail, once or until told otherwise; an `Unauthorized` failure latches as
/// the real client's 401 does. Clones share one client.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegulations(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    created: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<(RegulationType, Vec<String>)>,
    regulations: Vec<MemoryRegulation>,
    fail_next: VecDeque<RegulationError>,
    fail_always: Option<RegulationError>,
    refused_with: Option<u16>,
}

impl State {
    /// The failure this call ends with, if any; an `Unauthorized` one latches.
    fn failure(&mut self) -> Option<RegulationError> {
        let failure = self
            .fail_next
            .pop_front()
            .or_else(|| self.fail_always.clone())?;
        if let RegulationError::Unauthorized { status } = failure {
            self.refused_with = Some(status);
        }
        Some(failure)
    }
}

impl MemoryRegulations {
    /// A client that accepts every valid call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next call that reaches "Segment" fails with `error` (failures queue up,
    /// one per call; `regulate` and `status` both take from the queue).
    pub fn fail_next(&self, error: RegulationError) {
        lock(&self.0.state).fail_next.push_back(error);
    }

    /// Every call fails with `error` from now on (after any queued by
    /// [`fail_next`](Self::fail_next)); `None` lets calls succeed again, except
    /// after an `Unauthorized`, which stays latched.
    pub fn fail_always(&self, error: Option<RegulationError>) {
        lock(&self.0.state).fail_always = error;
    }

    /// Sets a regulation's overall status.
    ///
    /// # Panics
    /// When no regulation has that id.
    pub fn set_status(&self, regulation_id: &str, status: &str) {
        let mut state = lock(&self.0.state);
        let regulation = state
            .regulations
            .iter_mut()
            .find(|r| r.id == regulation_id)
            .unwrap_or_else(|| panic!("no regulation {regulation_id}"));
        regulation.status = status.to_owned();
    }

    /// Every `regulate` call that reached "Segment" (valid in size, token not
    /// refused before), whatever it ended with, in order.
    pub fn calls(&self) -> Vec<(RegulationType, Vec<String>)> {
        lock(&self.0.state).calls.clone()
    }

    /// The regulations created, in order.
    pub fn regulations(&self) -> Vec<MemoryRegulation> {
        lock(&self.0.state).regulations.clone()
    }

    /// Every subject id regulated, in order.
    pub fn regulated_subjects(&self) -> Vec<String> {
        lock(&self.0.state)
            .regulations
            .iter()
            .flat_map(|r| r.subject_ids.iter().cloned())
            .collect()
    }

    /// Waits until at least `count` regulations were created.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_regulations(&self, count: u64, timeout: Duration) {
        let mut seen = self.0.created.subscribe();
        if tokio::time::timeout(timeout, seen.wait_for(|n| *n >= count))
            .await
            .is_err()
        {
            panic!(
                "{count} regulations expected within {timeout:?}, got {}",
                *self.0.created.borrow()
            );
        }
    }
}

#[async_trait]
impl RegulationClient for MemoryRegulations {
    async fn regulate(
        &self,
        kind: RegulationType,
        subject_ids: &[String],
    ) -> Result<String, RegulationError> {
        RegulationError::check_count(subject_ids)?;
        let mut state = lock(&self.0.state);
        if let Some(status) = state.refused_with {
            return Err(RegulationError::Unauthorized { status });
        }
        state.calls.push((kind, subject_ids.to_vec()));
        if let Some(error) = state.failure() {
            return Err(error);
        }
        let id = format!("memory-regulation-{:04}", state.regulations.len() + 1);
        state.regulations.push(MemoryRegulation {
            id: id.clone(),
            kind,
            subject_ids: subject_ids.to_vec(),
            status: INITIAL_STATUS.to_owned(),
        });
        drop(state);
        self.0.created.send_modify(|n| *n += 1);
        Ok(id)
    }

    async fn status(&self, regulation_id: &str) -> Result<String, RegulationError> {
        let mut state = lock(&self.0.state);
        if let Some(status) = state.refused_with {
            return Err(RegulationError::Unauthorized { status });
        }
        if let Some(error) = state.failure() {
            return Err(error);
        }
        state
            .regulations
            .iter()
            .find(|r| r.id == regulation_id)
            .map(|r| r.status.clone())
            .ok_or_else(|| RegulationError::Refused {
                status: 404,
                message: "Resource not found".to_owned(),
            })
    }
}
