//! Views derived from a patient's consultations, for the read models: the
//! problem list and the latest observation of each concept. Entries entered
//! in error, and every entry of a consultation entered in error, are left
//! out.

use std::collections::BTreeMap;

use carelog_kernel::Actor;
use carelog_kernel::confidential::withhold;

use carelog_proto::consultations::v1 as pb;
use prost_types::Timestamp;

use super::record::{PatientConsultations, current_entries};

fn standing(state: &PatientConsultations) -> impl Iterator<Item = (&pb::Consultation, &pb::Entry)> {
    state
        .consultations()
        .filter(|c| !c.entered_in_error)
        .flat_map(|c| current_entries(c).map(move |e| (c, e)))
}

fn key(t: Option<&Timestamp>) -> (i64, i32) {
    t.map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
}

/// Every problem entry that stands, with its current status.
pub fn problems(state: &PatientConsultations) -> Vec<pb::Problem> {
    standing(state)
        .filter_map(|(c, e)| {
            let content = e.content.as_ref()?;
            if content.kind != pb::EntryKind::Problem as i32 {
                return None;
            }
            let problem = content.problem.unwrap_or_default();
            Some(pb::Problem {
                entry_id: e.entry_id.clone(),
                consultation_id: c.consultation_id.clone(),
                concept_id: content.concept_id.clone(),
                display: content.display.clone(),
                status: problem.status,
                significance: problem.significance,
                effective_time: content.effective_time.or(c.start_time),
                text: content.text.clone(),
                stream_sequence: c.stream_sequence,
                confidential: e.confidential,
                author_organisation_ods: e.author_organisation_ods.clone(),
            })
        })
        .collect()
}

/// The most recent observation of each concept, by clinical time (a tie
/// goes to the greater entry id, so the answer never depends on order).
pub fn latest_observations(state: &PatientConsultations) -> Vec<pb::LatestObservation> {
    let mut latest: BTreeMap<String, pb::LatestObservation> = BTreeMap::new();
    for (c, e) in standing(state) {
        let Some(content) = e.content.as_ref() else {
            continue;
        };
        if content.kind != pb::EntryKind::Observation as i32 {
            continue;
        }
        let candidate = pb::LatestObservation {
            concept_id: content.concept_id.clone(),
            display: content.display.clone(),
            value: content.observation.clone(),
            effective_time: content.effective_time.or(c.start_time),
            entry_id: e.entry_id.clone(),
            consultation_id: c.consultation_id.clone(),
            stream_sequence: c.stream_sequence,
            confidential: e.confidential,
            author_organisation_ods: e.author_organisation_ods.clone(),
        };
        let newer = latest.get(&content.concept_id).is_none_or(|held| {
            (key(candidate.effective_time.as_ref()), &candidate.entry_id)
                > (key(held.effective_time.as_ref()), &held.entry_id)
        });
        if newer {
            latest.insert(content.concept_id.clone(), candidate);
        }
    }
    latest.into_values().collect()
}

/// Leaves out of a consultation the confidential entries of another
/// organisation than the caller's (and topics left without entries);
/// returns how many entries were left out.
pub fn withhold_entries(consultation: &mut pb::Consultation, actor: &Actor) -> i32 {
    let mut withheld = 0;
    for topic in &mut consultation.topics {
        withheld += withhold(&mut topic.entries, actor, |e| {
            (e.confidential, e.author_organisation_ods.as_str())
        });
    }
    if withheld > 0 {
        consultation.topics.retain(|t| !t.entries.is_empty());
    }
    withheld
}
