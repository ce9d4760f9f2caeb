//! Migrations apply, revert and re-apply cleanly on the backend under test.

use fairseg::db::Db;

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
