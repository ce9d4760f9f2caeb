//! The governance policy: loaded from `policies/policy.toml`, validated once, versioned by the
//! SHA-256 of its bytes, and read everywhere through typed accessors.

mod permission;
pub mod record;

pub use permission::{Permission, UnknownPermission};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file inside the policy directory that holds the active policy.
pub const POLICY_FILE: &str = "policy.toml";

/// Roles every deployment must define: the server's pages and the demo assume them.
pub const REQUIRED_ROLES: [&str; 4] = ["admin", "compliance", "marketing", "analyst"];
/// Purposes every deployment must define: segmentation, activation and reporting use them.
pub const REQUIRED_PURPOSES: [&str; 3] = ["segmentation", "marketing_email", "analytics"];
/// Protected attributes every deployment must audit (more may be added).
pub const REQUIRED_PROTECTED: [&str; 8] = [
    "sex",
    "gender",
    "race",
    "ethnicity",
    "age",
    "religion",
    "disability",
    "marital_status",
];

/// One problem found in a policy: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyIssue {
    pub file: String,
    /// Dotted key path, e.g. `roles.marketing.permissions[2]`; empty for file-level problems.
    pub key: String,
    /// Line and column (1-based) where the TOML parser located the problem, when it did.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in the policy:\n{}", .0.len(), .0.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PolicyIssue>),
}

impl PolicyError {
    /// The individual problems, for `policy check --json`.
    pub fn issues(&self) -> Vec<PolicyIssue> {
        match self {
            PolicyError::Read { path, source } => vec![PolicyIssue {
                file: path.display().to_string(),
                key: String::new(),
                line: None,
                column: None,
                message: format!("cannot read: {source}"),
            }],
            PolicyError::Invalid(issues) => issues.clone(),
        }
    }
}

/// A legal basis for processing under GDPR art. 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    LegitimateInterest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeSpec {
    pub description: String,
    pub legal_basis: LegalBasis,
    /// Days after which a grant lapses and must be renewed.
    pub consent_validity_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Categorical,
    Numeric,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedSpec {
    pub kind: AttributeKind,
    /// Lower band edges for numeric attributes, strictly increasing.
    #[serde(default)]
    pub bands: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    pub stands_for: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessSpec {
    pub significance_level: f64,
    pub effect_size_warn: f64,
    pub effect_size_fail: f64,
    pub four_fifths_ratio: f64,
    pub min_cell_size: u32,
    pub proxy_limit: f64,
    pub monte_carlo_samples: u32,
    pub seed: u64,
}

/// The consent-selection test: protected attributes of customers who did not consent, used in
/// aggregate only, to test whether the consented population differs from all customers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSelectionSpec {
    /// Off unless the policy switches it on (with a legal basis).
    pub enabled: bool,
    /// The legal basis for using non-consenting customers' protected attributes this way; a
    /// policy that enables the test must state it.
    pub legal_basis: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    pub transactions_days: u32,
    pub consent_events_days: u32,
    pub segment_memberships_days: u32,
    pub kpi_evaluations_days: u32,
    pub inactive_customers_days: u32,
}

/// How segmentation runs are made, valued and activated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentationSpec {
    /// The purpose whose active consent admits a customer to a run.
    pub purpose: String,
    /// Activation channels and the purpose whose consent a member needs to be exported for
    /// that channel.
    pub channels: BTreeMap<String, String>,
    /// The channel whose consent decides "accessible" in viability.
    pub default_channel: String,
    /// Viability: a segment smaller than this is not substantial.
    pub min_segment_size: u64,
    /// Viability: the share of members reachable under the default channel's consent.
    pub min_reachable_share: f64,
    /// Viability: distance (standardised units) to the nearest other segment centre.
    pub min_distinctness: f64,
    /// Rows sampled for the silhouette when choosing k, and for the segment map.
    pub silhouette_sample: usize,
    pub map_sample: usize,
    /// Valuation (formulas in docs/segmentation.md): window, margin, discount rate, cost model.
    pub valuation_window_days: u32,
    pub gross_margin: f64,
    pub annual_discount_rate: f64,
    pub cost_per_customer: f64,
    pub cost_per_order: f64,
}

impl Default for SegmentationSpec {
    fn default() -> Self {
        SegmentationSpec {
            purpose: "segmentation".into(),
            channels: BTreeMap::from([("email".to_owned(), "marketing_email".to_owned())]),
            default_channel: "email".into(),
            min_segment_size: 50,
            min_reachable_share: 0.5,
            min_distinctness: 0.5,
            silhouette_sample: 4_000,
            map_sample: 1_500,
            valuation_window_days: 365,
            gross_margin: 0.3,
            annual_discount_rate: 0.1,
            cost_per_customer: 2.0,
            cost_per_order: 1.0,
        }
    }
}

/// A KPI's target and the threshold past which it alerts (see `kpi::Objective`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiTarget {
    pub target: f64,
    pub alert: f64,
}

/// The KPI catalogue's objectives, drift thresholds and alert rules (formulas in the policy
/// file's comments, docs/kpis.md and `kpi::catalogue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiSpec {
    /// The period the schedule and the dashboards use by default: week, month or quarter.
    pub period: String,
    /// Overall targets, by KPI name. They apply to `all`; ratio KPIs also to each segment
    /// unless a segment overrides them; count and sum KPIs apply to a segment only through an
    /// override.
    pub targets: BTreeMap<String, KpiTarget>,
    /// Per-segment overrides: segment name -> KPI name -> target.
    pub segments: BTreeMap<String, BTreeMap<String, KpiTarget>>,
    /// A KPI past its alert threshold this many periods in a row raises an alert.
    pub consecutive_periods: usize,
    /// Adjusted Rand index below which the published segmentation counts as unstable.
    pub min_stability_ari: f64,
    /// Population stability index thresholds: warn, act.
    pub psi_warn: f64,
    pub psi_act: f64,
    /// Quantile bins of the PSI (10 = deciles).
    pub psi_bins: usize,
    /// Significance level of the two-sample Kolmogorov-Smirnov test.
    pub ks_alpha: f64,
    /// Customer lifetime value: margin share of revenue and cap on the expected lifetime.
    pub clv_margin: f64,
    pub clv_max_lifetime_periods: f64,
}

impl Default for KpiSpec {
    fn default() -> Self {
        KpiSpec {
            period: "month".into(),
            targets: BTreeMap::new(),
            segments: BTreeMap::new(),
            consecutive_periods: 3,
            min_stability_ari: 0.6,
            psi_warn: 0.1,
            psi_act: 0.2,
            psi_bins: 10,
            ks_alpha: 0.05,
            clv_margin: 0.3,
            clv_max_lifetime_periods: 60.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSpecRaw {
    description: String,
    permissions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleSpec {
    pub description: String,
    pub permissions: BTreeSet<Permission>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyMeta {
    pub name: String,
    pub owner: String,
}

/// A currency of the policy's `[presentation]`: an ISO 4217 code of three capital letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Currency(String);

impl Currency {
    /// Parses an ISO 4217 code (three capital letters, e.g. `EUR`).
    pub fn parse(code: &str) -> Result<Currency, String> {
        if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Currency(code.to_string()))
        } else {
            Err(format!(
                "`{code}` is not a currency code: three capital letters, as EUR, USD or GBP"
            ))
        }
    }

    pub fn code(&self) -> &str {
        &self.0
    }

    /// What is written before an amount: a symbol when the currency has a well-known one,
    /// else the code and a space.
    pub fn prefix(&self) -> String {
        match self.0.as_str() {
            "EUR" => "€".into(),
            "USD" => "$".into(),
            "GBP" => "£".into(),
            "JPY" => "¥".into(),
            "INR" => "₹".into(),
            other => format!("{other} "),
        }
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency("EUR".into())
    }
}

/// `[presentation]`: how figures and the company read on the pages and the customer's
/// preference page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresentationSpec {
    /// ISO 4217 code of the amounts in the transactions (`EUR`).
    pub currency: String,
    /// The company's name, as customers know it (shown on the preference page).
    pub company_name: String,
    /// How customers reach the company about their data (an e-mail address or a page).
    pub company_contact: String,
}

impl Default for PresentationSpec {
    fn default() -> Self {
        PresentationSpec {
            currency: "EUR".into(),
            company_name: "Our company".into(),
            company_contact: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRaw {
    policy: PolicyMeta,
    purposes: BTreeMap<String, PurposeSpec>,
    protected_attributes: BTreeMap<String, ProtectedSpec>,
    #[serde(default)]
    proxies: BTreeMap<String, ProxySpec>,
    fairness: FairnessSpec,
    retention: RetentionSpec,
    roles: BTreeMap<String, RoleSpecRaw>,
    #[serde(default)]
    segmentation: SegmentationSpec,
    #[serde(default)]
    kpi: KpiSpec,
    #[serde(default)]
    consent_selection: ConsentSelectionSpec,
    presentation: PresentationSpec,
}

/// A validated policy and its version.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// `sha256:` followed by the hex digest of the policy file's bytes.
    pub version: String,
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub meta: PolicyMeta,
    pub purposes: BTreeMap<String, PurposeSpec>,
    pub protected_attributes: BTreeMap<String, ProtectedSpec>,
    pub proxies: BTreeMap<String, ProxySpec>,
    pub fairness: FairnessSpec,
    pub retention: RetentionSpec,
    pub roles: BTreeMap<String, RoleSpec>,
    pub segmentation: SegmentationSpec,
    pub kpi: KpiSpec,
    pub consent_selection: ConsentSelectionSpec,
    pub presentation: PresentationSpec,
    /// `presentation.currency`, parsed.
    pub currency: Currency,
}

impl Policy {
    /// Loads and validates `dir/policy.toml`.
    pub fn load(dir: &Path) -> Result<Policy, PolicyError> {
        let path = dir.join(POLICY_FILE);
        let source = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        Policy::parse(&source, &path)
    }

    /// Parses and validates policy text; `path` is used in messages only.
    pub fn parse(source: &str, path: &Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let raw: PolicyRaw = toml::from_str(source).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(source, span.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            PolicyError::Invalid(vec![PolicyIssue {
                file: file.clone(),
                key: String::new(),
                line,
                column,
                message: e.message().to_string(),
            }])
        })?;
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String| {
            issues.push(PolicyIssue {
                file: file.clone(),
                key,
                line: None,
                column: None,
                message,
            })
        };

        for required in REQUIRED_PURPOSES {
            if !raw.purposes.contains_key(required) {
                issue(
                    format!("purposes.{required}"),
                    "required purpose is missing".into(),
                );
            }
        }
        for (name, purpose) in &raw.purposes {
            if !is_identifier(name) {
                issue(
                    format!("purposes.{name}"),
                    "purpose names use lowercase letters, digits and underscores".into(),
                );
            }
            if purpose.consent_validity_days == 0 {
                issue(
                    format!("purposes.{name}.consent_validity_days"),
                    "must be at least 1 day".into(),
                );
            }
        }

        let mut lowered = BTreeMap::new();
        for (name, spec) in &raw.protected_attributes {
            if let Some(previous) = lowered.insert(name.to_lowercase(), name) {
                issue(
                    format!("protected_attributes.{name}"),
                    format!(
                        "same attribute as `{previous}` (names are matched case-insensitively)"
                    ),
                );
            }
            match spec.kind {
                AttributeKind::Numeric => {
                    if spec.bands.is_empty() {
                        issue(
                            format!("protected_attributes.{name}.bands"),
                            "a numeric protected attribute needs bands to be audited".into(),
                        );
                    }
                    if spec.bands.iter().any(|b| !b.is_finite())
                        || spec.bands.windows(2).any(|w| w[0] >= w[1])
                    {
                        issue(
                            format!("protected_attributes.{name}.bands"),
                            "band edges must be finite and strictly increasing".into(),
                        );
                    }
                }
                AttributeKind::Categorical if !spec.bands.is_empty() => issue(
                    format!("protected_attributes.{name}.bands"),
                    "only numeric attributes have bands".into(),
                ),
                AttributeKind::Categorical => {}
            }
        }
        for required in REQUIRED_PROTECTED {
            if !lowered.contains_key(required) {
                issue(
                    format!("protected_attributes.{required}"),
                    "required protected attribute is missing".into(),
                );
            }
        }
        for (feature, proxy) in &raw.proxies {
            if !lowered.contains_key(&proxy.stands_for.to_lowercase()) {
                issue(
                    format!("proxies.{feature}.stands_for"),
                    format!("`{}` is not a protected attribute", proxy.stands_for),
                );
            }
            if lowered.contains_key(&feature.to_lowercase()) {
                issue(
                    format!("proxies.{feature}"),
                    "a protected attribute cannot also be listed as a proxy".into(),
                );
            }
        }

        let f = &raw.fairness;
        let unit = |key: &str, value: f64, issue: &mut dyn FnMut(String, String)| {
            if !(value > 0.0 && value < 1.0) {
                issue(
                    format!("fairness.{key}"),
                    format!("must be between 0 and 1 (exclusive), got {value}"),
                );
            }
        };
        unit("significance_level", f.significance_level, &mut issue);
        unit("effect_size_warn", f.effect_size_warn, &mut issue);
        unit("effect_size_fail", f.effect_size_fail, &mut issue);
        unit("four_fifths_ratio", f.four_fifths_ratio, &mut issue);
        unit("proxy_limit", f.proxy_limit, &mut issue);
        if f.effect_size_warn >= f.effect_size_fail {
            issue(
                "fairness.effect_size_warn".into(),
                format!(
                    "must be below effect_size_fail ({} >= {})",
                    f.effect_size_warn, f.effect_size_fail
                ),
            );
        }
        if f.min_cell_size < 1 {
            issue("fairness.min_cell_size".into(), "must be at least 1".into());
        }
        if f.monte_carlo_samples < 100 {
            issue(
                "fairness.monte_carlo_samples".into(),
                "must be at least 100 for a usable p-value".into(),
            );
        }

        let r = &raw.retention;
        for (key, days) in [
            ("transactions_days", r.transactions_days),
            ("consent_events_days", r.consent_events_days),
            ("segment_memberships_days", r.segment_memberships_days),
            ("kpi_evaluations_days", r.kpi_evaluations_days),
            ("inactive_customers_days", r.inactive_customers_days),
        ] {
            if days == 0 {
                issue(format!("retention.{key}"), "must be at least 1 day".into());
            }
        }

        let seg = &raw.segmentation;
        if !raw.purposes.contains_key(&seg.purpose) {
            issue(
                "segmentation.purpose".into(),
                format!("`{}` is not a purpose of this policy", seg.purpose),
            );
        }
        for (channel, purpose) in &seg.channels {
            if !raw.purposes.contains_key(purpose) {
                issue(
                    format!("segmentation.channels.{channel}"),
                    format!("`{purpose}` is not a purpose of this policy"),
                );
            }
        }
        if !seg.channels.contains_key(&seg.default_channel) {
            issue(
                "segmentation.default_channel".into(),
                format!(
                    "`{}` is not among segmentation.channels",
                    seg.default_channel
                ),
            );
        }
        for (key, value) in [
            ("min_reachable_share", seg.min_reachable_share),
            ("gross_margin", seg.gross_margin),
            ("annual_discount_rate", seg.annual_discount_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                issue(
                    format!("segmentation.{key}"),
                    "must lie between 0 and 1".into(),
                );
            }
        }
        for (key, value) in [
            ("min_distinctness", seg.min_distinctness),
            ("cost_per_customer", seg.cost_per_customer),
            ("cost_per_order", seg.cost_per_order),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                issue(
                    format!("segmentation.{key}"),
                    "must be a number of at least 0".into(),
                );
            }
        }
        if seg.valuation_window_days == 0 {
            issue(
                "segmentation.valuation_window_days".into(),
                "must be at least 1 day".into(),
            );
        }
        if seg.silhouette_sample < 100 || seg.map_sample < 10 {
            issue(
                "segmentation.silhouette_sample".into(),
                "samples must hold at least 100 (silhouette) and 10 (map) customers".into(),
            );
        }

        for (key, message) in validate_kpi(&raw.kpi) {
            issue(key, message);
        }
        if raw.consent_selection.enabled && raw.consent_selection.legal_basis.trim().len() < 10 {
            issue(
                "consent_selection.legal_basis".into(),
                "the consent-selection test uses protected attributes of customers who did not consent: state its legal basis".into(),
            );
        }
        let currency = match Currency::parse(&raw.presentation.currency) {
            Ok(c) => c,
            Err(message) => {
                issue("presentation.currency".into(), message);
                Currency::default()
            }
        };
        if raw.presentation.company_name.trim().is_empty() {
            issue(
                "presentation.company_name".into(),
                "must name the company, as customers know it".into(),
            );
        }

        let mut roles = BTreeMap::new();
        for required in REQUIRED_ROLES {
            if !raw.roles.contains_key(required) {
                issue(
                    format!("roles.{required}"),
                    "required role is missing".into(),
                );
            }
        }
        for (name, role) in raw.roles {
            if !is_identifier(&name) {
                issue(
                    format!("roles.{name}"),
                    "role names use lowercase letters, digits and underscores".into(),
                );
            }
            let mut permissions = BTreeSet::new();
            for (i, p) in role.permissions.iter().enumerate() {
                match p.parse::<Permission>() {
                    Ok(permission) => {
                        if !permissions.insert(permission) {
                            issue(
                                format!("roles.{name}.permissions[{i}]"),
                                format!("`{p}` is listed twice"),
                            );
                        }
                    }
                    Err(e) => issue(format!("roles.{name}.permissions[{i}]"), e.to_string()),
                }
            }
            roles.insert(
                name,
                RoleSpec {
                    description: role.description,
                    permissions,
                },
            );
        }
        if let Some(admin) = roles.get("admin")
            && !admin.permissions.contains(&Permission::UsersManage)
        {
            issue(
                "roles.admin.permissions".into(),
                "admin must keep `users:manage`, or nobody could manage accounts".into(),
            );
        }

        if !issues.is_empty() {
            return Err(PolicyError::Invalid(issues));
        }
        Ok(Policy {
            version: version_of(source.as_bytes()),
            source: source.to_string(),
            path: path.to_path_buf(),
            meta: raw.policy,
            purposes: raw.purposes,
            protected_attributes: raw.protected_attributes,
            proxies: raw.proxies,
            fairness: raw.fairness,
            retention: raw.retention,
            roles,
            segmentation: raw.segmentation,
            kpi: raw.kpi,
            consent_selection: raw.consent_selection,
            presentation: raw.presentation,
            currency,
        })
    }

    /// The short form of the version shown in pages: the first 12 hex digits.
    pub fn short_version(&self) -> &str {
        crate::format::short_policy(&self.version)
    }

    pub fn role(&self, name: &str) -> Option<&RoleSpec> {
        self.roles.get(name)
    }

    /// Whether `role` holds `permission`. Unknown roles hold nothing (deny by default).
    pub fn allows(&self, role: &str, permission: Permission) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.permissions.contains(&permission))
    }

    /// The roles holding `permission`, by name, e.g. for "who may publish next".
    pub fn roles_with(&self, permission: Permission) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|(_, r)| r.permissions.contains(&permission))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The protected attribute a column name refers to, matched case-insensitively.
    pub fn protected_attribute(&self, column: &str) -> Option<(&str, &ProtectedSpec)> {
        let wanted = column.trim().to_lowercase();
        self.protected_attributes
            .iter()
            .find(|(name, _)| name.to_lowercase() == wanted)
            .map(|(name, spec)| (name.as_str(), spec))
    }

    /// The proxy declaration for a feature name, matched case-insensitively.
    pub fn proxy(&self, feature: &str) -> Option<(&str, &ProxySpec)> {
        let wanted = feature.trim().to_lowercase();
        self.proxies
            .iter()
            .find(|(name, _)| name.to_lowercase() == wanted)
            .map(|(name, spec)| (name.as_str(), spec))
    }

    pub fn purpose(&self, name: &str) -> Option<&PurposeSpec> {
        self.purposes.get(name)
    }
}

/// Problems in the `[kpi]` section, as (key, message).
fn validate_kpi(spec: &KpiSpec) -> Vec<(String, String)> {
    use crate::kpi::{AlertRules, ClvParams, DriftThresholds, Kpi, Objective, PeriodKind};
    let mut out = Vec::new();
    if PeriodKind::parse(&spec.period).is_err() {
        out.push((
            "kpi.period".into(),
            format!("`{}` is not week, month or quarter", spec.period),
        ));
    }
    let mut check_targets = |prefix: String, targets: &BTreeMap<String, KpiTarget>| {
        for (name, t) in targets {
            let key = format!("{prefix}.{name}");
            match Kpi::parse(name) {
                Err(_) => out.push((
                    key,
                    format!(
                        "`{name}` is not a KPI of the catalogue ({})",
                        Kpi::ALL.map(|k| k.name()).join(", ")
                    ),
                )),
                Ok(kpi) => {
                    if let Err(e) = Objective::for_kpi(kpi, t.target, t.alert) {
                        out.push((key, e.to_string()));
                    }
                }
            }
        }
    };
    check_targets("kpi.targets".into(), &spec.targets);
    for (segment, targets) in &spec.segments {
        check_targets(format!("kpi.segments.{segment}"), targets);
    }
    if let Err(e) = DriftThresholds::new(
        spec.psi_warn,
        spec.psi_act,
        spec.ks_alpha,
        1e-4,
        spec.psi_bins,
    ) {
        let key = if !(spec.ks_alpha > 0.0 && spec.ks_alpha < 1.0) {
            "kpi.ks_alpha"
        } else if spec.psi_bins < 2 {
            "kpi.psi_bins"
        } else {
            "kpi.psi_warn"
        };
        out.push((key.into(), e.to_string()));
    }
    if let Err(e) = AlertRules::new(
        spec.consecutive_periods,
        spec.min_stability_ari,
        DriftThresholds::default(),
    ) {
        let key = if spec.consecutive_periods == 0 {
            "kpi.consecutive_periods"
        } else {
            "kpi.min_stability_ari"
        };
        out.push((key.into(), e.to_string()));
    }
    if let Err(e) = ClvParams::new(spec.clv_margin, spec.clv_max_lifetime_periods) {
        let key = if !(spec.clv_margin > 0.0 && spec.clv_margin <= 1.0) {
            "kpi.clv_margin"
        } else {
            "kpi.clv_max_lifetime_periods"
        };
        out.push((key.into(), e.to_string()));
    }
    out
}

/// The version string of policy bytes.
pub fn version_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_source() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/policy.toml"))
            .unwrap()
    }

    fn issues_of(source: &str) -> Vec<PolicyIssue> {
        Policy::parse(source, Path::new("policy.toml"))
            .expect_err("policy should be rejected")
            .issues()
    }

    #[test]
    fn the_consent_selection_test_needs_a_stated_legal_basis() {
        let source = default_source();
        let start = source.find("legal_basis = \"GDPR Art. 6(1)(f)").unwrap();
        let end = start + source[start..].find('\n').unwrap();
        let without = format!("{}legal_basis = \"\"{}", &source[..start], &source[end..]);
        let issues = issues_of(&without);
        assert!(
            issues
                .iter()
                .any(|i| i.key == "consent_selection.legal_basis"),
            "{issues:?}"
        );
        let off = without.replace(
            "[consent_selection]\nenabled = true",
            "[consent_selection]\nenabled = false",
        );
        let policy = Policy::parse(&off, Path::new("policy.toml")).unwrap();
        assert!(!policy.consent_selection.enabled);
    }

    #[test]
    fn the_shipped_policy_is_valid_and_versioned_by_content() {
        let source = default_source();
        let policy = Policy::parse(&source, Path::new("policy.toml")).unwrap();
        assert_eq!(policy.version, version_of(source.as_bytes()));
        assert!(policy.version.starts_with("sha256:") && policy.version.len() == 71);
        assert!(policy.allows("admin", Permission::UsersManage));
        assert!(!policy.allows("marketing", Permission::CustomersReadProtected));
        assert!(!policy.allows("nobody", Permission::PolicyRead));
        let changed = source.replace("min_cell_size = 10", "min_cell_size = 11");
        let other = Policy::parse(&changed, Path::new("policy.toml")).unwrap();
        assert_ne!(policy.version, other.version);
    }

    #[test]
    fn protected_attributes_and_proxies_match_case_insensitively() {
        let policy = Policy::parse(&default_source(), Path::new("p")).unwrap();
        assert_eq!(policy.protected_attribute(" SEX ").unwrap().0, "sex");
        assert_eq!(policy.protected_attribute("Age").unwrap().1.bands[0], 18.0);
        assert!(policy.protected_attribute("income").is_none());
        assert_eq!(
            policy.proxy("Postcode_District").unwrap().1.stands_for,
            "ethnicity"
        );
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let source = default_source().replace("[fairness]", "[fairness");
        let issues = issues_of(&source);
        assert_eq!(issues.len(), 1);
        let line = source.lines().position(|l| l == "[fairness").unwrap() + 1;
        assert_eq!(issues[0].line, Some(line));
        assert!(
            issues[0]
                .to_string()
                .starts_with(&format!("policy.toml:{line}:"))
        );
    }

    #[test]
    fn a_misspelt_key_is_an_error_not_ignored() {
        let source = default_source().replace("min_cell_size = 10", "min_cel_size = 10");
        let issues = issues_of(&source);
        assert!(issues[0].message.contains("min_cel_size"), "{issues:?}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let source = default_source()
            .replace("effect_size_warn = 0.10", "effect_size_warn = 0.5")
            .replace(
                r#""users:manage", "trail:read""#,
                r#""users:manage", "trail:raed""#,
            )
            .replace("bands = [18, 25, 35, 45, 55, 65]", "bands = [18, 35, 25]")
            .replace("stands_for = \"ethnicity\"", "stands_for = \"star_sign\"");
        let keys: Vec<String> = issues_of(&source).into_iter().map(|i| i.key).collect();
        assert!(
            keys.contains(&"fairness.effect_size_warn".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"roles.admin.permissions[1]".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"protected_attributes.age.bands".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"proxies.postcode_district.stands_for".to_string()),
            "{keys:?}"
        );
    }

    #[test]
    fn kpi_section_errors_name_the_key() {
        let source = default_source()
            .replace("psi_act = 0.20", "psi_act = 0.05")
            .replace(
                "retention_rate = { target = 0.40, alert = 0.30 }",
                "retention_rate = { target = 0.40, alert = 0.50 }\nretension = { target = 1, alert = 0 }",
            )
            .replace("consecutive_periods = 3", "consecutive_periods = 0");
        let keys: Vec<String> = issues_of(&source).into_iter().map(|i| i.key).collect();
        for key in [
            "kpi.psi_warn",
            "kpi.targets.retention_rate",
            "kpi.targets.retension",
            "kpi.consecutive_periods",
        ] {
            assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
        }
        let policy = Policy::parse(&default_source(), Path::new("p")).unwrap();
        assert_eq!(policy.kpi.targets["retention_rate"].target, 0.40);
    }

    #[test]
    fn presentation_errors_name_the_key() {
        let policy = Policy::parse(&default_source(), Path::new("p")).unwrap();
        assert_eq!(policy.currency.code(), "EUR");
        assert!(!policy.presentation.company_name.is_empty());
        let source = default_source()
            .replace(r#"currency = "EUR""#, r#"currency = "euro""#)
            .replace(
                r#"company_name = "Northwind Retail""#,
                r#"company_name = " ""#,
            );
        let issues = issues_of(&source);
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"presentation.currency"), "{keys:?}");
        assert!(keys.contains(&"presentation.company_name"), "{keys:?}");
        let typo = default_source().replace("company_contact =", "company_contakt =");
        assert!(issues_of(&typo)[0].message.contains("company_contakt"));
    }

    #[test]
    fn required_roles_purposes_and_attributes_must_exist() {
        let source = default_source()
            .replace("[roles.analyst]", "[roles.analyst_renamed]")
            .replace("[purposes.analytics]", "[purposes.reporting]")
            .replace(
                "[protected_attributes.religion]",
                "[protected_attributes.faith]",
            );
        let keys: Vec<String> = issues_of(&source).into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&"roles.analyst".to_string()));
        assert!(keys.contains(&"purposes.analytics".to_string()));
        assert!(keys.contains(&"protected_attributes.religion".to_string()));
    }
}
