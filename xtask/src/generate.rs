//! Realistic commercetools customers for benchmarks and fixtures.
//!
//! Every customer is a pure function of `(seed, index)`, so a fake API can serve
//! page `n` without holding the others, and a file of a million customers is
//! written one line at a time. Customer ids start with the index in hex, so they
//! sort in index order as commercetools' `sort=id asc` does.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// SplitMix64: tiny, fast and good enough to make varied test data; not for secrets.
struct SplitMix64(u64);

impl SplitMix64 {
    fn for_customer(seed: u64, index: u64) -> Self {
        let mut rng = Self(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A name as shown, and the ASCII form an email address would use.
type Name = (&'static str, &'static str);

const FIRST_NAMES: &[Name] = &[
    ("Ada", "ada"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Łukasz", "lukasz"),
    ("Jürgen", "juergen"),
    ("Søren", "soren"),
    ("Dmitri", "dmitri"),
    ("Дмитрий", "dmitry"),
    ("Αλέξανδρος", "alexandros"),
    ("さくら", "sakura"),
    ("明", "ming"),
    ("محمد", "mohammed"),
    ("Aoife", "aoife"),
    ("Émilie", "emilie"),
    ("Chiara", "chiara"),
    ("Nguyễn", "nguyen"),
    ("Ingrid", "ingrid"),
    ("François", "francois"),
    ("Małgorzata", "malgorzata"),
    ("Olusegun", "olusegun"),
];

const LAST_NAMES: &[Name] = &[
    ("Lovelace", "lovelace"),
    ("Müller", "mueller"),
    ("García Márquez", "garcia"),
    ("Kowalczyk", "kowalczyk"),
    ("Ørsted", "orsted"),
    ("Иванова", "ivanova"),
    ("Παπαδόπουλος", "papadopoulos"),
    ("佐藤", "sato"),
    ("王", "wang"),
    ("O'Brien", "obrien"),
    ("van der Berg", "vanderberg"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
    ("Al-Farsi", "alfarsi"),
    ("Smith", "smith"),
    ("Nakamura", "nakamura"),
];

const DOMAINS: &[&str] = &[
    "example.com",
    "Example.COM",
    "mail.example.org",
    "shop.example.net",
    "example.de",
];

/// Country, cities, street names, state or region, locale.
#[derive(Clone, Copy)]
struct Country {
    code: &'static str,
    cities: &'static [&'static str],
    streets: &'static [&'static str],
    region: Option<&'static str>,
    locale: &'static str,
    phone_prefix: &'static str,
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "DE",
        cities: &["Berlin", "München", "Köln", "Düsseldorf"],
        streets: &["Hauptstraße", "Schloßallee", "Königsweg"],
        region: Some("Bayern"),
        locale: "de-DE",
        phone_prefix: "+49 30 ",
    },
    Country {
        code: "FR",
        cities: &["Paris", "Lyon", "Besançon"],
        streets: &["Rue de la Paix", "Avenue des Champs-Élysées"],
        region: None,
        locale: "fr-FR",
        phone_prefix: "+33 1 ",
    },
    Country {
        code: "PL",
        cities: &["Kraków", "Łódź", "Gdańsk"],
        streets: &["ulica Długa", "Świętojańska"],
        region: Some("Małopolskie"),
        locale: "pl-PL",
        phone_prefix: "+48 12 ",
    },
    Country {
        code: "ES",
        cities: &["Madrid", "A Coruña", "Málaga"],
        streets: &["Calle Mayor", "Avenida de la Constitución"],
        region: Some("Andalucía"),
        locale: "es-ES",
        phone_prefix: "+34 91 ",
    },
    Country {
        code: "GB",
        cities: &["London", "Manchester", "Edinburgh"],
        streets: &["Baker Street", "St James's Square"],
        region: None,
        locale: "en-GB",
        phone_prefix: "+44 20 ",
    },
    Country {
        code: "US",
        cities: &["New York", "San José", "Austin"],
        streets: &["Broadway", "Main Street", "Elm Street"],
        region: Some("CA"),
        locale: "en-US",
        phone_prefix: "+1 212 ",
    },
    Country {
        code: "JP",
        cities: &["東京", "大阪", "京都"],
        streets: &["銀座", "中央通り"],
        region: Some("東京都"),
        locale: "ja-JP",
        phone_prefix: "+81 3 ",
    },
    Country {
        code: "GR",
        cities: &["Αθήνα", "Θεσσαλονίκη"],
        streets: &["Οδός Ερμού", "Λεωφόρος Συγγρού"],
        region: None,
        locale: "el-GR",
        phone_prefix: "+30 21 ",
    },
];

const STORES: &[&str] = &["de-store", "fr-store", "uk-store", "us-store", "outlet"];
const INTERESTS: &[&str] = &[
    "running",
    "cooking",
    "jazz",
    "hiking",
    "photography",
    "yoga",
];
const TIERS: &[(&str, &str)] = &[("bronze", "Bronze"), ("silver", "Silver"), ("gold", "Gold")];
const CHANNELS: &[(&str, &str)] = &[("email", "E-Mail"), ("sms", "SMS"), ("post", "Post")];
const GROUPS: &[&str] = &[
    "3f1c2a4e-0b6d-4e8f-9a1b-2c3d4e5f6a7b",
    "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
    "c0ffee00-1234-4abc-8def-0123456789ab",
];

/// Unix time of 2019-01-01T00:00:00Z: customers are created from then on.
const EPOCH_2019: u64 = 1_546_300_800;
const FIVE_YEARS: u64 = 5 * 365 * 86_400;

/// The id of customer `index`: a UUID whose first group is the index in hex.
pub fn customer_id(seed: u64, index: u64) -> String {
    let mut rng = SplitMix64::for_customer(seed, index);
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        index,
        a & 0xffff,
        (a >> 16) & 0xfff,
        0x8000 | ((a >> 28) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The index back from an id made by [`customer_id`], for a cursor `id > "…"`.
pub fn index_of(id: &str) -> Option<u64> {
    u64::from_str_radix(id.get(..8)?, 16).ok()
}

/// Appends customer `index` as one line of compact JSON (without the newline).
pub fn write_customer(seed: u64, index: u64, out: &mut Vec<u8>) {
    let id = customer_id(seed, index);
    // A separate stream from the one the id used, so that fields do not echo it.
    let mut rng = SplitMix64::for_customer(seed.rotate_left(17) ^ 0x5EED, index);
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let country = rng.pick(COUNTRIES);
    let created = EPOCH_2019 + rng.below(FIVE_YEARS);
    let modified = created + rng.below(400 * 86_400);
    let version = 1 + rng.below(40);

    let mut json = Json::new(out);
    json.open_object();
    json.string_field("id", &id);
    json.number_field("version", version);
    json.string_field("versionModifiedAt", &rfc3339(modified, index));
    json.number_field("lastMessageSequenceNumber", version);
    if rng.chance(50) {
        json.string_field("key", &format!("customer-{index}"));
    }
    if rng.chance(70) {
        json.string_field("customerNumber", &format!("C-{}", 100_000 + index));
    }
    if rng.chance(20) {
        json.string_field("externalId", &format!("crm-{:x}", rng.next() >> 24));
    }
    write_email(&mut json, &mut rng, first.1, last.1, index);
    json.string_field("password", "****");
    let spaced = rng.chance(3);
    json.string_field(
        "firstName",
        &if spaced {
            format!(" {} ", first.0)
        } else {
            first.0.to_owned()
        },
    );
    if rng.chance(95) {
        json.string_field("lastName", last.0);
    }
    if rng.chance(10) {
        json.string_field("middleName", rng.pick(FIRST_NAMES).0);
    }
    if rng.chance(5) {
        json.string_field("title", rng.pick(&["Dr.", "Prof.", "Dr. med."]));
    }
    if rng.chance(40) {
        json.string_field("salutation", rng.pick(&["Mr.", "Ms.", "Mx."]));
    }
    if rng.chance(60) {
        let year = 1940 + rng.below(65);
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(28);
        json.string_field("dateOfBirth", &format!("{year:04}-{month:02}-{day:02}"));
    }
    if rng.chance(10) {
        json.string_field("companyName", &format!("{} GmbH & Co. KG", last.0));
        json.string_field("vatId", &format!("DE{:09}", rng.below(1_000_000_000)));
    }
    write_addresses(&mut json, &mut rng, country, first.0, last.0);
    json.bool_field("isEmailVerified", rng.chance(60));
    if rng.chance(40) {
        json.key("customerGroup");
        write_reference(&mut json, "customer-group", rng.pick(GROUPS));
    }
    if rng.chance(80) {
        write_custom(&mut json, &mut rng);
    }
    if rng.chance(85) {
        json.string_field("locale", country.locale);
    }
    json.key("stores");
    json.open_array();
    for _ in 0..rng.below(3) {
        json.open_object();
        json.string_field("typeId", "store");
        json.string_field("key", rng.pick(STORES));
        json.close_object();
    }
    json.close_array();
    json.string_field("authenticationMode", "Password");
    json.string_field("createdAt", &rfc3339(created, index));
    json.string_field("lastModifiedAt", &rfc3339(modified, index));
    json.key("createdBy");
    json.open_object();
    json.string_field("clientId", "storefront");
    json.bool_field("isPlatformClient", false);
    json.close_object();
    json.key("lastModifiedBy");
    json.open_object();
    json.bool_field("isPlatformClient", true);
    json.close_object();
    json.close_object();
}

/// About 8% have no usable email (absent, empty or blank) and 1% an invalid one.
fn write_email(json: &mut Json<'_>, rng: &mut SplitMix64, first: &str, last: &str, index: u64) {
    let roll = rng.below(100);
    match roll {
        0..=4 => {}
        5 => json.string_field("email", ""),
        6..=7 => json.string_field("email", "   "),
        8 => json.string_field("email", &format!("{first}.{last}{index} at example.com")),
        _ => {
            let domain = rng.pick(DOMAINS);
            let mut local = format!("{first}.{last}{index}");
            if rng.chance(30) {
                // Shops keep the case people type; the identity must not depend on it.
                local[..1].make_ascii_uppercase();
            }
            let padded = if rng.chance(3) { " " } else { "" };
            json.string_field("email", &format!("{padded}{local}@{domain}{padded}"));
        }
    }
}

fn write_addresses(
    json: &mut Json<'_>,
    rng: &mut SplitMix64,
    country: Country,
    first: &str,
    last: &str,
) {
    let count = 1 + rng.below(3);
    let ids: Vec<String> = (0..count)
        .map(|_| format!("{:08x}", rng.next() >> 32))
        .collect();
    json.key("addresses");
    json.open_array();
    for id in &ids {
        json.open_object();
        json.string_field("id", id);
        json.string_field("firstName", first);
        json.string_field("lastName", last);
        json.string_field("streetName", rng.pick(country.streets));
        json.string_field("streetNumber", &(1 + rng.below(200)).to_string());
        if rng.chance(15) {
            json.string_field("additionalStreetInfo", "Hinterhaus");
        }
        json.string_field("postalCode", &format!("{:05}", rng.below(100_000)));
        json.string_field("city", rng.pick(country.cities));
        if let Some(region) = country.region {
            if rng.chance(50) {
                json.string_field("state", region);
            } else {
                json.string_field("region", region);
            }
        }
        json.string_field("country", country.code);
        if rng.chance(60) {
            let number = rng.below(100_000_000);
            json.string_field("phone", &format!("{}{number:08}", country.phone_prefix));
        }
        if rng.chance(30) {
            let number = rng.below(100_000_000);
            json.string_field("mobile", &format!("{}{number:08}", country.phone_prefix));
        }
        json.close_object();
    }
    json.close_array();
    let default_id = |rng: &mut SplitMix64| {
        rng.chance(70)
            .then(|| ids[rng.below(ids.len() as u64) as usize].clone())
    };
    let billing = default_id(rng);
    let shipping = default_id(rng);
    if let Some(id) = &shipping {
        json.string_field("defaultShippingAddressId", id);
    }
    json.key("shippingAddressIds");
    json.open_array();
    json.string(shipping.as_deref().unwrap_or(&ids[0]));
    json.close_array();
    if let Some(id) = &billing {
        json.string_field("defaultBillingAddressId", id);
    }
    json.key("billingAddressIds");
    json.open_array();
    json.string(billing.as_deref().unwrap_or(&ids[0]));
    json.close_array();
}

/// Enums `{key,label}`, booleans, sets, numbers and strings, some blank or null.
fn write_custom(json: &mut Json<'_>, rng: &mut SplitMix64) {
    json.key("custom");
    json.open_object();
    json.key("type");
    write_reference(json, "type", "b2c0f7a1-9e3d-4c5b-8a6f-7d1e2c3b4a59");
    json.key("fields");
    json.open_object();
    let (key, label) = rng.pick(TIERS);
    json.key("loyaltyTier");
    write_enum(json, key, label);
    if rng.chance(50) {
        let (key, label) = rng.pick(CHANNELS);
        json.key("preferredChannel");
        write_enum(json, key, label);
    }
    json.bool_field("newsletter", rng.chance(45));
    json.key("interests");
    json.open_array();
    for _ in 0..rng.below(4) {
        json.string(rng.pick(INTERESTS));
    }
    json.close_array();
    json.number_field("points", rng.below(20_000));
    if rng.chance(30) {
        json.string_field("favouriteStore", rng.pick(STORES));
    }
    match rng.below(10) {
        0 => json.string_field("notes", "  "),
        1 => {
            json.key("notes");
            json.raw("null");
        }
        2 => json.string_field("notes", "Bitte nicht vor 9 Uhr klingeln — 谢谢"),
        _ => {}
    }
    json.close_object();
    json.close_object();
}

fn write_reference(json: &mut Json<'_>, type_id: &str, id: &str) {
    json.open_object();
    json.string_field("typeId", type_id);
    json.string_field("id", id);
    json.close_object();
}

fn write_enum(json: &mut Json<'_>, key: &str, label: &str) {
    json.open_object();
    json.string_field("key", key);
    json.string_field("label", label);
    json.close_object();
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` as commercetools writes it; the milliseconds vary
/// with the index so equal seconds still give distinct instants.
fn rfc3339(unix: u64, index: u64) -> String {
    let days = unix / 86_400;
    let seconds = unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        index % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A minimal JSON writer: enough to stream customers without building a tree.
struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next key or element needs a comma before it.
    comma: bool,
}

impl<'a> Json<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, comma: false }
    }

    fn separate(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
        self.comma = true;
    }

    fn key(&mut self, key: &str) {
        self.separate();
        self.string_unseparated(key);
        self.out.push(b':');
        self.comma = false;
    }

    fn string_unseparated(&mut self, value: &str) {
        serde_json::to_writer(&mut *self.out, value).expect("writing to a Vec cannot fail");
    }

    fn string(&mut self, value: &str) {
        self.separate();
        self.string_unseparated(value);
    }

    fn raw(&mut self, value: &str) {
        self.separate();
        self.out.extend_from_slice(value.as_bytes());
    }

    fn string_field(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    fn number_field(&mut self, key: &str, value: u64) {
        self.key(key);
        self.raw(&value.to_string());
    }

    fn bool_field(&mut self, key: &str, value: bool) {
        self.key(key);
        self.raw(if value { "true" } else { "false" });
    }

    fn open_object(&mut self) {
        self.raw("{");
        self.comma = false;
    }

    fn close_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    fn open_array(&mut self) {
        self.raw("[");
        self.comma = false;
    }

    fn close_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }
}

/// Writes customers `0..count` as NDJSON to `path`, one line at a time.
pub fn write_ndjson(path: &Path, count: u64, seed: u64) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    for index in 0..count {
        line.clear();
        write_customer(seed, index, &mut line);
        line.push(b'\n');
        writer
            .write_all(&line)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `cargo xtask generate --count N --out PATH [--seed S]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut count = None;
    let mut out = None;
    let mut seed = DEFAULT_SEED;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => count = Some(value()?.parse().context("--count must be a number")?),
            "--out" => out = Some(value()?.clone()),
            "--seed" => seed = value()?.parse().context("--seed must be a number")?,
            other => anyhow::bail!("unknown flag {other}\n{GENERATE_USAGE}"),
        }
    }
    let (Some(count), Some(out)) = (count, out) else {
        anyhow::bail!("{GENERATE_USAGE}");
    };
    write_ndjson(Path::new(&out), count, seed)?;
    eprintln!("wrote {count} customers to {out}");
    Ok(())
}

/// The seed used when none is given, so that every run sees the same customers.
pub const DEFAULT_SEED: u64 = 1;

const GENERATE_USAGE: &str = "usage: cargo xtask generate --count N --out PATH [--seed S]";

#[cfg(test)]
mod tests {
    use super::*;

    /// The customers the domain's criterion benchmark reads, relative to the workspace.
    const BENCH_FIXTURE: &str = "crates/domain/benches/customers.ndjson";
    /// How many customers that fixture holds.
    const BENCH_FIXTURE_COUNT: u64 = 250;

    fn customer(seed: u64, index: u64) -> serde_json::Value {
        let mut out = Vec::new();
        write_customer(seed, index, &mut out);
        serde_json::from_slice(&out).expect("the generator writes valid JSON")
    }

    #[test]
    fn customers_are_deterministic_and_differ_by_seed() {
        assert_eq!(customer(7, 42), customer(7, 42));
        assert_ne!(customer(7, 42), customer(8, 42));
        assert_ne!(customer(7, 42), customer(7, 43));
    }

    #[test]
    fn ids_sort_in_index_order_and_give_the_index_back() {
        let ids: Vec<String> = [0, 1, 15, 16, 255, 999_999, 1_000_000]
            .iter()
            .map(|&i| customer_id(3, i))
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        assert_eq!(index_of(&ids[5]), Some(999_999));
        assert_eq!(ids[3].len(), 36);
        assert_eq!(customer(3, 16)["id"], ids[3].as_str());
    }

    #[test]
    fn the_mix_is_realistic() {
        let customers: Vec<_> = (0..2_000).map(|i| customer(1, i)).collect();
        let share = |test: &dyn Fn(&serde_json::Value) -> bool| {
            customers.iter().filter(|c| test(c)).count() as f64 / customers.len() as f64
        };
        let no_email = share(&|c| c["email"].as_str().is_none_or(|e| e.trim().is_empty()));
        assert!((0.05..0.11).contains(&no_email), "no email: {no_email}");
        let invalid = share(&|c| c["email"].as_str().is_some_and(|e| e.contains(" at ")));
        assert!((0.003..0.02).contains(&invalid), "invalid email: {invalid}");
        assert!(customers.iter().all(|c| {
            let addresses = c["addresses"].as_array().unwrap();
            (1..=3).contains(&addresses.len())
        }));
        let non_ascii = share(&|c| !c["firstName"].as_str().unwrap().is_ascii());
        assert!(non_ascii > 0.2, "non-ASCII names: {non_ascii}");
        let with_enum = share(&|c| c["custom"]["fields"]["loyaltyTier"]["label"].is_string());
        assert!(with_enum > 0.6, "enum custom fields: {with_enum}");
        let modified_after_created =
            share(&|c| c["lastModifiedAt"].as_str().unwrap() >= c["createdAt"].as_str().unwrap());
        assert_eq!(modified_after_created, 1.0);
    }

    #[test]
    fn default_addresses_are_among_the_addresses() {
        for index in 0..500 {
            let c = customer(5, index);
            let ids: Vec<&str> = c["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap())
                .collect();
            for field in ["defaultBillingAddressId", "defaultShippingAddressId"] {
                if let Some(id) = c[field].as_str() {
                    assert!(ids.contains(&id), "{field} {id} not in {ids:?}");
                }
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(EPOCH_2019, 7), "2019-01-01T00:00:00.007Z");
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(rfc3339(1_709_210_096, 1_123), "2024-02-29T12:34:56.123Z");
    }

    #[test]
    fn a_file_holds_one_customer_per_line() {
        let dir = std::env::temp_dir().join(format!("xtask-generate-{}", std::process::id()));
        let path = dir.join("customers.ndjson");
        write_ndjson(&path, 25, 9).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 25);
        let last: serde_json::Value = serde_json::from_str(lines[24]).unwrap();
        assert_eq!(last, customer(9, 24));
    }

    #[test]
    fn the_bench_fixture_is_what_the_generator_writes() {
        let path = crate::workspace_root().join(BENCH_FIXTURE);
        let fixture = std::fs::read(&path).expect("the domain bench fixture exists");
        let mut expected = Vec::new();
        for index in 0..BENCH_FIXTURE_COUNT {
            write_customer(DEFAULT_SEED, index, &mut expected);
            expected.push(b'\n');
        }
        assert!(
            fixture == expected,
            "{BENCH_FIXTURE} is stale: cargo xtask generate --count {BENCH_FIXTURE_COUNT} --out {BENCH_FIXTURE}"
        );
    }
}
