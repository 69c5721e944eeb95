//! Throughput of the transformation, in customers per second on one core.
//!
//! `customers.ndjson` is written by `cargo xtask generate --count 250 --out
//! crates/domain/benches/customers.ndjson` (a test of the testkit's generator
//! keeps it in step): unicode names, 1–3 addresses, custom fields, and the share of
//! customers without a usable email that a real shop has. `cargo xtask bench`
//! reads the batch size from the last part of each bench id.

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use segment_sync_domain::identify::identify;
use segment_sync_domain::{Customer, IdentifyRules, UserIdStrategy};

const FIXTURE: &str = include_str!("customers.ndjson");
/// Customers per iteration: the fixture, cycled.
const BATCH: usize = 1_000;
/// A mapping that uses every kind of setting, on fields the fixture has.
const MAPPING: &str = r#"
[traits]
exclude = ["birthday", "phone", "address.street"]
rename = { firstName = "first_name", "address.postalCode" = "address.zip" }
constant = { source = "commercetools" }

[custom]
include = ["loyaltyTier", "newsletter", "interests"]
rename = { loyaltyTier = "tier" }
placement = "top-level"

[consent.categories]
Advertising = "newsletter"
Analytics = { field = "preferredChannel", true_when = ["email", "sms"] }
"#;

fn records() -> Vec<&'static str> {
    FIXTURE.lines().cycle().take(BATCH).collect()
}

fn transform(c: &mut Criterion) {
    let records = records();
    let customers: Vec<Customer> = records
        .iter()
        .map(|record| serde_json::from_str(record).expect("the fixture holds customers"))
        .collect();
    let sent = customers
        .iter()
        .filter(|customer| identify(customer, UserIdStrategy::Email).is_ok())
        .count();
    // A fixture of mostly skipped customers would measure the wrong thing.
    assert!(sent * 10 >= BATCH * 8, "only {sent} of {BATCH} are sent");

    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Elements(BATCH as u64));
    // Customer → identify JSON: the transformation and its serialisation.
    group.bench_with_input(
        BenchmarkId::new("identify", BATCH),
        &customers,
        |b, customers| {
            b.iter(|| {
                customers
                    .iter()
                    .filter_map(|customer| {
                        identify(black_box(customer), UserIdStrategy::Email).ok()
                    })
                    .map(|message| message.json().len())
                    .sum::<usize>()
            })
        },
    );
    // The same under a mapping: what a mapping file costs on top.
    let rules = IdentifyRules::from_toml(UserIdStrategy::Email, MAPPING, "bench.toml")
        .expect("the bench mapping is valid");
    group.bench_with_input(
        BenchmarkId::new("identify_mapped", BATCH),
        &customers,
        |b, customers| {
            b.iter(|| {
                customers
                    .iter()
                    .filter_map(|customer| rules.identify(black_box(customer)).ok())
                    .map(|message| message.json().len())
                    .sum::<usize>()
            })
        },
    );
    // What the file source does per record: JSON bytes → Customer → identify JSON.
    group.bench_with_input(
        BenchmarkId::new("parse_and_identify", BATCH),
        &records,
        |b, records| {
            b.iter(|| {
                records
                    .iter()
                    .filter_map(|record| {
                        serde_json::from_slice::<Customer>(black_box(record.as_bytes())).ok()
                    })
                    .filter_map(|customer| identify(&customer, UserIdStrategy::Email).ok())
                    .map(|message| message.json().len())
                    .sum::<usize>()
            })
        },
    );
    group.finish();
}

/// `criterion_group!` makes a public function it cannot document.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::transform);
}
criterion_main!(group::benches);
