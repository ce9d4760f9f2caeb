//! Migrations apply, revert and re-apply cleanly on the backend under test.

use std::collections::BTreeSet;

use fairseg::db::{Db, DbConnection};

use crate::helpers::{TestDatabase, settings_for};

/// Reverts the applied migrations newest first, down to and including `version`: the schema
/// as it was just before that migration, for a test to write rows the old way.
fn revert_through(conn: &mut DbConnection, version: &str) {
    use diesel_migrations::MigrationHarness;
    loop {
        let reverted = match conn {
            DbConnection::Sqlite(c) => c.revert_last_migration(fairseg::db::SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.revert_last_migration(fairseg::db::POSTGRES_MIGRATIONS),
        }
        .unwrap_or_else(|e| panic!("reverting towards {version}: {e}"))
        .to_string();
        if reverted == version {
            return;
        }
    }
}

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
                     AND table_name <> '__diesel_schema_migrations' \
                     AND table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition)",
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

/// KPI rows logged when series were keyed by segment name join their run's segment when the
/// series key becomes (run, segment number): by the name they were logged under, the
/// segment's proposed name (renamed since) or the "(segment N)" form of a duplicate name.
/// None is lost, and the log still refuses updates afterwards.
#[test]
fn kpi_rows_logged_by_name_migrate_to_their_runs_segments_and_none_is_lost() {
    use diesel::RunQueryDsl;
    const KEYED: &str = "20261201000001";
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let db = Db::connect(&settings_for(&database.url).database_url).unwrap();
    let mut conn = db.conn().unwrap();
    revert_through(&mut conn, KEYED);
    let sql = |c: &mut DbConnection, q: &str| {
        diesel::sql_query(q).execute(c).unwrap();
    };
    sql(
        &mut conn,
        "INSERT INTO segmentation_runs (id, algorithm, settings, purpose, policy_version, status, \
         stage, progress, created_by, created_at) VALUES \
         (1, 'kmeans', '{}', 'segmentation', 'v', 'retired', 'done', 1, 't', '2025-01-01 00:00:00'), \
         (2, 'kmeans', '{}', 'segmentation', 'v', 'published', 'done', 1, 't', '2025-04-01 00:00:00')",
    );
    sql(
        &mut conn,
        "INSERT INTO segments (run_id, segment, name, proposed_name, size, profile, valuation) VALUES \
         (1, 0, 'Loyal', 'Loyal', 40, '{}', '{}'), \
         (2, 0, 'Steady buyers', 'Loyal', 40, '{}', '{}'), \
         (2, 1, 'Loyal', 'Big spenders', 12, '{}', '{}'), \
         (2, 2, 'Loyal', 'Loyal too', 12, '{}', '{}'), \
         (2, 3, 'Browsers', 'Window shoppers', 12, '{}', '{}')",
    );
    // (id, run, label logged): run 1's Loyal by its name; run 2's segment 1 by its current
    // name; run 2's segment 2 by the duplicate-name form; a label no segment of run 2 has
    // now; `all`; run 2's segment 3 by its proposed name (renamed since); and run 2's segment 0 by its current name (row 7, below).
    let logged = [
        (1, Some(1), "Loyal"),
        (2, Some(2), "Loyal"),
        (3, Some(2), "Loyal (segment 2)"),
        (4, Some(2), "Gone"),
        (5, None, "all"),
        (6, Some(1), "Loyal"),
        (8, Some(2), "Window shoppers"),
    ];
    for (id, run, label) in logged {
        let run_sql = run.map_or("NULL".to_owned(), |r: i64| r.to_string());
        sql(
            &mut conn,
            &format!(
                "INSERT INTO kpi_evaluations (id, kpi, definition_version, policy_version, run_id, \
                 segment, period_kind, period_start, period_end, value, basis, status, \
                 evaluated_at, evaluated_by) VALUES ({id}, 'segment_size', 'v1', 'v', {run_sql}, \
                 '{label}', 'month', '2025-03-01', '2025-03-31', 40, 40, 'no_target', \
                 '2025-04-01 00:00:00', 'system')"
            ),
        );
    }
    sql(
        &mut conn,
        "INSERT INTO kpi_evaluations (id, kpi, definition_version, policy_version, run_id, \
         segment, period_kind, period_start, period_end, value, basis, status, evaluated_at, \
         evaluated_by) VALUES (7, 'segment_size', 'v1', 'v', 2, 'Steady buyers', 'month', \
         '2025-04-01', '2025-04-30', 40, 40, 'no_target', '2025-05-01 00:00:00', 'system')",
    );
    drop(conn);
    db.migrate().unwrap();
    let rows = db
        .read(|c| fairseg::db::kpi::log(c, &fairseg::db::kpi::LogFilter::default()))
        .unwrap();
    let numbers: Vec<(i64, Option<i32>)> = rows.iter().map(|r| (r.id, r.segment_number)).collect();
    assert_eq!(
        numbers,
        [
            (1, Some(0)),
            // Segments 1 and 2 of run 2 share the name "Loyal": the evaluator logged the first
            // under it and the second as "Loyal (segment 2)". A current name wins over the
            // proposed name segment 0 was renamed from.
            (2, Some(1)),
            (3, Some(2)),
            (4, None),
            (5, None),
            (6, Some(0)),
            (7, Some(0)),
            // Logged under its proposed name, renamed since.
            (8, Some(3)),
        ]
    );
    assert_eq!(
        rows.iter().map(|r| r.segment.as_str()).collect::<Vec<_>>()[3],
        "Gone"
    );
    let refused = db.write::<_, fairseg::db::DbError>(|c| {
        Ok(diesel::sql_query("UPDATE kpi_evaluations SET value = 0").execute(c))
    });
    assert!(refused.unwrap().is_err(), "the log refuses updates again");
}

/// On PostgreSQL each run's memberships become a partition of their own (2026-12-23-000201):
/// the memberships written before the migration are all still there after it and after it is
/// reverted, and runs written after it are read like the rest, a customer's across runs too.
#[test]
fn memberships_survive_the_move_to_one_partition_per_run_and_back() {
    use diesel::RunQueryDsl;
    use fairseg::db::segmentation as store;
    const PER_RUN: &str = "20261223000201";
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let db = Db::connect(&settings_for(&database.url).database_url).unwrap();
    let mut conn = db.conn().unwrap();
    revert_through(&mut conn, PER_RUN);
    diesel::sql_query(
        "INSERT INTO segmentation_runs (id, algorithm, settings, purpose, policy_version, status, \
         stage, progress, created_by, created_at) VALUES \
         (1, 'kmeans', '{}', 'segmentation', 'v', 'retired', 'done', 1, 't', '2025-01-01 00:00:00'), \
         (2, 'rfm', '{}', 'segmentation', 'v', 'draft', 'done', 1, 't', '2025-02-01 00:00:00'), \
         (3, 'kmeans', '{}', 'segmentation', 'v', 'running', 'load', 0, 't', '2025-03-01 00:00:00')",
    )
    .execute(&mut *conn)
    .unwrap();
    diesel::sql_query(
        "INSERT INTO segment_memberships (run_id, customer_id, segment, detail) VALUES \
         (1, 10, 0, NULL), (1, 11, 1, NULL), (2, 10, 2, '555'), (2, 12, 0, '111')",
    )
    .execute(&mut *conn)
    .unwrap();
    drop(conn);
    db.migrate().unwrap();
    let at = fairseg::db::now();
    db.write::<_, fairseg::db::DbError>(|c| {
        store::insert_memberships(c, 3, &[(12, 1), (10, 0), (11, 1)], None)?;
        store::complete(
            c,
            3,
            &store::Completed {
                included: 3,
                excluded: "{}",
                summary: "{}",
                segments: &[],
                model: "{}",
                previous_run_id: None,
                stability_ari: None,
                finished_at: at,
            },
        )
    })
    .unwrap();
    let read = |db: &Db| {
        db.read(|c| {
            Ok((
                store::memberships(c, 1)?,
                store::memberships(c, 2)?,
                store::memberships(c, 3)?,
                store::memberships_with_detail(c, 10)?,
            ))
        })
        .unwrap()
    };
    let expected = (
        vec![(10, 0), (11, 1)],
        vec![(10, 2), (12, 0)],
        vec![(10, 0), (11, 1), (12, 1)],
        vec![(1, 0, None), (2, 2, Some("555".to_owned())), (3, 0, None)],
    );
    assert_eq!(read(&db), expected);
    // The run's rows are written once: writing them again is refused, whatever the backend.
    let again = db.write::<_, fairseg::db::DbError>(|c| {
        store::insert_memberships(c, 3, &[(10, 1)], None)?;
        store::complete(
            c,
            3,
            &store::Completed {
                included: 1,
                excluded: "{}",
                summary: "{}",
                segments: &[],
                model: "{}",
                previous_run_id: None,
                stability_ari: None,
                finished_at: at,
            },
        )
    });
    assert!(again.is_err());
    assert_eq!(read(&db), expected, "the refused write left nothing");
    // Back down through the move (the migrations after it go first).
    let mut conn = db.conn().unwrap();
    revert_through(&mut conn, PER_RUN);
    drop(conn);
    assert_eq!(read(&db), expected, "reverted, the rows are all kept");
    db.migrate().unwrap();
    assert_eq!(read(&db), expected);
}

#[derive(diesel::QueryableByName, PartialEq, Debug)]
struct KeptCustomer {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    external_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pseudonym: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    attributes: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    protected: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    consents: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    transactions: i64,
}

/// On SQLite a customer's id becomes the rowid (2026-12-25-000101, a rebuild of the customers
/// and protected attributes tables under the foreign keys of consents and transactions): the
/// customers, their protected attributes, consents and transactions written before it are all
/// still there, with the same ids, after it and after it is reverted; the unique keys still
/// refuse a duplicate, and erasing a customer still takes their rows along.
#[test]
fn customers_and_what_references_them_survive_the_move_to_rowid_ids_and_back() {
    use diesel::RunQueryDsl;
    const ROWID: &str = "20261225000101";
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let db = Db::connect(&settings_for(&database.url).database_url).unwrap();
    let mut conn = db.conn().unwrap();
    revert_through(&mut conn, ROWID);
    for sql in [
        "INSERT INTO customers (id, external_id, pseudonym, attributes, created_at, updated_at) \
         VALUES (7, 'C7', 'c_7', '{\"age\":31}', '2026-01-01 00:00:00', '2026-01-01 00:00:00'), \
         (9, 'C9', 'c_9', '{\"age\":44}', '2026-01-01 00:00:00', '2026-01-02 00:00:00'), \
         (12, 'C12', 'c_12', '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        "INSERT INTO customer_protected (customer_id, attributes) VALUES \
         (7, '{\"sex\":\"F\"}'), (12, '{\"sex\":\"M\"}')",
        "INSERT INTO consent_events (id, customer_id, purpose, status, recorded_at, recorded_by, \
         entered_at) VALUES (1, 7, 'segmentation', 'granted', '2026-01-03 00:00:00', 't', \
         '2026-01-03 00:00:00'), (2, 9, 'segmentation', 'granted', '2026-01-03 00:00:00', 't', \
         '2026-01-03 00:00:00'), (3, 7, 'marketing', 'withdrawn', '2026-01-04 00:00:00', 't', \
         '2026-01-04 00:00:00')",
        "INSERT INTO transactions (id, customer_id, occurred_at, amount, imported_at) VALUES \
         (1, 9, '2026-02-01 00:00:00', 12.5, '2026-02-02 00:00:00'), \
         (2, 12, '2026-02-01 00:00:00', 3.0, '2026-02-02 00:00:00')",
    ] {
        diesel::sql_query(sql).execute(&mut *conn).unwrap();
    }
    drop(conn);
    let read = |db: &Db| {
        db.read(|c| {
            Ok(diesel::sql_query(
                "SELECT c.id, c.external_id, c.pseudonym, c.attributes, p.attributes AS protected, \
                 (SELECT COUNT(*) FROM consent_events e WHERE e.customer_id = c.id) AS consents, \
                 (SELECT COUNT(*) FROM transactions t WHERE t.customer_id = c.id) AS transactions \
                 FROM customers c LEFT JOIN customer_protected p ON p.customer_id = c.id \
                 ORDER BY c.id",
            )
            .load::<KeptCustomer>(c)?)
        })
        .unwrap()
    };
    let before = read(&db);
    assert_eq!(before.len(), 3);
    assert_eq!(
        before
            .iter()
            .map(|c| (c.id, c.consents, c.transactions))
            .collect::<Vec<_>>(),
        vec![(7, 2, 0), (9, 1, 1), (12, 0, 1)]
    );
    db.migrate().unwrap();
    assert_eq!(read(&db), before, "moved to rowid ids, every row is kept");
    let refused = db.write::<_, fairseg::db::DbError>(|c| {
        Ok(diesel::sql_query(
            "INSERT INTO customers (id, external_id, pseudonym, attributes, created_at, \
             updated_at) VALUES (13, 'C7', 'c_13', '{}', '2026-01-01 00:00:00', \
             '2026-01-01 00:00:00')",
        )
        .execute(c))
    });
    assert!(refused.unwrap().is_err(), "external ids are still unique");
    let mut conn = db.conn().unwrap();
    revert_through(&mut conn, ROWID);
    drop(conn);
    assert_eq!(read(&db), before, "reverted, every row is kept");
    db.migrate().unwrap();
    assert_eq!(read(&db), before);
    // Erasing a customer still takes their protected attributes and consents along.
    db.write::<_, fairseg::db::DbError>(|c| {
        diesel::sql_query("DELETE FROM customers WHERE id = 7").execute(c)?;
        Ok(())
    })
    .unwrap();
    let after = read(&db);
    assert_eq!(after.iter().map(|c| c.id).collect::<Vec<_>>(), vec![9, 12]);
    let left: Vec<KeptCustomer> = db
        .read(|c| {
            Ok(diesel::sql_query(
                "SELECT CAST(7 AS BIGINT) AS id, '' AS external_id, '' AS pseudonym, '' AS attributes, \
                 (SELECT attributes FROM customer_protected WHERE customer_id = 7) AS protected, \
                 (SELECT COUNT(*) FROM consent_events WHERE customer_id = 7) AS consents, \
                 CAST(0 AS BIGINT) AS transactions",
            )
            .load(c)?)
        })
        .unwrap();
    assert_eq!((left[0].protected.clone(), left[0].consents), (None, 0));
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// A customer's external id and pseudonym compare byte by byte on both backends, whatever the
/// PostgreSQL cluster's locale: there they take the "C" collation, so their unique indexes,
/// which a first large import rebuilds, sort without strcoll (about three times faster at a
/// million pseudonyms than under en_US.UTF-8), and order as SQLite's BINARY columns do.
#[test]
fn customer_ids_compare_byte_by_byte_whatever_the_clusters_locale() {
    use diesel::RunQueryDsl;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let db = Db::connect(&settings_for(&database.url).database_url).unwrap();
    let ids = ["b", "B", "a-2", "a1", "_z", "é", "e"];
    db.write(|c| -> Result<(), fairseg::db::DbError> {
        for (n, id) in ids.iter().enumerate() {
            diesel::sql_query(
                "INSERT INTO customers (id, external_id, pseudonym, attributes, created_at, \
                 updated_at) VALUES ($1, $2, $3, '{}', '2026-01-01 00:00:00', \
                 '2026-01-01 00:00:00')",
            )
            .bind::<diesel::sql_types::BigInt, _>(n as i64 + 1)
            .bind::<diesel::sql_types::Text, _>(*id)
            .bind::<diesel::sql_types::Text, _>(format!("p{id}"))
            .execute(c)?;
        }
        Ok(())
    })
    .unwrap();
    let (ordered, collations) = db
        .read(|c| {
            let ordered = diesel::sql_query(
                "SELECT external_id AS value FROM customers ORDER BY external_id",
            )
            .load::<Text>(c)?;
            let collations = match c {
                DbConnection::Postgres(_) => Some(diesel::sql_query(
                    "SELECT column_name || ' ' || COALESCE(collation_name, 'default') AS value \
                     FROM information_schema.columns \
                     WHERE table_name = 'customers' AND column_name IN ('external_id', 'pseudonym') \
                     ORDER BY column_name",
                )
                .load::<Text>(c)?),
                DbConnection::Sqlite(_) => None,
            };
            Ok((ordered, collations))
        })
        .unwrap();
    let mut by_bytes = ids.to_vec();
    by_bytes.sort_unstable();
    assert_eq!(
        ordered.iter().map(|t| t.value.as_str()).collect::<Vec<_>>(),
        by_bytes,
        "external ids order by their bytes"
    );
    if let Some(collations) = collations {
        assert_eq!(
            collations.into_iter().map(|t| t.value).collect::<Vec<_>>(),
            vec!["external_id C", "pseudonym C"],
            "the two identifier columns carry the C collation"
        );
    }
}
