//! Applies consultations commits to `consultations`, `consultation_versions`,
//! `consultation_problems` and `latest_observations`, a batch at a time: the
//! touched patients' consultations are loaded once, folded with the
//! aggregate's own `apply`, and written back with one statement per table.

use std::collections::HashMap;

use carelog_consultations::domain::views::{latest_observations, problems};
use carelog_consultations::domain::{PatientConsultations, consultation_of};
use carelog_kernel::Aggregate as _;
use carelog_kernel::envelope::{StoredCommit, from_timestamp, timestamp};
use carelog_kernel::store::ContextStream;
use carelog_proto::consultations::v1 as pb;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{
    EnvelopeColumns, Projection, ProjectionError, aggregate_ids, stored_resource,
};

#[derive(Debug, Default)]
pub struct ConsultationsProjection;

#[derive(Default)]
struct Versions {
    consultation_id: Vec<Uuid>,
    version: Vec<i64>,
    patient_id: Vec<Uuid>,
    envelope: EnvelopeColumns,
    resource: Vec<Vec<u8>>,
}

impl Projection for ConsultationsProjection {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(PatientConsultations::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "consultations",
            "consultation_versions",
            "consultation_problems",
            "latest_observations",
        ]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let patients = aggregate_ids(batch)?;
            let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(
                "SELECT patient_id, consultation_id, resource FROM consultations WHERE patient_id = ANY($1)",
            )
            .bind(&patients)
            .fetch_all(&mut *tx)
            .await?;
            let mut held: HashMap<Uuid, Vec<pb::Consultation>> = HashMap::new();
            for (patient, id, bytes) in rows {
                let c = stored_resource::<pb::Consultation>("consultation", id, &bytes)?;
                held.entry(patient).or_default().push(c);
            }
            let mut records: HashMap<Uuid, PatientConsultations> = held
                .into_iter()
                .map(|(p, cs)| (p, PatientConsultations::from_resources(cs)))
                .collect();
            let mut versions = Versions::default();
            let mut touched: Vec<(Uuid, String)> = Vec::new();
            let mut touched_patients: Vec<Uuid> = Vec::new();
            for (stored, patient) in batch.iter().zip(&patients) {
                let record = records.entry(*patient).or_default();
                let mut events = Vec::with_capacity(stored.commit.events.len());
                for e in &stored.commit.events {
                    let event = pb::Event::decode(e.payload.as_slice())
                        .map_err(|err| ProjectionError::unapplicable(stored, err))?;
                    events.push((e, event));
                }
                // A commit already folded into a consultation row (a
                // redelivery the checkpoint did not catch) is not applied
                // twice.
                let seen = events.iter().any(|(_, event)| {
                    consultation_of(event)
                        .and_then(|id| record.get(id))
                        .is_some_and(|c| c.stream_sequence >= stored.stream_sequence)
                });
                if seen {
                    continue;
                }
                let mut changed: Vec<(String, Vec<String>)> = Vec::new();
                for (e, event) in events {
                    let Some(id) = consultation_of(&event).map(str::to_owned) else {
                        return Err(ProjectionError::unapplicable(
                            stored,
                            format!("unknown event type {}", e.event_type),
                        ));
                    };
                    record.apply(&event);
                    if record.get(&id).is_none() {
                        return Err(ProjectionError::unapplicable(
                            stored,
                            format!("{} names unknown consultation {id}", e.event_type),
                        ));
                    }
                    match changed.iter_mut().find(|(c, _)| *c == id) {
                        Some((_, types)) => types.push(e.event_type.clone()),
                        None => changed.push((id, vec![e.event_type.clone()])),
                    }
                }
                for (id, types) in changed {
                    let consultation_id = Uuid::parse_str(&id)
                        .map_err(|e| ProjectionError::unapplicable(stored, e))?;
                    let Some(c) = record.get_mut(&id) else {
                        continue;
                    };
                    c.patient_id = patient.to_string();
                    c.version += 1;
                    c.stream_sequence = stored.stream_sequence;
                    c.updated_at = Some(timestamp(stored.recorded_at()));
                    versions.consultation_id.push(consultation_id);
                    versions.version.push(c.version);
                    versions.patient_id.push(*patient);
                    versions.envelope.push(stored, &types);
                    versions.resource.push(c.encode_to_vec());
                    if !touched.iter().any(|(_, t)| *t == id) {
                        touched.push((*patient, id));
                    }
                }
                if !touched_patients.contains(patient) {
                    touched_patients.push(*patient);
                }
            }
            upsert(tx, &touched, &records).await?;
            sqlx::query(
                "INSERT INTO consultation_versions (consultation_id, version, patient_id, stream_sequence, \
                 event_types, actor_user_id, actor_display_name, actor_role, actor_organisation, reason, \
                 recorded_at, resource) \
                 SELECT consultation_id, version, patient_id, stream_sequence, string_to_array(event_types, ','), \
                 actor_user_id, actor_display_name, actor_role, actor_organisation, reason, recorded_at, resource \
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::bigint[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::bytea[]) \
                 AS v(consultation_id, version, patient_id, stream_sequence, event_types, actor_user_id, \
                 actor_display_name, actor_role, actor_organisation, reason, recorded_at, resource) \
                 ON CONFLICT (consultation_id, version) DO NOTHING",
            )
            .bind(versions.consultation_id)
            .bind(versions.version)
            .bind(versions.patient_id)
            .bind(versions.envelope.stream_sequence)
            .bind(versions.envelope.event_types)
            .bind(versions.envelope.actor_user_id)
            .bind(versions.envelope.actor_display_name)
            .bind(versions.envelope.actor_role)
            .bind(versions.envelope.actor_organisation)
            .bind(versions.envelope.reason)
            .bind(versions.envelope.recorded_at)
            .bind(versions.resource)
            .execute(&mut *tx)
            .await?;
            derived_views(tx, &touched_patients, &records).await
        }
        .boxed()
    }
}

/// Writes the touched consultations' current rows.
async fn upsert(
    tx: &mut PgConnection,
    touched: &[(Uuid, String)],
    records: &HashMap<Uuid, PatientConsultations>,
) -> Result<(), ProjectionError> {
    let (
        mut ids,
        mut patients,
        mut starts,
        mut in_error,
        mut version,
        mut seq,
        mut updated,
        mut resource,
    ) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (patient, id) in touched {
        let Some(c) = records.get(patient).and_then(|r| r.get(id)) else {
            continue;
        };
        let Ok(uuid) = Uuid::parse_str(id) else {
            continue;
        };
        ids.push(uuid);
        patients.push(*patient);
        starts.push(from_timestamp(c.start_time.as_ref()).unwrap_or_default());
        in_error.push(c.entered_in_error);
        version.push(c.version);
        seq.push(c.stream_sequence as i64);
        updated.push(from_timestamp(c.updated_at.as_ref()).unwrap_or_default());
        resource.push(c.encode_to_vec());
    }
    sqlx::query(
        "INSERT INTO consultations (consultation_id, patient_id, start_time, entered_in_error, version, \
         last_sequence, updated_at, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::boolean[], $5::bigint[], \
         $6::bigint[], $7::timestamptz[], $8::bytea[]) \
         ON CONFLICT (consultation_id) DO UPDATE SET entered_in_error = EXCLUDED.entered_in_error, \
         version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at, \
         resource = EXCLUDED.resource",
    )
    .bind(ids)
    .bind(patients)
    .bind(starts)
    .bind(in_error)
    .bind(version)
    .bind(seq)
    .bind(updated)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Rewrites the problem list and latest observations of the touched
/// patients from their whole record.
async fn derived_views(
    tx: &mut PgConnection,
    touched: &[Uuid],
    records: &HashMap<Uuid, PatientConsultations>,
) -> Result<(), ProjectionError> {
    let (mut p_patient, mut p_entry, mut p_status, mut p_time, mut p_resource) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut o_patient, mut o_concept, mut o_time, mut o_resource) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for patient in touched {
        let Some(record) = records.get(patient) else {
            continue;
        };
        for problem in problems(record) {
            let Ok(entry) = Uuid::parse_str(&problem.entry_id) else {
                continue;
            };
            p_patient.push(*patient);
            p_entry.push(entry);
            p_status.push(problem.status);
            p_time.push(from_timestamp(problem.effective_time.as_ref()).unwrap_or_default());
            p_resource.push(problem.encode_to_vec());
        }
        for observation in latest_observations(record) {
            o_patient.push(*patient);
            o_concept.push(observation.concept_id.clone());
            o_time.push(from_timestamp(observation.effective_time.as_ref()).unwrap_or_default());
            o_resource.push(observation.encode_to_vec());
        }
    }
    for table in ["consultation_problems", "latest_observations"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE patient_id = ANY($1)"
        )))
        .bind(touched)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO consultation_problems (patient_id, entry_id, status, effective_time, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::bytea[])",
    )
    .bind(p_patient)
    .bind(p_entry)
    .bind(p_status)
    .bind(p_time)
    .bind(p_resource)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO latest_observations (patient_id, concept_id, effective_time, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::bytea[])",
    )
    .bind(o_patient)
    .bind(o_concept)
    .bind(o_time)
    .bind(o_resource)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
