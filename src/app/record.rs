//! The record of processing activities (GDPR Art. 30) of the policy in force, with the
//! attribute columns on file.

use crate::db::{self, Db, DbError};
use crate::policy::Policy;
use crate::policy::record::{AttributeColumn, Record, record};

/// Builds the record from the policy and the attribute columns in the database.
pub fn build(db: &Db, policy: &Policy) -> Result<Record, DbError> {
    let columns = db.read(db::record::attribute_columns)?;
    let columns: Vec<AttributeColumn> = columns
        .into_iter()
        .map(|(name, protected)| AttributeColumn { name, protected })
        .collect();
    Ok(record(policy, &columns))
}
