//! The spool directory: where an uploaded file waits, on disk, for the two passes of its import.

use crate::config::ConfigError;

/// Spool files are named `upload-….csv`; only such files are removed at start.
const SPOOL_PREFIX: &str = "upload-";

/// Creates the spool directory (readable by the server's user only) and removes the uploads
/// a crashed server left in it; returns how many were removed.
pub fn prepare(dir: &std::path::Path) -> Result<usize, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        setting: "spool-dir (FAIRSEG_SPOOL_DIR)",
        reason,
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| invalid(format!("cannot restrict {}: {e}", dir.display())))?;
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| invalid(format!("cannot read {}: {e}", dir.display())))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_spool = name.to_str().is_some_and(|n| n.starts_with(SPOOL_PREFIX));
        if is_spool && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| {
                invalid(format!(
                    "cannot remove the leftover upload {}: {e}",
                    entry.path().display()
                ))
            })?;
            removed += 1;
        }
    }
    // Proves the directory is writable now rather than at the first upload.
    file(dir).map_err(|e| invalid(format!("cannot write in {}: {e}", dir.display())))?;
    Ok(removed)
}

/// A new spool file in `dir`, deleted when dropped.
pub fn file(dir: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(SPOOL_PREFIX)
        .suffix(".csv")
        .tempfile_in(dir)
}
