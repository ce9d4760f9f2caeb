//! The one-screen summary of an audit: one sentence per attribute, saying where a group is
//! over- or under-represented against its share of all audited members (the stated reference),
//! with the ratio and its interval. A gap is stated only when the attribute's adjusted p-value
//! is below the policy's alpha; otherwise the sentence says the segments do not differ beyond
//! chance. A feature the run used that stands in for the attribute (a flagged proxy) is named
//! on the attribute's line, whose verdict is then the proxy rule's when that is worse.

use super::audit::{AttributeReport, AuditReport};
use super::verdict::Verdict;
use crate::format;

/// How a summary line reads at a glance (its colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A significant gap, stated.
    Gap,
    /// The segments do not differ beyond chance.
    NoGap,
    /// Not tested.
    Untested,
    /// No significant gap (or not tested), but a feature the run used stands in for the
    /// attribute.
    Proxy,
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Gap => "gap",
            Tone::NoGap => "no-gap",
            Tone::Untested => "untested",
            Tone::Proxy => "proxy",
        }
    }
}

/// One attribute's line.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    pub attribute: String,
    pub verdict: Verdict,
    pub tone: Tone,
    pub sentence: String,
}

/// The line for attribute `a` of `report`; `segment` names a segment for people.
pub fn summarise(
    report: &AuditReport,
    a: &AttributeReport,
    segment: &dyn Fn(u32) -> String,
) -> SummaryLine {
    let t = &report.thresholds;
    let own = own_line(a, t.alpha, t.confidence_level, segment);
    let proxies = report.proxy_decisions(&a.attribute);
    if proxies.is_empty() {
        return own;
    }
    let reasons = proxies
        .iter()
        .map(|d| d.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let (tone, sentence) = match own.tone {
        Tone::Gap => (Tone::Gap, format!("{} Also, {reasons}.", own.sentence)),
        Tone::NoGap => (
            Tone::Proxy,
            format!("{}, but {reasons}.", own.sentence.trim_end_matches('.')),
        ),
        Tone::Untested | Tone::Proxy => (Tone::Proxy, format!("{} But {reasons}.", own.sentence)),
    };
    SummaryLine {
        verdict: report.attribute_verdict(a),
        tone,
        sentence,
        ..own
    }
}

/// The line from the attribute's own tests alone. `alpha` is the significance level,
/// `confidence` the level of the intervals (0.95).
fn own_line(
    a: &AttributeReport,
    alpha: f64,
    confidence: f64,
    segment: &dyn Fn(u32) -> String,
) -> SummaryLine {
    let name = format::label(&a.attribute);
    let line = |tone, sentence| SummaryLine {
        attribute: a.attribute.clone(),
        verdict: a.verdict,
        tone,
        sentence,
    };
    let p = match (a.not_testable, a.p_value_adjusted) {
        (Some(why), _) => {
            return line(
                Tone::Untested,
                format!("{name}: not tested, {}.", why.phrase()),
            );
        }
        (None, None) => return line(Tone::Untested, format!("{name}: not tested.")),
        (None, Some(p)) => p,
    };
    if p >= alpha {
        return line(
            Tone::NoGap,
            format!(
                "{name}: the segments do not differ beyond chance (adjusted p {} ≥ {alpha}).",
                format::p_value(p)
            ),
        );
    }
    // The largest gap whose interval excludes 1 (proportional representation).
    let gap = a
        .representation
        .iter()
        .filter(|e| !e.suppressed)
        .filter_map(|e| Some((e, e.ratio?, e.interval?)))
        .filter(|(_, r, iv)| *r > 0.0 && (iv.lower > 1.0 || iv.upper < 1.0))
        .max_by(|x, y| x.1.ln().abs().total_cmp(&y.1.ln().abs()));
    let level = format!("{:.0}%", confidence * 100.0);
    let sentence = match gap {
        Some((e, ratio, iv)) => format!(
            "{name}: {} members are {} {} in segment {} (ratio {ratio:.2}, {level} CI {:.2}–{:.2}), \
             against their share of all audited members; adjusted p {}.",
            format::label(&e.group),
            format::percent((ratio - 1.0).abs()),
            if ratio < 1.0 {
                "under-represented"
            } else {
                "over-represented"
            },
            segment(e.segment),
            iv.lower,
            iv.upper,
            format::p_value(p)
        ),
        None => format!(
            "{name}: the segments differ (adjusted p {}), but no group's share in any one segment \
             is clearly off its share of all audited members.",
            format::p_value(p)
        ),
    };
    line(Tone::Gap, sentence)
}
