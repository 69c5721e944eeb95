//! The shared gate of a walk's cursors: at most [`AdaptiveConcurrency::limit`]
//! requests in flight, none while the API asked to wait. The policy is the
//! domain's; this only counts, waits and wakes.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use segment_sync_domain::walk::AdaptiveConcurrency;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The requests of one walk, paced together.
pub(crate) struct Throttle {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    policy: AdaptiveConcurrency,
    in_flight: u32,
}

impl Throttle {
    /// At most `ceiling` requests in flight.
    pub(crate) fn new(ceiling: u32) -> Self {
        Self {
            state: Mutex::new(State {
                policy: AdaptiveConcurrency::new(ceiling),
                in_flight: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many requests may be in flight now.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> u32 {
        self.state().policy.limit()
    }

    /// Waits for a turn to send a request; the turn ends when the slot drops.
    pub(crate) async fn acquire(&self) -> Slot<'_> {
        loop {
            // Registered before looking, so that a slot freed in between wakes it.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let paused_until = {
                let mut state = self.state();
                match state.policy.paused_until(Instant::now().into_std()) {
                    Some(until) => Some(until),
                    None if state.in_flight < state.policy.limit() => {
                        state.in_flight += 1;
                        return Slot { throttle: self };
                    }
                    None => None,
                }
            };
            match paused_until {
                Some(until) => tokio::select! {
                    () = tokio::time::sleep_until(Instant::from_std(until)) => {}
                    () = &mut notified => {}
                },
                None => notified.await,
            }
        }
    }
}

/// One request's turn.
pub(crate) struct Slot<'a> {
    throttle: &'a Throttle,
}

impl Slot<'_> {
    /// The API answered this request.
    pub(crate) fn succeeded(&self) {
        self.throttle
            .state()
            .policy
            .succeeded(Instant::now().into_std());
    }

    /// The API answered this request with an overload status.
    pub(crate) fn overloaded(&self, retry_after: Option<Duration>) {
        let mut state = self.throttle.state();
        let before = state.policy.limit();
        state
            .policy
            .overloaded(Instant::now().into_std(), retry_after);
        let after = state.policy.limit();
        if after < before {
            tracing::info!(
                from = before,
                to = after,
                "commercetools is overloaded; fewer requests at once for a while"
            );
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.throttle.state().in_flight -= 1;
        self.throttle.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_more_turns_than_the_limit_and_a_freed_turn_is_taken() {
        let throttle = Arc::new(Throttle::new(2));
        let first = throttle.acquire().await;
        let _second = throttle.acquire().await;
        let taken = Arc::new(AtomicU32::new(0));
        let waiter = {
            let (throttle, taken) = (Arc::clone(&throttle), Arc::clone(&taken));
            tokio::spawn(async move {
                let _third = throttle.acquire().await;
                taken.fetch_add(1, Ordering::SeqCst);
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(taken.load(Ordering::SeqCst), 0);
        drop(first);
        waiter.await.unwrap();
        assert_eq!(taken.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_new_turn_until_then() {
        let throttle = Throttle::new(4);
        let started = Instant::now();
        throttle
            .acquire()
            .await
            .overloaded(Some(Duration::from_secs(3)));
        assert_eq!(throttle.limit(), 2);
        let _next = throttle.acquire().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
