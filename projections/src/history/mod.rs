//! The record's history for medico-legal requests (ADR 0027, ADR 0028):
//! the patient's whole record as it stood at a past instant, every change
//! with its resources before and after, and what a recorded access showed.
//! JetStream is the source of truth: the patient's subjects are read whole
//! by Direct Get, checked against their hash chains and folded with the
//! contexts' own `apply` (`fold`); PostgreSQL is only asked which access
//! stream sequence an access id has.

pub mod fold;

use std::collections::BTreeMap;

use carelog_consultations::domain::PatientConsultations;
use carelog_demographics::domain::PatientRecord;
use carelog_demographics::queries::PageRequest;
use carelog_kernel::access::{self, access_stream};
use carelog_kernel::envelope::StoredCommit;
use carelog_kernel::store::{ContextStream, EventStore};
use carelog_kernel::{Failure, PatientId};
use carelog_medications::domain::MedicationRecord;
use carelog_proto::audit::v1 as pb;
use carelog_tasks::domain::TaskList;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

pub use fold::{Cut, FoldedRecord, HistoryError, PatientHistory};

use crate::query::{self, db};

impl From<HistoryError> for Failure {
    fn from(e: HistoryError) -> Self {
        let reason = match e {
            HistoryError::ChainBroken { .. } => "HASH_CHAIN_BROKEN",
            HistoryError::Unreadable { .. } => "HISTORY_UNREADABLE",
        };
        tracing::error!(error = %e, "the record's history cannot be rebuilt");
        Failure::new(Code::Internal, reason, e.to_string())
    }
}

/// Reads patients' histories from JetStream and answers the history queries.
#[derive(Debug, Clone)]
pub struct RecordHistory {
    store: EventStore,
    pool: PgPool,
}

impl RecordHistory {
    pub fn new(store: EventStore, pool: PgPool) -> Self {
        Self { store, pool }
    }

    async fn subject<A: carelog_kernel::Aggregate>(
        &self,
        patient: &str,
    ) -> Result<Vec<StoredCommit>, Failure> {
        let stream = ContextStream::new(A::CONTEXT);
        let subject = stream.subject(&patient);
        let messages = self
            .store
            .read_subject(&stream.name, &subject, 0)
            .await
            .map_err(|e| Failure::unavailable(format!("event store: {e}")))?;
        let commits = messages
            .iter()
            .filter(|m| m.is_commit())
            .map(|m| {
                StoredCommit::decode(m).map_err(|e| HistoryError::Unreadable {
                    subject: subject.clone(),
                    sequence: m.stream_sequence,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        fold::verify_chain(&subject, &commits)?;
        Ok(commits)
    }

    /// The patient's commits in the four contexts, each subject checked
    /// against its hash chain.
    pub async fn history(&self, patient: PatientId) -> Result<PatientHistory, Failure> {
        let id = patient.to_string();
        let (demographics, consultations, medications, tasks) = futures::try_join!(
            self.subject::<PatientRecord>(&id),
            self.subject::<PatientConsultations>(&id),
            self.subject::<MedicationRecord>(&id),
            self.subject::<TaskList>(&id),
        )?;
        Ok(PatientHistory {
            patient_id: id,
            demographics,
            consultations,
            medications,
            tasks,
        })
    }

    /// The record as it stood at `as_of` in `view`, with the records of the
    /// duplicates merged into it then (ADR 0027). NOT_FOUND when the
    /// patient had not been registered by then.
    pub async fn record_as_of(
        &self,
        patient: PatientId,
        as_of: DateTime<Utc>,
        view: pb::RecordView,
    ) -> Result<pb::RecordAsOf, Failure> {
        let cut = Cut::view(view, as_of);
        let history = self.history(patient).await?;
        let record = FoldedRecord::fold(&history, &cut)?;
        if !record.demographics.state.is_registered() {
            return Err(Failure::new(
                Code::NotFound,
                "NOT_YET_REGISTERED",
                format!(
                    "patient {patient} was not registered at {}",
                    as_of.to_rfc3339()
                ),
            )
            .with("patientId", patient.to_string()));
        }
        let mut corrections = record.corrections();
        let mut merged_records = Vec::new();
        for duplicate in record.merged_patient_ids() {
            let id = PatientId::parse(duplicate).map_err(|e| Failure::internal(&e))?;
            let merged = FoldedRecord::fold(&self.history(id).await?, &cut)?;
            corrections.extend(merged.corrections());
            merged_records.push(merged.snapshot());
        }
        corrections.sort_by_key(fold::order_key);
        let view = match view {
            pb::RecordView::Unspecified => pb::RecordView::AsCorrected,
            v => v,
        };
        Ok(pb::RecordAsOf {
            as_of: Some(carelog_kernel::envelope::timestamp(as_of)),
            view: view as i32,
            record: Some(record.snapshot()),
            merged_records,
            corrections,
        })
    }

    /// A page of the patient's changes recorded in `[from, to)`, oldest
    /// first, with those of the duplicates merged into it.
    pub async fn changes(
        &self,
        patient: PatientId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::PatientChange>, String), Failure> {
        let name = query::fingerprint(&format!("changes {patient} {from:?} {to:?}"));
        let after = query::key_of(&name, page)?
            .map(|key| parse_key(&key))
            .transpose()?;
        let history = self.history(patient).await?;
        if history.demographics.is_empty() {
            return Err(Failure::not_found("patient", &patient.to_string()));
        }
        let in_window = |c: &pb::PatientChange| {
            let at = carelog_kernel::envelope::from_timestamp(c.recorded_at.as_ref());
            from.is_none_or(|f| at.is_some_and(|t| t >= f))
                && to.is_none_or(|t| at.is_some_and(|a| a < t))
        };
        // The changes of duplicates merged into the patient are part of
        // the patient's history while merged (a merge of a patient that has
        // duplicates merged into it is refused, so one level is all).
        let fold::Changes {
            changes: mut all,
            merged_patient_ids,
        } = fold::changes(&history)?;
        for duplicate in merged_patient_ids {
            let id = PatientId::parse(&duplicate).map_err(|e| Failure::internal(&e))?;
            all.extend(fold::changes(&self.history(id).await?)?.changes);
        }
        all.sort_by_key(fold::order_key);
        let rows: Vec<pb::PatientChange> = all
            .into_iter()
            .filter(in_window)
            .filter(|c| after.as_ref().is_none_or(|k| fold::order_key(c) > *k))
            .take(page.size as usize + 1)
            .collect();
        query::paged(rows, page, &name, |c| {
            let (seconds, nanos, stream, sequence) = fold::order_key(&c);
            Ok((c, format!("{seconds}.{nanos}.{stream}.{sequence}")))
        })
    }

    /// What an access showed (ADR 0028): the access `access_id` of the
    /// message at `sequence` of CARELOG_ACCESS, or its only access when no
    /// id is given. A message holding the accesses of several reads
    /// (ADR 0029) needs the id.
    pub async fn accessed(
        &self,
        sequence: u64,
        access_id: Option<Uuid>,
    ) -> Result<pb::AccessedRecord, Failure> {
        let stream = access_stream();
        let message = self
            .store
            .get(&stream.name, sequence)
            .await
            .map_err(|e| Failure::unavailable(format!("event store: {e}")))?
            .ok_or_else(|| Failure::not_found("access", &sequence.to_string()))?;
        let mut events = access::decode(message.payload.as_ref());
        let event = match access_id {
            Some(id) => {
                let id = id.to_string();
                events
                    .into_iter()
                    .find(|e| e.access_id == id)
                    .ok_or_else(|| Failure::not_found("access", &id))?
            }
            None if events.len() > 1 => {
                return Err(Failure::invalid_field(
                    "access_id",
                    format!(
                        "is required: the message at access_sequence {sequence} holds {} accesses",
                        events.len()
                    ),
                ));
            }
            None => events
                .pop()
                .ok_or_else(|| Failure::not_found("access", &sequence.to_string()))?,
        };
        let patient = PatientId::parse(&event.patient_id).map_err(|e| Failure::internal(&e))?;
        let positions: BTreeMap<String, u64> = event
            .positions
            .iter()
            .map(|p| (p.stream.clone(), p.sequence))
            .collect();
        let history = self.history(patient).await?;
        let record = FoldedRecord::fold(&history, &Cut::Positions(positions))?;
        let shown = record.snapshot_of(&event.resource_ids, &event.method);
        Ok(pb::AccessedRecord {
            access: Some(event),
            access_sequence: sequence,
            record: Some(shown),
        })
    }

    /// The CARELOG_ACCESS sequence of an access id, from `audit_events`.
    pub async fn access_sequence(&self, access_id: Uuid) -> Result<u64, Failure> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT stream_sequence FROM audit_events WHERE stream = $1 AND commit_id = $2 LIMIT 1",
        )
        .bind(access_stream().name)
        .bind(access_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|(s,)| s as u64)
            .ok_or_else(|| Failure::not_found("access", &access_id.to_string()))
    }
}

fn parse_key(key: &str) -> Result<(i64, i32, String, u64), Failure> {
    let mut parts = key.splitn(4, '.');
    let mut next = || parts.next().ok_or_else(query::bad_token);
    let seconds = query::parse(next()?)?;
    let nanos = query::parse(next()?)?;
    let stream = next()?.to_owned();
    let sequence = query::parse(next()?)?;
    Ok((seconds, nanos, stream, sequence))
}
