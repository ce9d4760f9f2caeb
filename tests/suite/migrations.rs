//! Migrations apply, revert and re-apply cleanly on the backend under test.

use std::collections::BTreeSet;

use fairseg::db::{Db, DbConnection};

use crate::helpers::{TestDatabase, settings_for};

#[test]
fn migrations_go_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let settings = settings_for(&database.url);
    let db = Db::connect(&settings.database_url).unwrap();
    assert!(
        db.migrate().unwrap().is_empty(),
        "connect applied everything"
    );
    let reverted = db.revert_all_migrations().unwrap();
    assert!(reverted >= 1);
    let applied = db.migrate().unwrap();
    assert_eq!(
        applied.len(),
        reverted,
        "every reverted migration is applied again"
    );
    // The schema works after the round trip: the trail takes an entry and verifies.
    let policy = fairseg::policy::Policy::load(&settings.policies_dir).unwrap();
    fairseg::startup::prepare(&db, &policy, &settings).unwrap();
    let report = db.read(fairseg::db::trail::verify).unwrap();
    assert!(report.entries >= 1 && report.first_bad.is_none());
}

#[derive(diesel::QueryableByName, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct TableColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

/// The tables and columns `src/db/schema.rs` declares, read from its `table!` blocks.
fn schema_columns(schema: &str) -> BTreeSet<(String, String)> {
    let mut columns = BTreeSet::new();
    let mut table: Option<&str> = None;
    for line in schema.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" (").filter(|_| line.ends_with('{')) {
            table = Some(name);
        } else if let (Some(t), Some((column, _))) = (table, line.split_once(" -> ")) {
            columns.insert((t.to_string(), column.to_string()));
        } else if line == "}" {
            table = None;
        }
    }
    columns
}

/// The two backends' migrations are written apart (their dialects differ); the code reads
/// both through one schema. Each backend's run of the suite checks that its migrated tables
/// and columns are exactly the schema's, so neither can drift from the other unnoticed.
#[test]
fn the_migrated_tables_and_columns_are_exactly_those_of_the_schema() {
    use diesel::RunQueryDsl;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let db = Db::connect(&settings_for(&database.url).database_url).unwrap();
    let found: BTreeSet<(String, String)> = db
        .read(|conn| {
            let rows: Vec<TableColumn> = match conn {
                DbConnection::Sqlite(c) => diesel::sql_query(
                    "SELECT m.name AS table_name, p.name AS column_name \
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                     AND m.name <> '__diesel_schema_migrations'",
                )
                .load(c)?,
                DbConnection::Postgres(c) => diesel::sql_query(
                    "SELECT table_name::text AS table_name, column_name::text AS column_name \
                     FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND table_name <> '__diesel_schema_migrations'",
                )
                .load(c)?,
            };
            Ok(rows
                .into_iter()
                .map(|r| (r.table_name, r.column_name))
                .collect())
        })
        .unwrap();
    let declared = schema_columns(include_str!("../../src/db/schema.rs"));
    assert!(declared.len() > 100, "the schema was read: {declared:?}");
    let missing: Vec<_> = declared.difference(&found).collect();
    let unknown: Vec<_> = found.difference(&declared).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "declared in schema.rs but not migrated: {missing:?}; migrated but not declared: {unknown:?}"
    );
}
