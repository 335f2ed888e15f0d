//! Applies medications commits to `medication_allergies`,
//! `medication_authorisations` and `medication_issues`, a batch at a time:
//! the touched patients' rows are read once, folded with the aggregate's own
//! `apply`, and written back with one statement per table.

use std::collections::HashMap;

use carelog_kernel::Aggregate as _;
use carelog_kernel::date::PartialDate;
use carelog_kernel::envelope::StoredCommit;
use carelog_kernel::store::ContextStream;
use carelog_medications::domain::MedicationRecord;
use carelog_medications::domain::record::touched;
use carelog_proto::kernel::v1 as kpb;
use carelog_proto::medications::v1 as pb;
use chrono::NaiveDate;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{Projection, ProjectionError, aggregate_ids, stored_resource};

#[derive(Debug, Default)]
pub struct MedicationsProjection;

/// Where a row's resource came from: the sequence that created it and the
/// last that changed it.
#[derive(Debug, Clone, Copy)]
struct Sequences {
    created: i64,
    last: i64,
    changed: bool,
}

#[derive(Default)]
struct Patient {
    record: MedicationRecord,
    sequences: HashMap<String, Sequences>,
}

impl Patient {
    fn touch(&mut self, id: &str, sequence: i64) {
        let s = self.sequences.entry(id.to_owned()).or_insert(Sequences {
            created: sequence,
            last: sequence,
            changed: true,
        });
        s.last = sequence;
        s.changed = true;
    }
}

#[derive(Default)]
struct Issues {
    issue_id: Vec<Uuid>,
    patient_id: Vec<Uuid>,
    authorisation_id: Vec<Uuid>,
    issue_number: Vec<i32>,
    issued_on: Vec<NaiveDate>,
    stream_sequence: Vec<i64>,
    resource: Vec<Vec<u8>>,
}

fn day(date: Option<&kpb::PartialDate>) -> Option<NaiveDate> {
    date.and_then(|d| PartialDate::from_proto(Some(d)).ok())
        .map(|d| d.earliest())
}

fn uuid(text: &str, stored: &StoredCommit) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(text).map_err(|e| ProjectionError::unapplicable(stored, e))
}

impl Projection for MedicationsProjection {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(MedicationRecord::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "medication_allergies",
            "medication_authorisations",
            "medication_issues",
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
            let ids = aggregate_ids(batch)?;
            let mut patients = load(tx, &ids).await?;
            let mut issues = Issues::default();
            for (stored, id) in batch.iter().zip(&ids) {
                let patient = patients.entry(*id).or_default();
                let sequence = stored.stream_sequence as i64;
                for e in &stored.commit.events {
                    let event = pb::Event::decode(e.payload.as_slice())
                        .map_err(|err| ProjectionError::unapplicable(stored, err))?;
                    if event.event.is_none() {
                        return Err(ProjectionError::unapplicable(
                            stored,
                            format!("unknown event type {}", e.event_type),
                        ));
                    }
                    patient.record.apply(&event);
                    let (allergies, authorisations) = touched(&event);
                    for touched in allergies.into_iter().chain(authorisations) {
                        patient.touch(touched, sequence);
                    }
                }
                for mut issue in patient.record.issues.drain(..) {
                    issue.patient_id = id.to_string();
                    issue.stream_sequence = stored.stream_sequence;
                    issues.issue_id.push(uuid(&issue.issue_id, stored)?);
                    issues.patient_id.push(*id);
                    issues
                        .authorisation_id
                        .push(uuid(&issue.authorisation_id, stored)?);
                    issues.issue_number.push(issue.issue_number as i32);
                    issues.issued_on.push(
                        day(issue.issued_on.as_ref())
                            .ok_or_else(|| ProjectionError::unapplicable(stored, "issue without a date"))?,
                    );
                    issues.stream_sequence.push(sequence);
                    issues.resource.push(issue.encode_to_vec());
                }
            }
            write_allergies(tx, &patients).await?;
            write_authorisations(tx, &patients).await?;
            sqlx::query(
                "INSERT INTO medication_issues (issue_id, patient_id, authorisation_id, issue_number, issued_on, \
                 stream_sequence, resource) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::date[], $6::bigint[], $7::bytea[]) \
                 ON CONFLICT (issue_id) DO NOTHING",
            )
            .bind(issues.issue_id)
            .bind(issues.patient_id)
            .bind(issues.authorisation_id)
            .bind(issues.issue_number)
            .bind(issues.issued_on)
            .bind(issues.stream_sequence)
            .bind(issues.resource)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        .boxed()
    }
}

/// The current allergies and authorisations of these patients.
async fn load(
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Patient>, ProjectionError> {
    let mut patients: HashMap<Uuid, Patient> = HashMap::new();
    let allergies: Vec<(Uuid, Uuid, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT allergy_id, patient_id, created_sequence, last_sequence, resource FROM medication_allergies \
         WHERE patient_id = ANY($1) ORDER BY created_sequence, allergy_id",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    for (id, patient, created, last, bytes) in allergies {
        let allergy = stored_resource::<pb::Allergy>("resource", id, &bytes)?;
        let p = patients.entry(patient).or_default();
        p.sequences.insert(
            allergy.allergy_id.clone(),
            Sequences {
                created,
                last,
                changed: false,
            },
        );
        p.record.allergies.push(allergy);
    }
    let authorisations: Vec<(Uuid, Uuid, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT authorisation_id, patient_id, created_sequence, last_sequence, resource FROM medication_authorisations \
         WHERE patient_id = ANY($1) ORDER BY created_sequence, authorisation_id",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    for (id, patient, created, last, bytes) in authorisations {
        let a = stored_resource::<pb::Authorisation>("resource", id, &bytes)?;
        let p = patients.entry(patient).or_default();
        p.sequences.insert(
            a.authorisation_id.clone(),
            Sequences {
                created,
                last,
                changed: false,
            },
        );
        p.record.authorisations.push(a);
    }
    Ok(patients)
}

fn allergy_status(status: i32) -> &'static str {
    match pb::AllergyStatus::try_from(status).unwrap_or_default() {
        pb::AllergyStatus::Resolved => "resolved",
        pb::AllergyStatus::EnteredInError => "entered_in_error",
        _ => "active",
    }
}

async fn write_allergies(
    tx: &mut PgConnection,
    patients: &HashMap<Uuid, Patient>,
) -> Result<(), ProjectionError> {
    let (mut id, mut patient_id, mut status, mut created, mut last, mut resource) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (pid, p) in patients {
        for allergy in &p.record.allergies {
            let Some(s) = p.sequences.get(&allergy.allergy_id).filter(|s| s.changed) else {
                continue;
            };
            let Ok(uuid) = Uuid::parse_str(&allergy.allergy_id) else {
                return Err(ProjectionError::Unapplicable {
                    sequence: s.last as u64,
                    subject: pid.to_string(),
                    reason: format!("allergy id {} is not a UUID", allergy.allergy_id),
                });
            };
            let mut shown = allergy.clone();
            shown.patient_id = pid.to_string();
            shown.stream_sequence = s.last as u64;
            id.push(uuid);
            patient_id.push(*pid);
            status.push(allergy_status(allergy.status).to_owned());
            created.push(s.created);
            last.push(s.last);
            resource.push(shown.encode_to_vec());
        }
    }
    if id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO medication_allergies (allergy_id, patient_id, status, created_sequence, last_sequence, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[]) \
         ON CONFLICT (allergy_id) DO UPDATE SET status = EXCLUDED.status, last_sequence = EXCLUDED.last_sequence, \
         resource = EXCLUDED.resource",
    )
    .bind(id)
    .bind(patient_id)
    .bind(status)
    .bind(created)
    .bind(last)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_authorisations(
    tx: &mut PgConnection,
    patients: &HashMap<Uuid, Patient>,
) -> Result<(), ProjectionError> {
    let n = patients.len();
    let mut id = Vec::with_capacity(n);
    let mut patient_id = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut product = Vec::with_capacity(n);
    let mut issues = Vec::with_capacity(n);
    let mut last_issued = Vec::with_capacity(n);
    let mut review = Vec::with_capacity(n);
    let mut expiry = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut resource = Vec::with_capacity(n);
    for (pid, p) in patients {
        for a in &p.record.authorisations {
            let Some(s) = p.sequences.get(&a.authorisation_id).filter(|s| s.changed) else {
                continue;
            };
            let Ok(uuid) = Uuid::parse_str(&a.authorisation_id) else {
                return Err(ProjectionError::Unapplicable {
                    sequence: s.last as u64,
                    subject: pid.to_string(),
                    reason: format!("authorisation id {} is not a UUID", a.authorisation_id),
                });
            };
            let details = a.details.clone().unwrap_or_default();
            let mut shown = a.clone();
            shown.patient_id = pid.to_string();
            shown.stream_sequence = s.last as u64;
            id.push(uuid);
            patient_id.push(*pid);
            status.push(
                if a.status == pb::AuthorisationStatus::Discontinued as i32 {
                    "discontinued"
                } else {
                    "active"
                }
                .to_owned(),
            );
            product.push(details.product.map(|p| p.code).unwrap_or_default());
            issues.push(a.issues_made as i32);
            last_issued.push(day(a.last_issued_on.as_ref()));
            review.push(day(details.review_date.as_ref()));
            expiry.push(day(details.expiry_date.as_ref()));
            created.push(s.created);
            last.push(s.last);
            resource.push(shown.encode_to_vec());
        }
    }
    if id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO medication_authorisations (authorisation_id, patient_id, status, product_code, issues_made, \
         last_issued_on, review_date, expiry_date, created_sequence, last_sequence, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::date[], $7::date[], \
         $8::date[], $9::bigint[], $10::bigint[], $11::bytea[]) \
         ON CONFLICT (authorisation_id) DO UPDATE SET status = EXCLUDED.status, product_code = EXCLUDED.product_code, \
         issues_made = EXCLUDED.issues_made, last_issued_on = EXCLUDED.last_issued_on, \
         review_date = EXCLUDED.review_date, expiry_date = EXCLUDED.expiry_date, \
         last_sequence = EXCLUDED.last_sequence, resource = EXCLUDED.resource",
    )
    .bind(id)
    .bind(patient_id)
    .bind(status)
    .bind(product)
    .bind(issues)
    .bind(last_issued)
    .bind(review)
    .bind(expiry)
    .bind(created)
    .bind(last)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
