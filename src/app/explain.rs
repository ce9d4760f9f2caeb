//! "Why am I in this segment?": a customer's memberships explained, for the data-subject
//! export and the staff customer page. Reads what each run stored (settings, fitted
//! preprocessing, model, the member's detail) and the customer's own data as of the run's
//! `as_of` (attributes as held now, transactions up to that day), and calls the pure
//! explainer. Reads only: the callers record the view or export in the trail.

use serde_json::{Value, json};

use crate::app::runs::Reader;
use crate::customers::features::WindowActivity;
use crate::db::segmentation as store;
use crate::db::{Db, DbConnection, DbResult, features};
use crate::format;
use crate::policy::Currency;
use crate::segmentation::attributes::AttributeValue;
use crate::segmentation::explain::{
    self, Explanation, MemberDetail, RawValue, Run, RunModel, Subject, Wording,
};
use crate::segmentation::pipeline::{self, RunSummary};
use crate::segmentation::preprocess::ColumnValues;
use crate::segmentation::settings::RunSettings;
use crate::segmentation::status::RunStatus;

/// One membership of the customer, explained or with the reason it cannot be.
#[derive(Debug, Clone)]
pub struct Explained {
    pub run_id: i64,
    pub segment: i32,
    pub explanation: Result<Explanation, String>,
}

/// A feature's value in words: money in the currency, days and orders as whole numbers.
pub fn value_in_words(currency: &Currency) -> impl Fn(&str, f64) -> String + '_ {
    move |name: &str, v: f64| match name {
        "monetary" | "average_order_value" => format::money(v, currency),
        "recency_days" | "tenure_days" | "frequency" => format::int(v),
        _ => format::number(v, 2).trim_end_matches(".00").to_owned(),
    }
}

/// A feature as a sentence names it after "your": behavioural features read as what they
/// are ("your spending", "your last purchase"), others through the one label table.
fn sentence_label(name: &str) -> String {
    match name {
        "monetary" => "spending".into(),
        "recency_days" | "recency" => "last purchase".into(),
        "frequency" => "number of orders".into(),
        "average_order_value" => "average order".into(),
        "tenure_days" => "time as a customer".into(),
        other => format::label_lower(other),
    }
}

/// The currency of the policy version a run ran under (EUR when it cannot be read).
fn currency_of(conn: &mut DbConnection, version: &str) -> Currency {
    use crate::db::schema::policy_versions as pv;
    use diesel::prelude::*;
    let source: Option<String> = pv::table
        .find(version)
        .select(pv::content)
        .first(conn)
        .optional()
        .ok()
        .flatten();
    source
        .and_then(|s| toml::from_str::<toml::Value>(&s).ok())
        .and_then(|v| {
            v.get("presentation")?
                .get("currency")?
                .as_str()
                .map(str::to_owned)
        })
        .and_then(|c| Currency::parse(&c).ok())
        .unwrap_or_default()
}

/// Every membership of the customer (internal id; `attributes`: their stored attribute JSON)
/// in a run whose status `sees` accepts, by run, explained.
pub fn memberships(
    conn: &mut DbConnection,
    customer: i64,
    attributes: &str,
    sees: impl Fn(RunStatus) -> bool,
) -> DbResult<Vec<Explained>> {
    let mut out = Vec::new();
    for (run_id, segment, detail) in store::memberships_with_detail(conn, customer)? {
        if !store::run(conn, run_id)?.is_some_and(|r| sees(r.status)) {
            continue;
        }
        let explanation = one(
            conn,
            customer,
            attributes,
            run_id,
            segment,
            detail.as_deref(),
        )?;
        out.push(Explained {
            run_id,
            segment,
            explanation,
        });
    }
    Ok(out)
}

/// The export's membership objects (`run_id`, `segment`, `segment_name`) with an
/// `explanation` each.
pub fn export(conn: &mut DbConnection, customer: i64, attributes: &str) -> DbResult<Vec<Value>> {
    let mut listed = crate::db::dsr::segment_memberships_of(conn, customer)?;
    let explained = memberships(conn, customer, attributes, |_| true)?;
    for item in &mut listed {
        let run = item.get("run_id").and_then(Value::as_i64);
        let Some(e) = explained.iter().find(|e| Some(e.run_id) == run) else {
            continue;
        };
        item["explanation"] = match &e.explanation {
            Ok(x) => serde_json::to_value(x).unwrap_or(Value::Null),
            Err(reason) => json!({ "unavailable": reason }),
        };
    }
    Ok(listed)
}

/// The staff customer page's explanations: the memberships of the customer (external id) in
/// the runs the reader sees; none when the customer is not held.
pub fn of_customer(db: &Db, reader: Reader, external_id: &str) -> DbResult<Vec<Explained>> {
    db.read(|conn| {
        let Some(row) = crate::db::dsr::customer_by_external_id(conn, external_id)? else {
            return Ok(Vec::new());
        };
        memberships(conn, row.id, &row.attributes, |s| reader.sees(s))
    })
}

fn one(
    conn: &mut DbConnection,
    customer: i64,
    attributes: &str,
    run_id: i64,
    segment: i32,
    detail: Option<&str>,
) -> DbResult<Result<Explanation, String>> {
    let Some(run) = store::run(conn, run_id)? else {
        return Ok(Err("the run no longer exists".into()));
    };
    let Some(model) = store::model(conn, run_id)? else {
        return Ok(Err(
            "this run was made before fairseg stored what explains its segments".into(),
        ));
    };
    let parsed = (|| -> Result<_, String> {
        let settings: RunSettings =
            serde_json::from_str(&run.settings).map_err(|e| e.to_string())?;
        let summary: RunSummary = serde_json::from_str(run.summary.as_deref().unwrap_or(""))
            .map_err(|e| e.to_string())?;
        let model: RunModel = serde_json::from_str(&model).map_err(|e| e.to_string())?;
        let detail = detail.map(MemberDetail::parse).transpose()?;
        Ok((settings, summary, model, detail))
    })();
    let (settings, summary, model, detail) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("the run's stored model cannot be read: {e}"))),
    };
    let Some(transform) = summary.transform.as_ref() else {
        return Ok(Err("the run stored no preprocessing".into()));
    };
    // The customer's values as the run read them: behaviour as of its day, attributes now.
    let behaviour = features::for_customer(conn, customer, summary.as_of)?;
    let wanted = pipeline::attribute_features(&settings);
    let mut attribute_columns = pipeline::empty_attribute_columns(&settings, 1);
    let mut scratch = vec![AttributeValue::Missing; wanted.len()];
    if let Err(e) =
        pipeline::fill_attributes(attributes, &wanted, 0, &mut scratch, &mut attribute_columns)
    {
        return Ok(Err(format!(
            "the customer's attributes cannot be read: {e}"
        )));
    }
    let columns = pipeline::feature_columns(
        &settings,
        &[(behaviour, WindowActivity::default())],
        attribute_columns,
    );
    let values: Vec<RawValue> = columns
        .into_iter()
        .map(|c| match c.values {
            ColumnValues::Numeric(mut v) => RawValue::Number(v.pop().flatten()),
            ColumnValues::Categorical(mut v) => RawValue::Category(v.pop().flatten()),
        })
        .collect();
    let segments = store::segments(conn, run_id)?;
    let names: Vec<String> = segments.iter().map(|s| s.name.clone()).collect();
    let proposed: Vec<String> = segments.iter().map(|s| s.proposed_name.clone()).collect();
    let currency = currency_of(conn, &run.policy_version);
    let value = value_in_words(&currency);
    let wording = Wording {
        label: &sentence_label,
        value: &|name: &str, v: f64| match name {
            "recency_days" => format!("{} days ago", format::int(v)),
            "tenure_days" => format!("{} days", format::int(v)),
            _ => value(name, v),
        },
    };
    Ok(explain::explain(
        &Run {
            algorithm: settings.algorithm,
            transform,
            model: &model,
            rules: settings.rules.as_ref(),
            names: &names,
            proposed: &proposed,
        },
        &Subject {
            segment: segment as usize,
            values: &values,
            detail,
        },
        &wording,
    )
    .map_err(|e| e.to_string()))
}
