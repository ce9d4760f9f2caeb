//! Rule segments: named filters on customer attributes; the first rule a customer matches
//! names their segment, customers matching none go to the `otherwise` segment ("Other").
//!
//! The structure is plain serde, so it reads from JSON or TOML alike:
//! ```json
//! {"rules": [
//!   {"name": "Big spenders", "when": {"all": [
//!       {"compare": {"attribute": "monetary", "op": ">=", "value": 500}},
//!       {"in": {"attribute": "region", "values": ["north", "east"]}}]}},
//!   {"name": "Dormant", "when": {"compare": {"attribute": "recency", "op": ">", "value": 180}}}
//! ]}
//! ```
//! A missing attribute value satisfies no comparison and no set test (as SQL's NULL).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::preprocess::{ColumnValues, FeatureColumn};
use super::{Result, SegmentationError};

/// A numeric comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
}

impl CmpOp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// A filter on attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every condition holds.
    All(Vec<Condition>),
    /// At least one condition holds.
    Any(Vec<Condition>),
    /// A numeric attribute compared with a constant.
    Compare {
        /// Numeric attribute name.
        attribute: String,
        /// Operator.
        op: CmpOp,
        /// Constant.
        value: f64,
    },
    /// A categorical attribute is one of the values.
    In {
        /// Categorical attribute name.
        attribute: String,
        /// Accepted values.
        values: Vec<String>,
    },
}

impl Condition {
    /// The attributes the condition reads, in order of first appearance.
    pub fn features(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.collect_features(&mut out);
        out
    }

    fn collect_features(&self, out: &mut Vec<String>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => {
                for c in cs {
                    c.collect_features(out);
                }
            }
            Condition::Compare { attribute, .. } | Condition::In { attribute, .. } => {
                if !out.contains(attribute) {
                    out.push(attribute.clone());
                }
            }
        }
    }
}

/// A named rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Segment name given to customers this rule catches first.
    pub name: String,
    /// The filter.
    pub when: Condition,
}

fn other() -> String {
    "Other".to_owned()
}

/// Ordered rules and the name of the catch-all segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Rules, tried in order.
    pub rules: Vec<Rule>,
    /// Name of the segment for customers no rule matches.
    #[serde(default = "other")]
    pub otherwise: String,
}

/// Labels from a rule set: label i is rule i, label `rules.len()` is the catch-all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleAssignment {
    /// One label per customer.
    pub labels: Vec<usize>,
    /// Segment names by label (rule names, then the catch-all).
    pub names: Vec<String>,
}

fn rule_err(rule: &str, message: impl Into<String>) -> SegmentationError {
    SegmentationError::Rule {
        rule: rule.to_owned(),
        message: message.into(),
    }
}

impl RuleSet {
    /// Parses JSON, reporting which rule (by name, or position when it has none) and which
    /// field is wrong.
    pub fn from_json(text: &str) -> Result<RuleSet> {
        let root: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| rule_err("(rule set)", format!("not valid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| rule_err("(rule set)", "expected an object with a `rules` list"))?;
        if let Some(key) = obj.keys().find(|k| *k != "rules" && *k != "otherwise") {
            return Err(rule_err(
                "(rule set)",
                format!("unknown field `{key}` (expected `rules`, `otherwise`)"),
            ));
        }
        let list = obj
            .get("rules")
            .and_then(|r| r.as_array())
            .ok_or_else(|| rule_err("(rule set)", "field `rules` must be a list"))?;
        let mut rules = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let label = r
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("#{}", i + 1), str::to_owned);
            let rule: Rule =
                serde_json::from_value(r.clone()).map_err(|e| rule_err(&label, e.to_string()))?;
            rules.push(rule);
        }
        let otherwise = match obj.get("otherwise") {
            None => other(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| rule_err("(rule set)", "field `otherwise` must be a string"))?
                .to_owned(),
        };
        Ok(RuleSet { rules, otherwise })
    }

    /// Checks the rules against the available attributes: names non-empty and distinct,
    /// attributes known and of the right kind, lists non-empty, constants finite.
    pub fn validate(&self, columns: &[FeatureColumn]) -> Result<()> {
        let mut names = HashSet::new();
        if self.otherwise.trim().is_empty() {
            return Err(rule_err(
                "(rule set)",
                "field `otherwise` must not be empty",
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(rule_err(
                    &format!("#{}", i + 1),
                    "field `name` must not be empty",
                ));
            }
            if !names.insert(rule.name.as_str()) || rule.name == self.otherwise {
                return Err(rule_err(&rule.name, "field `name` is used twice"));
            }
            check(&rule.name, "when", &rule.when, columns)?;
        }
        Ok(())
    }

    /// Assigns every customer to the first rule they match (columns give the attributes).
    pub fn assign(&self, columns: &[FeatureColumn]) -> Result<RuleAssignment> {
        self.validate(columns)?;
        let n = columns.first().map_or(0, |c| match &c.values {
            ColumnValues::Numeric(v) => v.len(),
            ColumnValues::Categorical(v) => v.len(),
        });
        if n == 0 {
            return Err(SegmentationError::Empty);
        }
        for c in columns {
            let len = match &c.values {
                ColumnValues::Numeric(v) => v.len(),
                ColumnValues::Categorical(v) => v.len(),
            };
            if len != n {
                return Err(SegmentationError::LengthMismatch {
                    feature: c.spec.name.clone(),
                    expected: n,
                    found: len,
                });
            }
        }
        let labels = (0..n)
            .map(|row| {
                self.rules
                    .iter()
                    .position(|r| eval(&r.when, columns, row))
                    .unwrap_or(self.rules.len())
            })
            .collect();
        let mut names: Vec<String> = self.rules.iter().map(|r| r.name.clone()).collect();
        names.push(self.otherwise.clone());
        Ok(RuleAssignment { labels, names })
    }
}

fn find<'a>(columns: &'a [FeatureColumn], attribute: &str) -> Option<&'a FeatureColumn> {
    columns.iter().find(|c| c.spec.name == attribute)
}

fn check(rule: &str, path: &str, cond: &Condition, columns: &[FeatureColumn]) -> Result<()> {
    let known = || {
        columns
            .iter()
            .map(|c| c.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match cond {
        Condition::All(list) | Condition::Any(list) => {
            let kind = if matches!(cond, Condition::All(_)) {
                "all"
            } else {
                "any"
            };
            if list.is_empty() {
                return Err(rule_err(
                    rule,
                    format!("{path}.{kind} must list at least one condition"),
                ));
            }
            for (i, c) in list.iter().enumerate() {
                check(rule, &format!("{path}.{kind}[{i}]"), c, columns)?;
            }
            Ok(())
        }
        Condition::Compare {
            attribute, value, ..
        } => {
            let col = find(columns, attribute).ok_or_else(|| {
                rule_err(
                    rule,
                    format!(
                        "{path}.compare.attribute: unknown attribute '{attribute}' (known: {})",
                        known()
                    ),
                )
            })?;
            if !matches!(col.values, ColumnValues::Numeric(_)) {
                return Err(rule_err(
                    rule,
                    format!(
                        "{path}.compare.attribute: '{attribute}' is categorical; use `in` with a list of values"
                    ),
                ));
            }
            if !value.is_finite() {
                return Err(rule_err(
                    rule,
                    format!("{path}.compare.value must be a finite number"),
                ));
            }
            Ok(())
        }
        Condition::In { attribute, values } => {
            let col = find(columns, attribute).ok_or_else(|| {
                rule_err(
                    rule,
                    format!(
                        "{path}.in.attribute: unknown attribute '{attribute}' (known: {})",
                        known()
                    ),
                )
            })?;
            if !matches!(col.values, ColumnValues::Categorical(_)) {
                return Err(rule_err(
                    rule,
                    format!("{path}.in.attribute: '{attribute}' is numeric; use `compare`"),
                ));
            }
            if values.is_empty() {
                return Err(rule_err(
                    rule,
                    format!("{path}.in.values must list at least one value"),
                ));
            }
            Ok(())
        }
    }
}

fn eval(cond: &Condition, columns: &[FeatureColumn], row: usize) -> bool {
    match cond {
        Condition::All(list) => list.iter().all(|c| eval(c, columns, row)),
        Condition::Any(list) => list.iter().any(|c| eval(c, columns, row)),
        Condition::Compare {
            attribute,
            op,
            value,
        } => match find(columns, attribute).map(|c| &c.values) {
            Some(ColumnValues::Numeric(v)) => v[row].is_some_and(|x| op.holds(x, *value)),
            _ => false,
        },
        Condition::In { attribute, values } => match find(columns, attribute).map(|c| &c.values) {
            Some(ColumnValues::Categorical(v)) => {
                v[row].as_ref().is_some_and(|x| values.contains(x))
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::preprocess::FeatureSpec;

    fn columns() -> Vec<FeatureColumn> {
        vec![
            FeatureColumn {
                spec: FeatureSpec::numeric("monetary"),
                values: ColumnValues::Numeric(vec![
                    Some(900.0),
                    Some(50.0),
                    Some(600.0),
                    None,
                    Some(20.0),
                ]),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("recency"),
                values: ColumnValues::Numeric(vec![
                    Some(3.0),
                    Some(400.0),
                    Some(10.0),
                    Some(200.0),
                    Some(30.0),
                ]),
            },
            FeatureColumn {
                spec: FeatureSpec::categorical("region"),
                values: ColumnValues::Categorical(vec![
                    Some("north".into()),
                    Some("south".into()),
                    Some("west".into()),
                    Some("north".into()),
                    None,
                ]),
            },
        ]
    }

    const RULES: &str = r#"{"rules": [
        {"name": "Big spenders", "when": {"all": [
            {"compare": {"attribute": "monetary", "op": ">=", "value": 500}},
            {"in": {"attribute": "region", "values": ["north", "east"]}}]}},
        {"name": "Dormant", "when": {"any": [
            {"compare": {"attribute": "recency", "op": ">", "value": 180}},
            {"compare": {"attribute": "monetary", "op": ">=", "value": 500}}]}}
    ]}"#;

    #[test]
    fn first_matching_rule_wins_and_the_rest_are_other() {
        let set = RuleSet::from_json(RULES).unwrap();
        let a = set.assign(&columns()).unwrap();
        // 0: big & north → Big spenders (also matches Dormant's monetary arm: first wins).
        // 1: recency 400 → Dormant. 2: 600 but west → Dormant by monetary.
        // 3: monetary missing, recency 200 → Dormant. 4: nothing → Other.
        assert_eq!(a.labels, vec![0, 1, 1, 1, 2]);
        assert_eq!(a.names, ["Big spenders", "Dormant", "Other"]);
    }

    #[test]
    fn reads_the_same_structure_through_serde() {
        let set: RuleSet = serde_json::from_str(RULES).unwrap();
        assert_eq!(set, RuleSet::from_json(RULES).unwrap());
        let round: RuleSet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(round, set);
        assert_eq!(set.otherwise, "Other");
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let bad_attr = r#"{"rules": [{"name": "VIP", "when": {"compare": {"attribute": "monetery", "op": ">", "value": 1}}}]}"#;
        let err = RuleSet::from_json(bad_attr)
            .unwrap()
            .assign(&columns())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule 'VIP': when.compare.attribute: unknown attribute 'monetery' (known: monetary, recency, region)"
        );
        let kind = r#"{"rules": [{"name": "North", "when": {"all": [{"compare": {"attribute": "region", "op": "==", "value": 1}}]}}]}"#;
        let err = RuleSet::from_json(kind)
            .unwrap()
            .validate(&columns())
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "rule 'North': when.all[0].compare.attribute: 'region' is categorical"
            ),
            "{err}"
        );
        let bad_op = r#"{"rules": [{"name": "Odd", "when": {"compare": {"attribute": "recency", "op": "=>", "value": 1}}}]}"#;
        let err = RuleSet::from_json(bad_op).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rule 'Odd': unknown variant `=>`"),
            "{err}"
        );
        let no_name = r#"{"rules": [{"when": {"any": []}}]}"#;
        assert!(
            RuleSet::from_json(no_name)
                .unwrap_err()
                .to_string()
                .starts_with("rule '#1': missing field `name`")
        );
        let empty = r#"{"rules": [{"name": "E", "when": {"any": []}}]}"#;
        assert_eq!(
            RuleSet::from_json(empty)
                .unwrap()
                .validate(&columns())
                .unwrap_err()
                .to_string(),
            "rule 'E': when.any must list at least one condition"
        );
        let twice = r#"{"rules": [{"name": "A", "when": {"in": {"attribute": "region", "values": ["x"]}}},
                                  {"name": "A", "when": {"in": {"attribute": "region", "values": ["y"]}}}]}"#;
        assert!(
            RuleSet::from_json(twice)
                .unwrap()
                .validate(&columns())
                .is_err()
        );
        assert!(RuleSet::from_json(r#"{"rulez": []}"#).is_err());
    }
}
