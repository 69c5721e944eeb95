//! Packing messages into Tracking API batches within Segment's limits.

/// Segment's limits for `POST /v1/batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Messages in one batch.
    pub max_messages: usize,
    /// A whole request body stays strictly under this many bytes.
    pub max_body_bytes: usize,
    /// One serialised message is at most this many bytes.
    pub max_message_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_messages: 2_500,
            max_body_bytes: 500_000,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }
}

/// Segment's per-message limit, 32 KiB.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Room kept in every body for what surrounds the messages:
/// `{"batch":[` … `],"sentAt":"…","context":{"library":{…}}}`.
pub const BODY_ENVELOPE_BYTES: usize = 256;

/// A message the builder cannot take: it alone is over the per-message limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message of {size} bytes is over the {limit}-byte limit")]
pub struct Oversize<T> {
    /// The message, handed back.
    pub item: T,
    /// Its size.
    pub size: usize,
    /// The limit it broke.
    pub limit: usize,
}

/// Collects messages in order and hands out a batch whenever the next message
/// would break a limit. Never drops, duplicates or reorders a message.
#[derive(Debug)]
pub struct BatchBuilder<T> {
    limits: BatchLimits,
    items: Vec<T>,
    body_bytes: usize,
}

impl<T> BatchBuilder<T> {
    /// An empty builder for these limits.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            items: Vec::new(),
            body_bytes: BODY_ENVELOPE_BYTES,
        }
    }

    /// Adds a message of `size` serialised bytes. When it does not fit beside the
    /// messages already held, those are returned as a full batch and the new
    /// message starts the next one.
    pub fn push(&mut self, item: T, size: usize) -> Result<Option<Vec<T>>, Oversize<T>> {
        if size > self.limits.max_message_bytes {
            return Err(Oversize {
                item,
                size,
                limit: self.limits.max_message_bytes,
            });
        }
        let separator = usize::from(!self.items.is_empty());
        let fits = self.items.len() < self.limits.max_messages
            && self.body_bytes + separator + size < self.limits.max_body_bytes;
        let full = if fits { None } else { self.take() };
        let separator = usize::from(!self.items.is_empty());
        self.body_bytes += separator + size;
        self.items.push(item);
        Ok(full)
    }

    /// The messages held so far, as a batch; `None` when there are none.
    pub fn take(&mut self) -> Option<Vec<T>> {
        if self.items.is_empty() {
            return None;
        }
        self.body_bytes = BODY_ENVELOPE_BYTES;
        Some(std::mem::take(&mut self.items))
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_count_starts_a_new_batch() {
        let mut builder = BatchBuilder::new(BatchLimits {
            max_messages: 2,
            ..BatchLimits::default()
        });
        assert_eq!(builder.push(1, 10).unwrap(), None);
        assert_eq!(builder.push(2, 10).unwrap(), None);
        assert_eq!(builder.push(3, 10).unwrap(), Some(vec![1, 2]));
        assert_eq!(builder.take(), Some(vec![3]));
        assert_eq!(builder.take(), None);
    }

    #[test]
    fn an_oversize_message_is_handed_back() {
        let mut builder = BatchBuilder::new(BatchLimits::default());
        let err = builder.push("big", MAX_MESSAGE_BYTES + 1).unwrap_err();
        assert_eq!(err.item, "big");
        assert!(builder.is_empty());
    }

    proptest! {
        #[test]
        fn batches_respect_limits_and_keep_every_message_in_order(
            sizes in proptest::collection::vec(1usize..=MAX_MESSAGE_BYTES + 100, 0..400),
            max_messages in 1usize..50,
        ) {
            let limits = BatchLimits { max_messages, ..BatchLimits::default() };
            let mut builder = BatchBuilder::new(limits);
            let mut batches: Vec<Vec<(usize, usize)>> = Vec::new();
            let mut oversize = Vec::new();
            for (index, size) in sizes.iter().copied().enumerate() {
                match builder.push((index, size), size) {
                    Ok(Some(batch)) => batches.push(batch),
                    Ok(None) => {}
                    Err(rejected) => oversize.push(rejected.item.0),
                }
            }
            batches.extend(builder.take());

            for batch in &batches {
                prop_assert!(!batch.is_empty());
                prop_assert!(batch.len() <= limits.max_messages);
                let body: usize = BODY_ENVELOPE_BYTES
                    + batch.iter().map(|(_, size)| size).sum::<usize>()
                    + batch.len() - 1;
                prop_assert!(body < limits.max_body_bytes);
            }
            let mut seen: Vec<usize> = batches.iter().flatten().map(|(i, _)| *i).collect();
            let expected: Vec<usize> = (0..sizes.len())
                .filter(|i| sizes[*i] <= MAX_MESSAGE_BYTES)
                .collect();
            prop_assert_eq!(&seen, &expected);
            seen.extend(oversize);
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..sizes.len()).collect::<Vec<_>>());
        }
    }
}
