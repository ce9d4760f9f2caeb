use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Everything a role can be allowed to do. Routes name one of these; roles in the policy list
/// them by their `area:action` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    UsersManage,
    TrailRead,
    PolicyRead,
    CustomersRead,
    CustomersReadProtected,
    CustomersImport,
    ConsentRecord,
    DsrManage,
    SegmentsRead,
    SegmentsRun,
    SegmentsMembers,
    SegmentsPublish,
    SegmentsStrategy,
    AuditsRead,
    AuditsOverride,
    AuditsSign,
    KpiRead,
    KpiEvaluate,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::UsersManage,
        Permission::TrailRead,
        Permission::PolicyRead,
        Permission::CustomersRead,
        Permission::CustomersReadProtected,
        Permission::CustomersImport,
        Permission::ConsentRecord,
        Permission::DsrManage,
        Permission::SegmentsRead,
        Permission::SegmentsRun,
        Permission::SegmentsMembers,
        Permission::SegmentsPublish,
        Permission::SegmentsStrategy,
        Permission::AuditsRead,
        Permission::AuditsOverride,
        Permission::AuditsSign,
        Permission::KpiRead,
        Permission::KpiEvaluate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersManage => "users:manage",
            Permission::TrailRead => "trail:read",
            Permission::PolicyRead => "policy:read",
            Permission::CustomersRead => "customers:read",
            Permission::CustomersReadProtected => "customers:read_protected",
            Permission::CustomersImport => "customers:import",
            Permission::ConsentRecord => "consent:record",
            Permission::DsrManage => "dsr:manage",
            Permission::SegmentsRead => "segments:read",
            Permission::SegmentsRun => "segments:run",
            Permission::SegmentsMembers => "segments:members",
            Permission::SegmentsPublish => "segments:publish",
            Permission::SegmentsStrategy => "segments:strategy",
            Permission::AuditsRead => "audits:read",
            Permission::AuditsOverride => "audits:override",
            Permission::AuditsSign => "audits:sign",
            Permission::KpiRead => "kpi:read",
            Permission::KpiEvaluate => "kpi:evaluate",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
        assert!("users:delete".parse::<Permission>().is_err());
    }
}
