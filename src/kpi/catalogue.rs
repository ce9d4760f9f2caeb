//! The KPI catalogue: which KPIs exist, their exact formulas, and how each is computed from
//! the per-segment counts of one period ([`Aggregates`]).
//!
//! Every formula carries a definition version (`Kpi::definition_version`): when a formula
//! changes, its version changes, so logged evaluations stay interpretable.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::KpiError;

/// Whether a larger value of a KPI is good news or bad news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Revenue, retention, … : falling below the target is the problem.
    HigherIsBetter,
    /// Churn: rising above the target is the problem.
    LowerIsBetter,
}

/// One KPI of the catalogue. P is the evaluated period, P−1 the previous period of the same
/// kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    /// Customers in the segment (assigned to it, whether they bought in P or not).
    SegmentSize,
    /// Distinct customers with at least one transaction in P.
    ActiveCustomers,
    /// Customers whose first transaction ever (over all history) falls in P.
    NewCustomers,
    /// Sum of transaction amounts in P.
    Revenue,
    /// Orders in P: distinct order ids, or transaction rows when there are no order ids.
    Orders,
    /// revenue / orders.
    AverageOrderValue,
    /// revenue / active_customers.
    RevenuePerCustomer,
    /// orders / active_customers.
    PurchaseFrequency,
    /// Share of active customers with two or more orders in P.
    RepeatPurchaseRate,
    /// Customers active in both P−1 and P / customers active in P−1.
    RetentionRate,
    /// 1 − retention_rate.
    ChurnRate,
    /// average_order_value × purchase_frequency × margin × min(1 / churn_rate, cap).
    CustomerLifetimeValue,
}

impl Kpi {
    /// Every KPI, in catalogue order (the order of evaluation rows).
    pub const ALL: [Kpi; 12] = [
        Kpi::SegmentSize,
        Kpi::ActiveCustomers,
        Kpi::NewCustomers,
        Kpi::Revenue,
        Kpi::Orders,
        Kpi::AverageOrderValue,
        Kpi::RevenuePerCustomer,
        Kpi::PurchaseFrequency,
        Kpi::RepeatPurchaseRate,
        Kpi::RetentionRate,
        Kpi::ChurnRate,
        Kpi::CustomerLifetimeValue,
    ];

    /// Number of KPIs in the catalogue.
    pub const COUNT: usize = Self::ALL.len();

    /// The snake_case name used in the policy, the log and `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Kpi::SegmentSize => "segment_size",
            Kpi::ActiveCustomers => "active_customers",
            Kpi::NewCustomers => "new_customers",
            Kpi::Revenue => "revenue",
            Kpi::Orders => "orders",
            Kpi::AverageOrderValue => "average_order_value",
            Kpi::RevenuePerCustomer => "revenue_per_customer",
            Kpi::PurchaseFrequency => "purchase_frequency",
            Kpi::RepeatPurchaseRate => "repeat_purchase_rate",
            Kpi::RetentionRate => "retention_rate",
            Kpi::ChurnRate => "churn_rate",
            Kpi::CustomerLifetimeValue => "customer_lifetime_value",
        }
    }

    /// Parses a snake_case KPI name.
    pub fn parse(name: &str) -> Result<Self, KpiError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| KpiError::UnknownKpi(name.to_owned()))
    }

    /// Position in [`Kpi::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name people read on the dashboards. Lifetime value says which one it is: the
    /// segment cards show another estimate (the valuation's, over a year), and two figures
    /// under one name that disagree would each discredit the other.
    pub fn label(self) -> &'static str {
        match self {
            Kpi::SegmentSize => "Customers in the segment",
            Kpi::ActiveCustomers => "Active customers",
            Kpi::NewCustomers => "New customers",
            Kpi::Revenue => "Revenue",
            Kpi::Orders => "Orders",
            Kpi::AverageOrderValue => "Average order value",
            Kpi::RevenuePerCustomer => "Revenue per active customer",
            Kpi::PurchaseFrequency => "Orders per active customer",
            Kpi::RepeatPurchaseRate => "Repeat purchase rate",
            Kpi::RetentionRate => "Retention rate",
            Kpi::ChurnRate => "Churn rate",
            Kpi::CustomerLifetimeValue => {
                "Lifetime value per active customer (from this period's revenue and churn)"
            }
        }
    }

    /// The formula in words, for the policy file, docs/kpis.md and the dashboard.
    pub fn formula(self) -> &'static str {
        match self {
            Kpi::SegmentSize => "number of customers assigned to the segment",
            Kpi::ActiveCustomers => "distinct customers with at least one transaction in P",
            Kpi::NewCustomers => "customers whose first transaction ever falls in P",
            Kpi::Revenue => "sum of transaction amounts in P",
            Kpi::Orders => {
                "distinct order ids in P, or transaction rows in P when there are no order ids"
            }
            Kpi::AverageOrderValue => "revenue / orders",
            Kpi::RevenuePerCustomer => "revenue / active_customers",
            Kpi::PurchaseFrequency => "orders / active_customers",
            Kpi::RepeatPurchaseRate => "customers with two or more orders in P / active_customers",
            Kpi::RetentionRate => "customers active in both P-1 and P / customers active in P-1",
            Kpi::ChurnRate => "1 - retention_rate",
            Kpi::CustomerLifetimeValue => {
                "average_order_value * purchase_frequency * margin * min(1 / churn_rate, \
                 max_lifetime_periods)"
            }
        }
    }

    /// Version of the formula, recorded with every evaluation so that a changed definition
    /// never silently mixes with old values in one chart.
    pub fn definition_version(self) -> &'static str {
        match self {
            Kpi::CustomerLifetimeValue => "clv-simple-v1",
            _ => "v1",
        }
    }

    /// Whether higher values are better (everything but churn).
    pub fn direction(self) -> Direction {
        match self {
            Kpi::ChurnRate => Direction::LowerIsBetter,
            _ => Direction::HigherIsBetter,
        }
    }

    /// Computes this KPI from one segment's counts.
    pub fn compute(self, a: &Aggregates, clv: &ClvParams) -> KpiValue {
        use KpiValue::Defined;
        let ratio = |num: f64, den: u64, why: Undefined| {
            if den == 0 {
                KpiValue::Undefined(why)
            } else {
                Defined(num / den as f64)
            }
        };
        match self {
            Kpi::SegmentSize => Defined(a.customers as f64),
            Kpi::ActiveCustomers => Defined(a.active as f64),
            Kpi::NewCustomers => Defined(a.new as f64),
            Kpi::Revenue => Defined(a.revenue),
            Kpi::Orders => Defined(a.orders as f64),
            Kpi::AverageOrderValue => ratio(a.revenue, a.orders, Undefined::NoOrders),
            Kpi::RevenuePerCustomer => ratio(a.revenue, a.active, Undefined::NoActiveCustomers),
            Kpi::PurchaseFrequency => {
                ratio(a.orders as f64, a.active, Undefined::NoActiveCustomers)
            }
            Kpi::RepeatPurchaseRate => {
                ratio(a.repeaters as f64, a.active, Undefined::NoActiveCustomers)
            }
            Kpi::RetentionRate => ratio(
                a.retained as f64,
                a.active_previous,
                Undefined::NoActivePreviousPeriod,
            ),
            Kpi::ChurnRate => {
                // Computed as (lost / active in P−1) rather than 1 − retention so that a churn of
                // exactly zero is exactly zero, not a rounding residue.
                let lost = a.active_previous - a.retained;
                ratio(
                    lost as f64,
                    a.active_previous,
                    Undefined::NoActivePreviousPeriod,
                )
            }
            Kpi::CustomerLifetimeValue => customer_lifetime_value(a, clv),
        }
    }
}

impl fmt::Display for Kpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The simple customer-lifetime-value estimate.
///
/// CLV = average order value × purchase frequency × margin × expected lifetime, where
/// average order value × purchase frequency is the revenue per active customer in P, and the
/// expected lifetime in periods is 1 / churn (the mean of a geometric lifetime with a constant
/// per-period churn). When churn is zero (or tiny) that lifetime is unbounded, so it is capped
/// at `max_lifetime_periods`. The value is therefore "margin earned per active customer over
/// their expected remaining life, in the currency of the amounts", undiscounted.
fn customer_lifetime_value(a: &Aggregates, clv: &ClvParams) -> KpiValue {
    if a.active == 0 {
        return KpiValue::Undefined(Undefined::NoActiveCustomers);
    }
    if a.active_previous == 0 {
        return KpiValue::Undefined(Undefined::NoActivePreviousPeriod);
    }
    let revenue_per_customer = a.revenue / a.active as f64;
    let churn = (a.active_previous - a.retained) as f64 / a.active_previous as f64;
    let lifetime = if churn * clv.max_lifetime_periods <= 1.0 {
        clv.max_lifetime_periods
    } else {
        1.0 / churn
    };
    KpiValue::Defined(revenue_per_customer * clv.margin * lifetime)
}

/// Parameters of the customer-lifetime-value estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClvParams {
    margin: f64,
    max_lifetime_periods: f64,
}

impl ClvParams {
    /// `margin` is the gross margin share of revenue, in (0, 1]; `max_lifetime_periods` (≥ 1)
    /// caps the expected lifetime when churn is zero or tiny.
    pub fn new(margin: f64, max_lifetime_periods: f64) -> Result<Self, KpiError> {
        if !(margin > 0.0 && margin <= 1.0) {
            return Err(KpiError::InvalidParameter(format!(
                "CLV margin must be in (0, 1], got {margin}"
            )));
        }
        if !(max_lifetime_periods >= 1.0 && max_lifetime_periods.is_finite()) {
            return Err(KpiError::InvalidParameter(format!(
                "CLV max_lifetime_periods must be a finite number >= 1, got {max_lifetime_periods}"
            )));
        }
        Ok(Self {
            margin,
            max_lifetime_periods,
        })
    }

    /// Gross margin share of revenue.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// Cap on the expected lifetime, in periods.
    pub fn max_lifetime_periods(&self) -> f64 {
        self.max_lifetime_periods
    }
}

impl Default for ClvParams {
    /// Margin 1 (revenue-based CLV) and a cap of 60 periods (five years of months).
    fn default() -> Self {
        Self {
            margin: 1.0,
            max_lifetime_periods: 60.0,
        }
    }
}

/// The counts of one segment (or the whole population) for a period P, from which every KPI
/// follows. Kept public so that they can be stored or re-derived and so that each formula can
/// be checked by hand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Customers in the segment.
    pub customers: u64,
    /// Customers with a transaction in P.
    pub active: u64,
    /// Customers with a transaction in P−1.
    pub active_previous: u64,
    /// Customers with a transaction in both P−1 and P.
    pub retained: u64,
    /// Customers whose first transaction ever is in P.
    pub new: u64,
    /// Orders in P.
    pub orders: u64,
    /// Customers with two or more orders in P.
    pub repeaters: u64,
    /// Sum of amounts in P.
    pub revenue: f64,
}

impl Aggregates {
    /// Every KPI of the catalogue, in [`Kpi::ALL`] order.
    pub fn kpis(&self, clv: &ClvParams) -> [KpiValue; Kpi::COUNT] {
        Kpi::ALL.map(|k| k.compute(self, clv))
    }
}

/// Why a KPI has no value (a division by zero), instead of NaN or infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undefined {
    /// No orders in P (average order value).
    NoOrders,
    /// No active customers in P.
    NoActiveCustomers,
    /// No customer was active in P−1, so nobody could be retained or lost.
    NoActivePreviousPeriod,
}

impl fmt::Display for Undefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Undefined::NoOrders => "no orders in the period",
            Undefined::NoActiveCustomers => "no active customers in the period",
            Undefined::NoActivePreviousPeriod => "no customers were active in the previous period",
        })
    }
}

/// A KPI's value for one segment and period: a finite number, or undefined with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiValue {
    /// A finite number.
    Defined(f64),
    /// No meaningful value; never NaN or infinity.
    Undefined(Undefined),
}

impl KpiValue {
    /// The number, if defined.
    pub fn value(&self) -> Option<f64> {
        match *self {
            KpiValue::Defined(v) => Some(v),
            KpiValue::Undefined(_) => None,
        }
    }

    /// Why the value is missing, if it is.
    pub fn undefined_reason(&self) -> Option<Undefined> {
        match *self {
            KpiValue::Defined(_) => None,
            KpiValue::Undefined(u) => Some(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clv() -> ClvParams {
        ClvParams::default()
    }

    /// A hand-worked segment: 10 customers; in P−1 customers {1,2,3,4} bought; in P
    /// customers {2,3,5,6,7} bought with orders 2,1,3,1,1 (8 orders) worth 400.0 in total;
    /// 6 and 7 bought for the first time ever in P.
    fn worked() -> Aggregates {
        Aggregates {
            customers: 10,
            active: 5,
            active_previous: 4,
            retained: 2,
            new: 2,
            orders: 8,
            repeaters: 2,
            revenue: 400.0,
        }
    }

    #[test]
    fn hand_worked_example_gives_every_kpi() {
        let a = worked();
        let v = |k: Kpi| k.compute(&a, &clv()).value().unwrap();
        assert_eq!(v(Kpi::SegmentSize), 10.0);
        assert_eq!(v(Kpi::ActiveCustomers), 5.0);
        assert_eq!(v(Kpi::NewCustomers), 2.0);
        assert_eq!(v(Kpi::Revenue), 400.0);
        assert_eq!(v(Kpi::Orders), 8.0);
        assert_eq!(v(Kpi::AverageOrderValue), 50.0); // 400 / 8
        assert_eq!(v(Kpi::RevenuePerCustomer), 80.0); // 400 / 5
        assert_eq!(v(Kpi::PurchaseFrequency), 1.6); // 8 / 5
        assert_eq!(v(Kpi::RepeatPurchaseRate), 0.4); // 2 / 5
        assert_eq!(v(Kpi::RetentionRate), 0.5); // 2 / 4
        assert_eq!(v(Kpi::ChurnRate), 0.5); // 2 lost / 4
        // 50 * 1.6 * margin 1 * (1 / 0.5) = 160.
        assert_eq!(v(Kpi::CustomerLifetimeValue), 160.0);
        let margin_30 = ClvParams::new(0.3, 60.0).unwrap();
        assert!(
            (Kpi::CustomerLifetimeValue
                .compute(&a, &margin_30)
                .value()
                .unwrap()
                - 48.0)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn clv_lifetime_is_capped_when_nobody_churns() {
        let a = Aggregates {
            retained: 4,
            ..worked()
        };
        assert_eq!(Kpi::ChurnRate.compute(&a, &clv()).value(), Some(0.0));
        // 80 per customer * 60 periods.
        assert_eq!(
            Kpi::CustomerLifetimeValue.compute(&a, &clv()).value(),
            Some(4800.0)
        );
        let short = ClvParams::new(1.0, 12.0).unwrap();
        assert_eq!(
            Kpi::CustomerLifetimeValue.compute(&a, &short).value(),
            Some(960.0)
        );
        // Churn of 1/100 would give 100 periods: above the cap of 60, so capped too.
        let b = Aggregates {
            active_previous: 100,
            retained: 99,
            ..worked()
        };
        assert_eq!(
            Kpi::CustomerLifetimeValue.compute(&b, &clv()).value(),
            Some(4800.0)
        );
    }

    #[test]
    fn divisions_by_zero_are_undefined_with_a_reason() {
        let empty = Aggregates {
            customers: 3,
            ..Aggregates::default()
        };
        let values = empty.kpis(&clv());
        for (k, v) in Kpi::ALL.iter().zip(values) {
            if let Some(x) = v.value() {
                assert!(x.is_finite(), "{k}");
            }
        }
        assert_eq!(values[Kpi::SegmentSize.index()].value(), Some(3.0));
        assert_eq!(values[Kpi::Revenue.index()].value(), Some(0.0));
        assert_eq!(
            values[Kpi::AverageOrderValue.index()].undefined_reason(),
            Some(Undefined::NoOrders)
        );
        for k in [
            Kpi::RevenuePerCustomer,
            Kpi::PurchaseFrequency,
            Kpi::RepeatPurchaseRate,
        ] {
            assert_eq!(
                values[k.index()].undefined_reason(),
                Some(Undefined::NoActiveCustomers)
            );
        }
        for k in [Kpi::RetentionRate, Kpi::ChurnRate] {
            assert_eq!(
                values[k.index()].undefined_reason(),
                Some(Undefined::NoActivePreviousPeriod)
            );
        }
        // Active now but nobody in P−1: CLV needs churn, so it is undefined too.
        let fresh = Aggregates {
            active_previous: 0,
            retained: 0,
            ..worked()
        };
        assert_eq!(
            Kpi::CustomerLifetimeValue
                .compute(&fresh, &clv())
                .undefined_reason(),
            Some(Undefined::NoActivePreviousPeriod)
        );
        assert_eq!(Undefined::NoOrders.to_string(), "no orders in the period");
    }

    #[test]
    fn names_round_trip_and_directions_are_set() {
        for (i, k) in Kpi::ALL.into_iter().enumerate() {
            assert_eq!(Kpi::parse(k.name()).unwrap(), k);
            assert_eq!(k.index(), i);
            assert!(!k.formula().is_empty() && !k.definition_version().is_empty());
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
        assert!(Kpi::parse("ebitda").is_err());
        assert_eq!(Kpi::ChurnRate.direction(), Direction::LowerIsBetter);
        assert_eq!(Kpi::RetentionRate.direction(), Direction::HigherIsBetter);
    }

    #[test]
    fn clv_params_are_validated() {
        assert!(ClvParams::new(0.0, 60.0).is_err());
        assert!(ClvParams::new(1.5, 60.0).is_err());
        assert!(ClvParams::new(f64::NAN, 60.0).is_err());
        assert!(ClvParams::new(0.5, 0.5).is_err());
        assert!(ClvParams::new(0.5, f64::INFINITY).is_err());
        assert!(ClvParams::new(0.5, 24.0).is_ok());
    }
}
