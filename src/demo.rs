//! The demo data set: generated, realistic, deterministic by seed. `generate` builds it in
//! memory (pure); `crate::app::demo` loads it and runs the demo's segmentations.
//!
//! What it holds, per customer (see docs/demo-data.md):
//! - demographic: `age`, `sex`, `marital_status`, `ethnicity` (protected, kept apart),
//!   `income_band`, `education`;
//! - geographic: `region`, `city_size`, `postcode_district`, `home_store` (one store per two
//!   districts, an undeclared proxy the fairness audit finds): districts are strongly segregated,
//!   so the district predicts `ethnicity` (Cramér's V about 0.7): an ordinary-looking attribute
//!   that is a proxy for a protected one, as the policy declares;
//! - psychographic: `lifestyle`, `price_sensitivity`;
//! - firmographic, for the roughly 8% business accounts: `company_size`, `industry`
//!   (null for consumers), and `customer_type`;
//! - behaviour: two years of transactions ending on the load day, from four behaviour types
//!   (loyal, occasional, lapsed, new), seasonal (November and December busy, January quiet),
//!   log-normal amounts that rise with income and for businesses, orders of 1 to 3 lines;
//! - consent for each policy purpose: most grant at sign-up, active customers renew within
//!   the validity period, lapsed ones do not (their grants expire), and about 10% withdraw.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

pub const DEFAULT_CUSTOMERS: usize = 20_000;
pub const DEFAULT_SEED: u64 = 42;
/// Days of transaction history, ending on the load day.
pub const HISTORY_DAYS: i64 = 730;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub customers: usize,
    pub seed: u64,
    /// The last day of history; everything else is relative to it.
    pub today: NaiveDate,
    /// The purposes to record consent for, with their validity in days.
    pub purposes: Vec<(String, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Loyal,
    Occasional,
    Lapsed,
    New,
}

#[derive(Debug, Clone)]
pub struct DemoCustomer {
    pub external_id: String,
    pub signed_up: NaiveDateTime,
    pub behaviour: Behaviour,
    /// Ordinary attributes, JSON values.
    pub attributes: Map<String, Value>,
    pub protected: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct DemoTransaction {
    pub customer: usize,
    pub occurred_at: NaiveDateTime,
    pub amount: f64,
    pub quantity: i64,
    pub order_id: String,
}

#[derive(Debug, Clone)]
pub struct DemoConsent {
    pub customer: usize,
    pub purpose: String,
    pub granted: bool,
    pub recorded_at: NaiveDateTime,
    pub source: &'static str,
    pub notice_version: &'static str,
}

#[derive(Debug, Clone)]
pub struct DemoData {
    pub customers: Vec<DemoCustomer>,
    pub transactions: Vec<DemoTransaction>,
    pub consents: Vec<DemoConsent>,
}

/// Attribute columns and their kinds: (name, kind, protected).
pub const COLUMNS: [(&str, &str, bool); 17] = [
    ("age", "number", true),
    ("sex", "category", true),
    ("marital_status", "category", true),
    ("ethnicity", "category", true),
    ("customer_type", "category", false),
    ("income_band", "category", false),
    ("education", "category", false),
    ("region", "category", false),
    ("city_size", "category", false),
    ("postcode_district", "category", false),
    ("lifestyle", "category", false),
    ("price_sensitivity", "category", false),
    ("company_size", "category", false),
    ("industry", "category", false),
    ("signup_channel", "category", false),
    ("loyalty_member", "category", false),
    ("home_store", "category", false),
];

const REGIONS: [(&str, &str, f64); 6] = [
    ("Capital", "CA", 0.24),
    ("North", "NO", 0.18),
    ("South", "SO", 0.17),
    ("East", "EA", 0.14),
    ("West", "WE", 0.15),
    ("Central", "CE", 0.12),
];
const DISTRICTS_PER_REGION: usize = 8;
/// Ethnic groups (anonymised labels) and their share of the population.
pub const ETHNICITIES: [(&str, f64); 5] = [
    ("group_a", 0.62),
    ("group_b", 0.14),
    ("group_c", 0.11),
    ("group_d", 0.08),
    ("group_e", 0.05),
];
/// Share of a district's residents who belong to its dominant group.
const SEGREGATION: f64 = 0.82;

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.r#gen::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    // Knuth; lambda stays small (below 60) here.
    let l = (-lambda).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.r#gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// Relative purchase activity by month: busy before Christmas, quiet in January.
fn season(month: u32) -> f64 {
    [
        0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.0, 0.95, 1.05, 1.5, 1.9,
    ][(month - 1) as usize]
}

/// The district's dominant group: the majority group dominates most districts, each minority
/// some, so every group has districts where it concentrates.
fn dominant_group(district: usize) -> usize {
    const PATTERN: [usize; 8] = [0, 0, 1, 0, 2, 0, 3, 4];
    (PATTERN[district % 8] + district / 8) % ETHNICITIES.len()
}

fn at(day: NaiveDate, rng: &mut ChaCha8Rng) -> NaiveDateTime {
    day.and_hms_opt(
        rng.gen_range(7..23),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
    )
    .expect("valid time")
}

fn days_between(a: NaiveDateTime, b: NaiveDateTime) -> i64 {
    (b - a).num_days()
}

/// Generates the data set. The same options give the same data, value for value.
pub fn generate(opts: &DemoOptions) -> DemoData {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let today = opts.today;
    let history_start = today - TimeDelta::days(HISTORY_DAYS - 1);
    let districts: Vec<(String, usize)> = REGIONS
        .iter()
        .enumerate()
        .flat_map(|(r, (_, code, _))| {
            (1..=DISTRICTS_PER_REGION).map(move |d| (format!("{code}{d}"), r))
        })
        .collect();
    let mut customers = Vec::with_capacity(opts.customers);
    let mut txns = Vec::new();
    let mut consents = Vec::new();
    let mut order_no: u64 = 0;
    for i in 0..opts.customers {
        // Where they live, and (segregated) their ethnic group.
        let region = *pick(
            &mut rng,
            &REGIONS
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.2))
                .collect::<Vec<_>>(),
        );
        let d = rng.gen_range(0..DISTRICTS_PER_REGION);
        let district_index = region * DISTRICTS_PER_REGION + d;
        let district = &districts[district_index].0;
        let ethnicity = if rng.r#gen::<f64>() < SEGREGATION {
            ETHNICITIES[dominant_group(district_index)].0
        } else {
            *pick(&mut rng, &ETHNICITIES)
        };
        let city_size = match region {
            0 => *pick(
                &mut rng,
                &[("metropolis", 0.7), ("city", 0.25), ("town", 0.05)],
            ),
            _ => *pick(&mut rng, &[("city", 0.35), ("town", 0.4), ("rural", 0.25)]),
        };
        let age = (44.0 + 15.0 * normal(&mut rng)).round().clamp(18.0, 88.0) as i64;
        let sex = *pick(
            &mut rng,
            &[("female", 0.51), ("male", 0.485), ("diverse", 0.005)],
        );
        let marital_status = if age < 25 {
            *pick(&mut rng, &[("single", 0.9), ("married", 0.1)])
        } else if age < 60 {
            *pick(
                &mut rng,
                &[
                    ("single", 0.3),
                    ("married", 0.55),
                    ("divorced", 0.13),
                    ("widowed", 0.02),
                ],
            )
        } else {
            *pick(
                &mut rng,
                &[
                    ("single", 0.1),
                    ("married", 0.55),
                    ("divorced", 0.15),
                    ("widowed", 0.2),
                ],
            )
        };
        let education = *pick(
            &mut rng,
            &[
                ("secondary", 0.35),
                ("vocational", 0.25),
                ("bachelor", 0.25),
                ("master", 0.12),
                ("doctorate", 0.03),
            ],
        );
        let edu_level = match education {
            "secondary" => 0.0,
            "vocational" => 0.5,
            "bachelor" => 1.0,
            "master" => 1.5,
            _ => 2.0,
        };
        let age_effect = if (30..60).contains(&age) { 0.6 } else { 0.0 };
        let income_score = edu_level + age_effect + 0.8 * normal(&mut rng);
        let income_index = match income_score {
            s if s < 0.0 => 0,
            s if s < 0.8 => 1,
            s if s < 1.6 => 2,
            s if s < 2.4 => 3,
            _ => 4,
        };
        let income_band = ["<20k", "20-40k", "40-70k", "70-120k", "120k+"][income_index];
        let price_sensitivity = match income_index {
            0 | 1 => *pick(&mut rng, &[("high", 0.6), ("medium", 0.3), ("low", 0.1)]),
            2 => *pick(&mut rng, &[("high", 0.3), ("medium", 0.45), ("low", 0.25)]),
            _ => *pick(&mut rng, &[("high", 0.1), ("medium", 0.35), ("low", 0.55)]),
        };
        let lifestyle = if age < 35 {
            *pick(
                &mut rng,
                &[
                    ("urban_explorer", 0.35),
                    ("tech_enthusiast", 0.3),
                    ("outdoor", 0.2),
                    ("homebody", 0.1),
                    ("family_focused", 0.05),
                ],
            )
        } else if age < 55 {
            *pick(
                &mut rng,
                &[
                    ("family_focused", 0.4),
                    ("outdoor", 0.2),
                    ("homebody", 0.15),
                    ("tech_enthusiast", 0.15),
                    ("urban_explorer", 0.1),
                ],
            )
        } else {
            *pick(
                &mut rng,
                &[
                    ("homebody", 0.4),
                    ("outdoor", 0.3),
                    ("family_focused", 0.2),
                    ("tech_enthusiast", 0.05),
                    ("urban_explorer", 0.05),
                ],
            )
        };
        let business = rng.r#gen::<f64>() < 0.08;
        let (company_size, industry) = if business {
            (
                json!(*pick(
                    &mut rng,
                    &[
                        ("1-9", 0.55),
                        ("10-49", 0.3),
                        ("50-249", 0.12),
                        ("250+", 0.03)
                    ]
                )),
                json!(*pick(
                    &mut rng,
                    &[
                        ("retail", 0.25),
                        ("services", 0.3),
                        ("manufacturing", 0.15),
                        ("hospitality", 0.12),
                        ("technology", 0.13),
                        ("public", 0.05)
                    ]
                )),
            )
        } else {
            (Value::Null, Value::Null)
        };
        let behaviour = *pick(
            &mut rng,
            &[
                (Behaviour::Loyal, 0.2),
                (Behaviour::Occasional, 0.4),
                (Behaviour::Lapsed, 0.25),
                (Behaviour::New, 0.15),
            ],
        );
        // Sign-up: new customers in the last six months, others up to five years back.
        let signup_day = match behaviour {
            Behaviour::New => today - TimeDelta::days(rng.gen_range(1..180)),
            Behaviour::Lapsed => today - TimeDelta::days(rng.gen_range(500..1825)),
            _ => today - TimeDelta::days(rng.gen_range(60..1825)),
        };
        let signed_up = at(signup_day, &mut rng);
        let signup_channel = *pick(
            &mut rng,
            &[
                ("web", 0.55),
                ("store", 0.3),
                ("app", 0.12),
                ("partner", 0.03),
            ],
        );
        let loyalty_member = match behaviour {
            Behaviour::Loyal => rng.r#gen::<f64>() < 0.7,
            _ => rng.r#gen::<f64>() < 0.15,
        };

        // Transactions.
        let first_day = signup_day.max(history_start);
        let last_day = match behaviour {
            // Lapsed customers stopped buying 8 to 14 months ago.
            Behaviour::Lapsed => today - TimeDelta::days(rng.gen_range(240..420)),
            _ => today,
        };
        let span = (last_day - first_day).num_days().max(0) + 1;
        let per_month = match behaviour {
            Behaviour::Loyal => 1.8,
            Behaviour::Occasional => 0.25,
            Behaviour::Lapsed => 0.6,
            Behaviour::New => 0.9,
        } * if business { 1.5 } else { 1.0 };
        let orders = if last_day < first_day {
            0
        } else {
            poisson(&mut rng, per_month * span as f64 / 30.44)
                .max(u32::from(behaviour != Behaviour::Occasional))
        };
        let mu = 3.1 + 0.25 * income_index as f64 + if business { 0.9 } else { 0.0 };
        for _ in 0..orders {
            // A day in the span, thinned by season.
            let day = loop {
                let day = first_day + TimeDelta::days(rng.gen_range(0..span));
                if rng.r#gen::<f64>() * 1.9 < season(day.month()) {
                    break day;
                }
            };
            let when = at(day, &mut rng);
            order_no += 1;
            let lines = *pick(&mut rng, &[(1usize, 0.7), (2, 0.2), (3, 0.1)]);
            for _ in 0..lines {
                let amount = (mu + 0.6 * normal(&mut rng)).exp() / lines as f64;
                txns.push(DemoTransaction {
                    customer: i,
                    occurred_at: when,
                    amount: (amount * 100.0).round().max(1.0) / 100.0,
                    quantity: rng.gen_range(1..=4),
                    order_id: format!("O{order_no:08}"),
                });
            }
        }

        // Consent, per purpose: grant at sign-up; renewal by active customers within the
        // validity period; a withdrawal by about 10%.
        for (purpose, validity) in &opts.purposes {
            let grant_rate = match purpose.as_str() {
                "marketing_email" => 0.75,
                "analytics" => 0.6,
                _ => 0.9,
            };
            if rng.r#gen::<f64>() >= grant_rate {
                continue;
            }
            consents.push(DemoConsent {
                customer: i,
                purpose: purpose.clone(),
                granted: true,
                recorded_at: signed_up,
                source: "signup_form",
                notice_version: "2021-05",
            });
            let mut latest = signed_up;
            let validity_days = i64::from(*validity);
            let now = today.and_hms_opt(0, 0, 0).expect("midnight");
            let renews = behaviour != Behaviour::Lapsed && rng.r#gen::<f64>() < 0.85;
            if renews && days_between(signed_up, now) > validity_days / 2 {
                let back = rng.gen_range(1..(validity_days / 2).max(2));
                let renewed = at(today - TimeDelta::days(back), &mut rng);
                if renewed > latest {
                    consents.push(DemoConsent {
                        customer: i,
                        purpose: purpose.clone(),
                        granted: true,
                        recorded_at: renewed,
                        source: "preference_centre",
                        notice_version: "2025-09",
                    });
                    latest = renewed;
                }
            }
            if rng.r#gen::<f64>() < 0.10 {
                let room = days_between(latest, now);
                if room > 1 {
                    let withdrawn = at(
                        latest.date() + TimeDelta::days(rng.gen_range(1..room)),
                        &mut rng,
                    );
                    consents.push(DemoConsent {
                        customer: i,
                        purpose: purpose.clone(),
                        granted: false,
                        recorded_at: withdrawn.max(latest + TimeDelta::seconds(1)),
                        source: "preference_centre",
                        notice_version: "2025-09",
                    });
                }
            }
        }

        let mut attributes = Map::new();
        attributes.insert(
            "customer_type".into(),
            json!(if business { "business" } else { "consumer" }),
        );
        attributes.insert("income_band".into(), json!(income_band));
        attributes.insert("education".into(), json!(education));
        attributes.insert("region".into(), json!(REGIONS[region].0));
        attributes.insert("city_size".into(), json!(city_size));
        attributes.insert("postcode_district".into(), json!(district));
        // The store nearest home: one per two neighbouring districts. Not declared a proxy in
        // the policy, so a segmentation may use it, yet it inherits most of the district's
        // association with ethnicity: the planted proxy the fairness audit must find.
        attributes.insert(
            "home_store".into(),
            json!(format!("{}-{}", REGIONS[region].1, d / 2 + 1)),
        );
        attributes.insert("lifestyle".into(), json!(lifestyle));
        attributes.insert("price_sensitivity".into(), json!(price_sensitivity));
        attributes.insert("company_size".into(), company_size);
        attributes.insert("industry".into(), industry);
        attributes.insert("signup_channel".into(), json!(signup_channel));
        attributes.insert(
            "loyalty_member".into(),
            json!(if loyalty_member { "yes" } else { "no" }),
        );
        let mut protected = Map::new();
        protected.insert("age".into(), json!(age));
        protected.insert("sex".into(), json!(sex));
        protected.insert("marital_status".into(), json!(marital_status));
        protected.insert("ethnicity".into(), json!(ethnicity));
        customers.push(DemoCustomer {
            external_id: format!("C{:06}", i + 1),
            signed_up,
            behaviour,
            attributes,
            protected,
        });
    }
    DemoData {
        customers,
        transactions: txns,
        consents,
    }
}

/// What `load` wrote.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DemoSummary {
    pub customers: usize,
    pub transactions: usize,
    pub consent_events: usize,
}

/// The options for the policy's purposes.
pub fn options(
    policy: &crate::policy::Policy,
    customers: usize,
    seed: u64,
    today: NaiveDate,
) -> DemoOptions {
    DemoOptions {
        customers,
        seed,
        today,
        purposes: policy
            .purposes
            .iter()
            .map(|(name, p)| (name.clone(), p.consent_validity_days))
            .collect(),
    }
}

/// The segmentation `fairseg demo` runs on its data: k-means on behaviour and two
/// psychographic and geographic attributes, so marketing sees segments and the fairness audit
/// has features to trace.
pub fn segmentation_request() -> crate::segmentation::settings::RunRequest {
    crate::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: DEMO_FEATURES
            .iter()
            .chain([&PLANTED_PROXY])
            .map(|s| s.to_string())
            .collect(),
        log_features: vec!["monetary".into()],
        k: Some(5),
        seed: Some(7),
        ..Default::default()
    }
}

/// The demo's behavioural and psychographic features.
const DEMO_FEATURES: [&str; 4] = ["recency_days", "frequency", "monetary", "price_sensitivity"];

/// The geographic feature that stands in for ethnicity.
pub const PLANTED_PROXY: &str = "home_store";

/// The analyst's second run: the same segmentation without the proxy the audit flagged on the
/// first, as a team would re-run after the gate refused it.
pub fn segmentation_request_without_proxy() -> crate::segmentation::settings::RunRequest {
    crate::segmentation::settings::RunRequest {
        features: DEMO_FEATURES.iter().map(|s| s.to_string()).collect(),
        ..segmentation_request()
    }
}

/// Cramér's V of two categorical columns (uncorrected), for checking the planted proxy.
pub fn cramers_v(pairs: &[(&str, &str)]) -> f64 {
    let mut table: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut rows: BTreeMap<&str, f64> = BTreeMap::new();
    let mut cols: BTreeMap<&str, f64> = BTreeMap::new();
    for (a, b) in pairs {
        *table.entry((a, b)).or_default() += 1.0;
        *rows.entry(a).or_default() += 1.0;
        *cols.entry(b).or_default() += 1.0;
    }
    let n = pairs.len() as f64;
    let mut chi2 = 0.0;
    for (a, ra) in &rows {
        for (b, cb) in &cols {
            let expected = ra * cb / n;
            let observed = table.get(&(*a, *b)).copied().unwrap_or(0.0);
            chi2 += (observed - expected).powi(2) / expected;
        }
    }
    let k = (rows.len().min(cols.len()) as f64 - 1.0).max(1.0);
    (chi2 / (n * k)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{ConsentState, ConsentStatus, Event, state_at};

    fn opts(n: usize, seed: u64) -> DemoOptions {
        DemoOptions {
            customers: n,
            seed,
            today: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            purposes: vec![
                ("analytics".into(), 1095),
                ("marketing_email".into(), 365),
                ("segmentation".into(), 730),
            ],
        }
    }

    fn fingerprint(d: &DemoData) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for c in &d.customers {
            h.update(format!(
                "{}{:?}{:?}{}",
                c.external_id, c.attributes, c.protected, c.signed_up
            ));
        }
        for t in &d.transactions {
            h.update(format!(
                "{}{}{}{}",
                t.customer, t.occurred_at, t.amount, t.order_id
            ));
        }
        for e in &d.consents {
            h.update(format!(
                "{}{}{}{}",
                e.customer, e.purpose, e.granted, e.recorded_at
            ));
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
        let a = generate(&opts(500, 7));
        let b = generate(&opts(500, 7));
        let c = generate(&opts(500, 8));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn postcode_district_is_a_strong_proxy_for_ethnicity() {
        let d = generate(&opts(5000, 42));
        let pairs: Vec<(&str, &str)> = d
            .customers
            .iter()
            .map(|c| {
                (
                    c.attributes["postcode_district"].as_str().unwrap(),
                    c.protected["ethnicity"].as_str().unwrap(),
                )
            })
            .collect();
        let v = cramers_v(&pairs);
        eprintln!("postcode_district x ethnicity: V = {v:.3}");
        assert!(v > 0.5, "Cramér's V {v}");
        // And an attribute that was not made a proxy is not one.
        let pairs: Vec<(&str, &str)> = d
            .customers
            .iter()
            .map(|c| {
                (
                    c.attributes["lifestyle"].as_str().unwrap(),
                    c.protected["ethnicity"].as_str().unwrap(),
                )
            })
            .collect();
        assert!(cramers_v(&pairs) < 0.1);
        // The undeclared proxy a segmentation may use.
        let pairs: Vec<(&str, &str)> = d
            .customers
            .iter()
            .map(|c| {
                (
                    c.attributes["home_store"].as_str().unwrap(),
                    c.protected["ethnicity"].as_str().unwrap(),
                )
            })
            .collect();
        let v = cramers_v(&pairs);
        eprintln!("home_store x ethnicity: V = {v:.3}");
        assert!(v > 0.4, "Cramér's V {v}");
    }

    #[test]
    fn volumes_and_consent_mix_are_as_intended() {
        let o = opts(4000, 42);
        let d = generate(&o);
        let per_customer = d.transactions.len() as f64 / 4000.0;
        assert!(
            (9.0..20.0).contains(&per_customer),
            "{per_customer} transactions per customer"
        );
        let start = o.today - TimeDelta::days(HISTORY_DAYS - 1);
        assert!(
            d.transactions
                .iter()
                .all(|t| t.occurred_at.date() >= start && t.occurred_at.date() <= o.today)
        );
        let businesses = d
            .customers
            .iter()
            .filter(|c| c.attributes["customer_type"] == "business")
            .count();
        assert!((200..450).contains(&businesses), "{businesses} businesses");
        // Per customer × purpose with any event: the state today.
        let now = o.today.and_hms_opt(12, 0, 0).unwrap();
        let mut events: BTreeMap<(usize, &str), Vec<Event>> = BTreeMap::new();
        for e in &d.consents {
            let list = events.entry((e.customer, e.purpose.as_str())).or_default();
            if let Some(last) = list.last() {
                assert!(last.recorded_at <= e.recorded_at, "events in time order");
            }
            list.push(Event {
                status: if e.granted {
                    ConsentStatus::Granted
                } else {
                    ConsentStatus::Withdrawn
                },
                recorded_at: e.recorded_at,
            });
        }
        let (mut granted, mut withdrawn, mut expired) = (0, 0, 0);
        for ((_, purpose), list) in &events {
            let validity = o.purposes.iter().find(|p| p.0 == *purpose).unwrap().1;
            match state_at(list, now, TimeDelta::days(i64::from(validity))) {
                ConsentState::Granted { .. } => granted += 1,
                ConsentState::Withdrawn { .. } => withdrawn += 1,
                ConsentState::Expired { .. } => expired += 1,
                ConsentState::NeverAsked => {}
            }
        }
        let total = f64::from(granted + withdrawn + expired);
        eprintln!(
            "{per_customer:.1} transactions per customer, {businesses} businesses; consent states: {granted} granted, {withdrawn} withdrawn, {expired} expired"
        );
        let share = |n: i32| f64::from(n) / total;
        assert!(share(granted) > 0.55, "granted {}", share(granted));
        assert!(
            (0.06..0.15).contains(&share(withdrawn)),
            "withdrawn {}",
            share(withdrawn)
        );
        assert!(
            (0.05..0.35).contains(&share(expired)),
            "expired {}",
            share(expired)
        );
    }
}
