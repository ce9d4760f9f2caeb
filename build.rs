// Migrations are embedded in the binary (diesel_migrations::embed_migrations!); without this,
// adding a migration directory would not trigger a rebuild and the binary would silently carry
// the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
