//! Where a run is in its life: queued, running, then failed or a draft; a draft is audited,
//! published, and retired when another run is published.

use serde::{Deserialize, Serialize};

/// A run's status. Stored and shown as its lowercase name (`as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Failed,
    Draft,
    Audited,
    Published,
    Retired,
}

/// A stored status that is none of [`RunStatus`]'s names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a run status")]
pub struct UnknownStatus(pub String);

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Failed,
        RunStatus::Draft,
        RunStatus::Audited,
        RunStatus::Published,
        RunStatus::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Failed => "failed",
            RunStatus::Draft => "draft",
            RunStatus::Audited => "audited",
            RunStatus::Published => "published",
            RunStatus::Retired => "retired",
        }
    }

    /// Not finished yet: the run's page follows its progress.
    pub fn in_progress(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// Finished with segments (whatever came after): what an audit can read.
    pub fn has_segments(self) -> bool {
        matches!(
            self,
            RunStatus::Draft | RunStatus::Audited | RunStatus::Published | RunStatus::Retired
        )
    }

    /// Published now or before: visible to everyone who reads segments, not only to those
    /// who run segmentations.
    pub fn is_public(self) -> bool {
        matches!(self, RunStatus::Published | RunStatus::Retired)
    }
}

impl std::str::FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(raw: &str) -> Result<RunStatus, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownStatus(raw.to_owned()))
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_from_their_names_and_serialise_the_same() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!("done".parse::<RunStatus>().is_err());
    }
}
