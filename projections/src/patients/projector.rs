//! Applies demographics commits to `patients`, `patient_addresses` and
//! `patient_versions`, a batch at a time (one statement per table). A
//! restricted patient's postcodes are left out of `patient_addresses`.

use std::collections::HashMap;

use carelog_demographics::domain::PatientRecord;
use carelog_kernel::Aggregate as _;
use carelog_kernel::date::PartialDate;
use carelog_kernel::envelope::{StoredCommit, timestamp};
use carelog_kernel::store::ContextStream;
use carelog_proto::demographics::v1 as pb;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{
    EnvelopeColumns, Projection, ProjectionError, aggregate_ids, stored_resource,
};

#[derive(Debug, Default)]
pub struct PatientsProjection;

#[derive(Default)]
struct Versions {
    patient_id: Vec<Uuid>,
    version: Vec<i64>,
    envelope: EnvelopeColumns,
    purpose_of_use: Vec<String>,
    resource: Vec<Vec<u8>>,
}

impl Projection for PatientsProjection {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(PatientRecord::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["patients", "patient_addresses", "patient_versions"]
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
            let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as("SELECT patient_id, resource FROM patients WHERE patient_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
            let mut records: HashMap<Uuid, PatientRecord> = HashMap::with_capacity(rows.len());
            for (id, bytes) in rows {
                let patient = stored_resource::<pb::Patient>("resource", id, &bytes)?;
                records.insert(id, PatientRecord::from_resource(patient));
            }
            let mut versions = Versions::default();
            let mut touched: Vec<Uuid> = Vec::new();
            for (stored, id) in batch.iter().zip(&ids) {
                let record = records.entry(*id).or_default();
                let expected = record.patient.version + 1;
                if stored.commit.aggregate_version as i64 != expected {
                    return Err(ProjectionError::unapplicable(
                        stored,
                        format!("version {} follows version {}", stored.commit.aggregate_version, record.patient.version),
                    ));
                }
                let mut types = Vec::with_capacity(stored.commit.events.len());
                for e in &stored.commit.events {
                    let event = pb::Event::decode(e.payload.as_slice()).map_err(|err| ProjectionError::unapplicable(stored, err))?;
                    if event.event.is_none() {
                        return Err(ProjectionError::unapplicable(stored, format!("unknown event type {}", e.event_type)));
                    }
                    record.apply(&event);
                    types.push(e.event_type.clone());
                }
                let p = &mut record.patient;
                p.patient_id = id.to_string();
                p.version = expected;
                p.stream_sequence = stored.stream_sequence;
                p.updated_at = Some(timestamp(stored.recorded_at()));
                versions.patient_id.push(*id);
                versions.version.push(expected);
                versions.envelope.push(stored, &types);
                versions.purpose_of_use.push(stored.commit.purpose_of_use.clone());
                versions.resource.push(p.encode_to_vec());
                if !touched.contains(id) {
                    touched.push(*id);
                }
            }
            upsert(tx, &touched, &records).await?;
            sqlx::query(
                "INSERT INTO patient_versions (patient_id, version, stream_sequence, event_types, actor_user_id, \
                 actor_display_name, actor_role, actor_organisation, purpose_of_use, reason, recorded_at, resource) \
                 SELECT patient_id, version, stream_sequence, string_to_array(event_types, ','), actor_user_id, \
                 actor_display_name, actor_role, actor_organisation, purpose_of_use, reason, recorded_at, resource \
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::bytea[]) \
                 AS v(patient_id, version, stream_sequence, event_types, actor_user_id, actor_display_name, actor_role, \
                 actor_organisation, purpose_of_use, reason, recorded_at, resource) \
                 ON CONFLICT (patient_id, version) DO NOTHING",
            )
            .bind(versions.patient_id)
            .bind(versions.version)
            .bind(versions.envelope.stream_sequence)
            .bind(versions.envelope.event_types)
            .bind(versions.envelope.actor_user_id)
            .bind(versions.envelope.actor_display_name)
            .bind(versions.envelope.actor_role)
            .bind(versions.envelope.actor_organisation)
            .bind(versions.purpose_of_use)
            .bind(versions.envelope.reason)
            .bind(versions.envelope.recorded_at)
            .bind(versions.resource)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        .boxed()
    }
}

/// Writes the current rows (and search keys) of the touched patients.
async fn upsert(
    tx: &mut PgConnection,
    touched: &[Uuid],
    records: &HashMap<Uuid, PatientRecord>,
) -> Result<(), ProjectionError> {
    let n = touched.len();
    let (
        mut nhs,
        mut family,
        mut earliest,
        mut latest,
        mut merged,
        mut version,
        mut seq,
        mut updated,
        mut resource,
    ) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut addr_patient, mut addr_position, mut addr_postcode) =
        (Vec::new(), Vec::new(), Vec::new());
    for id in touched {
        let Some(record) = records.get(id) else {
            continue;
        };
        let p = &record.patient;
        let d = record.details();
        nhs.push(Some(d.nhs_number.clone()).filter(|n| !n.is_empty()));
        family.push(
            d.name
                .as_ref()
                .map(|n| n.family.to_uppercase())
                .unwrap_or_default(),
        );
        let birth = PartialDate::from_proto(d.birth_date.as_ref()).ok();
        earliest.push(birth.map(|b| b.earliest()));
        latest.push(birth.map(|b| b.latest()));
        merged.push(Uuid::parse_str(&p.merged_into_patient_id).ok());
        version.push(p.version);
        seq.push(p.stream_sequence as i64);
        updated.push(
            carelog_kernel::envelope::from_timestamp(p.updated_at.as_ref()).unwrap_or_default(),
        );
        resource.push(p.encode_to_vec());
        // A restricted patient's postcodes are not searchable: a hit would
        // tell whoever searched where the patient lives (the S flag).
        let searchable = if p.restricted {
            &[][..]
        } else {
            &d.addresses[..]
        };
        for (i, a) in searchable
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.postcode.is_empty())
        {
            addr_patient.push(*id);
            addr_position.push(i as i32);
            addr_postcode.push(a.postcode.clone());
        }
    }
    sqlx::query(
        "INSERT INTO patients (patient_id, nhs_number, family_name_upper, birth_date_earliest, birth_date_latest, \
         merged_into, version, last_sequence, updated_at, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::date[], $5::date[], $6::uuid[], $7::bigint[], \
         $8::bigint[], $9::timestamptz[], $10::bytea[]) \
         ON CONFLICT (patient_id) DO UPDATE SET nhs_number = EXCLUDED.nhs_number, \
         family_name_upper = EXCLUDED.family_name_upper, birth_date_earliest = EXCLUDED.birth_date_earliest, \
         birth_date_latest = EXCLUDED.birth_date_latest, merged_into = EXCLUDED.merged_into, \
         version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at, \
         resource = EXCLUDED.resource",
    )
    .bind(touched)
    .bind(nhs)
    .bind(family)
    .bind(earliest)
    .bind(latest)
    .bind(merged)
    .bind(version)
    .bind(seq)
    .bind(updated)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM patient_addresses WHERE patient_id = ANY($1)")
        .bind(touched)
        .execute(&mut *tx)
        .await?;
    if !addr_patient.is_empty() {
        sqlx::query(
            "INSERT INTO patient_addresses (patient_id, position, postcode) \
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[])",
        )
        .bind(addr_patient)
        .bind(addr_position)
        .bind(addr_postcode)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
