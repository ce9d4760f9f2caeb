//! The audit entry point and its serialisable, already-suppressed report.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::FairnessError;
use super::groups::{Bands, GroupColumn};
use super::noncentral::cramers_v_interval;
use super::proxies::{ProxyMeasure, categorical_association, numeric_association};
use super::representation::{balance, four_fifths, representation};
use super::sampling::{derive_seed, monte_carlo_p_value};
use super::stats::{
    Independence, Interval, NotTestable, benjamini_hochberg, cramers_v, cramers_v_corrected,
    pearson_chi_square,
};
use super::suppression::{Link, Suppression, TableSuppression, suppress};
use super::table::ContingencyTable;
use super::verdict::{
    AdverseImpact, Decision, Evidence, FairnessThresholds, PValueMethod, ProxyEvidence, Rule,
    TestEvidence, Verdict, decide, decide_proxy,
};

/// A segment of the audited run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub id: u32,
    /// Whether the segment's strategy is favourable (offers, better prices, priority service):
    /// these segments are what the four-fifths rule looks at.
    pub favourable: bool,
}

/// How a protected attribute became groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Categorical,
    /// Numeric, grouped by the policy's bands.
    Banded,
    /// Intersection of two attributes.
    Intersection,
}

/// A protected attribute of every audited member.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedAttribute {
    name: String,
    kind: AttributeKind,
    groups: GroupColumn,
}

impl ProtectedAttribute {
    /// A categorical attribute from string labels (`None` = missing).
    pub fn categorical<S: AsRef<str>>(
        name: impl Into<String>,
        labels: &[Option<S>],
    ) -> Result<Self, FairnessError> {
        Ok(Self {
            name: name.into(),
            kind: AttributeKind::Categorical,
            groups: GroupColumn::from_labels(labels)?,
        })
    }

    /// A numeric attribute (such as age) grouped by bands (`None` = missing).
    pub fn numeric(
        name: impl Into<String>,
        values: &[Option<f64>],
        bands: &Bands,
    ) -> Result<Self, FairnessError> {
        let name = name.into();
        let groups = GroupColumn::from_numeric(&name, values, bands)?;
        Ok(Self {
            name,
            kind: AttributeKind::Banded,
            groups,
        })
    }

    /// A categorical attribute from an already interned column.
    pub fn from_column(name: impl Into<String>, groups: GroupColumn) -> Self {
        Self {
            name: name.into(),
            kind: AttributeKind::Categorical,
            groups,
        }
    }

    /// The attribute's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members' groups.
    pub fn groups(&self) -> &GroupColumn {
        &self.groups
    }
}

/// Values of one feature the segmentation used.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValues {
    /// One finite value per member.
    Numeric(Vec<f64>),
    /// One category per member.
    Categorical(GroupColumn),
}

/// A feature the segmentation used, checked as a possible proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub values: FeatureValues,
}

/// Everything an audit looks at. All per-member vectors are parallel to `membership`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditInput {
    /// The run's segments (table rows, in this order).
    pub segments: Vec<Segment>,
    /// Segment id of each member.
    pub membership: Vec<u32>,
    pub attributes: Vec<ProtectedAttribute>,
    /// Pairs of attribute names to audit jointly, e.g. `("sex", "age")`.
    pub intersections: Vec<(String, String)>,
    pub features: Vec<Feature>,
}

/// A contingency table as it may leave the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedTable {
    /// Counts per segment (row) and group (column); `null` where suppressed.
    pub counts: Vec<Vec<Option<u64>>>,
    /// Why each cell is hidden (`none`, `primary`, `complementary`).
    pub suppressed: Vec<Vec<Suppression>>,
    /// Segment sizes (public).
    pub segment_totals: Vec<u64>,
    /// Group sizes; `null` where suppressed.
    pub group_totals: Vec<Option<u64>>,
    pub group_totals_suppressed: Vec<Suppression>,
    pub total: u64,
    pub min_cell_size: u64,
}

/// Representation of one group in one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationEntry {
    pub segment: u32,
    pub group: String,
    /// (share in segment) / (share in population); `null` when undefined or suppressed.
    pub ratio: Option<f64>,
    /// Wilson interval of the in-segment share, as an interval on the ratio.
    pub interval: Option<Interval>,
    /// True when the ratio would reveal a suppressed count.
    pub suppressed: bool,
}

/// One group's selection rate into the favourable segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateEntry {
    pub group: String,
    pub rate: Option<f64>,
    pub ratio: Option<f64>,
    pub eligible: bool,
    pub violation: bool,
    /// Bonferroni-adjusted p-value of the difference from the reference group's rate.
    pub p_value: Option<f64>,
    pub suppressed: bool,
}

/// The four-fifths rule as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FourFifthsReport {
    pub reference_group: String,
    pub limit: f64,
    pub min_ratio: Option<f64>,
    pub rates: Vec<RateEntry>,
}

/// Balance of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceEntry {
    pub segment: u32,
    pub value: Option<f64>,
    /// The group attaining the minimum.
    pub group: Option<String>,
    pub suppressed: bool,
}

/// Balance of all segments and its minimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceReport {
    pub segments: Vec<BalanceEntry>,
    pub minimum: Option<f64>,
    pub minimum_segment: Option<u32>,
    pub minimum_suppressed: bool,
}

/// The audit of one attribute or intersection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeReport {
    pub attribute: String,
    pub kind: AttributeKind,
    pub groups: Vec<String>,
    pub segments: Vec<u32>,
    pub favourable: Vec<bool>,
    pub table: PublishedTable,
    /// Empty segments and groups, left out of the test.
    pub dropped_segments: Vec<u32>,
    pub dropped_groups: Vec<String>,
    pub not_testable: Option<NotTestable>,
    pub chi_square: Option<f64>,
    pub dof: Option<u64>,
    /// The p-value the verdict used, before adjustment.
    pub p_value: Option<f64>,
    pub p_value_asymptotic: Option<f64>,
    pub p_value_monte_carlo: Option<f64>,
    pub p_value_method: Option<PValueMethod>,
    /// Benjamini-Hochberg adjusted across all tests of the audit.
    pub p_value_adjusted: Option<f64>,
    pub small_expected_fraction: Option<f64>,
    pub cramers_v: Option<f64>,
    pub cramers_v_corrected: Option<f64>,
    /// Interval of the bias-corrected V by inverting the noncentral χ² test; always contains
    /// `cramers_v_corrected`.
    pub cramers_v_ci: Option<Interval>,
    pub representation: Vec<RepresentationEntry>,
    pub four_fifths: Option<FourFifthsReport>,
    pub balance: BalanceReport,
    pub verdict: Verdict,
    pub rule: Rule,
    pub reason: String,
}

/// Association of one feature with one protected attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyReport {
    pub feature: String,
    pub attribute: String,
    pub measure: ProxyMeasure,
    pub value: f64,
    /// At or above the policy's proxy limit.
    pub flagged: bool,
    /// What the proxy rule makes of it (`warn` or `fail`); absent below the limit.
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

impl ProxyReport {
    fn evidence(&self) -> ProxyEvidence<'_> {
        ProxyEvidence {
            feature: &self.feature,
            attribute: &self.attribute,
            symbol: self.measure.symbol(),
            value: self.value,
        }
    }
}

/// Something the verdict does not cover, shown with it as a headline, not a footnote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Caveat {
    /// No segment is marked favourable, so the four-fifths rule had nothing to test.
    NoFavourableTreatment,
}

impl Caveat {
    /// The sentence a report prints.
    pub fn text(self) -> &'static str {
        match self {
            Caveat::NoFavourableTreatment => {
                "No favourable treatment was tested: no segment's strategy is marked favourable, so the four-fifths rule (adverse impact) did not run. Mark the segments that get better offers, prices or service, then audit again."
            }
        }
    }
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub members: u64,
    pub attributes: Vec<AttributeReport>,
    pub proxies: Vec<ProxyReport>,
    /// False if some small count could not be protected because nothing was left to suppress
    /// (it then equals a public segment size).
    pub suppression_complete: bool,
    pub thresholds: FairnessThresholds,
    pub verdict: Verdict,
    pub reason: String,
    /// What the verdict does not cover (audits stored before caveats existed have none).
    #[serde(default)]
    pub caveats: Vec<Caveat>,
    /// Whether the consented (audited) population differs from all customers on each
    /// protected attribute; absent when the policy switches the test off (and in audits stored
    /// before it existed).
    #[serde(default)]
    pub consent_selection: Option<super::consent_selection::ConsentSelectionReport>,
}

impl AuditReport {
    /// What the proxy rule makes of each feature the run used that stands in for `attribute`
    /// (at or above the policy's proxy limit): the decisions the headline verdict names.
    pub fn proxy_decisions(&self, attribute: &str) -> Vec<Decision> {
        self.proxies
            .iter()
            .filter(|p| p.attribute == attribute)
            .filter_map(|p| decide_proxy(&p.evidence(), &self.thresholds))
            .collect()
    }

    /// The verdict shown beside one attribute: its own tests' verdict, or the proxy rule's
    /// when a feature the run used stands in for the attribute and that is worse. A green
    /// "pass" beside an attribute whose proxy fails the audit would contradict the headline:
    /// the attribute's own test only says the segments do not differ by it beyond chance.
    pub fn attribute_verdict(&self, a: &AttributeReport) -> Verdict {
        self.proxy_decisions(&a.attribute)
            .iter()
            .map(|d| d.verdict)
            .fold(a.verdict, Verdict::max)
    }
}

/// One table to test: an attribute or an intersection.
struct Test<'a> {
    name: String,
    kind: AttributeKind,
    column: std::borrow::Cow<'a, GroupColumn>,
    parts: Option<IntersectionParts>,
}

/// The two attributes (indices) of an intersection, and for each intersection group the
/// groups of those attributes it combines.
type IntersectionParts = (usize, usize, Vec<(u32, u32)>);

/// Figures computed before suppression and BH adjustment.
struct Analysis {
    table: ContingencyTable,
    dropped_segments: Vec<u32>,
    dropped_groups: Vec<String>,
    independence: Independence,
    p_monte_carlo: Option<f64>,
    v: Option<f64>,
    v_corrected: Option<f64>,
    v_ci: Option<Interval>,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn analyse(
    test: &Test<'_>,
    segments: &[u32],
    membership: &[u32],
    t: &FairnessThresholds,
) -> Result<Analysis, FairnessError> {
    let table = ContingencyTable::tabulate(segments, membership, &test.column)?;
    let (reduced, dr, dc) = table.without_empty();
    let independence = pearson_chi_square(&table);
    let seed = derive_seed(t.seed, fnv1a(&test.name));
    let (mut p_mc, mut v, mut vc, mut ci) = (None, None, None, None);
    if let Independence::Tested(c) = &independence {
        if c.small_expected_fraction > 0.2 && t.monte_carlo_samples > 0 {
            p_mc = Some(monte_carlo_p_value(&reduced, t.monte_carlo_samples, seed));
        }
        v = Some(cramers_v(c.statistic, c.n, c.rows, c.cols));
        vc = cramers_v_corrected(c.statistic, c.n, c.rows, c.cols);
        ci = cramers_v_interval(c.statistic, c.n, c.rows, c.cols, t.confidence_level);
    }
    Ok(Analysis {
        dropped_segments: dr.iter().map(|&r| table.segments()[r]).collect(),
        dropped_groups: dc.iter().map(|&c| table.groups()[c].clone()).collect(),
        table,
        independence,
        p_monte_carlo: p_mc,
        v,
        v_corrected: vc,
        v_ci: ci,
    })
}

fn check_len(what: &str, expected: usize, found: usize) -> Result<(), FairnessError> {
    if expected == found {
        Ok(())
    } else {
        Err(FairnessError::LengthMismatch {
            what: what.to_owned(),
            expected,
            found,
        })
    }
}

/// Audits a segmentation for dependence on protected attributes.
///
/// Steps: tabulate each attribute and intersection; chi-square test (Monte-Carlo p-value where
/// more than 20% of expected counts are below 5); Benjamini-Hochberg across all tests; Cramér's
/// V with its test-inversion interval; representation, four-fifths and balance; verdicts; proxies;
/// then suppression of small cells and of every derived figure that would reveal one.
/// Deterministic for a given input and `thresholds.seed`.
pub fn audit(
    input: &AuditInput,
    thresholds: &FairnessThresholds,
) -> Result<AuditReport, FairnessError> {
    thresholds.validate()?;
    let n = input.membership.len();
    if n == 0 {
        return Err(FairnessError::EmptyPopulation);
    }
    let mut by_name = HashMap::new();
    for (i, a) in input.attributes.iter().enumerate() {
        check_len(&format!("attribute {:?}", a.name), n, a.groups.len())?;
        if by_name.insert(a.name.as_str(), i).is_some() {
            return Err(FairnessError::DuplicateAttribute(a.name.clone()));
        }
    }
    for f in &input.features {
        match &f.values {
            FeatureValues::Numeric(v) => {
                check_len(&format!("feature {:?}", f.name), n, v.len())?;
                if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                    return Err(FairnessError::NonFinite {
                        what: format!("feature {:?}", f.name),
                        index,
                    });
                }
            }
            FeatureValues::Categorical(g) => {
                check_len(&format!("feature {:?}", f.name), n, g.len())?
            }
        }
    }

    let mut tests: Vec<Test<'_>> = input
        .attributes
        .iter()
        .map(|a| Test {
            name: a.name.clone(),
            kind: a.kind,
            column: std::borrow::Cow::Borrowed(&a.groups),
            parts: None,
        })
        .collect();
    for (x, y) in &input.intersections {
        let ix = *by_name
            .get(x.as_str())
            .ok_or_else(|| FairnessError::UnknownAttribute(x.clone()))?;
        let iy = *by_name
            .get(y.as_str())
            .ok_or_else(|| FairnessError::UnknownAttribute(y.clone()))?;
        if ix == iy {
            return Err(FairnessError::SelfIntersection(x.clone()));
        }
        let (column, parts) = input.attributes[ix]
            .groups
            .intersect_with_parts(&input.attributes[iy].groups)?;
        tests.push(Test {
            name: format!("{x}{}{y}", super::groups::INTERSECTION_SEPARATOR),
            kind: AttributeKind::Intersection,
            column: std::borrow::Cow::Owned(column),
            parts: Some((ix, iy, parts)),
        });
    }

    let segment_ids: Vec<u32> = input.segments.iter().map(|s| s.id).collect();
    let favourable: Vec<bool> = input.segments.iter().map(|s| s.favourable).collect();
    let analyses: Vec<Analysis> = tests
        .par_iter()
        .map(|test| analyse(test, &segment_ids, &input.membership, thresholds))
        .collect::<Result<_, _>>()?;

    // Benjamini-Hochberg across every testable table of this audit.
    let used: Vec<Option<(f64, PValueMethod)>> = analyses
        .iter()
        .map(|a| match (&a.independence, a.p_monte_carlo) {
            (Independence::Tested(_), Some(p)) => Some((p, PValueMethod::MonteCarlo)),
            (Independence::Tested(c), None) => Some((c.p_value, PValueMethod::Asymptotic)),
            _ => None,
        })
        .collect();
    let raw: Vec<f64> = used.iter().flatten().map(|(p, _)| *p).collect();
    let mut adjusted_iter = benjamini_hochberg(&raw).into_iter();
    let adjusted: Vec<Option<f64>> = used
        .iter()
        .map(|u| u.and_then(|_| adjusted_iter.next()))
        .collect();

    // Joint suppression of all tables, linked through the intersections.
    let table_refs: Vec<&ContingencyTable> = analyses.iter().map(|a| &a.table).collect();
    let mut links = Vec::new();
    for (ti, test) in tests.iter().enumerate() {
        if let Some((ix, iy, parts)) = &test.parts {
            links.push(Link {
                whole: *ix,
                part: ti,
                group_of: parts.iter().map(|p| p.0 as usize).collect(),
            });
            links.push(Link {
                whole: *iy,
                part: ti,
                group_of: parts.iter().map(|p| p.1 as usize).collect(),
            });
        }
    }
    let (marks, suppression_complete) = suppress(&table_refs, &links, thresholds.min_cell_size);

    let alpha_ci = 1.0 - thresholds.confidence_level;
    let mut reports = Vec::with_capacity(tests.len());
    for (i, (test, a)) in tests.iter().zip(&analyses).enumerate() {
        let m = &marks[i];
        let ff = four_fifths(
            &a.table,
            &favourable,
            thresholds.four_fifths_ratio,
            thresholds.min_cell_size,
        );
        let four_fifths_report = ff
            .as_ref()
            .map(|ff| publish_four_fifths(ff, &a.table, m, &favourable));
        let adverse_impact = ff.as_ref().and_then(|ff| {
            // The worst significant violation if there is one, else the worst violation.
            let significant = |r: &&crate::fairness::representation::SelectionRate| {
                r.p_value.is_some_and(|p| p < thresholds.alpha)
            };
            let worst = ff
                .violations()
                .filter(significant)
                .min_by(|x, y| x.ratio.total_cmp(&y.ratio))
                .or_else(|| ff.violations().min_by(|x, y| x.ratio.total_cmp(&y.ratio)))?;
            let shown = four_fifths_report
                .as_ref()
                .and_then(|r| r.rates.iter().find(|e| e.group == worst.group))
                .and_then(|e| e.ratio);
            Some(AdverseImpact {
                group: worst.group.clone(),
                reference_group: ff.reference_group.clone(),
                ratio: shown,
                significant: significant(&worst),
            })
        });
        let test_evidence = match &a.independence {
            Independence::NotTestable(why) => Err(*why),
            Independence::Tested(c) => {
                let (_, method) = used[i].expect("testable tables have a p-value");
                Ok(TestEvidence {
                    statistic: c.statistic,
                    p_adjusted: adjusted[i].expect("testable tables are adjusted"),
                    p_method: method,
                    effect: a.v_corrected.or(a.v).unwrap_or(0.0),
                    effect_interval: a.v_ci,
                    n: c.n,
                    cells: c.rows * c.cols,
                })
            }
        };
        let decision = decide(
            &Evidence {
                attribute: test.name.clone(),
                test: test_evidence,
                adverse_impact,
            },
            thresholds,
        );
        let chi = match &a.independence {
            Independence::Tested(c) => Some(c),
            Independence::NotTestable(_) => None,
        };
        reports.push(AttributeReport {
            attribute: test.name.clone(),
            kind: test.kind,
            groups: a.table.groups().to_vec(),
            segments: a.table.segments().to_vec(),
            favourable: favourable.clone(),
            table: publish_table(&a.table, m, thresholds.min_cell_size),
            dropped_segments: a.dropped_segments.clone(),
            dropped_groups: a.dropped_groups.clone(),
            not_testable: match a.independence {
                Independence::NotTestable(w) => Some(w),
                Independence::Tested(_) => None,
            },
            chi_square: chi.map(|c| c.statistic),
            dof: chi.map(|c| c.dof),
            p_value: used[i].map(|u| u.0),
            p_value_asymptotic: chi.map(|c| c.p_value),
            p_value_monte_carlo: a.p_monte_carlo,
            p_value_method: used[i].map(|u| u.1),
            p_value_adjusted: adjusted[i],
            small_expected_fraction: chi.map(|c| c.small_expected_fraction),
            cramers_v: a.v,
            cramers_v_corrected: a.v_corrected,
            cramers_v_ci: a.v_ci,
            representation: publish_representation(&a.table, m, alpha_ci),
            four_fifths: four_fifths_report,
            balance: publish_balance(&a.table, m, thresholds.min_cell_size),
            verdict: decision.verdict,
            rule: decision.rule,
            reason: decision.reason,
        });
    }

    let proxies = proxies(input, thresholds);
    let (verdict, reason) = overall(&reports, &proxies, thresholds);
    let caveats = caveats(&input.segments, &reports);
    Ok(AuditReport {
        members: n as u64,
        caveats,
        attributes: reports,
        proxies,
        suppression_complete,
        thresholds: thresholds.clone(),
        verdict,
        reason,
        consent_selection: None,
    })
}

pub(crate) fn publish_table(
    t: &ContingencyTable,
    m: &TableSuppression,
    min_cell_size: u64,
) -> PublishedTable {
    let cols = t.cols();
    let ct = t.col_totals();
    PublishedTable {
        counts: (0..t.rows())
            .map(|r| {
                (0..cols)
                    .map(|c| (!m.cells[r * cols + c].is_suppressed()).then(|| t.get(r, c)))
                    .collect()
            })
            .collect(),
        suppressed: m
            .cells
            .chunks(cols.max(1))
            .map(<[_]>::to_vec)
            .take(t.rows())
            .collect(),
        segment_totals: t.row_totals(),
        group_totals: ct
            .iter()
            .zip(&m.group_totals)
            .map(|(&x, s)| (!s.is_suppressed()).then_some(x))
            .collect(),
        group_totals_suppressed: m.group_totals.clone(),
        total: t.total(),
        min_cell_size,
    }
}

fn publish_representation(
    t: &ContingencyTable,
    m: &TableSuppression,
    alpha: f64,
) -> Vec<RepresentationEntry> {
    let cols = t.cols();
    representation(t, alpha)
        .into_iter()
        .enumerate()
        .map(|(i, rep)| {
            let (r, c) = (i / cols, i % cols);
            // The ratio is cell / segment size / group share: it reveals the cell, and with a
            // visible cell it reveals the group total.
            let hidden = m.cells[i].is_suppressed() || m.group_totals[c].is_suppressed();
            let shown = rep.filter(|_| !hidden);
            RepresentationEntry {
                segment: t.segments()[r],
                group: t.groups()[c].clone(),
                ratio: shown.map(|x| x.ratio),
                interval: shown.map(|x| x.interval),
                suppressed: hidden,
            }
        })
        .collect()
}

fn publish_four_fifths(
    ff: &super::representation::FourFifths,
    t: &ContingencyTable,
    m: &TableSuppression,
    favourable: &[bool],
) -> FourFifthsReport {
    let cols = t.cols();
    let hidden_col = |c: usize| {
        m.group_totals[c].is_suppressed()
            || (0..t.rows()).any(|r| favourable[r] && m.cells[r * cols + c].is_suppressed())
    };
    let col_of = |g: &str| {
        t.groups()
            .iter()
            .position(|x| x == g)
            .expect("group of the table")
    };
    // Each ratio is rate / reference rate: with the reference hidden, ratio and rate together
    // would reveal it, so every ratio goes.
    let reference_hidden = hidden_col(col_of(&ff.reference_group));
    let rates: Vec<RateEntry> = ff
        .rates
        .iter()
        .map(|r| {
            let hidden = hidden_col(col_of(&r.group));
            RateEntry {
                group: r.group.clone(),
                rate: (!hidden).then_some(r.rate),
                ratio: (!hidden && !reference_hidden).then_some(r.ratio),
                eligible: r.eligible,
                violation: r.violation,
                p_value: r.p_value.filter(|_| !hidden && !reference_hidden),
                suppressed: hidden || reference_hidden,
            }
        })
        .collect();
    let min_ratio = ff
        .rates
        .iter()
        .filter(|r| r.eligible)
        .min_by(|a, b| a.ratio.total_cmp(&b.ratio))
        .and_then(|worst| rates.iter().find(|e| e.group == worst.group))
        .and_then(|e| e.ratio);
    FourFifthsReport {
        reference_group: ff.reference_group.clone(),
        limit: ff.limit,
        min_ratio,
        rates,
    }
}

fn publish_balance(
    t: &ContingencyTable,
    m: &TableSuppression,
    min_cell_size: u64,
) -> BalanceReport {
    let cols = t.cols();
    let (per, min) = balance(t, min_cell_size);
    let hidden = |r: usize, c: usize| {
        m.cells[r * cols + c].is_suppressed() || m.group_totals[c].is_suppressed()
    };
    let segments = per
        .iter()
        .enumerate()
        .map(|(r, b)| {
            let h = b.is_some_and(|b| hidden(r, b.group));
            BalanceEntry {
                segment: t.segments()[r],
                value: b.filter(|_| !h).map(|b| b.value),
                group: b.filter(|_| !h).map(|b| t.groups()[b.group].clone()),
                suppressed: h,
            }
        })
        .collect();
    let min_hidden = min.is_some_and(|(r, b)| hidden(r, b.group));
    BalanceReport {
        segments,
        minimum: min.filter(|_| !min_hidden).map(|(_, b)| b.value),
        minimum_segment: min.map(|(r, _)| t.segments()[r]),
        minimum_suppressed: min_hidden,
    }
}

fn proxies(input: &AuditInput, t: &FairnessThresholds) -> Vec<ProxyReport> {
    let pairs: Vec<(&Feature, &ProtectedAttribute)> = input
        .features
        .iter()
        .flat_map(|f| input.attributes.iter().map(move |a| (f, a)))
        .collect();
    pairs
        .par_iter()
        .map(|(f, a)| {
            let (measure, value) = match &f.values {
                FeatureValues::Numeric(v) => (
                    ProxyMeasure::CorrelationRatio,
                    numeric_association(v, &a.groups),
                ),
                FeatureValues::Categorical(g) => (
                    ProxyMeasure::CramersV,
                    categorical_association(g, &a.groups),
                ),
            };
            let mut report = ProxyReport {
                feature: f.name.clone(),
                attribute: a.name.clone(),
                measure,
                value,
                flagged: value >= t.proxy_limit,
                verdict: None,
            };
            report.verdict = decide_proxy(&report.evidence(), t).map(|d| d.verdict);
            report
        })
        .collect()
}

fn overall(
    reports: &[AttributeReport],
    proxies: &[ProxyReport],
    t: &FairnessThresholds,
) -> (Verdict, String) {
    let proxy_decisions: Vec<(&ProxyReport, Decision)> = proxies
        .iter()
        .filter_map(|p| decide_proxy(&p.evidence(), t).map(|d| (p, d)))
        .collect();
    let verdict = reports
        .iter()
        .map(|r| r.verdict)
        .chain(proxy_decisions.iter().map(|(_, d)| d.verdict))
        .max()
        .unwrap_or(Verdict::Inconclusive);
    // What set a verdict: attributes by name, then proxies by their sentence, e.g. "fail, set
    // by sex; the run uses income, which stands in for sex (…)".
    let causes = |v: Verdict| {
        let names: Vec<&str> = reports
            .iter()
            .filter(|r| r.verdict == v)
            .map(|r| r.attribute.as_str())
            .collect();
        let mut parts = Vec::new();
        if !names.is_empty() {
            parts.push(format!("{v}, set by {}", names.join(", ")));
        }
        for (_, d) in proxy_decisions.iter().filter(|(_, d)| d.verdict == v) {
            if parts.is_empty() {
                parts.push(format!("{v}: {}", d.reason));
            } else {
                parts.push(d.reason.clone());
            }
        }
        parts.join("; ")
    };
    let mut reason = if reports.is_empty() && proxy_decisions.is_empty() {
        "No protected attribute was audited".to_owned()
    } else if verdict == Verdict::Pass {
        format!(
            "No protected attribute shows a dependency of segment membership that reaches the warn limit {:.2}, and no feature the run used stands in for one (proxy limit {:.2})",
            t.cramers_v_warn, t.proxy_limit
        )
    } else {
        let mut s = format!("Overall {}", causes(verdict));
        for lesser in [Verdict::Inconclusive, Verdict::Warn] {
            let named = causes(lesser);
            if lesser < verdict && !named.is_empty() {
                s.push_str(&format!("; {named}"));
            }
        }
        s
    };
    reason.push('.');
    (verdict, reason)
}

/// What a verdict does not cover, to be read with it.
fn caveats(segments: &[Segment], attributes: &[AttributeReport]) -> Vec<Caveat> {
    let mut caveats = Vec::new();
    if !attributes.is_empty() && !segments.iter().any(|s| s.favourable) {
        caveats.push(Caveat::NoFavourableTreatment);
    }
    caveats
}

#[cfg(test)]
mod tests;
