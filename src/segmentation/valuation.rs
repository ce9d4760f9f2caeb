//! What each segment is worth and whether it is worth targeting: revenue, order value,
//! frequency, growth, a lifetime-value estimate, cost to serve, a priority with a recommended
//! stance, and the classic viability criteria each with its figure.
//!
//! Formulas (also in docs/segmentation.md and the policy file), over one valuation window W (the
//! policy's `valuation_window_days`, 365 by default) ending at the run's as-of date:
//! - revenue, orders: all purchases up to the as-of date; `average_order_value` = revenue /
//!   orders; `purchase_frequency` = orders / members;
//! - `annual_revenue_per_customer` = revenue in the last W / members × 365 / W;
//! - `revenue_growth` = revenue in the last W / revenue in the W before it − 1 (none when the
//!   earlier window had no revenue);
//! - `retention` = members active in both windows / members active in the earlier window;
//! - `lifetime_value` = margin × annual revenue per customer × (1 + d) / (1 + d − r), with d
//!   the annual discount rate and r the retention (Gupta & Lehmann's constant-margin formula);
//! - `cost_to_serve` = members × cost per customer + orders in the last W × cost per order;
//! - `contribution` = margin × revenue in the last W − cost to serve;
//! - stance: deprioritise when the contribution is not positive; otherwise invest when growth
//!   is at least +5%, harvest when it is at most −5%, maintain in between (or without growth);
//! - priority: 1 for the segment with the largest total lifetime value (members × CLV).

use serde::{Deserialize, Serialize};

/// One member's activity, from their transactions up to the as-of date.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemberActivity {
    pub revenue: f64,
    pub orders: u64,
    /// Revenue and orders in the last window, and revenue in the window before it.
    pub recent_revenue: f64,
    pub recent_orders: u64,
    pub prior_revenue: f64,
    /// Whether the member can be reached under the activation purpose's consent now.
    pub reachable: bool,
}

impl MemberActivity {
    fn active_recently(&self) -> bool {
        self.recent_orders > 0
    }
    fn active_before(&self) -> bool {
        self.prior_revenue != 0.0
    }
}

/// The economic and viability parameters, from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValuationParams {
    pub window_days: u32,
    pub gross_margin: f64,
    pub annual_discount_rate: f64,
    pub cost_per_customer: f64,
    pub cost_per_order: f64,
    pub min_segment_size: u64,
    pub min_reachable_share: f64,
    pub min_distinctness: f64,
    pub min_cell_size: u64,
}

/// The recommended treatment of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stance {
    Invest,
    Maintain,
    Harvest,
    Deprioritise,
}

impl Stance {
    pub fn as_str(self) -> &'static str {
        match self {
            Stance::Invest => "invest",
            Stance::Maintain => "maintain",
            Stance::Harvest => "harvest",
            Stance::Deprioritise => "deprioritise",
        }
    }
}

/// One viability criterion: passed or not, with the figure it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Criterion {
    pub pass: bool,
    /// The figure (size, share, distance) and the bar it had to reach.
    pub value: Option<f64>,
    pub threshold: f64,
    /// One sentence for the dashboard.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Viability {
    pub measurable: Criterion,
    pub accessible: Criterion,
    pub substantial: Criterion,
    pub actionable: Criterion,
}

impl Viability {
    pub fn all_pass(&self) -> bool {
        self.measurable.pass
            && self.accessible.pass
            && self.substantial.pass
            && self.actionable.pass
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Valuation {
    pub members: u64,
    pub revenue: f64,
    pub orders: u64,
    pub average_order_value: Option<f64>,
    pub purchase_frequency: f64,
    pub annual_revenue_per_customer: f64,
    pub revenue_growth: Option<f64>,
    pub retention: Option<f64>,
    /// Members active in the earlier window: what `retention` rests on. A retention of 100 %
    /// over a handful of them says little. `None` in valuations stored before it was kept.
    #[serde(default)]
    pub retention_basis: Option<u64>,
    pub lifetime_value: f64,
    pub cost_to_serve: f64,
    pub contribution: f64,
    pub reachable_share: f64,
    pub priority: usize,
    pub stance: Stance,
    pub viability: Viability,
}

const GROWTH_BAND: f64 = 0.05;

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The totals of a segment's members that its valuation rests on, added up member by member
/// (one pass over a million members, none of them kept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentActivity {
    members: u64,
    revenue: f64,
    orders: u64,
    recent_revenue: f64,
    recent_orders: u64,
    prior_revenue: f64,
    active_before: u64,
    retained: u64,
    reachable: u64,
}

impl Default for SegmentActivity {
    fn default() -> SegmentActivity {
        // Sums start where `Iterator::sum` of floats starts (-0.0), so the totals are the
        // same figures, bit for bit, as summing a list of the members.
        SegmentActivity {
            members: 0,
            revenue: -0.0,
            orders: 0,
            recent_revenue: -0.0,
            recent_orders: 0,
            prior_revenue: -0.0,
            active_before: 0,
            retained: 0,
            reachable: 0,
        }
    }
}

impl SegmentActivity {
    /// Adds one member.
    pub fn add(&mut self, a: &MemberActivity) {
        self.members += 1;
        self.revenue += a.revenue;
        self.orders += a.orders;
        self.recent_revenue += a.recent_revenue;
        self.recent_orders += a.recent_orders;
        self.prior_revenue += a.prior_revenue;
        self.active_before += u64::from(a.active_before());
        self.retained += u64::from(a.active_before() && a.active_recently());
        self.reachable += u64::from(a.reachable);
    }

    /// The totals of `members`.
    pub fn of(members: &[MemberActivity]) -> SegmentActivity {
        let mut totals = SegmentActivity::default();
        for m in members {
            totals.add(m);
        }
        totals
    }
}

/// Values every segment. `segments[s]` are the totals of segment `s`'s members;
/// `distinctness[s]` the distance (standardised units) from its centre to the nearest other
/// centre, `None` when it has no centre to compare (a single segment, rule or RFM segments).
pub fn value_segments(
    segments: &[SegmentActivity],
    distinctness: &[Option<f64>],
    params: &ValuationParams,
) -> Vec<Valuation> {
    let years = f64::from(params.window_days.max(1)) / 365.0;
    let mut out: Vec<Valuation> = segments
        .iter()
        .zip(distinctness)
        .map(|(m, &distance)| {
            let n = m.members;
            let revenue = m.revenue;
            let orders = m.orders;
            let recent = m.recent_revenue;
            let recent_orders = m.recent_orders;
            let prior = m.prior_revenue;
            let active_before = m.active_before;
            let retained = m.retained;
            let reachable = m.reachable;
            let annual = if n == 0 {
                0.0
            } else {
                recent / n as f64 / years
            };
            let retention = share(retained, active_before);
            let r = retention.unwrap_or(0.0);
            let d = params.annual_discount_rate;
            let lifetime_value = params.gross_margin * annual * (1.0 + d) / (1.0 + d - r);
            let cost_to_serve =
                n as f64 * params.cost_per_customer + recent_orders as f64 * params.cost_per_order;
            let contribution = params.gross_margin * recent - cost_to_serve;
            let growth = (prior > 0.0).then(|| recent / prior - 1.0);
            let stance = if contribution <= 0.0 {
                Stance::Deprioritise
            } else {
                match growth {
                    Some(g) if g >= GROWTH_BAND => Stance::Invest,
                    Some(g) if g <= -GROWTH_BAND => Stance::Harvest,
                    _ => Stance::Maintain,
                }
            };
            let reachable_share = share(reachable, n).unwrap_or(0.0);
            let viability = Viability {
                measurable: Criterion {
                    pass: n >= params.min_cell_size,
                    value: Some(n as f64),
                    threshold: params.min_cell_size as f64,
                    explanation: if n >= params.min_cell_size {
                        "size and value can be reported without revealing a small group".into()
                    } else {
                        "too few members to report figures about them".into()
                    },
                },
                accessible: Criterion {
                    pass: reachable_share >= params.min_reachable_share,
                    value: Some(reachable_share),
                    threshold: params.min_reachable_share,
                    explanation: format!(
                        "{:.0}% of members can be reached under marketing consent",
                        reachable_share * 100.0
                    ),
                },
                substantial: Criterion {
                    pass: n >= params.min_segment_size,
                    value: Some(n as f64),
                    threshold: params.min_segment_size as f64,
                    explanation: if n >= params.min_segment_size {
                        "large enough to be worth a treatment of its own".into()
                    } else {
                        "smaller than the policy's minimum segment size".into()
                    },
                },
                actionable: match distance {
                    Some(dist) => Criterion {
                        pass: dist >= params.min_distinctness,
                        value: Some(dist),
                        threshold: params.min_distinctness,
                        explanation: if dist >= params.min_distinctness {
                            "distinct enough from the nearest segment to treat differently".into()
                        } else {
                            "too close to another segment to treat differently".into()
                        },
                    },
                    None => Criterion {
                        pass: true,
                        value: None,
                        threshold: params.min_distinctness,
                        explanation:
                            "defined by explicit rules or scores, distinct by construction".into(),
                    },
                },
            };
            Valuation {
                members: n,
                revenue,
                orders,
                average_order_value: (orders > 0).then(|| revenue / orders as f64),
                purchase_frequency: share(orders, n).unwrap_or(0.0),
                annual_revenue_per_customer: annual,
                revenue_growth: growth,
                retention,
                retention_basis: Some(active_before),
                lifetime_value,
                cost_to_serve,
                contribution,
                reachable_share,
                priority: 0,
                stance,
                viability,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..out.len()).collect();
    let total = |v: &Valuation| v.lifetime_value * v.members as f64;
    order.sort_by(|&a, &b| total(&out[b]).total_cmp(&total(&out[a])).then(a.cmp(&b)));
    for (rank, i) in order.into_iter().enumerate() {
        out[i].priority = rank + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ValuationParams {
        ValuationParams {
            window_days: 365,
            gross_margin: 0.5,
            annual_discount_rate: 0.1,
            cost_per_customer: 1.0,
            cost_per_order: 2.0,
            min_segment_size: 3,
            min_reachable_share: 0.5,
            min_distinctness: 0.5,
            min_cell_size: 2,
        }
    }

    fn a(
        revenue: f64,
        orders: u64,
        recent: f64,
        recent_orders: u64,
        prior: f64,
        reachable: bool,
    ) -> MemberActivity {
        MemberActivity {
            revenue,
            orders,
            recent_revenue: recent,
            recent_orders,
            prior_revenue: prior,
            reachable,
        }
    }

    /// Worked by hand: segment 0 has three members.
    /// revenue 100+50+30 = 180 over 4+2+1 = 7 orders: AOV 25.714…, frequency 7/3.
    /// Last year 60+50+0 = 110 (3+2+0 orders), year before 40+0+30 = 70: growth 110/70 − 1.
    /// Active before: members 1 and 3; of those active again: member 1: retention 1/2.
    /// Annual revenue per customer 110/3; CLV = 0.5 × 110/3 × 1.1 / (1.1 − 0.5) = 33.6111…
    /// Cost to serve 3 × 1 + 5 × 2 = 13; contribution 0.5 × 110 − 13 = 42 > 0, growth 57% →
    /// invest. Reachable 2 of 3.
    #[test]
    fn hand_worked_segment() {
        let totals = [
            SegmentActivity::of(&[
                a(100.0, 4, 60.0, 3, 40.0, true),
                a(50.0, 2, 50.0, 2, 0.0, true),
                a(30.0, 1, 0.0, 0, 30.0, false),
            ]),
            SegmentActivity::of(&[a(10.0, 1, 0.0, 0, 10.0, false)]),
        ];
        let v = value_segments(&totals, &[Some(1.2), Some(0.3)], &params());
        let s = &v[0];
        assert_eq!((s.members, s.orders), (3, 7));
        assert!((s.average_order_value.unwrap() - 180.0 / 7.0).abs() < 1e-12);
        assert!((s.purchase_frequency - 7.0 / 3.0).abs() < 1e-12);
        assert!((s.revenue_growth.unwrap() - (110.0 / 70.0 - 1.0)).abs() < 1e-12);
        assert_eq!(s.retention, Some(0.5));
        assert!((s.lifetime_value - 0.5 * 110.0 / 3.0 * 1.1 / 0.6).abs() < 1e-9);
        assert_eq!(s.cost_to_serve, 13.0);
        assert_eq!(s.contribution, 42.0);
        assert_eq!(s.stance, Stance::Invest);
        assert_eq!(s.priority, 1);
        assert!(s.viability.all_pass());
        assert!((s.reachable_share - 2.0 / 3.0).abs() < 1e-12);
        // The one-member segment: no recent revenue, cost 1 → deprioritise; fails substantial,
        // measurable (below the cell size), accessible and actionable.
        let t = &v[1];
        assert_eq!(t.stance, Stance::Deprioritise);
        assert_eq!(t.revenue_growth, Some(-1.0));
        assert_eq!(t.priority, 2);
        let via = &t.viability;
        assert!(!via.measurable.pass && !via.substantial.pass && !via.accessible.pass);
        assert!(!via.actionable.pass);
        assert_eq!(via.actionable.value, Some(0.3));
    }

    #[test]
    fn no_history_gives_no_growth_and_maintain_or_deprioritise() {
        let v = value_segments(
            &[SegmentActivity::of(&[a(0.0, 0, 0.0, 0, 0.0, true); 5])],
            &[None],
            &params(),
        );
        assert_eq!(v[0].revenue_growth, None);
        assert_eq!(v[0].retention, None);
        assert_eq!(v[0].average_order_value, None);
        assert_eq!(v[0].stance, Stance::Deprioritise);
        assert!(v[0].viability.actionable.pass);
    }
}
