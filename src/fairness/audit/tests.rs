//! End-to-end tests of [`audit`] on synthetic populations with known structure.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::*;
use crate::fairness::noncentral::cramers_v_interval;
use crate::fairness::stats::benjamini_hochberg;

fn quick() -> FairnessThresholds {
    FairnessThresholds {
        monte_carlo_samples: 500,
        ..FairnessThresholds::default()
    }
}

/// `n` members in 4 segments (segment 10 favourable). Sex is planted: F members go to segment
/// 10 with probability `plant`, others spread evenly. Age and region are independent of
/// segments; income tracks sex (a proxy), noise tracks nothing.
fn population(n: usize, plant: f64, seed: u64) -> AuditInput {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids = [10u32, 20, 30, 40];
    let mut membership = Vec::with_capacity(n);
    let mut sex = Vec::with_capacity(n);
    let mut age = Vec::with_capacity(n);
    let mut region = Vec::with_capacity(n);
    let mut income = Vec::with_capacity(n);
    let mut noise = Vec::with_capacity(n);
    for _ in 0..n {
        let u: f64 = rng.r#gen();
        let s = if u < 0.48 {
            Some("F")
        } else if u < 0.97 {
            Some("M")
        } else {
            None
        };
        let seg = if s == Some("F") && rng.gen_bool(plant) {
            10
        } else {
            ids[rng.gen_range(0..4)]
        };
        membership.push(seg);
        sex.push(s);
        age.push(if rng.gen_bool(0.02) {
            None
        } else {
            Some(rng.gen_range(18.0..90.0))
        });
        region.push(Some(["N", "S", "E", "W", "C"][rng.gen_range(0..5)]));
        income.push(if s == Some("F") { 30.0 } else { 45.0 } + rng.gen_range(-5.0..5.0));
        noise.push(rng.r#gen::<f64>());
    }
    let bands = Bands::new(&[18.0, 25.0, 35.0, 45.0, 55.0, 65.0]).unwrap();
    AuditInput {
        segments: ids
            .iter()
            .map(|&id| Segment {
                id,
                favourable: id == 10,
            })
            .collect(),
        membership,
        attributes: vec![
            ProtectedAttribute::categorical("sex", &sex).unwrap(),
            ProtectedAttribute::numeric("age", &age, &bands).unwrap(),
            ProtectedAttribute::categorical("region", &region).unwrap(),
        ],
        intersections: vec![("sex".into(), "age".into())],
        features: vec![
            Feature {
                name: "income".into(),
                values: FeatureValues::Numeric(income),
            },
            Feature {
                name: "noise".into(),
                values: FeatureValues::Numeric(noise),
            },
        ],
    }
}

fn attr<'a>(r: &'a AuditReport, name: &str) -> &'a AttributeReport {
    r.attributes.iter().find(|a| a.attribute == name).unwrap()
}

#[test]
fn a_planted_dependency_fails_and_its_proxy_is_flagged() {
    let report = audit(&population(20_000, 0.4, 1), &quick()).unwrap();
    let sex = attr(&report, "sex");
    assert_eq!(sex.verdict, Verdict::Fail, "{}", sex.reason);
    assert!(sex.reason.starts_with("Segment membership depends on sex"));
    assert!(sex.four_fifths.as_ref().unwrap().reference_group == "F");
    let age = attr(&report, "age");
    assert_eq!(age.verdict, Verdict::Pass, "{}", age.reason);
    assert_eq!(attr(&report, "region").verdict, Verdict::Pass);
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(report.reason.contains("set by sex"), "{}", report.reason);
    let income = report
        .proxies
        .iter()
        .find(|p| p.feature == "income" && p.attribute == "sex")
        .unwrap();
    assert!(income.flagged && income.value > 0.8);
    assert!(
        report
            .proxies
            .iter()
            .filter(|p| p.feature == "noise")
            .all(|p| !p.flagged)
    );
    assert!(
        report
            .reason
            .contains("income, which stands in for sex (η = "),
        "{}",
        report.reason
    );
    assert_eq!(income.verdict, Some(Verdict::Fail));
}

/// The population's sex is independent of the segments, so its own test passes; but income,
/// a feature the run used, tracks sex. The report must not show a green "pass" beside sex
/// while the headline fails the audit on that proxy: sex's line and section take the proxy's
/// verdict and name the feature.
#[test]
fn an_attribute_whose_proxy_fails_the_audit_is_not_shown_as_passing() {
    use crate::fairness::summary::{Tone, summarise};
    let report = audit(&population(20_000, 0.0, 2), &quick()).unwrap();
    let name = |s: u32| format!("{s}");
    let sex = attr(&report, "sex");
    assert_ne!(sex.verdict, Verdict::Fail, "its own test: {}", sex.reason);
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.reason);
    assert_eq!(report.attribute_verdict(sex), Verdict::Fail);
    let line = summarise(&report, sex, &name);
    assert_eq!(line.verdict, Verdict::Fail, "{}", line.sentence);
    assert_eq!(line.tone, Tone::Proxy, "{}", line.sentence);
    assert!(
        line.sentence
            .starts_with("Sex: the segments do not differ beyond chance (adjusted p "),
        "{}",
        line.sentence
    );
    assert!(
        line.sentence
            .contains(", but the run uses income, which stands in for sex (η = "),
        "{}",
        line.sentence
    );
    // An attribute no used feature stands in for keeps its own verdict and sentence.
    let age = attr(&report, "age");
    assert!(report.proxy_decisions("age").is_empty());
    assert_eq!(report.attribute_verdict(age), age.verdict);
    let age_line = summarise(&report, age, &name);
    assert_ne!(age_line.tone, Tone::Proxy);
    assert!(
        !age_line.sentence.contains("stands in for"),
        "{}",
        age_line.sentence
    );
}

#[test]
fn an_independent_population_passes() {
    let report = audit(&population(20_000, 0.0, 2), &quick()).unwrap();
    for a in &report.attributes {
        assert_ne!(a.verdict, Verdict::Fail, "{}: {}", a.attribute, a.reason);
    }
    assert!(attr(&report, "sex").p_value_adjusted.unwrap() > 0.01);
}

#[test]
fn the_json_has_the_fields_the_issue_asks_for() {
    let report = audit(&population(5_000, 0.3, 3), &quick()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for key in ["attributes", "proxies", "verdict", "reason"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let names: Vec<&str> = json["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sex", "age", "region", "sex × age"]);
    for a in json["attributes"].as_array().unwrap() {
        for key in [
            "attribute",
            "groups",
            "segments",
            "table",
            "chi_square",
            "dof",
            "p_value",
            "p_value_adjusted",
            "p_value_method",
            "cramers_v",
            "cramers_v_corrected",
            "cramers_v_ci",
            "representation",
            "four_fifths",
            "balance",
            "verdict",
            "reason",
        ] {
            assert!(a.get(key).is_some(), "{}: missing {key}", a["attribute"]);
        }
        assert!(a["table"].get("suppressed").is_some());
        assert!(["pass", "warn", "fail", "inconclusive"].contains(&a["verdict"].as_str().unwrap()));
    }
    assert_eq!(
        json["attributes"][0]["groups"],
        serde_json::json!(["M", "F", "(missing)"])
    );
}

/// Every number in the published tables is 0, at least the minimum cell size, or null.
fn assert_no_small_count(json: &Value, min: u64) {
    for a in json["attributes"].as_array().unwrap() {
        let t = &a["table"];
        for v in t["counts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
        {
            if let Some(x) = v.as_u64() {
                assert!(
                    x == 0 || x >= min,
                    "{}: count {x} published",
                    a["attribute"]
                );
            }
        }
        for v in t["group_totals"].as_array().unwrap() {
            if let Some(x) = v.as_u64() {
                assert!(
                    x == 0 || x >= min,
                    "{}: group total {x} published",
                    a["attribute"]
                );
            }
        }
    }
}

#[test]
fn small_cells_and_figures_derived_from_them_never_leave_the_audit() {
    let mut input = population(3_000, 0.2, 4);
    // A rare group of 4 members, all in segment 20.
    let mut sex: Vec<Option<&str>> = vec![Some("F"); input.membership.len()];
    for (i, s) in sex.iter_mut().enumerate() {
        if i % 2 == 0 {
            *s = Some("M");
        }
    }
    let mut placed = 0;
    for (i, seg) in input.membership.iter().enumerate() {
        if *seg == 20 && placed < 4 {
            sex[i] = Some("X");
            placed += 1;
        }
    }
    input.attributes[0] = ProtectedAttribute::categorical("sex", &sex).unwrap();
    let report = audit(&input, &quick()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_no_small_count(&json, 10);
    let sex = attr(&report, "sex");
    let x = sex.groups.iter().position(|g| g == "X").unwrap();
    let row20 = sex.segments.iter().position(|&s| s == 20).unwrap();
    assert_eq!(sex.table.counts[row20][x], None);
    assert_eq!(sex.table.suppressed[row20][x], Suppression::Primary);
    assert_eq!(sex.table.group_totals[x], None);
    // Complementary suppression: some other group total is hidden too (the grand total is
    // public), and the representation ratios of the hidden cells are withheld.
    assert!(
        sex.table
            .group_totals_suppressed
            .iter()
            .filter(|s| **s == Suppression::Complementary)
            .count()
            >= 1
    );
    for e in sex.representation.iter().filter(|e| e.group == "X") {
        assert!(e.suppressed && e.ratio.is_none() && e.interval.is_none());
    }
    let rate_x = sex
        .four_fifths
        .as_ref()
        .unwrap()
        .rates
        .iter()
        .find(|r| r.group == "X")
        .unwrap();
    assert!(rate_x.rate.is_none() && !rate_x.eligible);
    assert!(!sex.reason.contains(" X "));
    assert!(report.suppression_complete);
}

#[test]
fn sparse_tables_use_the_monte_carlo_p_value_and_say_so() {
    let report = audit(&population(60, 0.3, 5), &quick()).unwrap();
    let age = attr(&report, "age");
    assert!(age.small_expected_fraction.unwrap() > 0.2);
    assert_eq!(age.p_value_method, Some(PValueMethod::MonteCarlo));
    assert_eq!(age.p_value, age.p_value_monte_carlo);
    assert!(age.reason.contains("Monte-Carlo p"), "{}", age.reason);
    // Too little data: never a pass.
    assert_eq!(age.verdict, Verdict::Inconclusive, "{}", age.reason);
}

#[test]
fn p_values_are_adjusted_across_all_tests_of_the_audit() {
    let report = audit(&population(5_000, 0.05, 6), &quick()).unwrap();
    let raw: Vec<f64> = report
        .attributes
        .iter()
        .map(|a| a.p_value.unwrap())
        .collect();
    let adjusted: Vec<f64> = report
        .attributes
        .iter()
        .map(|a| a.p_value_adjusted.unwrap())
        .collect();
    assert_eq!(adjusted, benjamini_hochberg(&raw));
    assert_eq!(adjusted.len(), 4);
}

#[test]
fn the_same_seed_gives_the_same_report_and_the_interval_of_v_depends_on_no_seed() {
    let input = population(2_000, 0.2, 7);
    let a = audit(&input, &quick()).unwrap();
    let b = audit(&input, &quick()).unwrap();
    assert_eq!(a, b);
    let other = FairnessThresholds {
        seed: 99,
        ..quick()
    };
    let c = audit(&input, &other).unwrap();
    // The interval comes from test inversion, not resampling: reproducible whatever the seed.
    assert_eq!(attr(&a, "sex").cramers_v_ci, attr(&c, "sex").cramers_v_ci);
    assert_eq!(attr(&a, "sex").chi_square, attr(&c, "sex").chi_square);
}

#[test]
fn one_segment_is_not_testable_but_well_defined() {
    let mut input = population(500, 0.0, 8);
    input.membership.iter_mut().for_each(|s| *s = 10);
    let report = audit(&input, &quick()).unwrap();
    let sex = attr(&report, "sex");
    assert_eq!(sex.not_testable, Some(NotTestable::SingleSegment));
    assert_eq!(sex.verdict, Verdict::Pass);
    assert_eq!(sex.chi_square, None);
    assert_eq!(sex.p_value_adjusted, None);
    assert_eq!(sex.dropped_segments, [20, 30, 40]);
    // No NaN sneaks into the JSON as null where a number is expected, or as a string.
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("NaN"));
}

#[test]
fn a_huge_population_with_a_negligible_effect_is_not_a_failure() {
    // 200,000 members, F sent to the favourable segment with probability 0.01 extra: highly
    // significant, but V is tiny.
    let report = audit(&population(200_000, 0.01, 9), &quick()).unwrap();
    let sex = attr(&report, "sex");
    assert!(sex.p_value_adjusted.unwrap() < 0.05, "{}", sex.reason);
    assert!(sex.cramers_v_corrected.unwrap() < 0.1);
    assert_eq!(sex.verdict, Verdict::Pass, "{}", sex.reason);
    assert_eq!(sex.rule, Rule::SignificantNegligibleEffect);
}

#[test]
fn the_interval_of_v_contains_the_estimate_and_narrows_with_more_data() {
    let base = [30u64, 20, 10, 15, 25, 20, 10, 15, 35];
    let mut widths = Vec::new();
    for scale in [1u64, 10, 100] {
        let t = ContingencyTable::from_counts(
            vec![1, 2, 3],
            vec!["a".into(), "b".into(), "c".into()],
            base.iter().map(|x| x * scale).collect(),
        )
        .unwrap();
        let Independence::Tested(c) = pearson_chi_square(&t) else {
            panic!("testable")
        };
        let v = cramers_v_corrected(c.statistic, c.n, 3, 3).unwrap();
        let ci = cramers_v_interval(c.statistic, c.n, 3, 3, 0.95).unwrap();
        assert!(ci.contains(v), "scale {scale}: {v} not in {ci:?}");
        widths.push(ci.upper - ci.lower);
    }
    assert!(widths[0] > widths[1] && widths[1] > widths[2], "{widths:?}");
}

#[test]
fn bad_input_is_rejected_with_a_clear_error() {
    let t = quick();
    let mut input = population(100, 0.0, 10);
    input.membership.pop();
    assert!(matches!(
        audit(&input, &t),
        Err(FairnessError::LengthMismatch { .. })
    ));
    let mut input = population(100, 0.0, 10);
    input.intersections.push(("sex".into(), "religion".into()));
    assert_eq!(
        audit(&input, &t),
        Err(FairnessError::UnknownAttribute("religion".into()))
    );
    let mut input = population(100, 0.0, 10);
    input.intersections = vec![("sex".into(), "sex".into())];
    assert_eq!(
        audit(&input, &t),
        Err(FairnessError::SelfIntersection("sex".into()))
    );
    let mut input = population(100, 0.0, 10);
    let dup = input.attributes[0].clone();
    input.attributes.push(dup);
    assert_eq!(
        audit(&input, &t),
        Err(FairnessError::DuplicateAttribute("sex".into()))
    );
    let mut input = population(100, 0.0, 10);
    input.membership[5] = 77;
    assert_eq!(
        audit(&input, &t),
        Err(FairnessError::UnknownSegment {
            index: 5,
            segment: 77
        })
    );
    let mut input = population(100, 0.0, 10);
    if let FeatureValues::Numeric(v) = &mut input.features[0].values {
        v[3] = f64::INFINITY;
    }
    assert!(matches!(
        audit(&input, &t),
        Err(FairnessError::NonFinite { index: 3, .. })
    ));
    let empty = AuditInput {
        segments: vec![],
        membership: vec![],
        attributes: vec![],
        intersections: vec![],
        features: vec![],
    };
    assert_eq!(audit(&empty, &t), Err(FairnessError::EmptyPopulation));
    let bad = FairnessThresholds {
        alpha: 2.0,
        ..quick()
    };
    assert!(matches!(
        audit(&population(10, 0.0, 1), &bad),
        Err(FairnessError::InvalidThreshold { name: "alpha", .. })
    ));
}

#[test]
fn the_summary_states_a_gap_only_where_the_adjusted_p_value_is_below_alpha() {
    use crate::fairness::summary::{Tone, summarise};
    let t = quick();
    let name = |s: u32| format!("{s}");
    let report = audit(&population(20_000, 0.4, 1), &t).unwrap();
    let sex = summarise(&report, attr(&report, "sex"), &name);
    assert_eq!(sex.tone, Tone::Gap);
    // F members are planted into segment 10: over-represented there, with ratio and interval.
    assert!(sex.sentence.starts_with("Sex: "), "{}", sex.sentence);
    assert!(
        sex.sentence.contains("represented in segment"),
        "{}",
        sex.sentence
    );
    assert!(sex.sentence.contains("(ratio "), "{}", sex.sentence);
    assert!(sex.sentence.contains("95% CI "), "{}", sex.sentence);
    assert!(
        sex.sentence
            .contains("against their share of all audited members"),
        "{}",
        sex.sentence
    );
    // Every attribute: a gap is stated exactly when its adjusted p-value is below alpha.
    let mut quiet = 0;
    for a in &report.attributes {
        let line = summarise(&report, a, &name);
        match a.p_value_adjusted {
            Some(p) if p < t.alpha => assert_eq!(line.tone, Tone::Gap, "{}", line.sentence),
            Some(_) => {
                quiet += 1;
                assert_eq!(line.tone, Tone::NoGap, "{}", line.sentence);
                assert!(line.sentence.contains("do not differ beyond chance"));
                assert!(!line.sentence.contains("represented"));
            }
            None => assert_eq!(line.tone, Tone::Untested),
        }
    }
    assert!(quiet > 0, "some attribute shows no gap");
}
