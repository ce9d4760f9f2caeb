//! What a segmentation run is asked to do, checked against the policy and the known feature
//! columns before anything runs: a run that would use a protected attribute or a declared
//! proxy is refused here, naming the feature.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::preprocess::{FeatureKind, FeatureSpec, MissingRule};
use super::rules::RuleSet;
use crate::customers::features::FEATURE_NAMES;
use crate::policy::Policy;

/// The algorithms a run can use, as users name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunAlgorithm {
    Kmeans,
    Gmm,
    Dbscan,
    Rfm,
    Rules,
}

impl RunAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            RunAlgorithm::Kmeans => "kmeans",
            RunAlgorithm::Gmm => "gmm",
            RunAlgorithm::Dbscan => "dbscan",
            RunAlgorithm::Rfm => "rfm",
            RunAlgorithm::Rules => "rules",
        }
    }

    pub fn parse(raw: &str) -> Result<RunAlgorithm, SettingsError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "kmeans" | "k-means" => Ok(RunAlgorithm::Kmeans),
            "gmm" => Ok(RunAlgorithm::Gmm),
            "dbscan" => Ok(RunAlgorithm::Dbscan),
            "rfm" => Ok(RunAlgorithm::Rfm),
            "rules" => Ok(RunAlgorithm::Rules),
            other => Err(SettingsError::Invalid {
                field: "algorithm",
                message: format!(
                    "unknown algorithm `{other}`: use kmeans, gmm, dbscan, rfm or rules"
                ),
            }),
        }
    }
}

/// A request as it arrives from the CLI, the API or the form, before validation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// kmeans, gmm, dbscan, rfm or rules.
    pub algorithm: String,
    /// Attribute names and behavioural features (recency_days, frequency, monetary,
    /// average_order_value, tenure_days). Not used by rfm; rules take theirs from the rules.
    #[serde(default)]
    pub features: Vec<String>,
    /// Number of segments (kmeans, gmm).
    pub k: Option<usize>,
    /// Smallest and largest k to choose from by silhouette (kmeans).
    pub k_min: Option<usize>,
    pub k_max: Option<usize>,
    /// Seed of every random choice; the same seed gives the same memberships.
    pub seed: Option<u64>,
    /// Numeric features to log-transform (log1p) before standardising: skewed amounts.
    #[serde(default)]
    pub log_features: Vec<String>,
    /// What to do with a missing value: exclude_customer (default), impute_mean,
    /// impute_median (numbers) or impute_mode (categories).
    #[schema(value_type = Option<String>)]
    pub missing: Option<MissingRule>,
    /// DBSCAN neighbourhood radius (in standardised units) and minimum neighbours.
    pub eps: Option<f64>,
    pub min_points: Option<usize>,
    /// Rule segments: `{"rules": [{"name", "when": {...}}], "otherwise": "Other"}`.
    #[schema(value_type = Option<Object>)]
    pub rules: Option<serde_json::Value>,
    /// Date the behavioural features are computed as of (default: the run's start).
    pub as_of: Option<chrono::NaiveDate>,
}

/// The kind of an attribute column as imports inferred it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Number,
    Category,
    Date,
}

/// An attribute column that exists in the data.
#[derive(Debug, Clone)]
pub struct KnownColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub protected: bool,
}

/// How the number of segments is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KChoice {
    Fixed(usize),
    Range { min: usize, max: usize },
}

/// Where a feature's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    Attribute,
    Behavioural,
}

/// One validated feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSetting {
    pub spec: FeatureSpec,
    pub source: FeatureSource,
}

/// A validated run: everything needed to reproduce it, stored with the run as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub algorithm: RunAlgorithm,
    pub features: Vec<FeatureSetting>,
    pub k: Option<KChoice>,
    pub seed: u64,
    pub missing: MissingRule,
    pub eps: Option<f64>,
    pub min_points: Option<usize>,
    pub rules: Option<RuleSet>,
    pub as_of: Option<chrono::NaiveDate>,
}

impl RunSettings {
    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.spec.name.as_str()).collect()
    }

    /// Whether any behavioural feature is needed (RFM always needs them).
    pub fn needs_behaviour(&self) -> bool {
        self.algorithm == RunAlgorithm::Rfm
            || self
                .features
                .iter()
                .any(|f| f.source == FeatureSource::Behavioural)
    }

    /// The request that reproduces these settings ("run again with the same settings").
    pub fn to_request(&self) -> RunRequest {
        let (k, k_min, k_max) = match self.k {
            Some(KChoice::Fixed(k)) => (Some(k), None, None),
            Some(KChoice::Range { min, max }) => (None, Some(min), Some(max)),
            None => (None, None, None),
        };
        RunRequest {
            algorithm: self.algorithm.as_str().to_owned(),
            features: if matches!(self.algorithm, RunAlgorithm::Rfm | RunAlgorithm::Rules) {
                Vec::new()
            } else {
                self.features.iter().map(|f| f.spec.name.clone()).collect()
            },
            k,
            k_min,
            k_max,
            seed: Some(self.seed),
            log_features: self
                .features
                .iter()
                .filter(|f| f.spec.kind == FeatureKind::Numeric { log1p: true })
                .map(|f| f.spec.name.clone())
                .collect(),
            missing: Some(self.missing),
            eps: self.eps,
            min_points: self.min_points,
            rules: self
                .rules
                .as_ref()
                .map(|r| serde_json::to_value(r).expect("rule sets serialise")),
            as_of: self.as_of,
        }
    }
}

/// Why a request was refused; each names the field (and feature) at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "feature `{feature}` is a protected attribute: protected attributes are audited, never used to segment"
    )]
    ProtectedFeature { feature: String },
    #[error(
        "feature `{feature}` is declared in the policy as a proxy for the protected attribute `{stands_for}` ({reason}); it cannot be used to segment"
    )]
    ProxyFeature {
        feature: String,
        stands_for: String,
        reason: String,
    },
    #[error("feature `{feature}` is unknown: known features are {known}")]
    UnknownFeature { feature: String, known: String },
    #[error("feature `{feature}` is a date; use a derived feature such as tenure_days instead")]
    DateFeature { feature: String },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl SettingsError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            SettingsError::Invalid { field, .. } => field,
            _ => "features",
        }
    }
}

const DEFAULT_SEED: u64 = 1;
/// Above this many candidate k, choosing by silhouette takes longer than users will wait.
const MAX_K_CANDIDATES: usize = 12;
const MAX_K: usize = 50;

fn invalid(field: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field,
        message: message.into(),
    }
}

/// Refuses protected attributes and policy proxies, case-insensitively.
fn check_allowed(
    name: &str,
    policy: &Policy,
    columns: &[KnownColumn],
) -> Result<(), SettingsError> {
    let lower = name.to_ascii_lowercase();
    let protected_column = columns
        .iter()
        .any(|c| c.protected && c.name.eq_ignore_ascii_case(name));
    if protected_column || policy.protected_attributes.contains_key(&lower) {
        return Err(SettingsError::ProtectedFeature {
            feature: name.to_owned(),
        });
    }
    if let Some((_, proxy)) = policy
        .proxies
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(name))
    {
        return Err(SettingsError::ProxyFeature {
            feature: name.to_owned(),
            stands_for: proxy.stands_for.clone(),
            reason: proxy.reason.clone(),
        });
    }
    Ok(())
}

fn resolve_feature(
    name: &str,
    log: bool,
    missing: MissingRule,
    policy: &Policy,
    columns: &[KnownColumn],
) -> Result<FeatureSetting, SettingsError> {
    check_allowed(name, policy, columns)?;
    if FEATURE_NAMES.contains(&name) {
        let spec = if log {
            FeatureSpec::log_numeric(name)
        } else {
            FeatureSpec::numeric(name)
        };
        return Ok(FeatureSetting {
            spec: spec.with_missing(numeric_rule(missing)),
            source: FeatureSource::Behavioural,
        });
    }
    let Some(column) = columns.iter().find(|c| c.name == name) else {
        let mut known: Vec<String> = columns
            .iter()
            .filter(|c| !c.protected && c.kind != ColumnKind::Date)
            .filter(|c| check_allowed(&c.name, policy, columns).is_ok())
            .map(|c| c.name.clone())
            .collect();
        known.extend(FEATURE_NAMES.iter().map(|s| s.to_string()));
        return Err(SettingsError::UnknownFeature {
            feature: name.to_owned(),
            known: known.join(", "),
        });
    };
    let spec = match column.kind {
        ColumnKind::Date => {
            return Err(SettingsError::DateFeature {
                feature: name.to_owned(),
            });
        }
        ColumnKind::Number if log => FeatureSpec::log_numeric(name),
        ColumnKind::Number => FeatureSpec::numeric(name),
        ColumnKind::Category if log => {
            return Err(invalid(
                "log_features",
                format!("`{name}` is a category and cannot be log-transformed"),
            ));
        }
        ColumnKind::Category => FeatureSpec::categorical(name),
    };
    let rule = if spec.kind == FeatureKind::Categorical {
        categorical_rule(missing)
    } else {
        numeric_rule(missing)
    };
    Ok(FeatureSetting {
        spec: spec.with_missing(rule),
        source: FeatureSource::Attribute,
    })
}

/// Imputing a mean or median has no meaning for a category: its mode is imputed instead
/// (recorded with the run), so one rule can be given for a mixed feature set.
fn categorical_rule(rule: MissingRule) -> MissingRule {
    match rule {
        MissingRule::ImputeMean | MissingRule::ImputeMedian => MissingRule::ImputeMode,
        other => other,
    }
}

fn numeric_rule(rule: MissingRule) -> MissingRule {
    rule
}

/// The latest `as_of` accepted: tomorrow (a day of slack for time zones ahead of UTC).
/// Features as of a later day are not data but an extrapolation nobody asked for: every
/// customer's recency and tenure would be counted to a day that has not come.
pub fn check_as_of(
    as_of: chrono::NaiveDate,
    today: chrono::NaiveDate,
) -> Result<(), SettingsError> {
    let latest = today + chrono::Days::new(1);
    if as_of > latest {
        return Err(invalid(
            "as_of",
            format!("{as_of} is in the future: the latest day accepted is {latest}"),
        ));
    }
    Ok(())
}

/// Checks a request and turns it into settings.
pub fn validate(
    request: &RunRequest,
    policy: &Policy,
    columns: &[KnownColumn],
) -> Result<RunSettings, SettingsError> {
    let algorithm = RunAlgorithm::parse(&request.algorithm)?;
    if let Some(as_of) = request.as_of {
        check_as_of(as_of, chrono::Utc::now().date_naive())?;
    }
    let missing = request.missing.unwrap_or(MissingRule::ExcludeCustomer);
    let seed = request.seed.unwrap_or(DEFAULT_SEED);
    let mut seen = BTreeSet::new();
    for name in &request.features {
        if name.trim().is_empty() {
            return Err(invalid("features", "a feature name is empty"));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid("features", format!("`{name}` is listed twice")));
        }
    }
    for name in &request.log_features {
        if !request.features.contains(name) && algorithm != RunAlgorithm::Rfm {
            return Err(invalid(
                "log_features",
                format!("`{name}` is not among the features"),
            ));
        }
    }
    let features_of = |names: &[String]| -> Result<Vec<FeatureSetting>, SettingsError> {
        names
            .iter()
            .map(|n| {
                resolve_feature(
                    n,
                    request.log_features.contains(n),
                    missing,
                    policy,
                    columns,
                )
            })
            .collect()
    };
    let mut settings = RunSettings {
        algorithm,
        features: Vec::new(),
        k: None,
        seed,
        missing,
        eps: None,
        min_points: None,
        rules: None,
        as_of: request.as_of,
    };
    match algorithm {
        RunAlgorithm::Kmeans | RunAlgorithm::Gmm | RunAlgorithm::Dbscan => {
            if request.features.is_empty() {
                return Err(invalid("features", "choose at least one feature"));
            }
            settings.features = features_of(&request.features)?;
        }
        RunAlgorithm::Rfm => {
            if !request.features.is_empty() {
                return Err(invalid(
                    "features",
                    "RFM uses recency_days, frequency and monetary; do not list features",
                ));
            }
            let names: Vec<String> = ["recency_days", "frequency", "monetary"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            settings.features = features_of(&names)?;
        }
        RunAlgorithm::Rules => {
            let Some(raw) = &request.rules else {
                return Err(invalid("rules", "rule segments need a rule set"));
            };
            let rules = RuleSet::from_json(&raw.to_string())
                .map_err(|e| invalid("rules", e.to_string()))?;
            let mut names: Vec<String> = Vec::new();
            for rule in &rules.rules {
                for f in rule.when.features() {
                    if !names.contains(&f) {
                        names.push(f);
                    }
                }
            }
            if !request.features.is_empty() {
                return Err(invalid(
                    "features",
                    "rule segments take their features from the rules; do not list features",
                ));
            }
            settings.features = features_of(&names)?;
            settings.rules = Some(rules);
        }
    }
    match algorithm {
        RunAlgorithm::Kmeans | RunAlgorithm::Gmm => {
            settings.k = Some(k_choice(request, algorithm)?);
        }
        _ => {
            if request.k.is_some() || request.k_min.is_some() || request.k_max.is_some() {
                return Err(invalid(
                    "k",
                    format!("{} does not take a number of segments", algorithm.as_str()),
                ));
            }
        }
    }
    if algorithm == RunAlgorithm::Dbscan {
        let eps = request
            .eps
            .ok_or_else(|| invalid("eps", "DBSCAN needs a neighbourhood radius eps"))?;
        if !(eps.is_finite() && eps > 0.0) {
            return Err(invalid(
                "eps",
                format!("must be a positive number, got {eps}"),
            ));
        }
        let min_points = request
            .min_points
            .ok_or_else(|| invalid("min_points", "DBSCAN needs min_points"))?;
        if min_points < 2 {
            return Err(invalid("min_points", "must be at least 2"));
        }
        settings.eps = Some(eps);
        settings.min_points = Some(min_points);
    } else if request.eps.is_some() || request.min_points.is_some() {
        return Err(invalid("eps", "eps and min_points apply to DBSCAN only"));
    }
    if algorithm != RunAlgorithm::Rules && request.rules.is_some() {
        return Err(invalid("rules", "rules apply to the rules algorithm only"));
    }
    Ok(settings)
}

fn k_choice(request: &RunRequest, algorithm: RunAlgorithm) -> Result<KChoice, SettingsError> {
    match (request.k, request.k_min, request.k_max) {
        (Some(k), None, None) => {
            if !(2..=MAX_K).contains(&k) {
                return Err(invalid(
                    "k",
                    format!("must be between 2 and {MAX_K}, got {k}"),
                ));
            }
            Ok(KChoice::Fixed(k))
        }
        (None, Some(min), Some(max)) => {
            if algorithm != RunAlgorithm::Kmeans {
                return Err(invalid(
                    "k_min",
                    "a range of k is chosen by silhouette for k-means only; give k",
                ));
            }
            if min < 2 || max > MAX_K || min > max {
                return Err(invalid(
                    "k_min",
                    format!("the range {min}..{max} must lie within 2..{MAX_K}, smallest first"),
                ));
            }
            if max - min + 1 > MAX_K_CANDIDATES {
                return Err(invalid(
                    "k_max",
                    format!(
                        "at most {MAX_K_CANDIDATES} candidates of k, got {}",
                        max - min + 1
                    ),
                ));
            }
            Ok(KChoice::Range { min, max })
        }
        (None, None, None) => Err(invalid("k", "give k, or k_min and k_max")),
        (Some(_), _, _) => Err(invalid("k", "give either k or k_min and k_max, not both")),
        _ => Err(invalid("k_min", "give both k_min and k_max")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies"
        )))
        .unwrap()
    }

    fn columns() -> Vec<KnownColumn> {
        vec![
            KnownColumn {
                name: "income".into(),
                kind: ColumnKind::Number,
                protected: false,
            },
            KnownColumn {
                name: "region".into(),
                kind: ColumnKind::Category,
                protected: false,
            },
            KnownColumn {
                name: "postcode_district".into(),
                kind: ColumnKind::Category,
                protected: false,
            },
            KnownColumn {
                name: "signup".into(),
                kind: ColumnKind::Date,
                protected: false,
            },
            KnownColumn {
                name: "Sex".into(),
                kind: ColumnKind::Category,
                protected: true,
            },
        ]
    }

    fn kmeans(features: &[&str]) -> RunRequest {
        RunRequest {
            algorithm: "kmeans".into(),
            features: features.iter().map(|s| s.to_string()).collect(),
            k: Some(4),
            ..RunRequest::default()
        }
    }

    #[test]
    fn protected_attributes_are_refused_by_name_whatever_the_case() {
        for name in ["Sex", "sex", "AGE", "ethnicity"] {
            let err = validate(&kmeans(&["income", name]), &policy(), &columns()).unwrap_err();
            assert_eq!(
                err,
                SettingsError::ProtectedFeature {
                    feature: name.into()
                }
            );
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn policy_proxies_are_refused_naming_what_they_stand_for() {
        let err = validate(&kmeans(&["postcode_district"]), &policy(), &columns()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("postcode_district") && text.contains("ethnicity"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_date_features_are_refused_with_the_known_list() {
        let err = validate(&kmeans(&["incme"]), &policy(), &columns()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`incme`") && text.contains("income") && text.contains("monetary"));
        assert!(
            !text.contains("Sex") && !text.contains("postcode"),
            "{text}"
        );
        assert!(matches!(
            validate(&kmeans(&["signup"]), &policy(), &columns()),
            Err(SettingsError::DateFeature { .. })
        ));
    }

    #[test]
    fn features_resolve_to_their_source_and_kind() {
        let mut req = kmeans(&["income", "region", "monetary"]);
        req.log_features = vec!["monetary".into()];
        req.missing = Some(MissingRule::ImputeMedian);
        let s = validate(&req, &policy(), &columns()).unwrap();
        assert_eq!(s.features[0].source, FeatureSource::Attribute);
        assert_eq!(s.features[1].spec.kind, FeatureKind::Categorical);
        // A category cannot take a median: its mode is imputed, and that is recorded.
        assert_eq!(s.features[1].spec.missing, MissingRule::ImputeMode);
        assert_eq!(
            s.features[2].spec.kind,
            FeatureKind::Numeric { log1p: true }
        );
        assert_eq!(s.features[2].source, FeatureSource::Behavioural);
        assert!(s.needs_behaviour());
        assert_eq!(s.seed, DEFAULT_SEED);
        // The stored settings reproduce the request.
        let again = validate(&s.to_request(), &policy(), &columns()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn k_must_be_given_once_and_in_range() {
        let mut req = kmeans(&["income"]);
        req.k = None;
        assert_eq!(
            validate(&req, &policy(), &columns()).unwrap_err().field(),
            "k"
        );
        req.k_min = Some(2);
        req.k_max = Some(8);
        assert_eq!(
            validate(&req, &policy(), &columns()).unwrap().k,
            Some(KChoice::Range { min: 2, max: 8 })
        );
        req.k = Some(3);
        assert!(validate(&req, &policy(), &columns()).is_err());
        let mut gmm = kmeans(&["income"]);
        gmm.algorithm = "gmm".into();
        gmm.k = None;
        gmm.k_min = Some(2);
        gmm.k_max = Some(4);
        assert!(validate(&gmm, &policy(), &columns()).is_err());
    }

    #[test]
    fn rfm_and_rules_bring_their_own_features() {
        let rfm = RunRequest {
            algorithm: "rfm".into(),
            ..RunRequest::default()
        };
        let s = validate(&rfm, &policy(), &columns()).unwrap();
        assert_eq!(s.feature_names(), ["recency_days", "frequency", "monetary"]);
        let rules = RunRequest {
            algorithm: "rules".into(),
            rules: Some(serde_json::json!({
                "rules": [{"name": "Big", "when": {"compare": {"attribute": "income", "op": ">=", "value": 50000}}}]
            })),
            ..RunRequest::default()
        };
        let s = validate(&rules, &policy(), &columns()).unwrap();
        assert_eq!(s.feature_names(), ["income"]);
        let proxy_rules = RunRequest {
            algorithm: "rules".into(),
            rules: Some(serde_json::json!({
                "rules": [{"name": "X", "when": {"in": {"attribute": "sex", "values": ["f"]}}}]
            })),
            ..RunRequest::default()
        };
        assert!(matches!(
            validate(&proxy_rules, &policy(), &columns()),
            Err(SettingsError::ProtectedFeature { .. })
        ));
    }

    #[test]
    fn dbscan_needs_its_parameters() {
        let mut req = kmeans(&["income"]);
        req.algorithm = "dbscan".into();
        req.k = None;
        assert_eq!(
            validate(&req, &policy(), &columns()).unwrap_err().field(),
            "eps"
        );
        req.eps = Some(0.5);
        req.min_points = Some(5);
        assert!(validate(&req, &policy(), &columns()).is_ok());
    }
}
