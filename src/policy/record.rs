//! The record of processing activities (GDPR Art. 30(1)) generated from the policy in force:
//! the controller, and per purpose its description, legal basis, the categories of personal
//! data and of data subjects, the recipients (the policy's roles that hold a permission reading
//! that data) and the retention of each category; then the technical and organisational
//! measures. Deterministic: the same policy and the same attribute columns give the same
//! record, so the policy version identifies it.
//!
//! Which purpose touches which data follows from how fairseg uses the purposes:
//! - the segmentation purpose (`[segmentation] purpose`) admits customers to runs: their
//!   attributes, transactions and derived behavioural features are segmented, their protected
//!   attributes audited in aggregate, their memberships stored;
//! - a channel's purpose (`[segmentation] channels`) admits members to activation exports:
//!   attributes and memberships;
//! - any other purpose (analytics) is aggregate reporting on transactions and features.
//!
//! Consent events are kept for every purpose: they prove the grant, or record the objection.

use serde::Serialize;

use super::{LegalBasis, Permission, Policy};

/// A category of personal data fairseg holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    CustomerAttributes,
    SpecialCategories,
    Transactions,
    ConsentEvents,
    BehaviouralFeatures,
    SegmentMemberships,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::CustomerAttributes,
        Category::SpecialCategories,
        Category::Transactions,
        Category::ConsentEvents,
        Category::BehaviouralFeatures,
        Category::SegmentMemberships,
    ];

    /// The category in words.
    pub fn title(self) -> &'static str {
        match self {
            Category::CustomerAttributes => "Customer attributes",
            Category::SpecialCategories => {
                "Special categories of personal data (protected attributes)"
            }
            Category::Transactions => "Purchase transactions",
            Category::ConsentEvents => "Consent events (grants, withdrawals, objections)",
            Category::BehaviouralFeatures => "Derived behavioural features",
            Category::SegmentMemberships => "Segment memberships (profiling results)",
        }
    }

    /// The permissions that read this category at the level of an individual.
    pub fn read_with(self) -> &'static [Permission] {
        match self {
            Category::CustomerAttributes | Category::Transactions => &[Permission::CustomersRead],
            Category::SpecialCategories => &[Permission::CustomersReadProtected],
            Category::ConsentEvents => &[Permission::ConsentRecord, Permission::DsrManage],
            Category::BehaviouralFeatures => &[Permission::SegmentsRun],
            Category::SegmentMemberships => &[Permission::SegmentsMembers],
        }
    }

    /// The retention period from `[retention]`, in days, and what it counts from.
    pub fn retention(self, policy: &Policy) -> Retention {
        let r = &policy.retention;
        let (days, rule) = match self {
            Category::CustomerAttributes | Category::SpecialCategories => (
                r.inactive_customers_days,
                "erased with the customer after this long without a transaction or consent event",
            ),
            Category::Transactions => (r.transactions_days, "from the transaction"),
            Category::ConsentEvents => (r.consent_events_days, "from the event"),
            Category::BehaviouralFeatures => (
                r.segment_memberships_days,
                "computed from transactions when a run needs them; kept with the run's memberships",
            ),
            Category::SegmentMemberships => (r.segment_memberships_days, "from the run"),
        };
        Retention { days, rule }
    }
}

/// How long a category is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub days: u32,
    pub rule: &'static str,
}

/// One category of data as the record lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryRecord {
    pub category: Category,
    pub title: &'static str,
    /// What the category holds: attribute columns, protected attributes, or a description.
    pub items: Vec<String>,
    /// Processed only in aggregate for this purpose (counts of at least the minimum cell size).
    pub aggregate_only: bool,
    pub read_with: Vec<Permission>,
    /// Roles of the policy that hold a permission reading this category.
    pub recipients: Vec<String>,
    pub retention: Retention,
}

/// One processing purpose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurposeRecord {
    pub name: String,
    pub description: String,
    pub legal_basis: LegalBasis,
    /// The GDPR provision of the legal basis.
    pub legal_basis_article: &'static str,
    /// Consent purposes: a grant lapses after this many days.
    pub consent_validity_days: Option<u32>,
    pub data_subjects: Vec<&'static str>,
    pub categories: Vec<CategoryRecord>,
    /// The union of the categories' recipients.
    pub recipients: Vec<String>,
    pub notes: Vec<String>,
}

/// A technical or organisational measure (Art. 32) as the record states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    pub title: &'static str,
    pub detail: String,
}

/// The controller (Art. 30(1)(a)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Controller {
    pub name: String,
    pub contact: String,
    /// The policy's owner, responsible for this record.
    pub responsible: String,
}

/// The record of processing activities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub controller: Controller,
    pub policy_name: String,
    /// The policy version (`sha256:` of the policy file) the record was generated from.
    pub policy_version: String,
    pub purposes: Vec<PurposeRecord>,
    pub measures: Vec<Measure>,
    pub transfers: &'static str,
}

/// An attribute column known in the database: its name and whether it is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeColumn {
    pub name: String,
    pub protected: bool,
}

fn article(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "GDPR Art. 6(1)(a)",
        LegalBasis::LegitimateInterest => "GDPR Art. 6(1)(f)",
    }
}

fn sorted_union<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.flatten().cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// The roles holding any of `permissions`, sorted.
fn recipients(policy: &Policy, permissions: &[Permission]) -> Vec<String> {
    let mut roles: Vec<String> = permissions
        .iter()
        .flat_map(|p| policy.roles_with(*p))
        .map(str::to_owned)
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

fn category(
    policy: &Policy,
    columns: &[AttributeColumn],
    c: Category,
    aggregate_only: bool,
) -> CategoryRecord {
    let items = match c {
        Category::CustomerAttributes => columns
            .iter()
            .filter(|a| !a.protected && policy.protected_attribute(&a.name).is_none())
            .map(|a| a.name.clone())
            .collect(),
        Category::SpecialCategories => policy.protected_attributes.keys().cloned().collect(),
        Category::Transactions => vec!["date, amount, quantity, order id".into()],
        Category::ConsentEvents => vec!["purpose, status, time, source, notice version".into()],
        Category::BehaviouralFeatures => vec![
            "recency_days".into(),
            "frequency".into(),
            "monetary".into(),
            "tenure_days".into(),
        ],
        Category::SegmentMemberships => vec!["run, segment, segment name and strategy".into()],
    };
    CategoryRecord {
        category: c,
        title: c.title(),
        items,
        aggregate_only,
        read_with: c.read_with().to_vec(),
        recipients: recipients(policy, c.read_with()),
        retention: c.retention(policy),
    }
}

/// Builds the record from the policy and the attribute columns on file.
pub fn record(policy: &Policy, columns: &[AttributeColumn]) -> Record {
    use Category::*;
    let channel_purposes: Vec<&String> = policy.segmentation.channels.values().collect();
    let purposes = policy
        .purposes
        .iter()
        .map(|(name, spec)| {
            let mut notes = Vec::new();
            let cats: Vec<CategoryRecord> = if *name == policy.segmentation.purpose {
                notes.push(format!(
                    "Protected attributes are never segmentation features; fairness audits use them only as counts of at least {} per cell.",
                    policy.fairness.min_cell_size
                ));
                if policy.consent_selection.enabled {
                    notes.push(format!(
                        "Protected attributes of customers who did not consent are used in aggregate only, to test consent-selection bias, under: {}",
                        policy.consent_selection.legal_basis
                    ));
                }
                [
                    (CustomerAttributes, false),
                    (SpecialCategories, true),
                    (Transactions, false),
                    (ConsentEvents, false),
                    (BehaviouralFeatures, false),
                    (SegmentMemberships, false),
                ]
                .into_iter()
                .map(|(c, agg)| category(policy, columns, c, agg))
                .collect()
            } else if channel_purposes.contains(&name) {
                notes.push(
                    "An activation export contains only members whose consent for this purpose is active at export time."
                        .into(),
                );
                [CustomerAttributes, ConsentEvents, SegmentMemberships]
                    .into_iter()
                    .map(|c| category(policy, columns, c, false))
                    .collect()
            } else {
                notes.push("Reported in aggregate only, never at individual level.".into());
                [
                    (Transactions, true),
                    (ConsentEvents, false),
                    (BehaviouralFeatures, true),
                ]
                .into_iter()
                .map(|(c, agg)| category(policy, columns, c, agg))
                .collect()
            };
            PurposeRecord {
                name: name.clone(),
                description: spec.description.clone(),
                legal_basis: spec.legal_basis,
                legal_basis_article: article(spec.legal_basis),
                consent_validity_days: (spec.legal_basis == LegalBasis::Consent)
                    .then_some(spec.consent_validity_days),
                data_subjects: vec!["Customers"],
                recipients: sorted_union(cats.iter().map(|c| &c.recipients)),
                categories: cats,
                notes,
            }
        })
        .collect();
    Record {
        controller: Controller {
            name: policy.presentation.company_name.clone(),
            contact: policy.presentation.company_contact.clone(),
            responsible: policy.meta.owner.clone(),
        },
        policy_name: policy.meta.name.clone(),
        policy_version: policy.version.clone(),
        purposes,
        measures: measures(policy),
        transfers: "None by fairseg itself: data leaves only as activation exports and member lists downloaded by the recipients above, each recorded in the trail.",
    }
}

fn measures(policy: &Policy) -> Vec<Measure> {
    vec![
        Measure {
            title: "Pseudonymisation",
            detail: "Each customer has a keyed pseudonym (HMAC-SHA-256 under a server secret); the trail and data-subject logs name customers by pseudonym.".into(),
        },
        Measure {
            title: "Access control",
            detail: format!(
                "Role-based and deny by default: {} roles, each with exactly the permissions the policy lists; every route names the permission it needs. Passwords are hashed with Argon2id.",
                policy.roles.len()
            ),
        },
        Measure {
            title: "Special categories kept apart",
            detail: "Protected attributes are stored separately, readable only with customers:read_protected, and never usable as segmentation features.".into(),
        },
        Measure {
            title: "Audit trail",
            detail: "Every change and every disclosure is appended to a hash-chained trail that is never deleted and can be verified at any time.".into(),
        },
        Measure {
            title: "Suppression of small counts",
            detail: format!(
                "No count below {} leaves the server in any page, export or API answer.",
                policy.fairness.min_cell_size
            ),
        },
        Measure {
            title: "Consent enforcement",
            detail: "A run includes only customers whose consent for the segmentation purpose is active; an export only members whose consent for the channel's purpose is active; grants lapse after the purpose's validity.".into(),
        },
        Measure {
            title: "Fairness audits and publish gate",
            detail: "Every segmentation is audited against the protected attributes; a failed or inconclusive audit cannot be published without a written, signed-off override.".into(),
        },
        Measure {
            title: "Retention",
            detail: "Records older than their retention period are deleted by `fairseg retention apply`; the trail is kept as proof.".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn policy() -> Policy {
        Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn columns() -> Vec<AttributeColumn> {
        vec![
            AttributeColumn {
                name: "home_store".into(),
                protected: false,
            },
            AttributeColumn {
                name: "sex".into(),
                protected: true,
            },
        ]
    }

    #[test]
    fn every_purpose_is_listed_with_its_basis_retention_and_recipients() {
        let p = policy();
        let r = record(&p, &columns());
        let names: Vec<&str> = r.purposes.iter().map(|x| x.name.as_str()).collect();
        let expected: Vec<&str> = p.purposes.keys().map(String::as_str).collect();
        assert_eq!(names, expected);
        for x in &r.purposes {
            let spec = &p.purposes[&x.name];
            assert_eq!(x.legal_basis, spec.legal_basis);
            assert_eq!(x.description, spec.description);
            assert!(!x.categories.is_empty());
            for c in &x.categories {
                let mut roles: Vec<String> = c
                    .read_with
                    .iter()
                    .flat_map(|perm| p.roles_with(*perm))
                    .map(str::to_owned)
                    .collect();
                roles.sort();
                roles.dedup();
                assert_eq!(c.recipients, roles, "{:?}", c.category);
                assert!(c.retention.days > 0);
            }
        }
        let seg = r
            .purposes
            .iter()
            .find(|x| x.name == "segmentation")
            .unwrap();
        let special = seg
            .categories
            .iter()
            .find(|c| c.category == Category::SpecialCategories)
            .unwrap();
        assert_eq!(
            special.recipients,
            p.roles_with(Permission::CustomersReadProtected)
        );
        assert!(special.aggregate_only);
        assert!(special.items.contains(&"ethnicity".to_string()));
        let attrs = &seg.categories[0];
        assert_eq!(
            attrs.items,
            ["home_store"],
            "protected columns are not ordinary attributes"
        );
        assert_eq!(attrs.retention.days, p.retention.inactive_customers_days);
        let transactions = seg
            .categories
            .iter()
            .find(|c| c.category == Category::Transactions)
            .unwrap();
        assert_eq!(transactions.retention.days, p.retention.transactions_days);
        assert_eq!(seg.consent_validity_days, Some(730));
        let analytics = r.purposes.iter().find(|x| x.name == "analytics").unwrap();
        assert_eq!(analytics.legal_basis_article, "GDPR Art. 6(1)(f)");
        assert_eq!(analytics.consent_validity_days, None);
    }

    #[test]
    fn the_controller_and_version_come_from_the_policy() {
        let p = policy();
        let r = record(&p, &[]);
        assert_eq!(r.controller.name, p.presentation.company_name);
        assert_eq!(r.controller.contact, p.presentation.company_contact);
        assert_eq!(r.controller.responsible, p.meta.owner);
        assert_eq!(r.policy_version, p.version);
        assert!(
            r.measures
                .iter()
                .any(|m| m.detail.contains(&p.fairness.min_cell_size.to_string()))
        );
        // Reproducible: the same inputs give the same record.
        assert_eq!(r, record(&p, &[]));
    }
}
