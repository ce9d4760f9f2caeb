//! What the form that starts a segmentation run offers: every feature a run may use, with its
//! kind, and the protected attributes and the policy's proxies shown but not selectable, so a
//! run is built by picking from a list, never by typing names.

use crate::customers::features::FEATURE_NAMES;
use crate::db::Db;
use crate::policy::Policy;
use crate::segmentation::settings::{ColumnKind, KnownColumn};

use super::runs::{RunError, known_columns};

/// One feature on the run form.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureChoice {
    /// The name a run request carries.
    pub name: String,
    /// What it holds, in words: "number", "category", "number, from purchases".
    pub kind: &'static str,
    /// Why it cannot be chosen (a protected attribute, or a proxy for one); `None` if it can.
    pub refused: Option<String>,
}

/// The features a run may be built on, the behavioural ones first, then the imported
/// attributes (dates left out: they are not features), each with its kind.
pub fn feature_choices(db: &Db, policy: &Policy) -> Result<Vec<FeatureChoice>, RunError> {
    Ok(choices(known_columns(db)?, policy))
}

fn choices(columns: Vec<KnownColumn>, policy: &Policy) -> Vec<FeatureChoice> {
    let mut out: Vec<FeatureChoice> = FEATURE_NAMES
        .iter()
        .map(|name| FeatureChoice {
            name: (*name).to_owned(),
            kind: "number, from purchases",
            refused: None,
        })
        .collect();
    for c in columns {
        if c.kind == ColumnKind::Date || out.iter().any(|f| f.name == c.name) {
            continue;
        }
        let protected = c.protected
            || policy
                .protected_attributes
                .contains_key(&c.name.to_ascii_lowercase());
        let refused = if protected {
            Some("protected attribute: never a feature".to_owned())
        } else {
            policy.proxies.get(&c.name).map(|p| {
                format!(
                    "stands in for {}: never a feature",
                    crate::format::label_lower(&p.stands_for)
                )
            })
        };
        out.push(FeatureChoice {
            name: c.name,
            kind: match c.kind {
                ColumnKind::Number => "number",
                _ => "category",
            },
            refused,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_attributes_and_proxies_are_listed_but_refused_and_dates_left_out() {
        let policy =
            Policy::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
                .unwrap();
        let proxy = policy.proxies.keys().next().cloned();
        let protected = policy.protected_attributes.keys().next().unwrap().clone();
        let mut columns = vec![
            KnownColumn {
                name: "region".into(),
                kind: ColumnKind::Category,
                protected: false,
            },
            KnownColumn {
                name: protected.clone(),
                kind: ColumnKind::Category,
                protected: true,
            },
            KnownColumn {
                name: "signup_date".into(),
                kind: ColumnKind::Date,
                protected: false,
            },
        ];
        if let Some(p) = &proxy {
            columns.push(KnownColumn {
                name: p.clone(),
                kind: ColumnKind::Category,
                protected: false,
            });
        }
        let got = choices(columns, &policy);
        assert_eq!(got[0].name, "recency_days");
        assert!(got.iter().all(|f| f.name != "signup_date"));
        let find = |n: &str| got.iter().find(|f| f.name == n).unwrap();
        assert_eq!(find("region").refused, None);
        assert_eq!(find("region").kind, "category");
        assert!(
            find(&protected)
                .refused
                .as_deref()
                .unwrap()
                .contains("protected")
        );
        if let Some(p) = proxy {
            assert!(
                find(&p)
                    .refused
                    .as_deref()
                    .unwrap()
                    .starts_with("stands in for")
            );
        }
    }
}
