//! One customer as staff see them: attributes (protected ones only for roles allowed to read
//! them) and behavioural features as of a date. Each view is recorded in the trail, by
//! pseudonym, in the same transaction that reads the data.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use super::dsr::{DsrError, locate};
use crate::customers::features::BehaviouralFeatures;
use crate::customers::{CustomerId, Pseudonymizer};
use crate::db::dsr as store;
use crate::db::{Db, features, trail as trail_store};
use crate::trail::{Actor, NewEntry};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    pub pseudonym: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// Present only for roles with `customers:read_protected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub protected_attributes: Option<Value>,
    /// The day the features are computed as of (YYYY-MM-DD).
    pub as_of: String,
    pub features: BehaviouralFeatures,
}

/// One customer's attributes and features as of `as_of`, recorded in the trail
/// (`customer.viewed`).
pub fn view(
    db: &Db,
    pseudonyms: &Pseudonymizer,
    policy_version: &str,
    actor: &Actor,
    raw_id: &str,
    as_of: NaiveDate,
    with_protected: bool,
) -> Result<CustomerView, DsrError> {
    let id = CustomerId::parse(raw_id).map_err(DsrError::InvalidId)?;
    db.write(|conn| {
        let row = locate(conn, pseudonyms, &id)?;
        let protected = if with_protected {
            Some(
                store::protected_attributes(conn, row.id)?
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_else(|| json!({})),
            )
        } else {
            None
        };
        let view = CustomerView {
            customer_id: row.external_id,
            pseudonym: row.pseudonym.clone(),
            attributes: serde_json::from_str(&row.attributes).unwrap_or_else(|_| json!({})),
            protected_attributes: protected,
            as_of: as_of.format("%Y-%m-%d").to_string(),
            features: features::for_customer(conn, row.id, as_of)?,
        };
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "customer.viewed",
                &row.pseudonym,
                json!({"protected_attributes": with_protected, "as_of": view.as_of}),
            ),
            policy_version,
        )?;
        Ok(view)
    })
}
