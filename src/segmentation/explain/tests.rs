use super::*;
use crate::segmentation::preprocess::FittedFeature;

/// Two numeric features: monetary (mean 100, sd 50) and recency_days (mean 30, sd 10).
fn transform() -> FittedTransform {
    FittedTransform {
        features: vec![
            FittedFeature::Numeric {
                name: "monetary".into(),
                log1p: false,
                mean: 100.0,
                scale: 50.0,
                fill: None,
            },
            FittedFeature::Numeric {
                name: "recency_days".into(),
                log1p: false,
                mean: 30.0,
                scale: 10.0,
                fill: Some(30.0),
            },
        ],
    }
}

fn names() -> Vec<String> {
    ["Recent big spenders", "Occasional buyers", "Lapsed"]
        .map(String::from)
        .to_vec()
}

fn kmeans_model() -> RunModel {
    RunModel::Kmeans {
        centres: vec![vec![2.0, -2.0], vec![0.0, 0.0], vec![-1.0, 2.0]],
    }
}

/// Worked by hand: the customer spent 190 (z = (190 − 100) / 50 = 1.8) and last bought 12
/// days ago (z = (12 − 30) / 10 = −1.8). Distances: to (2, −2) √(0.2² + 0.2²) = √0.08 =
/// 0.28284; to (0, 0) √(1.8² + 1.8²) = √6.48 = 2.54558; to (−1, 2) √(2.8² + 3.8²) = √22.28 =
/// 4.72017. Against the next nearest, (0, 0), each feature pulls 3.24 − 0.04 = 3.2 towards its
/// own centre, so both are cited, in feature order.
#[test]
fn kmeans_hand_worked_two_dimensions() {
    let t = transform();
    let model = kmeans_model();
    let names = names();
    let values = [RawValue::Number(Some(190.0)), RawValue::Number(Some(12.0))];
    let e = explain(
        &Run {
            algorithm: RunAlgorithm::Kmeans,
            transform: &t,
            model: &model,
            rules: None,
            names: &names,
            proposed: &names,
        },
        &Subject {
            segment: 0,
            values: &values,
            detail: None,
        },
        &Wording::plain(),
    )
    .unwrap();
    assert_eq!(e.algorithm, "kmeans");
    assert_eq!(e.features[0].standardised, Some(1.8));
    assert_eq!(e.features[1].standardised, Some(-1.8));
    let d = e.distances.as_ref().unwrap();
    assert!((d.own - 0.08f64.sqrt()).abs() < 1e-12);
    let next = d.next_nearest.as_ref().unwrap();
    assert_eq!((next.segment, next.name.as_str()), (1, "Occasional buyers"));
    assert!((next.distance - 6.48f64.sqrt()).abs() < 1e-12);
    assert!(e.consistent);
    assert_eq!(
        e.sentence,
        "You are in 'Recent big spenders' because your monetary (190, 1.8 standard deviations \
         above the average customer) and your recency days (12, 1.8 standard deviations below \
         the average customer) are closest to that group's typical customer; the next closest \
         group was 'Occasional buyers'."
    );
    // The stored membership disagreeing with the nearest centre is said, not hidden.
    let e = explain(
        &Run {
            algorithm: RunAlgorithm::Kmeans,
            transform: &t,
            model: &model,
            rules: None,
            names: &names,
            proposed: &names,
        },
        &Subject {
            segment: 2,
            values: &values,
            detail: None,
        },
        &Wording::plain(),
    )
    .unwrap();
    assert!(!e.consistent);
    assert!(e.sentence.contains("Your data changed after this run"));
}

#[test]
fn missing_values_take_the_fill_or_refuse() {
    let t = transform();
    let (f, row) =
        standardise(&t, &[RawValue::Number(Some(100.0)), RawValue::Number(None)]).unwrap();
    assert_eq!(row, [0.0, 0.0]);
    assert!(f[1].imputed && !f[0].imputed);
    assert_eq!(
        standardise(&t, &[RawValue::Number(None), RawValue::Number(Some(1.0))]),
        Err(ExplainError::Missing("monetary".into()))
    );
}

#[test]
fn categories_are_one_hot_and_logs_are_taken() {
    let t = FittedTransform {
        features: vec![
            FittedFeature::Numeric {
                name: "monetary".into(),
                log1p: true,
                mean: 1.0,
                scale: 2.0,
                fill: None,
            },
            FittedFeature::Categorical {
                name: "home_store".into(),
                categories: vec!["north".into(), "south".into()],
                fill: None,
            },
        ],
    };
    let e1 = std::f64::consts::E - 1.0;
    let (f, row) = standardise(
        &t,
        &[
            RawValue::Number(Some(e1)),
            RawValue::Category(Some("south".into())),
        ],
    )
    .unwrap();
    assert!((row[0] - 0.0).abs() < 1e-12);
    assert_eq!(&row[1..], [0.0, 1.0]);
    assert!(f[0].log_transformed);
    assert_eq!(f[1].category.as_deref(), Some("south"));
}

/// One dimension, equal weights, unit variances, means 0 and 2: at x = 1 both are equally
/// likely; at x = 0 the odds are e^0 : e^−2, so p = 1 / (1 + e^−2) = 0.8807971.
#[test]
fn posteriors_of_a_hand_worked_mixture() {
    let (w, m, c) = (
        vec![0.5, 0.5],
        vec![vec![0.0], vec![2.0]],
        vec![vec![vec![1.0]], vec![vec![1.0]]],
    );
    let p = posteriors(&[1.0], &w, &m, &c).unwrap();
    assert!((p[0] - 0.5).abs() < 1e-12);
    let p = posteriors(&[0.0], &w, &m, &c).unwrap();
    assert!((p[0] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

/// A correlated 2-D covariance against the closed form of the bivariate normal density.
#[test]
fn posteriors_use_the_full_covariance() {
    let cov_a = vec![vec![2.0, 0.5], vec![0.5, 1.0]];
    let cov_b = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let x = [0.7, -0.3];
    let density = |mu: [f64; 2], c: &Vec<Vec<f64>>| {
        let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
        let (a, b) = (x[0] - mu[0], x[1] - mu[1]);
        let q = (c[1][1] * a * a - 2.0 * c[0][1] * a * b + c[0][0] * b * b) / det;
        (-0.5 * q).exp() / (2.0 * std::f64::consts::PI * det.sqrt())
    };
    let (pa, pb) = (
        0.3 * density([0.0, 0.0], &cov_a),
        0.7 * density([1.0, 1.0], &cov_b),
    );
    let p = posteriors(
        &x,
        &[0.3, 0.7],
        &[vec![0.0, 0.0], vec![1.0, 1.0]],
        &[cov_a, cov_b],
    )
    .unwrap();
    assert!((p[0] - pa / (pa + pb)).abs() < 1e-12);
}

#[test]
fn gmm_explanation_names_the_most_likely_group() {
    let t = transform();
    let model = RunModel::Gmm {
        weights: vec![0.5, 0.5],
        means: vec![vec![2.0, -2.0], vec![0.0, 0.0]],
        covariances: vec![
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
        ],
    };
    let names = names()[..2].to_vec();
    let values = [RawValue::Number(Some(190.0)), RawValue::Number(Some(12.0))];
    let e = explain(
        &Run {
            algorithm: RunAlgorithm::Gmm,
            transform: &t,
            model: &model,
            rules: None,
            names: &names,
            proposed: &names,
        },
        &Subject {
            segment: 0,
            values: &values,
            detail: None,
        },
        &Wording::plain(),
    )
    .unwrap();
    let p = e.posteriors.as_ref().unwrap();
    assert!((p.iter().map(|p| p.probability).sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(p[0].probability > p[1].probability);
    assert!(e.consistent);
    assert!(
        e.sentence
            .starts_with("You are in 'Recent big spenders' because")
    );
    assert!(
        e.sentence
            .contains("the next most likely group was 'Occasional buyers'")
    );
}

#[test]
fn rules_name_the_rule_that_matched() {
    let t = transform();
    let rules = RuleSet::from_json(
        r#"{"rules": [
            {"name": "Big", "when": {"all": [
                {"compare": {"attribute": "monetary", "op": ">=", "value": 500}},
                {"compare": {"attribute": "recency_days", "op": "<", "value": 30}}]}},
            {"name": "Recent", "when": {"compare": {"attribute": "recency_days", "op": "<", "value": 30}}}
        ], "otherwise": "Rest"}"#,
    )
    .unwrap();
    let names: Vec<String> = ["Big", "Recent", "Rest"].map(String::from).to_vec();
    let run = Run {
        algorithm: RunAlgorithm::Rules,
        transform: &t,
        model: &RunModel::Rules,
        rules: Some(&rules),
        names: &names,
        proposed: &names,
    };
    let values = [RawValue::Number(Some(190.0)), RawValue::Number(Some(12.0))];
    let e = explain(
        &run,
        &Subject {
            segment: 1,
            values: &values,
            detail: None,
        },
        &Wording::plain(),
    )
    .unwrap();
    let rule = e.rule.as_ref().unwrap();
    assert_eq!((rule.rule, rule.name.as_str()), (Some(2), "Recent"));
    assert_eq!(rule.text, "recency days < 30");
    assert_eq!(
        e.sentence,
        "You are in 'Recent' because you match its rule: recency days < 30."
    );
    assert!(e.consistent);
    let values = [RawValue::Number(Some(190.0)), RawValue::Number(Some(40.0))];
    let e = explain(
        &run,
        &Subject {
            segment: 2,
            values: &values,
            detail: None,
        },
        &Wording::plain(),
    )
    .unwrap();
    assert_eq!(e.rule.as_ref().unwrap().rule, None);
    assert!(
        e.sentence
            .contains("none of the rules before it ('Big', 'Recent')")
    );
    assert_eq!(
        condition_text(&rules.rules[0].when, &plain_label),
        "monetary ≥ 500 and recency days < 30"
    );
}

#[test]
fn rfm_reports_the_stored_scores() {
    let t = FittedTransform {
        features: ["recency_days", "frequency", "monetary"]
            .map(|n| FittedFeature::Numeric {
                name: n.into(),
                log1p: false,
                mean: 0.0,
                scale: 1.0,
                fill: None,
            })
            .to_vec(),
    };
    let names = vec!["Champions".to_owned()];
    let values = [12.0, 9.0, 1240.0].map(|v| RawValue::Number(Some(v)));
    let detail = MemberDetail::parse("545").unwrap();
    let e = explain(
        &Run {
            algorithm: RunAlgorithm::Rfm,
            transform: &t,
            model: &RunModel::Rfm,
            rules: None,
            names: &names,
            proposed: &names,
        },
        &Subject {
            segment: 0,
            values: &values,
            detail: Some(detail),
        },
        &Wording::plain(),
    )
    .unwrap();
    let s = e.rfm.as_ref().unwrap();
    assert_eq!((s.recency, s.frequency, s.monetary), (5, 4, 5));
    assert!(e.consistent, "545 is a champion");
    assert_eq!(
        e.sentence,
        "You are in 'Champions' because, compared with all customers in the run, your recency \
         score is 5 of 5 (last purchase 12), your frequency score 4 of 5 (9 \
         orders) and your monetary score 5 of 5 (1240 spent); 5 means the most recent, most \
         frequent or highest."
    );
}

#[test]
fn member_details_round_trip_and_refuse_garbage() {
    for text in ["534", "core", "border:0.831200", "noise:1.730100"] {
        assert_eq!(MemberDetail::parse(text).unwrap().encode(), text);
    }
    for bad in ["", "53", "634", "5345", "edge:1", "noise:x", "core:1"] {
        assert!(MemberDetail::parse(bad).is_err(), "{bad}");
    }
}
