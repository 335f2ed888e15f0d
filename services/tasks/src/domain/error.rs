//! Why a tasks command is refused.

use carelog_kernel::Violations;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("task {0} was not found")]
    NotFound(String),
    #[error("task {0} already exists")]
    Exists(String),
    #[error("task {task} is {from}: it cannot become {to}")]
    InvalidTransition {
        task: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("task {task} is {status}: it can no longer be changed")]
    Closed { task: String, status: &'static str },
    #[error("task {0} has no performing team or organisation to claim it from; assign it instead")]
    NotClaimable(String),
    #[error("task {task} is performed by team {team}, and the caller is not a member of it")]
    NotTeamMember { task: String, team: String },
    #[error("task {task} is performed by organisation {organisation}, not the caller's")]
    OtherOrganisation { task: String, organisation: String },
    #[error("task {task} is already owned by {owner}; reassign it instead")]
    AlreadyOwned { task: String, owner: String },
    #[error("task {0} has no owner: claim it or assign it first")]
    Unowned(String),
    #[error("task {task} is owned by {owner}: only its owner may do this (reassign it first)")]
    NotOwner { task: String, owner: String },
    #[error("only {parties} of task {task} may {action} it")]
    NotParty {
        task: String,
        /// Who may: "the requester or the performer", or "the performer".
        parties: &'static str,
        action: &'static str,
    },
}

impl Error {
    pub fn invalid(field: &str, rule: &str) -> Self {
        let mut v = Violations::new();
        v.add(field, rule);
        Self::Invalid(v)
    }
}
