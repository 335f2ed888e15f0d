//! Role permissions: which carelog permissions a session's selected role
//! code (national RBAC) grants, and which permission every RPC requires.
//! One component decides; every service's interceptor asks it
//! (`Policy::check`). The default policy is `policy/default-policy.json`;
//! a site loads its own with `--access-policy` (docs/access-policy.md).
//!
//! This is a first slice of shared-care access control: it answers "may
//! this role do this kind of thing", not "may this organisation see this
//! patient" (ADR 0019).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use tonic::Code;

use crate::actor::Actor;
use crate::error::Failure;

/// The default policy, embedded in the binary.
pub const DEFAULT_POLICY: &str = include_str!("policy/default-policy.json");

/// What a role may do in carelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read clinical data (consultations, medications, allergies, tasks).
    ViewRecord,
    /// Read demographics only.
    ViewDemographics,
    /// Write clinical entries (consultations, allergies).
    WriteClinical,
    /// Authorise medications and issue prescriptions.
    Prescribe,
    /// Register patients and change their demographics.
    ManageDemographics,
    /// Create and work tasks.
    ManageTasks,
    /// Read the audit history: checkpoints, proofs, who accessed a record
    /// and what a user did.
    ViewAudit,
    /// Administer organisation groups and sharing agreements.
    AdministerSharing,
    /// The privacy officer's duties (reviewing emergency accesses; no RPC
    /// requires it alone yet).
    PrivacyOfficer,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ViewRecord => "view_record",
            Self::ViewDemographics => "view_demographics",
            Self::WriteClinical => "write_clinical",
            Self::Prescribe => "prescribe",
            Self::ManageDemographics => "manage_demographics",
            Self::ManageTasks => "manage_tasks",
            Self::ViewAudit => "view_audit",
            Self::AdministerSharing => "administer_sharing",
            Self::PrivacyOfficer => "privacy_officer",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission::*;

/// The permissions an RPC accepts: a caller needs any one of them.
pub type Requirement = &'static [Permission];

const DEMOGRAPHICS: &str = "/carelog.demographics.v1.DemographicsService/";
const CONSULTATIONS: &str = "/carelog.consultations.v1.ConsultationsService/";
const MEDICATIONS: &str = "/carelog.medications.v1.MedicationsService/";
const TASKS: &str = "/carelog.tasks.v1.TasksService/";
const AUDIT: &str = "/carelog.audit.v1.AuditService/";
const HISTORY: &str = "/carelog.audit.v1.RecordHistoryService/";
const SHARING: &str = "/carelog.sharing.v1.SharingService/";

/// Every RPC of every carelog service and what it requires, by service
/// and method name. An RPC not in this table is refused.
pub const RPCS: &[(&str, &str, Requirement)] = &[
    (DEMOGRAPHICS, "RegisterPatient", &[ManageDemographics]),
    (DEMOGRAPHICS, "UpdateDemographics", &[ManageDemographics]),
    (DEMOGRAPHICS, "RecordDeath", &[ManageDemographics]),
    (DEMOGRAPHICS, "AmendDeath", &[ManageDemographics]),
    (DEMOGRAPHICS, "MergePatient", &[ManageDemographics]),
    (DEMOGRAPHICS, "UnmergePatient", &[ManageDemographics]),
    (DEMOGRAPHICS, "MarkRestricted", &[ManageDemographics]),
    (DEMOGRAPHICS, "ClearRestricted", &[ManageDemographics]),
    (
        DEMOGRAPHICS,
        "RecordSharingObjection",
        &[ManageDemographics],
    ),
    (
        DEMOGRAPHICS,
        "WithdrawSharingObjection",
        &[ManageDemographics],
    ),
    (DEMOGRAPHICS, "GetPatient", &[ViewDemographics, ViewRecord]),
    (
        DEMOGRAPHICS,
        "SearchPatients",
        &[ViewDemographics, ViewRecord],
    ),
    (
        DEMOGRAPHICS,
        "ListPatientVersions",
        &[ViewDemographics, ViewRecord],
    ),
    (CONSULTATIONS, "StartConsultation", &[WriteClinical]),
    (CONSULTATIONS, "AddEntry", &[WriteClinical]),
    (CONSULTATIONS, "EditEntry", &[WriteClinical]),
    (CONSULTATIONS, "AmendEntry", &[WriteClinical]),
    (CONSULTATIONS, "MarkEnteredInError", &[WriteClinical]),
    (CONSULTATIONS, "SignConsultation", &[WriteClinical]),
    (CONSULTATIONS, "GetConsultation", &[ViewRecord]),
    (CONSULTATIONS, "ListConsultations", &[ViewRecord]),
    (CONSULTATIONS, "ListConsultationVersions", &[ViewRecord]),
    (CONSULTATIONS, "ListProblems", &[ViewRecord]),
    (CONSULTATIONS, "ListLatestObservations", &[ViewRecord]),
    (MEDICATIONS, "RecordAllergy", &[WriteClinical]),
    (MEDICATIONS, "ResolveAllergy", &[WriteClinical]),
    (MEDICATIONS, "MarkAllergyEnteredInError", &[WriteClinical]),
    (MEDICATIONS, "AuthoriseMedication", &[Prescribe]),
    (MEDICATIONS, "IssuePrescription", &[Prescribe]),
    (MEDICATIONS, "ChangeMedication", &[Prescribe]),
    (MEDICATIONS, "DiscontinueMedication", &[Prescribe]),
    (MEDICATIONS, "RecordMedicationReview", &[Prescribe]),
    (MEDICATIONS, "ListMedications", &[ViewRecord]),
    (MEDICATIONS, "ListIssues", &[ViewRecord]),
    (MEDICATIONS, "ListAllergies", &[ViewRecord]),
    (TASKS, "CreateTask", &[ManageTasks]),
    (TASKS, "AssignTask", &[ManageTasks]),
    (TASKS, "ClaimTask", &[ManageTasks]),
    (TASKS, "StartTask", &[ManageTasks]),
    (TASKS, "PutTaskOnHold", &[ManageTasks]),
    (TASKS, "ResumeTask", &[ManageTasks]),
    (TASKS, "CompleteTask", &[ManageTasks]),
    (TASKS, "CancelTask", &[ManageTasks]),
    (TASKS, "RejectTask", &[ManageTasks]),
    (TASKS, "CommentOnTask", &[ManageTasks]),
    (TASKS, "MarkTaskEnteredInError", &[ManageTasks]),
    (TASKS, "GetTask", &[ManageTasks, ViewRecord]),
    (TASKS, "ListTasks", &[ManageTasks, ViewRecord]),
    (TASKS, "ListTaskHistory", &[ManageTasks, ViewRecord]),
    (AUDIT, "GetLatestCheckpoint", &[ViewAudit]),
    (AUDIT, "SignCheckpoint", &[ViewAudit]),
    (AUDIT, "GetInclusionProof", &[ViewAudit]),
    (AUDIT, "GetConsistencyProof", &[ViewAudit]),
    (AUDIT, "ListPatientAccess", &[ViewAudit]),
    (AUDIT, "ListActorActivity", &[ViewAudit]),
    (HISTORY, "GetRecordAsOf", &[ViewAudit]),
    (HISTORY, "ListPatientChanges", &[ViewAudit]),
    (HISTORY, "GetAccessedRecord", &[ViewAudit]),
    (SHARING, "CreateOrganisationGroup", &[AdministerSharing]),
    (SHARING, "AddGroupMember", &[AdministerSharing]),
    (SHARING, "RemoveGroupMember", &[AdministerSharing]),
    (SHARING, "GetOrganisationGroup", &[AdministerSharing]),
    (SHARING, "ListOrganisationGroups", &[AdministerSharing]),
    (SHARING, "CreateSharingAgreement", &[AdministerSharing]),
    (SHARING, "EndSharingAgreement", &[AdministerSharing]),
    (SHARING, "GetSharingAgreement", &[AdministerSharing]),
    (SHARING, "ListSharingAgreements", &[AdministerSharing]),
];

/// What an RPC path (`/package.Service/Method`) requires; `None` for a
/// path carelog does not know.
pub fn requirement(path: &str) -> Option<Requirement> {
    RPCS.iter()
        .find(|(service, method, _)| path.strip_prefix(service) == Some(method))
        .map(|(_, _, required)| *required)
}

/// The gRPC path of the request, put in its extensions by the server's
/// RPC layer before the interceptor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcPath(pub String);

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read the access policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the access policy {origin} is malformed: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },
    #[error("the access policy {origin} is malformed: {problem}")]
    Invalid { origin: String, problem: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    name: String,
    permissions: BTreeSet<Permission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    roles: BTreeMap<String, RoleFile>,
}

/// One role of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
}

/// Role code → permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    roles: BTreeMap<String, Role>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::parse(DEFAULT_POLICY, "(built-in default)").expect("the default policy is valid")
    }
}

impl Policy {
    /// Parses a policy document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = serde_json::from_str(text).map_err(|source| PolicyError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let invalid = |problem: String| PolicyError::Invalid {
            origin: origin.to_owned(),
            problem,
        };
        if file.roles.is_empty() {
            return Err(invalid("it names no roles".into()));
        }
        let mut roles = BTreeMap::new();
        for (code, role) in file.roles {
            if code.trim().is_empty() || code.trim() != code {
                return Err(invalid(format!(
                    "role code {code:?} is blank or has surrounding spaces"
                )));
            }
            roles.insert(
                code,
                Role {
                    name: role.name,
                    permissions: role.permissions,
                },
            );
        }
        Ok(Self { roles })
    }

    /// Reads a site's policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn role(&self, code: &str) -> Option<&Role> {
        self.roles.get(code)
    }

    pub fn roles(&self) -> impl Iterator<Item = (&str, &Role)> {
        self.roles.iter().map(|(code, role)| (code.as_str(), role))
    }

    /// Whether `role` grants `permission` (an unknown role grants nothing).
    pub fn grants(&self, role: &str, permission: Permission) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.permissions.contains(&permission))
    }

    /// May `actor` call the RPC at `path`? Refused with `PERMISSION_DENIED`
    /// (reason `PERMISSION_MISSING`, naming the permission and the role);
    /// a path carelog does not know is refused too.
    pub fn check(&self, actor: &Actor, path: &str) -> Result<(), Failure> {
        let Some(required) = requirement(path) else {
            return Err(Failure::new(
                Code::PermissionDenied,
                "PERMISSION_MISSING",
                format!("no permission grants the RPC {path}"),
            )
            .with("role", actor.role.clone())
            .with("rpc", path));
        };
        if required.iter().any(|p| self.grants(&actor.role, *p)) {
            return Ok(());
        }
        let permission = required
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        tracing::warn!(
            user_id = %actor.user_id,
            role = %actor.role,
            organisation = %actor.organisation,
            rpc = %path,
            permission = %permission,
            "permission denied"
        );
        Err(Failure::new(
            Code::PermissionDenied,
            "PERMISSION_MISSING",
            format!(
                "role {} does not grant the permission {permission} that {path} requires",
                actor.role
            ),
        )
        .with("permission", permission)
        .with("role", actor.role.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OdsCode;

    fn actor(role: &str) -> Actor {
        Actor {
            user_id: "u-1".into(),
            display_name: String::new(),
            role: role.into(),
            organisation: OdsCode::parse("A81001").expect("valid"),
            purpose_of_use: "DIRECT_CARE".into(),
        }
    }

    #[test]
    fn the_default_policy_loads_with_every_role() {
        let policy = Policy::default();
        for code in [
            "R8000",
            "R8001",
            "R8003",
            "R8008",
            "R8010",
            "LOCAL-SOCIAL-CARE",
            "LOCAL-PRIVACY-OFFICER",
        ] {
            assert!(policy.role(code).is_some(), "{code}");
        }
        // The clinician does everything clinical (and the harness's default).
        for p in [
            ViewRecord,
            WriteClinical,
            Prescribe,
            ManageDemographics,
            ManageTasks,
            ViewAudit,
        ] {
            assert!(policy.grants("R8000", p), "{p}");
        }
        assert!(!policy.grants("R8001", Prescribe));
        assert!(policy.grants("R8003", Prescribe));
    }

    #[test]
    fn an_unknown_permission_is_an_error_naming_it() {
        let text = r#"{"roles": {"R8000": {"permissions": ["view_record", "fly_helicopter"]}}}"#;
        let error = Policy::parse(text, "site.json")
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("fly_helicopter"), "{error}");
        assert!(error.contains("site.json"), "{error}");
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(Policy::parse("{", "x").is_err());
        assert!(Policy::parse(r#"{"roles": {}}"#, "x").is_err());
        assert!(Policy::parse(r#"{"roles": {" R1": {"permissions": []}}}"#, "x").is_err());
        assert!(Policy::parse(r#"{"roles": {}, "extra": 1}"#, "x").is_err());
    }

    #[test]
    fn a_role_without_the_permission_is_denied_naming_both() {
        let policy = Policy::default();
        let path = "/carelog.consultations.v1.ConsultationsService/AddEntry";
        let refused = policy.check(&actor("R8010"), path).expect_err("clerical");
        assert_eq!(refused.code, Code::PermissionDenied);
        assert_eq!(refused.reason, "PERMISSION_MISSING");
        assert!(
            refused
                .metadata
                .contains(&("permission", "write_clinical".into()))
        );
        assert!(refused.metadata.contains(&("role", "R8010".into())));
        assert!(policy.check(&actor("R8000"), path).is_ok());
        // An unknown role and an unknown RPC grant nothing.
        assert!(policy.check(&actor("R9999"), path).is_err());
        assert!(policy.check(&actor("R8000"), "/x.Y/Z").is_err());
        let register = "/carelog.demographics.v1.DemographicsService/RegisterPatient";
        assert!(policy.check(&actor("R8010"), register).is_ok());
    }

    #[test]
    fn every_rpc_of_every_service_has_a_requirement() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(carelog_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut seen = 0;
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(requirement(&path).is_some(), "{path} has no permission");
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, RPCS.len());
    }
}
