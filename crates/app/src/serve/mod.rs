//! `segment-sync serve`: the commercetools webhook.
