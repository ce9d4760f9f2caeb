//! Thresholds, verdict rules and the sentences that explain them.
//!
//! The rules, applied in this order to one attribute (or intersection):
//!
//! 1. **Not testable.** All members in one segment: membership cannot depend on anything, so
//!    *pass*. All members in one group (or none at all): there is nobody to compare, so
//!    *inconclusive*.
//! 2. **Too little data → inconclusive, never pass.** Fewer than `min_cell_size` members per cell
//!    on average, or a confidence interval of V that runs from below the warn limit to at or
//!    above the fail limit: the data can neither rule a large effect in nor out.
//! 3. **Significance and effect size together** (the effect is the bias-corrected V, because
//!    plain V is inflated on small or sparse tables):
//!    - significant and V ≥ fail → *fail*;
//!    - significant and warn ≤ V < fail → *warn*;
//!    - significant but V < warn → *pass* (a huge population makes negligible differences
//!      significant; that is not a failure), or *warn* if the interval of V reaches the warn
//!      limit;
//!    - not significant but V ≥ warn → *warn* (cannot be confirmed, cannot be ruled out);
//!    - not significant and V < warn → *pass*.
//! 4. **Four-fifths rule on favourable segments.** A group (with at least `min_cell_size`
//!    members) selected into favourable segments at less than `four_fifths_ratio` times the
//!    rate of the most-selected group is an adverse impact by the EEOC yardstick. If that
//!    difference in selection rates is itself significant (2 × 2 chi-square, Bonferroni over
//!    the groups compared) the verdict is *fail*, whatever V says: V averages over all segments
//!    and can be small while one favourable segment shuts a group out. If the difference is not
//!    significant the verdict is raised to at least *warn*. So "a significant but negligible
//!    effect never fails" holds for the association as a whole; a four-fifths violation is a
//!    non-negligible effect of its own.
//!
//! 5. **Proxies.** A feature the run used whose association with a protected attribute (V for
//!    a category, η for a number) is at or above `proxy_limit` stands in for that attribute:
//!    segments built on it can sort customers by the attribute even where the attribute's own
//!    test shows nothing yet (k-means mixes the proxy with other features; an activation by
//!    segment does not). Such a proxy makes the audit at least *warn*; at or above the fail
//!    limit `cramers_v_fail` it makes it *fail*, so the run cannot be published until a
//!    compliance officer overrides in writing — the same bar a direct effect of that size meets.
//!
//! The overall verdict is the worst attribute or proxy verdict, ordered
//! pass < warn < inconclusive < fail.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FairnessError;
use super::stats::{Interval, NotTestable};

/// Policy thresholds of an audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessThresholds {
    /// Significance level for the BH-adjusted p-values.
    pub alpha: f64,
    /// Bias-corrected Cramér's V at or above which an effect is worth a warning.
    pub cramers_v_warn: f64,
    /// Bias-corrected Cramér's V at or above which a significant effect fails the audit.
    pub cramers_v_fail: f64,
    /// Four-fifths limit on selection-rate ratios (0.8).
    pub four_fifths_ratio: f64,
    /// Counts below this (and above zero) are suppressed; groups smaller than this are not
    /// judged by the four-fifths rule.
    pub min_cell_size: u64,
    /// Proxy associations (V or η) at or above this are flagged.
    pub proxy_limit: f64,
    /// Random tables for the Monte-Carlo p-value (0 disables it; the asymptotic p-value is then
    /// used even on sparse tables, and the report says so).
    pub monte_carlo_samples: usize,
    /// Level of the Wilson intervals and of the interval of V.
    pub confidence_level: f64,
    /// Seed of all resampling; the same input and seed give the same report.
    pub seed: u64,
}

impl Default for FairnessThresholds {
    /// Conventional limits: Cohen's small/medium V (0.1/0.3), the EEOC four-fifths rule, a
    /// minimum cell of 10 as in most statistical-disclosure guidance.
    fn default() -> Self {
        Self {
            alpha: 0.05,
            cramers_v_warn: 0.10,
            cramers_v_fail: 0.30,
            four_fifths_ratio: 0.8,
            min_cell_size: 10,
            proxy_limit: 0.30,
            monte_carlo_samples: 2000,
            confidence_level: 0.95,
            seed: 0x5EED,
        }
    }
}

impl FairnessThresholds {
    /// Checks every threshold, naming the first bad one.
    pub fn validate(&self) -> Result<(), FairnessError> {
        let open01 = |x: f64| x > 0.0 && x < 1.0;
        let bad = |name, why: &str| {
            Err(FairnessError::InvalidThreshold {
                name,
                why: why.to_owned(),
            })
        };
        if !open01(self.alpha) {
            return bad("alpha", "must be strictly between 0 and 1");
        }
        if !(self.cramers_v_warn > 0.0 && self.cramers_v_warn < self.cramers_v_fail) {
            return bad(
                "cramers_v_warn",
                "must be positive and below cramers_v_fail",
            );
        }
        // `is_nan` spelled out: a NaN limit must fail validation, not slip past a comparison.
        if self.cramers_v_fail.is_nan() || self.cramers_v_fail > 1.0 {
            return bad("cramers_v_fail", "must be at most 1");
        }
        if !(self.four_fifths_ratio > 0.0 && self.four_fifths_ratio <= 1.0) {
            return bad("four_fifths_ratio", "must be in (0, 1]");
        }
        if self.min_cell_size == 0 {
            return bad("min_cell_size", "must be at least 1");
        }
        if !(self.proxy_limit > 0.0 && self.proxy_limit <= 1.0) {
            return bad("proxy_limit", "must be in (0, 1]");
        }
        if !open01(self.confidence_level) {
            return bad("confidence_level", "must be strictly between 0 and 1");
        }
        Ok(())
    }
}

/// Outcome of an audit, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Inconclusive,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "fail",
        })
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    /// The stored and serialised form (`pass`, `warn`, `inconclusive`, `fail`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(Verdict::Pass),
            "warn" => Ok(Verdict::Warn),
            "inconclusive" => Ok(Verdict::Inconclusive),
            "fail" => Ok(Verdict::Fail),
            other => Err(format!("`{other}` is not a verdict")),
        }
    }
}

/// Which rule decided a verdict (so tests and the report can say why without parsing prose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    SingleSegment,
    NothingToCompare,
    TooLittleData,
    SignificantLargeEffect,
    SignificantModerateEffect,
    SignificantNegligibleEffect,
    UnconfirmedEffect,
    NoDependency,
    /// A significant four-fifths violation.
    AdverseImpact,
    /// A four-fifths violation that is not statistically significant.
    UnconfirmedAdverseImpact,
    /// A feature that stands in for a protected attribute at or above the fail limit.
    StrongProxy,
    /// A feature that stands in for a protected attribute at or above the proxy limit.
    Proxy,
}

/// Which p-value a verdict used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PValueMethod {
    /// The chi-square distribution.
    Asymptotic,
    /// Random tables with the observed margins (used when > 20% of expected counts are < 5).
    MonteCarlo,
}

/// The worst four-fifths violation, as the reason may quote it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdverseImpact {
    pub group: String,
    pub reference_group: String,
    /// `None` when the ratio would reveal a suppressed count.
    pub ratio: Option<f64>,
    /// Whether the difference in selection rates is significant at `alpha`.
    pub significant: bool,
}

/// What the verdict rules look at for one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub attribute: String,
    pub test: Result<TestEvidence, NotTestable>,
    pub adverse_impact: Option<AdverseImpact>,
}

/// The test figures of a testable table.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvidence {
    pub statistic: f64,
    pub p_adjusted: f64,
    pub p_method: PValueMethod,
    /// Bias-corrected Cramér's V (plain V when the correction is undefined).
    pub effect: f64,
    pub effect_interval: Option<Interval>,
    pub n: u64,
    /// Cells of the table without empty rows and columns.
    pub cells: usize,
}

/// A verdict with the rule that gave it and its plain-English reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Rule,
    pub reason: String,
}

fn fmt_p(p: f64, method: PValueMethod) -> String {
    let prefix = match method {
        PValueMethod::Asymptotic => "p",
        PValueMethod::MonteCarlo => "Monte-Carlo p",
    };
    if p < 0.001 {
        format!("{prefix} < 0.001 after adjustment")
    } else {
        format!("{prefix} = {p:.3} after adjustment")
    }
}

fn fmt_v(e: &TestEvidence, level: f64) -> String {
    match e.effect_interval {
        Some(ci) => format!(
            "V = {:.2}, {:.0}% CI {:.2}–{:.2}",
            e.effect,
            level * 100.0,
            ci.lower,
            ci.upper
        ),
        None => format!("V = {:.2}", e.effect),
    }
}

/// A feature's association with a protected attribute, as the proxy rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyEvidence<'a> {
    pub feature: &'a str,
    pub attribute: &'a str,
    /// "V" or "η".
    pub symbol: &'static str,
    pub value: f64,
}

/// The proxy rule (rule 5 of the module documentation): `None` below the proxy limit.
pub fn decide_proxy(p: &ProxyEvidence<'_>, t: &FairnessThresholds) -> Option<Decision> {
    // A NaN association is no evidence of a proxy.
    if p.value.is_nan() || p.value < t.proxy_limit {
        return None;
    }
    let (feature, attribute, symbol, value) = (p.feature, p.attribute, p.symbol, p.value);
    let strong = value >= t.cramers_v_fail;
    let (verdict, rule, limit) = if strong {
        (
            Verdict::Fail,
            Rule::StrongProxy,
            format!("at or above the fail limit {:.2}", t.cramers_v_fail),
        )
    } else {
        (
            Verdict::Warn,
            Rule::Proxy,
            format!("at or above the proxy limit {:.2}", t.proxy_limit),
        )
    };
    Some(Decision {
        verdict,
        rule,
        reason: format!(
            "the run uses {feature}, which stands in for {attribute} ({symbol} = {value:.2}, {limit}): segments built on it can sort customers by {attribute}"
        ),
    })
}

/// Applies the rules in the module documentation.
pub fn decide(evidence: &Evidence, t: &FairnessThresholds) -> Decision {
    let attr = &evidence.attribute;
    let e = match &evidence.test {
        Err(NotTestable::SingleSegment) => {
            return Decision {
                verdict: Verdict::Pass,
                rule: Rule::SingleSegment,
                reason: format!(
                    "Segment membership cannot depend on {attr}: all audited members are in one segment."
                ),
            };
        }
        Err(why) => {
            return Decision {
                verdict: Verdict::Inconclusive,
                rule: Rule::NothingToCompare,
                reason: format!("{attr} cannot be assessed: {}.", why.phrase()),
            };
        }
        Ok(e) => e,
    };
    let chi = format!(
        "χ² = {:.1}, {}",
        e.statistic,
        fmt_p(e.p_adjusted, e.p_method)
    );
    let v = fmt_v(e, t.confidence_level);
    let significant = e.p_adjusted < t.alpha;
    let too_few = e.n < t.min_cell_size.saturating_mul(e.cells as u64);
    let too_wide = e
        .effect_interval
        .is_some_and(|ci| ci.lower < t.cramers_v_warn && ci.upper >= t.cramers_v_fail);
    if too_few || too_wide {
        let why = if too_few {
            format!(
                "{} members are fewer than {} per cell of the table",
                e.n, t.min_cell_size
            )
        } else {
            format!(
                "the interval of the effect runs from below the warn limit {:.2} to above the fail limit {:.2}",
                t.cramers_v_warn, t.cramers_v_fail
            )
        };
        return Decision {
            verdict: Verdict::Inconclusive,
            rule: Rule::TooLittleData,
            reason: format!(
                "There is too little data to judge whether segment membership depends on {attr} ({chi}; {v}): {why}."
            ),
        };
    }
    let (mut verdict, mut rule, mut reason) = if significant && e.effect >= t.cramers_v_fail {
        (
            Verdict::Fail,
            Rule::SignificantLargeEffect,
            format!(
                "Segment membership depends on {attr} ({chi}) with a large effect ({v}), at or above the fail limit {:.2}",
                t.cramers_v_fail
            ),
        )
    } else if significant && e.effect >= t.cramers_v_warn {
        (
            Verdict::Warn,
            Rule::SignificantModerateEffect,
            format!(
                "Segment membership depends on {attr} ({chi}) with a moderate effect ({v}), above the warn limit {:.2}",
                t.cramers_v_warn
            ),
        )
    } else if significant {
        let reaches = e
            .effect_interval
            .is_some_and(|ci| ci.upper >= t.cramers_v_warn);
        (
            if reaches {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
            Rule::SignificantNegligibleEffect,
            format!(
                "Segment membership is statistically associated with {attr} ({chi}), but the effect is negligible ({v}), below the warn limit {:.2}{}",
                t.cramers_v_warn,
                if reaches {
                    " although its interval reaches that limit"
                } else {
                    ""
                }
            ),
        )
    } else if e.effect >= t.cramers_v_warn {
        (
            Verdict::Warn,
            Rule::UnconfirmedEffect,
            format!(
                "The effect of {attr} on segment membership looks at least moderate ({v}) but is not statistically significant ({chi}), so it can be neither confirmed nor ruled out"
            ),
        )
    } else {
        (
            Verdict::Pass,
            Rule::NoDependency,
            format!(
                "No dependency of segment membership on {attr} was found ({chi}; {v}, below the warn limit {:.2})",
                t.cramers_v_warn
            ),
        )
    };
    if let Some(ai) = &evidence.adverse_impact {
        let rate = match ai.ratio {
            Some(r) => format!("at {r:.2} times the rate of {}", ai.reference_group),
            None => format!(
                "at a lower rate than {} (ratio suppressed)",
                ai.reference_group
            ),
        };
        reason.push_str(&format!(
            "; favourable segments select {} {rate}, below the four-fifths limit {:.2}{}",
            ai.group,
            t.four_fifths_ratio,
            if ai.significant {
                ""
            } else {
                ", though that difference is not statistically significant"
            }
        ));
        if ai.significant {
            verdict = Verdict::Fail;
            rule = Rule::AdverseImpact;
        } else if verdict < Verdict::Warn {
            verdict = Verdict::Warn;
            rule = Rule::UnconfirmedAdverseImpact;
        }
    }
    reason.push('.');
    Decision {
        verdict,
        rule,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(p: f64, v: f64, ci: Option<(f64, f64)>, n: u64) -> Evidence {
        Evidence {
            attribute: "sex".into(),
            test: Ok(TestEvidence {
                statistic: 41.2,
                p_adjusted: p,
                p_method: PValueMethod::Asymptotic,
                effect: v,
                effect_interval: ci.map(|(lower, upper)| Interval { lower, upper }),
                n,
                cells: 6,
            }),
            adverse_impact: None,
        }
    }

    fn t() -> FairnessThresholds {
        FairnessThresholds::default()
    }

    #[test]
    fn one_segment_passes_and_one_group_is_inconclusive() {
        let mut e = ev(0.5, 0.0, None, 100);
        e.test = Err(NotTestable::SingleSegment);
        assert_eq!(decide(&e, &t()).verdict, Verdict::Pass);
        e.test = Err(NotTestable::SingleGroup);
        let d = decide(&e, &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Inconclusive, Rule::NothingToCompare)
        );
        assert_eq!(
            d.reason,
            "sex cannot be assessed: all members are in one group."
        );
    }

    #[test]
    fn large_significant_effect_fails() {
        let d = decide(&ev(1e-6, 0.35, Some((0.31, 0.39)), 5000), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Fail, Rule::SignificantLargeEffect)
        );
        assert_eq!(
            d.reason,
            "Segment membership depends on sex (χ² = 41.2, p < 0.001 after adjustment) with a large effect (V = 0.35, 95% CI 0.31–0.39), at or above the fail limit 0.30."
        );
    }

    #[test]
    fn moderate_significant_effect_warns_with_the_issue_example_sentence() {
        let d = decide(&ev(1e-6, 0.21, Some((0.17, 0.25)), 5000), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Warn, Rule::SignificantModerateEffect)
        );
        assert_eq!(
            d.reason,
            "Segment membership depends on sex (χ² = 41.2, p < 0.001 after adjustment) with a moderate effect (V = 0.21, 95% CI 0.17–0.25), above the warn limit 0.10."
        );
    }

    #[test]
    fn significant_but_negligible_effect_never_fails() {
        let d = decide(&ev(1e-30, 0.01, Some((0.009, 0.011)), 1_000_000), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Pass, Rule::SignificantNegligibleEffect)
        );
        let d = decide(&ev(1e-30, 0.08, Some((0.07, 0.11)), 1_000_000), &t());
        assert_eq!(d.verdict, Verdict::Warn);
        // A four-fifths violation that is not significant only raises it to warn.
        let mut e = ev(1e-30, 0.01, Some((0.009, 0.011)), 1_000_000);
        e.adverse_impact = Some(AdverseImpact {
            group: "F".into(),
            reference_group: "M".into(),
            ratio: Some(0.7),
            significant: false,
        });
        let d = decide(&e, &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Warn, Rule::UnconfirmedAdverseImpact)
        );
        assert!(
            d.reason
                .ends_with("though that difference is not statistically significant.")
        );
    }

    #[test]
    fn a_significant_four_fifths_violation_fails_even_with_a_small_overall_v() {
        let mut e = ev(1e-30, 0.07, Some((0.068, 0.071)), 1_000_000);
        e.adverse_impact = Some(AdverseImpact {
            group: "F".into(),
            reference_group: "M".into(),
            ratio: Some(0.53),
            significant: true,
        });
        let d = decide(&e, &t());
        assert_eq!((d.verdict, d.rule), (Verdict::Fail, Rule::AdverseImpact));
    }

    #[test]
    fn large_effect_on_too_little_data_is_inconclusive_never_pass() {
        // A wide interval spanning negligible to above fail.
        let d = decide(&ev(0.2, 0.4, Some((0.05, 0.62)), 200), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Inconclusive, Rule::TooLittleData)
        );
        // Too few members per cell, even when significant.
        let d = decide(&ev(0.001, 0.6, Some((0.5, 0.7)), 40), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Inconclusive, Rule::TooLittleData)
        );
        assert!(d.reason.contains("40 members are fewer than 10 per cell"));
    }

    #[test]
    fn unconfirmed_moderate_effect_warns() {
        let d = decide(&ev(0.2, 0.15, Some((0.08, 0.22)), 600), &t());
        assert_eq!(
            (d.verdict, d.rule),
            (Verdict::Warn, Rule::UnconfirmedEffect)
        );
    }

    #[test]
    fn no_dependency_passes() {
        let d = decide(&ev(0.6, 0.02, Some((0.0, 0.06)), 5000), &t());
        assert_eq!((d.verdict, d.rule), (Verdict::Pass, Rule::NoDependency));
        assert!(
            d.reason
                .starts_with("No dependency of segment membership on sex")
        );
    }

    #[test]
    fn four_fifths_violation_is_quoted_or_withheld_in_the_reason() {
        let mut e = ev(1e-6, 0.21, Some((0.17, 0.25)), 5000);
        e.adverse_impact = Some(AdverseImpact {
            group: "F".into(),
            reference_group: "M".into(),
            ratio: Some(0.62),
            significant: true,
        });
        let d = decide(&e, &t());
        assert_eq!((d.verdict, d.rule), (Verdict::Fail, Rule::AdverseImpact));
        assert!(d.reason.ends_with(
            "favourable segments select F at 0.62 times the rate of M, below the four-fifths limit 0.80."
        ));
        e.adverse_impact.as_mut().unwrap().ratio = None;
        let reason = decide(&e, &t()).reason;
        assert!(!reason.contains("0.62"));
        assert!(reason.contains("select F at a lower rate than M (ratio suppressed)"));
    }

    #[test]
    fn monte_carlo_p_values_are_named_in_the_reason() {
        let mut e = ev(0.012, 0.2, Some((0.12, 0.26)), 2000);
        if let Ok(te) = &mut e.test {
            te.p_method = PValueMethod::MonteCarlo;
        }
        assert!(
            decide(&e, &t())
                .reason
                .contains("Monte-Carlo p = 0.012 after adjustment")
        );
    }

    #[test]
    fn a_proxy_warns_at_the_proxy_limit_and_fails_at_the_fail_limit() {
        let t = FairnessThresholds {
            proxy_limit: 0.2,
            ..t()
        };
        let p = |value| ProxyEvidence {
            feature: "home_store",
            attribute: "ethnicity",
            symbol: "V",
            value,
        };
        assert_eq!(decide_proxy(&p(0.19), &t), None);
        assert_eq!(decide_proxy(&p(f64::NAN), &t), None);
        let d = decide_proxy(&p(0.2), &t).unwrap();
        assert_eq!((d.verdict, d.rule), (Verdict::Warn, Rule::Proxy));
        let d = decide_proxy(&p(0.6), &t).unwrap();
        assert_eq!((d.verdict, d.rule), (Verdict::Fail, Rule::StrongProxy));
        assert_eq!(
            d.reason,
            "the run uses home_store, which stands in for ethnicity (V = 0.60, at or above the fail limit 0.30): segments built on it can sort customers by ethnicity"
        );
    }

    #[test]
    fn verdicts_order_from_pass_to_fail() {
        assert!(Verdict::Pass < Verdict::Warn);
        assert!(Verdict::Warn < Verdict::Inconclusive);
        assert!(Verdict::Inconclusive < Verdict::Fail);
    }

    #[test]
    fn invalid_thresholds_are_named() {
        assert!(t().validate().is_ok());
        let mut bad = t();
        bad.cramers_v_warn = 0.5;
        assert!(matches!(
            bad.validate(),
            Err(FairnessError::InvalidThreshold {
                name: "cramers_v_warn",
                ..
            })
        ));
        let mut bad = t();
        bad.alpha = f64::NAN;
        assert!(matches!(
            bad.validate(),
            Err(FairnessError::InvalidThreshold { name: "alpha", .. })
        ));
        let mut bad = t();
        bad.min_cell_size = 0;
        assert!(bad.validate().is_err());
    }
}
