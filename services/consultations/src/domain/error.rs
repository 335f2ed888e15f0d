//! Why a consultations command is refused.

use carelog_kernel::Violations;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("consultation {0} was not found for this patient")]
    ConsultationNotFound(String),
    #[error("consultation {0} already exists")]
    ConsultationExists(String),
    #[error("topic {topic} was not found in consultation {consultation}")]
    TopicNotFound { consultation: String, topic: String },
    #[error("entry {entry} was not found in consultation {consultation}")]
    EntryNotFound { consultation: String, entry: String },
    #[error("consultation {0} is signed and locked: amend the entry with a reason (AmendEntry)")]
    Signed(String),
    #[error(
        "consultation {0} is a draft: edit the entry (EditEntry); amendments are for signed consultations"
    )]
    NotSigned(String),
    #[error("consultation {0} is already signed")]
    AlreadySigned(String),
    #[error("consultation {0} was entered in error: nothing more can be recorded in it")]
    ConsultationInError(String),
    #[error("entry {0} was entered in error: it cannot be changed")]
    EntryInError(String),
    #[error("consultation {0} has no entries: an empty consultation cannot be signed")]
    Empty(String),
    #[error(
        "only the author ({author}) or a clinician in a supervising role may sign consultation {consultation}"
    )]
    NotAuthor {
        consultation: String,
        author: String,
    },
    #[error(
        "consultation {consultation} was recorded by organisation {organisation}: only that organisation adds to, changes, corrects or signs it"
    )]
    OtherOrganisation {
        consultation: String,
        organisation: String,
    },
}

impl Error {
    pub fn invalid(field: &str, rule: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.add(field, rule);
        Self::Invalid(v)
    }
}
