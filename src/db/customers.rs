//! Customer lookups shared by imports, the consent ledger and data-subject requests.

use diesel::prelude::*;

use super::schema::customers;
use super::{DbConnection, DbResult};
use crate::customers::CustomerId;

/// The internal id of a customer, if they are known.
pub fn find_id(conn: &mut DbConnection, id: &CustomerId) -> DbResult<Option<i64>> {
    Ok(customers::table
        .filter(customers::external_id.eq(id.as_str()))
        .select(customers::id)
        .first::<i64>(conn)
        .optional()?)
}

/// The next free id of a table whose ids the server assigns. Call it inside a write
/// transaction (`Db::write`), which serialises writers, so two imports never take the same ids.
pub fn next_id(conn: &mut DbConnection, table: IdTable) -> DbResult<i64> {
    use super::schema::{consent_events, transactions};
    use diesel::dsl::max;
    let current: Option<i64> = match table {
        IdTable::Customers => customers::table.select(max(customers::id)).first(conn)?,
        IdTable::Transactions => transactions::table
            .select(max(transactions::id))
            .first(conn)?,
        IdTable::ConsentEvents => consent_events::table
            .select(max(consent_events::id))
            .first(conn)?,
    };
    Ok(current.unwrap_or(0) + 1)
}

#[derive(Debug, Clone, Copy)]
pub enum IdTable {
    Customers,
    Transactions,
    ConsentEvents,
}
