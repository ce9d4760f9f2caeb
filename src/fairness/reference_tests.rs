//! Reference-vector tests: every statistic against the JSON written by
//! `tools/reference/fairness.py` (scipy / statsmodels / numpy), to 1e-9 relative.

use serde_json::Value;

use super::stats::*;
use super::table::ContingencyTable;

macro_rules! fixture {
    ($name:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/fairness/",
            $name,
            ".json"
        )))
        .expect("fixture is valid JSON")["cases"]
            .as_array()
            .expect("fixture has cases")
            .clone()
    };
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    got == want || (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
}

#[track_caller]
fn assert_close(got: f64, want: f64, what: &str) {
    assert!(close(got, want, 1e-9), "{what}: got {got:e}, want {want:e}");
}

fn table_of(case: &Value) -> ContingencyTable {
    let rows: Vec<Vec<u64>> = serde_json::from_value(case["counts"].clone()).unwrap();
    let cols = rows.first().map_or(0, Vec::len);
    ContingencyTable::from_counts(
        (0..rows.len() as u32).collect(),
        (0..cols).map(|c| format!("g{c}")).collect(),
        rows.concat(),
    )
    .unwrap()
}

#[test]
fn chi_square_and_cramers_v_match_scipy() {
    let cases = fixture!("chi_square");
    assert!(cases.len() > 50);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let t = table_of(case);
        let (_, dr, dc) = t.without_empty();
        let want_dr: Vec<usize> = serde_json::from_value(case["dropped_rows"].clone()).unwrap();
        let want_dc: Vec<usize> = serde_json::from_value(case["dropped_cols"].clone()).unwrap();
        assert_eq!((dr, dc), (want_dr, want_dc), "{name}: dropped");
        match (pearson_chi_square(&t), case.get("not_testable")) {
            (Independence::NotTestable(why), Some(want)) => {
                assert_eq!(serde_json::to_value(why).unwrap(), *want, "{name}");
            }
            (Independence::Tested(c), None) => {
                assert_close(c.statistic, case["statistic"].as_f64().unwrap(), name);
                assert_eq!(c.dof, case["dof"].as_u64().unwrap(), "{name}: dof");
                assert_eq!(c.n, case["n"].as_u64().unwrap(), "{name}: n");
                assert_close(c.p_value, case["p_value"].as_f64().unwrap(), name);
                assert_close(
                    c.small_expected_fraction,
                    case["small_expected_fraction"].as_f64().unwrap(),
                    name,
                );
                let v = cramers_v(c.statistic, c.n, c.rows, c.cols);
                assert_close(v, case["cramers_v"].as_f64().unwrap(), name);
                let vc = cramers_v_corrected(c.statistic, c.n, c.rows, c.cols);
                match case["cramers_v_corrected"].as_f64() {
                    Some(want) => assert_close(vc.unwrap(), want, name),
                    None => assert_eq!(vc, None, "{name}"),
                }
            }
            (got, want) => panic!("{name}: got {got:?}, reference {want:?}"),
        }
    }
}

#[test]
fn chi_square_survival_function_matches_scipy() {
    for case in &fixture!("chi_square_sf") {
        let (x, dof) = (case["x"].as_f64().unwrap(), case["dof"].as_f64().unwrap());
        assert_close(
            chi_square_sf(x, dof),
            case["sf"].as_f64().unwrap(),
            &format!("sf({x}, {dof})"),
        );
    }
    assert_eq!(chi_square_sf(0.0, 3.0), 1.0);
    assert!(chi_square_sf(1.0, 0.0).is_nan());
}

#[test]
fn benjamini_hochberg_matches_statsmodels() {
    for case in &fixture!("benjamini_hochberg") {
        let p: Vec<f64> = serde_json::from_value(case["p"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(case["adjusted"].clone()).unwrap();
        let got = benjamini_hochberg(&p);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(close(*g, *w, 1e-12), "BH {p:?}: got {got:?}, want {want:?}");
        }
    }
    assert!(benjamini_hochberg(&[]).is_empty());
}

#[test]
fn wilson_interval_matches_statsmodels() {
    for case in &fixture!("wilson") {
        let (count, nobs) = (
            case["count"].as_u64().unwrap(),
            case["nobs"].as_u64().unwrap(),
        );
        let alpha = case["alpha"].as_f64().unwrap();
        let i = wilson_interval(count, nobs, alpha);
        let what = format!("wilson({count}, {nobs}, {alpha})");
        assert_close(i.lower, case["lower"].as_f64().unwrap(), &what);
        assert_close(i.upper, case["upper"].as_f64().unwrap(), &what);
    }
}

#[test]
fn normal_critical_values_match_scipy() {
    for case in &fixture!("normal_critical") {
        let alpha = case["alpha"].as_f64().unwrap();
        assert_close(
            normal_critical_value(alpha),
            case["z"].as_f64().unwrap(),
            "z",
        );
    }
}

#[test]
fn correlation_ratio_matches_numpy() {
    for case in &fixture!("correlation_ratio") {
        let values: Vec<f64> = serde_json::from_value(case["values"].clone()).unwrap();
        let groups: Vec<u32> = serde_json::from_value(case["groups"].clone()).unwrap();
        let k = case["n_groups"].as_u64().unwrap() as usize;
        let got = correlation_ratio(&values, &groups, k);
        match case["eta"].as_f64() {
            // η of exactly 0 compares absolutely: numpy and we both produce rounding noise.
            Some(want) if want < 1e-12 => assert!(got.unwrap() < 1e-9),
            Some(want) => assert_close(got.unwrap(), want, "eta"),
            None => assert_eq!(got, None),
        }
    }
}

#[test]
fn noncentral_chi_square_cdf_matches_scipy() {
    use super::noncentral::noncentral_chi_square_cdf;
    let cases = fixture!("noncentral_chi_square");
    assert!(cases.len() >= 15);
    for case in &cases {
        let (x, dof, lambda) = (
            case["x"].as_f64().unwrap(),
            case["dof"].as_f64().unwrap(),
            case["lambda"].as_f64().unwrap(),
        );
        let want = case["cdf"].as_f64().unwrap();
        let got = noncentral_chi_square_cdf(x, dof, lambda);
        // Probabilities near 0 are compared absolutely: a relative error of 1e-9 on 1e-30 says
        // nothing a user could read.
        assert!(
            (got - want).abs() <= 1e-12 || close(got, want, 1e-9),
            "ncx2.cdf({x}, {dof}, {lambda}): got {got:e}, want {want:e}"
        );
    }
}

#[test]
fn interval_of_v_matches_the_scipy_test_inversion_and_contains_the_point() {
    use super::noncentral::{cramers_v_interval, noncentrality_interval};
    let cases = fixture!("cramers_v_interval");
    assert!(cases.len() > 40);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let f = |k: &str| case[k].as_f64().unwrap();
        let (stat, dof, n) = (f("statistic"), f("dof"), case["n"].as_u64().unwrap());
        let (rows, cols) = (
            case["rows"].as_u64().unwrap() as usize,
            case["cols"].as_u64().unwrap() as usize,
        );
        let lambda = noncentrality_interval(stat, dof, f("level"));
        // Root-finding on both sides: agree to 1e-7 of the bound (or 1e-9 absolutely at 0).
        for (got, want, end) in [
            (lambda.lower, f("lambda_lower"), "lower"),
            (lambda.upper, f("lambda_upper"), "upper"),
        ] {
            assert!(
                (got - want).abs() <= 1e-9 || close(got, want, 1e-7),
                "{name}: λ {end} got {got:e}, want {want:e}"
            );
        }
        let ci = cramers_v_interval(stat, n, rows, cols, f("level")).unwrap();
        for (got, want, end) in [
            (ci.lower, f("v_lower"), "lower"),
            (ci.upper, f("v_upper"), "upper"),
        ] {
            assert!(
                (got - want).abs() <= 1e-9 || close(got, want, 1e-6),
                "{name}: V {end} got {got:e}, want {want:e}"
            );
        }
        let v = cramers_v_corrected(stat, n, rows, cols).unwrap();
        assert_close(v, f("v"), name);
        assert!(ci.contains(v), "{name}: V = {v} outside {ci:?}");
    }
}

#[test]
fn consent_selection_matches_scipy_and_statsmodels() {
    use super::audit::ProtectedAttribute;
    use super::consent_selection::consent_selection;
    use super::verdict::FairnessThresholds;
    let thresholds = FairnessThresholds {
        alpha: 0.05,
        cramers_v_warn: 0.1,
        cramers_v_fail: 0.3,
        four_fifths_ratio: 0.8,
        min_cell_size: 10,
        proxy_limit: 0.3,
        monte_carlo_samples: 0,
        confidence_level: 0.95,
        seed: 1,
    };
    let cases = fixture!("consent_selection");
    assert!(cases.len() >= 20);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let wanted = case["attributes"].as_array().unwrap();
        let tables: Vec<Vec<Vec<u64>>> = wanted
            .iter()
            .map(|a| serde_json::from_value(a["counts"].clone()).unwrap())
            .collect();
        // All tables of a case have their own totals, so test each attribute alone for the
        // statistics and all together (one population per attribute) for the BH adjustment.
        let mut p_values = Vec::new();
        for (t, want) in tables.iter().zip(wanted) {
            let mut consented = Vec::new();
            let mut labels = Vec::new();
            for (row, status) in t.iter().zip([true, false]) {
                for (g, &k) in row.iter().enumerate() {
                    for _ in 0..k {
                        consented.push(status);
                        labels.push(Some(format!("g{g}")));
                    }
                }
            }
            let a = ProtectedAttribute::categorical("a", &labels).unwrap();
            let r = consent_selection(&consented, &[a], &thresholds).unwrap();
            let s = &r.attributes[0];
            assert_close(
                s.chi_square.unwrap(),
                want["statistic"].as_f64().unwrap(),
                name,
            );
            assert_eq!(s.dof, want["dof"].as_u64(), "{name}");
            assert_close(s.p_value.unwrap(), want["p_value"].as_f64().unwrap(), name);
            match want["cramers_v_corrected"].as_f64() {
                Some(v) => assert_close(s.cramers_v_corrected.unwrap(), v, name),
                None => assert_eq!(s.cramers_v_corrected, None, "{name}"),
            }
            for (g, d) in s
                .groups
                .iter()
                .zip(want["relative_difference"].as_array().unwrap())
            {
                let (got, want) = (g.relative_difference.unwrap(), d.as_f64().unwrap());
                assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
            }
            p_values.push(s.p_value.unwrap());
        }
        for (q, want) in benjamini_hochberg(&p_values).iter().zip(wanted) {
            assert_close(*q, want["p_value_adjusted"].as_f64().unwrap(), name);
        }
    }
}
