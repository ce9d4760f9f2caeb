//! The staff customer page (`customers:read`): the customer's attributes (protected ones only
//! for `customers:read_protected`) and behavioural features today, and, for roles that read
//! segments, why the customer is in each segment of the runs they may see (GDPR Art.
//! 15(1)(h)). The view is in the trail, by pseudonym.

use actix_web::{HttpResponse, web};
use askama::Template;

use super::error::{AppError, blocking};
use super::format;
use super::layout::{Layout, State, render};
use crate::app::customers as view;
use crate::app::explain::{self as explaining, Explained, value_in_words};
use crate::app::runs::Reader;
use crate::auth::CurrentUser;
use crate::policy::{Currency, Permission};
use crate::segmentation::explain::{Explanation, PointKind};
use crate::trail::Actor;

/// One row of a table: a name and its value in words.
pub struct Fact {
    pub name: String,
    pub value: String,
}

/// One feature of an explanation.
pub struct FeatureRow {
    pub name: String,
    pub value: String,
    pub standardised: String,
}

/// One membership explained, for the page.
pub struct ExplanationView {
    pub run_id: i64,
    pub algorithm: String,
    pub segment_name: String,
    pub sentence: String,
    pub consistent: bool,
    pub features: Vec<FeatureRow>,
    pub facts: Vec<Fact>,
    /// Why there is no explanation (a run older than explanations, unreadable data).
    pub unavailable: Option<String>,
}

#[derive(Template)]
#[template(path = "customers/customer.html")]
struct CustomerPage {
    layout: Layout,
    customer_id: String,
    pseudonym: String,
    attributes: Vec<Fact>,
    protected: Option<Vec<Fact>>,
    features: Vec<Fact>,
    as_of: String,
    reads_segments: bool,
    /// Whether the user may open a run's page (`segments:run`).
    run_links: bool,
    explanations: Vec<ExplanationView>,
}

fn facts(v: &serde_json::Value) -> Vec<Fact> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| Fact {
                    name: format::label(k),
                    value: match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "–".into(),
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

fn distance(d: f64) -> String {
    format::number(d, 2)
}

fn view_of(e: &Explanation, currency: &Currency) -> ExplanationView {
    let value = value_in_words(currency);
    let features = e
        .features
        .iter()
        .map(|f| FeatureRow {
            name: format::label(&f.feature),
            value: match (&f.category, f.value) {
                (Some(c), _) => c.clone(),
                (None, Some(v)) => value(&f.feature, v),
                (None, None) => "–".into(),
            } + if f.imputed { " (filled in)" } else { "" },
            standardised: f.standardised.map_or_else(
                || "–".into(),
                |z| {
                    let log = if f.log_transformed {
                        " (log scale)"
                    } else {
                        ""
                    };
                    format!("{}{log}", format::number(z, 2))
                },
            ),
        })
        .collect();
    let mut facts = Vec::new();
    if let Some(d) = &e.distances {
        facts.push(Fact {
            name: "Distance to its group's centre".into(),
            value: distance(d.own),
        });
        if let Some(n) = &d.next_nearest {
            facts.push(Fact {
                name: "Next closest group".into(),
                value: format!("{} (distance {})", n.name, distance(n.distance)),
            });
        }
    }
    for p in e.posteriors.iter().flatten() {
        facts.push(Fact {
            name: format!("Probability of ‘{}’", p.name),
            value: format::percent(p.probability),
        });
    }
    if let Some(r) = &e.rule {
        facts.push(Fact {
            name: match r.rule {
                Some(n) => format!("Rule {n} matched"),
                None => "Rule matched".into(),
            },
            value: r.text.clone(),
        });
    }
    if let Some(s) = &e.rfm {
        for (name, score) in [
            ("Recency score", s.recency),
            ("Frequency score", s.frequency),
            ("Monetary score", s.monetary),
        ] {
            facts.push(Fact {
                name: name.into(),
                value: format!("{score} of 5"),
            });
        }
    }
    if let Some(d) = &e.density {
        facts.push(Fact {
            name: "Place in the data".into(),
            value: match d.point {
                PointKind::Core => "in a dense region",
                PointKind::Border => "at the edge of a dense region",
                PointKind::Noise => "in no dense region",
            }
            .into(),
        });
        facts.push(Fact {
            name: "Distance to the nearest core customer".into(),
            value: format!("{} (reach {})", distance(d.nearest_core), distance(d.eps)),
        });
    }
    ExplanationView {
        run_id: 0,
        algorithm: format::label(&e.algorithm),
        segment_name: e.segment_name.clone(),
        sentence: e.sentence.clone(),
        consistent: e.consistent,
        features,
        facts,
        unavailable: None,
    }
}

fn explanation_view(x: &Explained, currency: &Currency) -> ExplanationView {
    match &x.explanation {
        Ok(e) => ExplanationView {
            run_id: x.run_id,
            ..view_of(e, currency)
        },
        Err(reason) => ExplanationView {
            run_id: x.run_id,
            algorithm: String::new(),
            segment_name: format!("Segment {}", x.segment + 1),
            sentence: String::new(),
            consistent: true,
            features: Vec::new(),
            facts: Vec::new(),
            unavailable: Some(reason.clone()),
        },
    }
}

/// The customer's page.
#[tracing::instrument(skip(state, user))]
pub async fn page(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let with_protected = user.can(Permission::CustomersReadProtected);
    let reads_segments = user.can(Permission::SegmentsRead);
    let reader = if user.can(Permission::SegmentsRun) {
        Reader::Analyst
    } else {
        Reader::Everyone
    };
    let today = crate::db::now().date();
    let (db, pseudonyms, version, actor, raw) = (
        state.db.clone(),
        state.pseudonyms.clone(),
        state.policy.version.clone(),
        Actor::user(&user.email),
        id.clone(),
    );
    let customer = blocking(move || {
        view::view(
            &db,
            &pseudonyms,
            &version,
            &actor,
            &raw,
            today,
            with_protected,
        )
    })
    .await?;
    let explained = if reads_segments {
        let (db, raw) = (state.db.clone(), id.clone());
        blocking(move || explaining::of_customer(&db, reader, &raw)).await?
    } else {
        Vec::new()
    };
    let currency = &state.policy.currency;
    let f = &customer.features;
    let feature_facts = [
        ("recency_days", f.recency_days.map(|d| d as f64)),
        ("frequency", Some(f.frequency as f64)),
        ("monetary", Some(f.monetary)),
        ("average_order_value", f.average_order_value),
        ("tenure_days", f.tenure_days.map(|d| d as f64)),
    ]
    .into_iter()
    .map(|(name, v)| Fact {
        name: format::label(name),
        value: v.map_or_else(|| "–".into(), |v| value_in_words(currency)(name, v)),
    })
    .collect();
    let page = CustomerPage {
        layout: Layout::new(&state, Some(&user), "Customer", "/customers"),
        customer_id: customer.customer_id.clone(),
        pseudonym: customer.pseudonym.clone(),
        attributes: facts(&customer.attributes),
        protected: customer.protected_attributes.as_ref().map(facts),
        features: feature_facts,
        as_of: format::date(&today),
        reads_segments,
        run_links: reader == Reader::Analyst,
        explanations: explained
            .iter()
            .map(|x| explanation_view(x, currency))
            .collect(),
    };
    Ok(render(&page))
}
