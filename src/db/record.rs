//! What the record of processing reads from storage: the customer attribute columns on file.

use diesel::prelude::*;

use super::schema::attribute_columns;
use super::{DbConnection, DbResult};

/// `(name, protected)` of every attribute column seen in an import, by name.
pub fn attribute_columns(conn: &mut DbConnection) -> DbResult<Vec<(String, bool)>> {
    Ok(attribute_columns::table
        .order(attribute_columns::name.asc())
        .select((attribute_columns::name, attribute_columns::protected))
        .load(conn)?)
}
