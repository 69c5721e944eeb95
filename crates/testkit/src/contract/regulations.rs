//! The [`RegulationClient`] contract: what every regulation client must do, one
//! public function per rule.
//!
//! Each rule asks a factory for a fresh client whose Segment answers as a
//! [`RegulationScript`] says, together with a view of what reached that Segment
//! (a [`RegulationService`]), so that a rule can tell "refused without a
//! request" from "refused by Segment". Instantiate the whole suite with
//! [`regulation_client_contract!`](crate::regulation_client_contract):
//!
//! ```
//! use segment_sync_ports::RegulationError;
//! use segment_sync_testkit::contract::regulations::{RegulationScript, RegulationSubject};
//! use segment_sync_testkit::memory::MemoryRegulations;
//!
//! async fn scripted(script: RegulationScript) -> RegulationSubject {
//!     let client = MemoryRegulations::new();
//!     if script == RegulationScript::Unauthorized {
//!         client.fail_always(Some(RegulationError::Unauthorized { status: 401 }));
//!     }
//!     client.into()
//! }
//!
//! segment_sync_testkit::regulation_client_contract!(scripted);
//! # fn main() {}
//! ```
//!
//! A client over HTTP starts the fake Public API ([`FakePublicApi`], itself a
//! [`RegulationService`]), points the client at it, and hands both to
//! [`RegulationSubject::new`].

use std::future::Future;
use std::sync::Arc;

use segment_sync_ports::{
    RegulationClient, RegulationError, RegulationType, MAX_SUBJECTS_PER_REGULATION,
};

use super::{within, Subject};
use crate::fake_public_api::FakePublicApi;
use crate::memory::MemoryRegulations;

/// How the Segment behind a client under test answers.
///
/// Deliberately exhaustive: a new script breaks every factory's `match` until the
/// factory says how its Segment plays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegulationScript {
    /// Accepts every valid request.
    Accepting,
    /// Refuses the token (401).
    Unauthorized,
}

/// One regulation request as it reached Segment, whatever its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRegulation {
    /// `regulationType`, in the Public API's words (`DELETE_ONLY`, …).
    pub regulation_type: String,
    /// `subjectIds`, in order.
    pub subject_ids: Vec<String>,
}

/// The Segment behind a client under test, as far as a rule looks into it.
pub trait RegulationService: Send + Sync {
    /// Every regulation request that reached it, in order of arrival.
    fn received(&self) -> Vec<ReceivedRegulation>;
}

impl RegulationService for FakePublicApi {
    fn received(&self) -> Vec<ReceivedRegulation> {
        FakePublicApi::received(self)
            .into_iter()
            .map(|seen| ReceivedRegulation {
                regulation_type: seen.regulation_type,
                subject_ids: seen.subject_ids,
            })
            .collect()
    }
}

impl RegulationService for MemoryRegulations {
    fn received(&self) -> Vec<ReceivedRegulation> {
        self.calls()
            .into_iter()
            .map(|(kind, subject_ids)| ReceivedRegulation {
                regulation_type: kind.as_api_str().to_owned(),
                subject_ids,
            })
            .collect()
    }
}

/// A client under test and the Segment it talks to.
pub struct RegulationSubject {
    /// The client.
    pub client: Subject<dyn RegulationClient>,
    service: Arc<dyn RegulationService>,
}

impl RegulationSubject {
    /// A client and a view of what reaches its Segment.
    pub fn new(
        client: impl Into<Subject<dyn RegulationClient>>,
        service: impl RegulationService + 'static,
    ) -> Self {
        Self {
            client: client.into(),
            service: Arc::new(service),
        }
    }

    /// Every regulation request that reached Segment so far.
    pub fn received(&self) -> Vec<ReceivedRegulation> {
        self.service.received()
    }
}

impl std::fmt::Debug for RegulationSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegulationSubject")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl From<MemoryRegulations> for RegulationSubject {
    /// The in-memory client is its own Segment.
    fn from(client: MemoryRegulations) -> Self {
        Self::new(client.clone(), client)
    }
}

/// Makes a client whose Segment follows a script, fresh for each rule: an async
/// function or closure returning anything that converts into a
/// [`RegulationSubject`].
pub trait RegulationFactory {
    /// A new client whose Segment answers as `script` says.
    fn make(&self, script: RegulationScript) -> impl Future<Output = RegulationSubject>;
}

impl<F, Fut, T> RegulationFactory for F
where
    F: Fn(RegulationScript) -> Fut,
    Fut: Future<Output = T>,
    T: Into<RegulationSubject>,
{
    fn make(&self, script: RegulationScript) -> impl Future<Output = RegulationSubject> {
        let made = self(script);
        async move { made.await.into() }
    }
}

/// Runs the [`RegulationClient`] contract against a factory: one
/// `#[tokio::test]` per rule of [`crate::contract::regulations`], in a module
/// named `contract`.
///
/// The factory is an async function (or closure) taking a
/// [`RegulationScript`](crate::contract::regulations::RegulationScript) and
/// returning anything that converts into a
/// [`RegulationSubject`](crate::contract::regulations::RegulationSubject). The
/// test crate needs `tokio` with `macros` and `rt-multi-thread`.
///
/// ```text
/// segment_sync_testkit::regulation_client_contract!(against_the_fake);
/// ```
#[macro_export]
macro_rules! regulation_client_contract {
    ($factory:expr $(,)?) => {
        fn __regulation_client_contract_factory(
        ) -> impl $crate::contract::regulations::RegulationFactory {
            $factory
        }

        mod contract {
            $crate::__regulation_client_rules!(
                each_accepted_request_gets_its_own_id,
                the_type_and_subject_ids_reach_segment,
                too_many_or_no_subject_ids_are_refused_without_a_request,
                a_created_regulation_has_a_status,
                the_status_of_an_unknown_regulation_is_an_error,
                a_refused_token_latches,
            );
        }
    };
}

/// One test per regulation client rule.
#[doc(hidden)]
#[macro_export]
macro_rules! __regulation_client_rules {
    ($($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                $crate::contract::regulations::$rule(
                    &super::__regulation_client_contract_factory(),
                )
                .await;
            }
        )*
    };
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n:05}")).collect()
}

/// Every accepted request answers one regulation id, distinct from the others',
/// and makes exactly one request.
pub async fn each_accepted_request_gets_its_own_id(make: &impl RegulationFactory) {
    let subject = make.make(RegulationScript::Accepting).await;
    let mut answered = Vec::new();
    for n in 0..3 {
        let id = within(
            "regulate",
            subject.client.regulate(
                RegulationType::SuppressWithDelete,
                &ids(&format!("u{n}"), 2),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("regulation {n} refused: {e}"));
        assert!(!id.trim().is_empty(), "regulation {n} has an empty id");
        assert!(!answered.contains(&id), "regulation {n} repeats id {id}");
        answered.push(id);
    }
    assert_eq!(subject.received().len(), 3, "one request per regulation");
}

/// The regulation type and every subject id, in order, reach Segment as given;
/// 5,000 ids, the most allowed, go in one request.
pub async fn the_type_and_subject_ids_reach_segment(make: &impl RegulationFactory) {
    let subject = make.make(RegulationScript::Accepting).await;
    let few = vec![
        "ada@example.com".to_owned(),
        "customer-42".to_owned(),
        "zoë+tag@example.com".to_owned(),
    ];
    let most = ids("bulk", MAX_SUBJECTS_PER_REGULATION);

    for (kind, subjects) in [
        (RegulationType::DeleteOnly, &few),
        (RegulationType::SuppressOnly, &most),
    ] {
        within("regulate", subject.client.regulate(kind, subjects))
            .await
            .unwrap_or_else(|e| panic!("{kind} of {} ids refused: {e}", subjects.len()));
    }

    let received = subject.received();
    assert_eq!(
        received,
        [
            ReceivedRegulation {
                regulation_type: "DELETE_ONLY".to_owned(),
                subject_ids: few,
            },
            ReceivedRegulation {
                regulation_type: "SUPPRESS_ONLY".to_owned(),
                subject_ids: most,
            },
        ],
        "what Segment received"
    );
}

/// More than 5,000 subject ids, or none, is refused with `TooMany` / `Empty`
/// before anything is sent.
pub async fn too_many_or_no_subject_ids_are_refused_without_a_request(
    make: &impl RegulationFactory,
) {
    let subject = make.make(RegulationScript::Accepting).await;

    let too_many = within(
        "regulate 5,001",
        subject.client.regulate(
            RegulationType::SuppressWithDelete,
            &ids("u", MAX_SUBJECTS_PER_REGULATION + 1),
        ),
    )
    .await;
    let none = within(
        "regulate none",
        subject
            .client
            .regulate(RegulationType::SuppressWithDelete, &[]),
    )
    .await;

    assert_eq!(
        too_many,
        Err(RegulationError::TooMany {
            given: MAX_SUBJECTS_PER_REGULATION + 1
        })
    );
    assert_eq!(none, Err(RegulationError::Empty));
    assert_eq!(subject.received(), [], "nothing reached Segment");
}

/// A regulation just created has a status Segment gives (not empty).
pub async fn a_created_regulation_has_a_status(make: &impl RegulationFactory) {
    let subject = make.make(RegulationScript::Accepting).await;
    let id = within(
        "regulate",
        subject
            .client
            .regulate(RegulationType::DeleteOnly, &ids("u", 1)),
    )
    .await
    .unwrap_or_else(|e| panic!("regulate: {e}"));

    let status = within("status", subject.client.status(&id))
        .await
        .unwrap_or_else(|e| panic!("status of {id}: {e}"));

    assert!(!status.trim().is_empty(), "status of {id} is empty");
}

/// Asking the status of a regulation Segment does not know is a `Refused`
/// error, not a status.
pub async fn the_status_of_an_unknown_regulation_is_an_error(make: &impl RegulationFactory) {
    let subject = make.make(RegulationScript::Accepting).await;

    let status = within("status", subject.client.status("no-such-regulation")).await;

    assert!(
        matches!(status, Err(RegulationError::Refused { .. })),
        "status of an unknown regulation: {status:?}"
    );
}

/// Once Segment refuses the token, that call and every later one (regulate or
/// status) return `Unauthorized`, and no later call reaches Segment.
pub async fn a_refused_token_latches(make: &impl RegulationFactory) {
    let subject = make.make(RegulationScript::Unauthorized).await;
    let ada = ["ada@example.com".to_owned()];
    let regulate = || {
        subject
            .client
            .regulate(RegulationType::SuppressWithDelete, &ada)
    };

    let first = within("regulate", regulate()).await;

    assert!(
        matches!(first, Err(RegulationError::Unauthorized { .. })),
        "the first call: {first:?}"
    );
    assert_eq!(
        subject.received().len(),
        1,
        "the first call reached Segment"
    );
    for n in 1..3 {
        let later = within("regulate after a 401", regulate()).await;
        assert!(
            matches!(later, Err(RegulationError::Unauthorized { .. })),
            "call {n} after the 401: {later:?}"
        );
    }
    let status = within("status after a 401", subject.client.status("any")).await;
    assert!(
        matches!(status, Err(RegulationError::Unauthorized { .. })),
        "status after the 401: {status:?}"
    );
    assert_eq!(
        subject.received().len(),
        1,
        "no call after the 401 reached Segment"
    );
}
