//! A stored audit as CSV, one figure per line (long format), for spreadsheets and archives.
//!
//! Columns: `section,attribute,segment,group,feature,measure,value,suppressed`. Sections:
//! `audit` (overall verdict), `test` (per attribute: chi-square, p-values, V, verdict),
//! `cell` (table counts), `representation` (ratio and its interval), `four_fifths`,
//! `balance`, `proxy`, `override`. A suppressed figure has an empty value and its kind of
//! suppression (`primary`, `complementary`) in `suppressed`: small counts never appear.

use chrono::NaiveDateTime;

use super::AuditReport;
use super::suppression::Suppression;

/// A stored audit as exported: its identity, its report and its overrides.
pub struct Audit<'a> {
    pub id: i64,
    pub run_id: i64,
    pub policy_version: &'a str,
    pub report: &'a AuditReport,
    /// The run's strategies changed since the audit: its four-fifths result is stale.
    pub stale_strategies: bool,
    pub overrides: Vec<Override<'a>>,
}

/// A compliance officer's override of an audit.
pub struct Override<'a> {
    pub by: &'a str,
    pub at: NaiveDateTime,
    pub justification: &'a str,
}

fn suppression(s: Suppression) -> &'static str {
    match s {
        Suppression::None => "",
        Suppression::Primary => "primary",
        Suppression::Complementary => "complementary",
    }
}

fn num(x: Option<f64>) -> String {
    x.map(|x| format!("{x}")).unwrap_or_default()
}

/// The CSV text of an audit.
pub fn csv(audit: &Audit<'_>) -> String {
    let mut w = crate::spreadsheet::Writer::from_writer(Vec::new());
    let mut row = |fields: [&str; 8]| {
        w.write_record(fields).expect("writing to memory");
    };
    row([
        "section",
        "attribute",
        "segment",
        "group",
        "feature",
        "measure",
        "value",
        "suppressed",
    ]);
    let r = audit.report;
    let id = audit.id.to_string();
    let run = audit.run_id.to_string();
    let members = r.members.to_string();
    let verdict = r.verdict.to_string();
    for (measure, value) in [
        ("audit_id", id.as_str()),
        ("run_id", run.as_str()),
        ("policy_version", audit.policy_version),
        ("members", members.as_str()),
        ("verdict", verdict.as_str()),
        ("reason", r.reason.as_str()),
    ] {
        row(["audit", "", "", "", "", measure, value, ""]);
    }
    if audit.stale_strategies {
        row([
            "audit",
            "",
            "",
            "",
            "",
            "note",
            "the strategies changed after this audit: its four-fifths result is stale",
            "",
        ]);
    }
    for a in &r.attributes {
        let attr = a.attribute.as_str();
        let method = a
            .p_value_method
            .map(|m| format!("{m:?}").to_lowercase())
            .unwrap_or_default();
        let v = a.verdict.to_string();
        for (measure, value) in [
            ("chi_square", num(a.chi_square)),
            ("dof", a.dof.map(|d| d.to_string()).unwrap_or_default()),
            ("p_value", num(a.p_value)),
            ("p_value_method", method),
            ("p_value_adjusted", num(a.p_value_adjusted)),
            ("cramers_v", num(a.cramers_v)),
            ("cramers_v_corrected", num(a.cramers_v_corrected)),
            ("cramers_v_ci_lower", num(a.cramers_v_ci.map(|i| i.lower))),
            ("cramers_v_ci_upper", num(a.cramers_v_ci.map(|i| i.upper))),
            ("balance_minimum", num(a.balance.minimum)),
            ("verdict", v),
            ("reason", a.reason.clone()),
        ] {
            row(["test", attr, "", "", "", measure, &value, ""]);
        }
        let t = &a.table;
        for (i, segment) in a.segments.iter().enumerate() {
            let s = segment.to_string();
            for (j, group) in a.groups.iter().enumerate() {
                let count = t.counts[i][j].map(|c| c.to_string()).unwrap_or_default();
                row([
                    "cell",
                    attr,
                    &s,
                    group,
                    "",
                    "count",
                    &count,
                    suppression(t.suppressed[i][j]),
                ]);
            }
        }
        for e in &a.representation {
            let s = e.segment.to_string();
            let flag = if e.suppressed { "primary" } else { "" };
            for (measure, value) in [
                ("ratio", e.ratio),
                ("ratio_lower", e.interval.map(|i| i.lower)),
                ("ratio_upper", e.interval.map(|i| i.upper)),
            ] {
                row([
                    "representation",
                    attr,
                    &s,
                    &e.group,
                    "",
                    measure,
                    &num(value),
                    flag,
                ]);
            }
        }
        if let Some(ff) = &a.four_fifths {
            for e in &ff.rates {
                let flag = if e.suppressed { "primary" } else { "" };
                row([
                    "four_fifths",
                    attr,
                    "",
                    &e.group,
                    "",
                    "selection_rate",
                    &num(e.rate),
                    flag,
                ]);
                row([
                    "four_fifths",
                    attr,
                    "",
                    &e.group,
                    "",
                    "ratio_to_reference",
                    &num(e.ratio),
                    flag,
                ]);
            }
        }
        for b in &a.balance.segments {
            let flag = if b.suppressed { "primary" } else { "" };
            row([
                "balance",
                attr,
                &b.segment.to_string(),
                b.group.as_deref().unwrap_or(""),
                "",
                "balance",
                &num(b.value),
                flag,
            ]);
        }
    }
    for p in &r.proxies {
        let measure = match p.measure {
            super::proxies::ProxyMeasure::CramersV => "cramers_v",
            super::proxies::ProxyMeasure::CorrelationRatio => "correlation_ratio",
        };
        row([
            "proxy",
            &p.attribute,
            "",
            "",
            &p.feature,
            measure,
            &format!("{}", p.value),
            "",
        ]);
        if p.flagged {
            row([
                "proxy",
                &p.attribute,
                "",
                "",
                &p.feature,
                "flagged",
                "true",
                "",
            ]);
        }
    }
    for o in &audit.overrides {
        let at = o.at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        row(["override", "", "", "", "", "by", o.by, ""]);
        row(["override", "", "", "", "", "at", &at, ""]);
        row([
            "override",
            "",
            "",
            "",
            "",
            "justification",
            o.justification,
            "",
        ]);
    }
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("CSV of UTF-8 is UTF-8")
}
