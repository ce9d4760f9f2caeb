//! How figures and names read for people, on pages, in exports and in explanations: money in the policy's currency (in full, or
//! compact on cards), counts with thousands separators, percentages with one decimal,
//! p-values, dates and times in words, and the one label table that turns internal names
//! (KPIs, features, statuses, purposes) into words people use. Pure, so the web layer, the
//! command line and the application layer's explanations all say a figure the same way;
//! templates reach it as `crate::web::format::...`.

use chrono::{NaiveDate, NaiveDateTime};

use crate::policy::Currency;

/// A number, however a template or a handler holds it.
pub trait Figure {
    fn value(&self) -> f64;
}
macro_rules! figure {
    ($($t:ty),*) => {$(impl Figure for $t { fn value(&self) -> f64 { *self as f64 } })*};
}
figure!(f64, f32, i64, i32, u64, u32, usize);
impl<T: Figure + ?Sized> Figure for &T {
    fn value(&self) -> f64 {
        (**self).value()
    }
}

/// A policy version as pages show it: the first 12 hex digits of its content hash.
pub fn short_policy(version: &str) -> &str {
    let hex = version.trim_start_matches("sha256:");
    hex.get(..12).unwrap_or(hex)
}

/// An integer with thousands separators: `5200584` → `5,200,584`.
pub fn int(n: impl Figure) -> String {
    let n = n.value().round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A count held as a float (KPI values), rounded, with separators.
pub fn count(v: f64) -> String {
    int(v)
}

/// A number with `decimals` decimals and thousands separators: `5200584.349` → `5,200,584.35`.
pub fn number(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let fixed = format!("{:.decimals$}", v.abs());
    let (whole, frac) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let whole: i64 = whole.parse().unwrap_or(0);
    let sign = if v < 0.0 && fixed.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{}", int(whole))
    } else {
        format!("{sign}{}.{frac}", int(whole))
    }
}

/// Money in full: `€5,200,584.35`.
pub fn money(v: f64, currency: &Currency) -> String {
    let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
    format!("{sign}{}{}", currency.prefix(), number(v, 2))
}

/// Money for a card: `€5.2M`, `€12.3k`, `€950`; the full figure belongs in a `title` or a table.
pub fn money_compact(v: f64, currency: &Currency) -> String {
    let (sign, a) = if v < 0.0 { ("-", -v) } else { ("", v) };
    let body = if a >= 1e9 {
        format!("{:.1}B", a / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", a / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", a / 1e3)
    } else if a >= 100.0 {
        number(a, 0)
    } else {
        format!("{a:.2}")
    };
    format!("{sign}{}{body}", currency.prefix())
}

/// An optional amount, in full; `–` when there is none.
pub fn money_opt(v: Option<f64>, currency: &Currency) -> String {
    v.map_or_else(|| "–".into(), |v| money(v, currency))
}

/// A fraction as a percentage with one decimal: `0.1234` → `12.3%`.
pub fn percent(fraction: impl Figure) -> String {
    let fraction = fraction.value();
    if !fraction.is_finite() {
        return "–".into();
    }
    format!("{:.1}%", fraction * 100.0)
}

/// An optional fraction as a percentage; `–` when there is none.
pub fn percent_opt(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "–".into(), percent)
}

/// A p-value as people read it: `< 0.001`, `0.004`, `0.82`; never in exponent notation.
pub fn p_value(p: impl Figure) -> String {
    let p = p.value();
    if !p.is_finite() {
        "–".into()
    } else if p < 0.001 {
        "< 0.001".into()
    } else if p < 0.01 {
        format!("{p:.3}")
    } else if p > 0.99 {
        "> 0.99".into()
    } else {
        format!("{p:.2}")
    }
}

/// A date in words: `1 Dec 2026`.
pub fn date(d: &NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

/// A KPI period in words: `November 2026`, `Q4 2026`, `week of 23 Nov 2026`.
pub fn period(p: &crate::kpi::period::Period) -> String {
    use crate::kpi::period::PeriodKind;
    use chrono::Datelike;
    let start = p.start();
    match p.kind() {
        PeriodKind::Month => start.format("%B %Y").to_string(),
        PeriodKind::Quarter => format!("Q{} {}", start.month0() / 3 + 1, start.year()),
        PeriodKind::Week => format!("week of {}", date(&start)),
    }
}

/// A time stamp (UTC) in words, to the minute: `1 Dec 2026, 10:04`.
pub fn datetime(t: impl Stamp) -> String {
    t.stamp().format("%-d %b %Y, %H:%M").to_string()
}

/// The day of a date or of a time stamp, in words: `1 Dec 2026`.
pub fn any_date(d: impl Day) -> String {
    date(&d.day())
}

/// A time stamp, however a template holds it.
pub trait Stamp {
    fn stamp(&self) -> NaiveDateTime;
}
impl Stamp for NaiveDateTime {
    fn stamp(&self) -> NaiveDateTime {
        *self
    }
}
impl<T: Stamp + ?Sized> Stamp for &T {
    fn stamp(&self) -> NaiveDateTime {
        (**self).stamp()
    }
}

/// A date or a time stamp, however a template holds it.
pub trait Day {
    fn day(&self) -> NaiveDate;
}
impl Day for NaiveDate {
    fn day(&self) -> NaiveDate {
        *self
    }
}
impl Day for NaiveDateTime {
    fn day(&self) -> NaiveDate {
        self.date()
    }
}
impl<T: Day + ?Sized> Day for &T {
    fn day(&self) -> NaiveDate {
        (**self).day()
    }
}

/// The date part of a time stamp in words.
pub fn day(t: &NaiveDateTime) -> String {
    date(&t.date())
}

/// A KPI value for people: counts with separators, rates as percentages, money in the
/// policy's currency.
pub fn kpi_value(kpi: &str, v: f64, currency: &Currency) -> String {
    match kpi {
        "segment_size" | "active_customers" | "new_customers" | "orders" => count(v),
        "repeat_purchase_rate" | "retention_rate" | "churn_rate" => percent(v),
        "revenue" | "average_order_value" | "revenue_per_customer" | "customer_lifetime_value" => {
            money(v, currency)
        }
        _ => number(v, 2),
    }
}

/// A KPI value on a chart axis: short (`€600k`, `12%`, `1.2k`), and zero as plain `0`, never
/// `€0.00`.
pub fn kpi_tick(kpi: &str, v: f64, currency: &Currency) -> String {
    if v.abs() < 1e-9 {
        return "0".into();
    }
    match kpi {
        "repeat_purchase_rate" | "retention_rate" | "churn_rate" => {
            let p = v * 100.0;
            if (p - p.round()).abs() < 1e-6 {
                format!("{p:.0}%")
            } else {
                format!("{p:.1}%")
            }
        }
        "revenue" | "average_order_value" | "revenue_per_customer" | "customer_lifetime_value" => {
            let (sign, a) = if v < 0.0 { ("-", -v) } else { ("", v) };
            format!("{sign}{}{}", currency.prefix(), short(a))
        }
        _ => short(v),
    }
}

/// A number short for an axis: `600k`, `1.5M`, `950`, `2.5`.
fn short(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    let trim = |x: f64| {
        let t = format!("{x:.1}");
        t.strip_suffix(".0").map(str::to_owned).unwrap_or(t)
    };
    if a >= 1e9 {
        format!("{sign}{}B", trim(a / 1e9))
    } else if a >= 1e6 {
        format!("{sign}{}M", trim(a / 1e6))
    } else if a >= 1e3 {
        format!("{sign}{}k", trim(a / 1e3))
    } else if a >= 10.0 || (a - a.round()).abs() < 1e-9 {
        format!("{sign}{}", number(a, 0))
    } else {
        format!("{sign}{}", trim(a))
    }
}

/// What an activation export holds, for its link: `Email: 498 of 844 reachable`. No count
/// below the minimum cell size is revealed, neither the reachable ones nor, by subtraction,
/// the unreachable ones.
pub fn reach(channel: &str, reachable: u64, members: u64, min: u64) -> String {
    let channel = label(channel);
    let unreachable = members.saturating_sub(reachable);
    if members < min {
        format!("{channel}: fewer than {min} members")
    } else if reachable == 0 {
        format!("{channel}: none of {} reachable", int(members))
    } else if reachable < min {
        format!("{channel}: fewer than {min} of {} reachable", int(members))
    } else if unreachable > 0 && unreachable < min {
        format!(
            "{channel}: all but fewer than {min} of {} reachable",
            int(members)
        )
    } else {
        format!(
            "{channel}: {} of {} reachable",
            int(reachable),
            int(members)
        )
    }
}

/// How a KPI moved from `before` to `now`: rates in percentage points (`+1.2 pts`), other
/// figures relative (`+4.5%`); `–` when there is nothing to compare.
pub fn change(kpi: &str, now: Option<f64>, before: Option<f64>) -> String {
    let (Some(now), Some(before)) = (now, before) else {
        return "–".into();
    };
    let signed = |x: f64, unit: &str| {
        if x.abs() < 0.05 {
            "no change".to_owned()
        } else if x > 0.0 {
            format!("+{x:.1}{unit}")
        } else {
            format!("−{:.1}{unit}", -x)
        }
    };
    match kpi {
        "repeat_purchase_rate" | "retention_rate" | "churn_rate" => {
            signed((now - before) * 100.0, " pts")
        }
        _ if before.abs() < 1e-12 && now.abs() < 1e-12 => "no change".into(),
        _ if before.abs() < 1e-12 => "–".into(),
        _ => signed((now - before) / before.abs() * 100.0, "%"),
    }
}

/// The unit of a KPI, for chart axes.
pub fn kpi_unit(kpi: &str, currency: &Currency) -> String {
    match kpi {
        "segment_size" | "active_customers" | "new_customers" => "customers".into(),
        "orders" => "orders".into(),
        "repeat_purchase_rate" | "retention_rate" | "churn_rate" => "%".into(),
        "revenue" | "average_order_value" | "revenue_per_customer" | "customer_lifetime_value" => {
            currency.code().to_string()
        }
        "purchase_frequency" => "orders per customer".into(),
        _ => String::new(),
    }
}

/// The one label table: internal name → words. KPIs, behavioural features, statuses, legal
/// bases, purposes, verdicts, stances and the usual demo attributes.
const LABELS: &[(&str, &str)] = &[
    // KPIs
    ("segment_size", "Customers in the segment"),
    ("active_customers", "Active customers"),
    ("new_customers", "New customers"),
    ("revenue", "Revenue"),
    ("orders", "Orders"),
    ("average_order_value", "Average order value"),
    ("revenue_per_customer", "Revenue per active customer"),
    ("purchase_frequency", "Orders per active customer"),
    ("repeat_purchase_rate", "Repeat purchase rate"),
    ("retention_rate", "Retention rate"),
    ("churn_rate", "Churn rate"),
    ("customer_lifetime_value", "Customer lifetime value"),
    // Behavioural features
    ("recency_days", "Days since last purchase"),
    ("recency", "Days since last purchase"),
    ("frequency", "Number of orders"),
    ("monetary", "Total spent"),
    ("tenure_days", "Days as a customer"),
    // Why a run left a customer out (the consent page's words)
    ("no_consent", "Never asked"),
    ("missing_values", "Missing values"),
    // Attributes of the demo and common imports
    ("price_sensitivity", "Price sensitivity"),
    ("home_store", "Home store"),
    ("postcode_district", "Postcode district"),
    ("income_band", "Income band"),
    ("marital_status", "Marital status"),
    ("city_size", "City size"),
    ("company_size", "Company size"),
    ("customer_type", "Customer type"),
    // Statuses
    ("on_target", "On target"),
    ("no_target", "No target set"),
    ("never_asked", "Never asked"),
    ("granted", "Granted"),
    ("withdrawn", "Withdrawn"),
    ("expired", "Expired"),
    ("legitimate_interest", "Legitimate interest"),
    ("consent", "Consent"),
    ("in_progress", "In progress"),
    ("queued", "Queued"),
    ("running", "Running"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("audited", "Audited"),
    ("published", "Published"),
    ("retired", "Retired"),
    ("suppressed", "Withheld (too few customers)"),
    ("undefined", "Not enough data"),
    ("warning", "Warning"),
    ("alert", "Alert"),
    ("stable", "Stable"),
    ("warn", "Warning"),
    ("act", "Act"),
    ("pass", "Pass"),
    ("fail", "Fail"),
    ("inconclusive", "Inconclusive"),
    ("partial", "Partial"),
    // Purposes
    ("segmentation", "Segmentation"),
    ("marketing_email", "Marketing e-mail"),
    ("marketing_sms", "Marketing SMS"),
    ("analytics", "Analytics"),
    // Algorithms
    ("kmeans", "k-means"),
    ("gmm", "Gaussian mixture"),
    ("dbscan", "DBSCAN"),
    ("hierarchical", "Hierarchical"),
    ("rfm", "RFM"),
    ("rules", "Rules"),
];

/// The label of an internal name; a name missing from the table reads as a sentence
/// (`snake_case_name` → `Snake case name`), never as the raw token.
pub fn label(name: &str) -> String {
    if let Some((_, l)) = LABELS.iter().find(|(n, _)| *n == name) {
        return (*l).to_string();
    }
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A verdict (pass, warn, fail, inconclusive) as its label: "Pass", "Warning", …
pub fn verdict(v: impl std::fmt::Display) -> String {
    label(&v.to_string())
}

/// What a running segmentation run is doing, in words, for its progress bar.
pub fn run_stage(stage: &str) -> String {
    match stage {
        "queued" => "waiting for a worker".into(),
        "load" => "reading the consented customers".into(),
        "preprocess" => "preparing the features".into(),
        "cluster" => "finding the segments".into(),
        // The segments are described and valued while the members are saved, in one stage.
        "profile" => "describing, valuing and saving the segments".into(),
        "persist" => "saving the members".into(),
        "done" => "done".into(),
        other => label_lower(other),
    }
}

/// The label in lower case, for use inside a sentence.
pub fn label_lower(name: &str) -> String {
    let l = label(name);
    let mut chars = l.chars();
    match chars.next() {
        // Keep acronyms (RFM, SMS) as they are.
        Some(first) if chars.clone().next().is_some_and(|c| c.is_lowercase()) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => l,
    }
}

/// A sentence with the internal names it carries (`home_store`, `retention_rate`) put in
/// words ("home store", "retention rate"), for messages composed by the domain.
pub fn humanise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('_') && word.chars().any(|c| c.is_ascii_lowercase()) {
            out.push_str(&label_lower(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The glossary entry (`/glossary#…`) that explains a statistic's label, if any.
pub fn glossary_anchor(label: &str) -> Option<&'static str> {
    let l = label.to_lowercase();
    [
        ("adjusted", "adjusted-p"),
        ("p-value", "p-value"),
        ("cramér", "cramers-v"),
        ("silhouette", "silhouette"),
        ("representation", "representation-ratio"),
        ("four-fifths", "four-fifths"),
        ("lifetime value", "clv"),
    ]
    .into_iter()
    .find(|(needle, _)| l.contains(needle))
    .map(|(_, anchor)| anchor)
}

/// Whether a name is in the label table (for tests that check every KPI has a label).
pub fn has_label(name: &str) -> bool {
    LABELS.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stage_reads_as_words() {
        assert_eq!(run_stage("cluster"), "finding the segments");
        assert_eq!(run_stage("load"), "reading the consented customers");
        assert_eq!(run_stage("fairness_audit"), "fairness audit");
    }

    #[test]
    fn export_links_say_how_many_they_hold_without_revealing_small_counts() {
        assert_eq!(reach("email", 498, 844, 10), "Email: 498 of 844 reachable");
        assert_eq!(
            reach("email", 4, 844, 10),
            "Email: fewer than 10 of 844 reachable"
        );
        assert_eq!(
            reach("email", 840, 844, 10),
            "Email: all but fewer than 10 of 844 reachable"
        );
        assert_eq!(reach("email", 844, 844, 10), "Email: 844 of 844 reachable");
        assert_eq!(reach("email", 0, 844, 10), "Email: none of 844 reachable");
        assert_eq!(reach("email", 3, 5, 10), "Email: fewer than 10 members");
    }

    #[test]
    fn changes_read_as_points_for_rates_and_percent_otherwise() {
        assert_eq!(change("churn_rate", Some(0.25), Some(0.20)), "+5.0 pts");
        assert_eq!(change("revenue", Some(90.0), Some(100.0)), "−10.0%");
        assert_eq!(change("revenue", Some(100.0), Some(100.0)), "no change");
        assert_eq!(change("revenue", Some(100.0), None), "–");
        assert_eq!(change("orders", Some(5.0), Some(0.0)), "–");
        assert_eq!(change("orders", Some(0.0), Some(0.0)), "no change");
    }

    #[test]
    fn axis_ticks_are_short_and_zero_is_plain() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(kpi_tick("revenue", 0.0, &eur), "0");
        assert_eq!(kpi_tick("revenue", 600_000.0, &eur), "€600k");
        assert_eq!(kpi_tick("revenue", 1_500_000.0, &eur), "€1.5M");
        assert_eq!(kpi_tick("churn_rate", 0.25, &eur), "25%");
        assert_eq!(kpi_tick("active_customers", 7_000.0, &eur), "7k");
        assert_eq!(kpi_tick("purchase_frequency", 2.5, &eur), "2.5");
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn money_in_full_and_compact() {
        assert_eq!(money(5_200_584.349, &eur()), "€5,200,584.35");
        assert_eq!(money_compact(5_200_584.35, &eur()), "€5.2M");
        assert_eq!(money_compact(12_345.0, &eur()), "€12.3k");
        assert_eq!(money_compact(950.0, &eur()), "€950");
        assert_eq!(money_compact(9.5, &eur()), "€9.50");
        assert_eq!(money(-1234.5, &eur()), "-€1,234.50");
        let chf = Currency::parse("CHF").unwrap();
        assert_eq!(money(1000.0, &chf), "CHF 1,000.00");
        assert_eq!(
            money(0.0, &Currency::parse("USD").unwrap()),
            "$0.00".to_string()
        );
    }

    #[test]
    fn separators() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(-1_234_567), "-1,234,567");
        assert_eq!(number(1234.5, 1), "1,234.5");
        assert_eq!(number(-0.001, 2), "0.00");
    }

    #[test]
    fn percentages_and_p_values() {
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(p_value(0.8252), "0.83");
        assert_eq!(p_value(0.0004), "< 0.001");
        assert_eq!(p_value(0.0042), "0.004");
        assert_eq!(p_value(0.999), "> 0.99");
        assert!(!p_value(8.252e-1).contains('e'));
    }

    #[test]
    fn dates_in_words() {
        let t = NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_micro_opt(10, 4, 7, 123_456)
            .unwrap();
        assert_eq!(datetime(t), "1 Dec 2026, 10:04");
        assert_eq!(day(&t), "1 Dec 2026");
    }

    #[test]
    fn labels_for_every_kpi_and_feature() {
        for kpi in crate::kpi::Kpi::ALL {
            assert!(has_label(kpi.name()), "{}", kpi.name());
        }
        for f in crate::customers::features::FEATURE_NAMES {
            assert!(has_label(f), "{f}");
        }
        assert_eq!(label("recency_days"), "Days since last purchase");
        assert_eq!(label("repeat_purchase_rate"), "Repeat purchase rate");
        assert_eq!(label("some_new_column"), "Some new column");
        assert_eq!(label_lower("never_asked"), "never asked");
        assert_eq!(label_lower("rfm"), "RFM");
    }

    #[test]
    fn messages_lose_their_internal_names() {
        assert_eq!(
            humanise("home_store stands in for ethnicity (V 0.71); retention_rate fell"),
            "home store stands in for ethnicity (V 0.71); retention rate fell"
        );
        assert_eq!(humanise("plain words stay"), "plain words stay");
    }

    #[test]
    fn statistics_link_to_their_glossary_entry() {
        assert_eq!(glossary_anchor("Cramér's V"), Some("cramers-v"));
        assert_eq!(
            glossary_anchor("p-value adjusted (Benjamini-Hochberg)"),
            Some("adjusted-p")
        );
        assert_eq!(glossary_anchor("Chi-square"), None);
    }

    #[test]
    fn kpi_values() {
        assert_eq!(kpi_value("revenue", 5_200_584.35, &eur()), "€5,200,584.35");
        assert_eq!(kpi_value("orders", 12_000.0, &eur()), "12,000");
        assert_eq!(kpi_value("churn_rate", 0.05, &eur()), "5.0%");
    }
}
