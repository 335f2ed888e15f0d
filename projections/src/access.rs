//! The facts of the access guard (ADR 0020): the patient from the
//! demographics history (the patient gate, freshest), and agreements,
//! groups and relationships from the read models (cheap, a projection lag
//! behind: ADR 0020 says what that means).

use std::collections::BTreeMap;

use carelog_demographics::gate::PatientGate;
use carelog_kernel::access_control::{Agreement, Party, PatientAccess, Relationship, Sharing};
use carelog_kernel::guard::AccessFacts;
use carelog_kernel::{Failure, PatientId};
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::tasks::v1 as tpb;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use crate::query::db;

/// The guard's facts over the patient gate and PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgAccessFacts {
    gate: PatientGate,
    pool: PgPool,
}

impl PgAccessFacts {
    pub fn new(gate: PatientGate, pool: PgPool) -> Self {
        Self { gate, pool }
    }
}

/// Task statuses that are open work (a relationship).
const OPEN_TASKS: [i32; 7] = [
    tpb::TaskStatus::Draft as i32,
    tpb::TaskStatus::Requested as i32,
    tpb::TaskStatus::Received as i32,
    tpb::TaskStatus::Accepted as i32,
    tpb::TaskStatus::Ready as i32,
    tpb::TaskStatus::InProgress as i32,
    tpb::TaskStatus::OnHold as i32,
];

fn party(kind: &str, id: String) -> Party {
    match kind {
        "group" => Party::Group(id),
        _ => Party::Organisation(id),
    }
}

type AgreementRow = (
    Uuid,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

async fn sharing(pool: &PgPool, organisation: &str) -> Result<Sharing, Failure> {
    let rows: Vec<AgreementRow> = sqlx::query_as(
        "SELECT agreement_id, from_kind, from_id, to_kind, to_id, valid_from, valid_until, ended_at \
         FROM sharing_agreements \
         WHERE (to_kind = 'organisation' AND to_id = $1) \
            OR (to_kind = 'group' AND to_id IN \
                (SELECT group_id::text FROM organisation_group_members WHERE organisation_ods = $1))",
    )
    .bind(organisation)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let agreements: Vec<Agreement> = rows
        .into_iter()
        .map(
            |(id, from_kind, from_id, to_kind, to_id, valid_from, valid_until, ended_at)| {
                Agreement {
                    id: id.to_string(),
                    from: party(&from_kind, from_id),
                    to: party(&to_kind, to_id),
                    valid_from,
                    valid_until,
                    ended_at,
                }
            },
        )
        .collect();
    let groups: Vec<Uuid> = agreements
        .iter()
        .flat_map(|a| [&a.from, &a.to])
        .filter_map(|p| match p {
            Party::Group(id) => Uuid::parse_str(id).ok(),
            Party::Organisation(_) => None,
        })
        .collect();
    let members: Vec<(Uuid, String)> = if groups.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT group_id, organisation_ods FROM organisation_group_members \
             WHERE group_id = ANY($1)",
        )
        .bind(&groups)
        .fetch_all(pool)
        .await
        .map_err(db)?
    };
    let mut by_group: BTreeMap<String, _> = BTreeMap::new();
    for (group, ods) in members {
        by_group
            .entry(group.to_string())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(ods);
    }
    Ok(Sharing {
        agreements,
        groups: by_group,
    })
}

/// How long an unsigned consultation is a relationship with its patient
/// after it started: the encounter and its write-up, not standing access
/// for whoever leaves a draft open (ADR 0020).
pub const DRAFT_RELATIONSHIP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Whether a task (its stored resource) is the privacy officer's review of
/// an emergency access (focus `access:<id>`): it is work about the access,
/// not care of the patient, so it opens nobody's way to the record.
fn reviews_emergency_access(resource: &[u8]) -> bool {
    tpb::Task::decode(resource)
        .is_ok_and(|t| carelog_tasks::domain::decide::reviews_emergency_access(&t))
}

async fn relationships(
    pool: &PgPool,
    patients: &[String],
) -> Result<Vec<(String, Relationship)>, Failure> {
    let ids: Vec<Uuid> = patients
        .iter()
        .filter_map(|p| Uuid::parse_str(p).ok())
        .collect();
    let tasks: Vec<(Uuid, Uuid, String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT patient_id, task_id, owner_user_id, performer_team, performer_organisation, \
         resource FROM tasks WHERE patient_id = ANY($1) AND status = ANY($2)",
    )
    .bind(&ids)
    .bind(&OPEN_TASKS[..])
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut out: Vec<(String, Relationship)> = tasks
        .into_iter()
        .filter(|(.., resource)| !reviews_emergency_access(resource))
        .map(|(patient, id, owner, team, organisation, _)| {
            (
                patient.to_string(),
                Relationship::Task {
                    id: id.to_string(),
                    owner_user_id: owner,
                    performer_team: team,
                    performer_organisation: organisation,
                },
            )
        })
        .collect();
    let consultations: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT patient_id, resource FROM consultations \
         WHERE patient_id = ANY($1) AND NOT entered_in_error AND start_time > $2",
    )
    .bind(&ids)
    .bind(Utc::now() - DRAFT_RELATIONSHIP)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    for (patient, resource) in consultations {
        let Ok(c) = cpb::Consultation::decode(resource.as_slice()) else {
            continue;
        };
        if c.status != cpb::ConsultationStatus::Signed as i32 {
            out.push((
                patient.to_string(),
                Relationship::Consultation {
                    id: c.consultation_id,
                    organisation: c.organisation_ods,
                },
            ));
        }
    }
    Ok(out)
}

impl AccessFacts for PgAccessFacts {
    fn patient(&self, id: PatientId) -> BoxFuture<'_, Result<Option<PatientAccess>, Failure>> {
        async move { self.gate.access(id).await }.boxed()
    }

    fn sharing<'a>(&'a self, organisation: &'a str) -> BoxFuture<'a, Result<Sharing, Failure>> {
        sharing(&self.pool, organisation).boxed()
    }

    fn relationships<'a>(
        &'a self,
        patients: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Relationship)>, Failure>> {
        relationships(&self.pool, patients).boxed()
    }
}
