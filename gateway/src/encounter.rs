//! Consultations as FHIR R4 Encounter resources (UK Core), and the search
//! that lists a patient's. The entries of a consultation are served as
//! what they are (Condition for the problem list), not inside the
//! Encounter. Pure.

use carelog_proto::consultations::v1 as pb;
use serde_json::{Map, Value, json};

use crate::outcome::{Unrepresentable, Violation};
use crate::patient::ODS_SYSTEM;

const UK_CORE_ENCOUNTER: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The search parameters of Encounter, with what each does.
pub const PARAMETERS: [(&str, &str, &str); 1] = [(
    "patient",
    "reference",
    "Required: the patient, as Patient/<id>, this server's full URL of it, or the id; most recent first",
)];

/// The FHIR name of a field of ListConsultationsRequest.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "patient_id" => "patient",
        other => crate::search::paging_parameter_of(other),
    }
}

/// A query string's pairs as a ListConsultations request; `base` is this
/// server's FHIR base URL.
pub fn request(
    pairs: &[(String, String)],
    base: &str,
) -> Result<pb::ListConsultationsRequest, Vec<Violation>> {
    crate::search::patient_list(pairs, base, &[], |list, _, _| {
        pb::ListConsultationsRequest {
            patient_id: list.patient_id,
            page_size: list.page_size,
            page_token: list.page_token,
            ..Default::default()
        }
    })
}

/// The Encounter resource for a consultation as carelog answered it in a
/// list of `patient`'s. A status or type the gateway does not know is an
/// error, never a resource a client could misread.
pub fn encounter(c: &pb::Consultation, patient: &str) -> Result<Value, Unrepresentable> {
    use pb::{ConsultationStatus as S, ConsultationType as T};
    let status = if c.entered_in_error {
        "entered-in-error"
    } else {
        match S::try_from(c.status) {
            // A draft is a record not yet signed, which says nothing of
            // whether the encounter is going on.
            Ok(S::Draft) => "unknown",
            Ok(S::Signed) => "finished",
            _ => {
                return Err(Unrepresentable(
                    "a consultation with a status the gateway does not know",
                ));
            }
        }
    };
    let (class, class_display, kind) = match T::try_from(c.r#type) {
        Ok(T::FaceToFace) => ("AMB", "ambulatory", "Face to face"),
        Ok(T::Telephone) => ("VR", "virtual", "Telephone"),
        Ok(T::Video) => ("VR", "virtual", "Video"),
        Ok(T::EConsultation) => ("VR", "virtual", "Online consultation"),
        Ok(T::HomeVisit) => ("HH", "home health", "Home visit"),
        _ => {
            return Err(Unrepresentable(
                "a consultation of a type the gateway does not know",
            ));
        }
    };
    let mut meta = Map::new();
    meta.insert("profile".into(), json!([UK_CORE_ENCOUNTER]));
    if c.version > 0 {
        meta.insert("versionId".into(), json!(c.version.to_string()));
    }
    if let Some(at) = c.updated_at.as_ref().and_then(crate::patient::timestamp) {
        meta.insert("lastUpdated".into(), json!(at));
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Encounter"));
    out.insert("id".into(), json!(c.consultation_id));
    out.insert("meta".into(), Value::Object(meta));
    out.insert("status".into(), json!(status));
    out.insert(
        "class".into(),
        json!({ "system": ACT_CODE, "code": class, "display": class_display }),
    );
    out.insert("type".into(), json!([{ "text": kind }]));
    out.insert(
        "subject".into(),
        json!({ "reference": format!("Patient/{patient}") }),
    );
    if let Some(author) = c.author.as_ref().filter(|a| !a.display_name.is_empty()) {
        out.insert(
            "participant".into(),
            json!([{
                "type": [{ "coding": [{ "system": PARTICIPATION, "code": "PPRF", "display": "primary performer" }] }],
                "individual": { "display": author.display_name }
            }]),
        );
    }
    if let Some(start) = c.start_time.as_ref().and_then(crate::patient::timestamp) {
        out.insert("period".into(), json!({ "start": start }));
    }
    if !c.organisation_ods.is_empty() {
        out.insert(
            "serviceProvider".into(),
            json!({ "identifier": { "system": ODS_SYSTEM, "value": c.organisation_ods } }),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_visit() -> pb::Consultation {
        pb::Consultation {
            consultation_id: "0193a5b0-7c1e-7000-8000-0000000000e1".into(),
            patient_id: "p1".into(),
            r#type: pb::ConsultationType::FaceToFace as i32,
            start_time: Some(prost_types::Timestamp {
                seconds: 1_765_000_000,
                nanos: 0,
            }),
            author: Some(pb::Clinician {
                user_id: "dr-jones".into(),
                display_name: "Dr Jones".into(),
                role: "R8000".into(),
            }),
            organisation_ods: "A81001".into(),
            status: pb::ConsultationStatus::Signed as i32,
            version: 4,
            ..Default::default()
        }
    }

    #[test]
    fn a_signed_face_to_face_consultation_is_a_finished_ambulatory_encounter() {
        let r = encounter(&signed_visit(), "p1").expect("represented");
        assert_eq!(r["resourceType"], "Encounter");
        assert_eq!(r["status"], "finished");
        assert_eq!(r["class"]["code"], "AMB");
        assert_eq!(r["type"][0]["text"], "Face to face");
        assert_eq!(r["subject"]["reference"], "Patient/p1");
        assert_eq!(r["period"]["start"], "2025-12-06T05:46:40.000Z");
        assert_eq!(r["participant"][0]["individual"]["display"], "Dr Jones");
        assert_eq!(r["serviceProvider"]["identifier"]["value"], "A81001");
        assert_eq!(r["meta"]["versionId"], "4");
    }

    #[test]
    fn a_draft_is_of_unknown_status_an_error_is_entered_in_error_and_unknown_is_refused() {
        let mut c = signed_visit();
        c.status = pb::ConsultationStatus::Draft as i32;
        c.r#type = pb::ConsultationType::Telephone as i32;
        let r = encounter(&c, "p1").expect("represented");
        assert_eq!(
            (r["status"].as_str(), r["class"]["code"].as_str()),
            (Some("unknown"), Some("VR"))
        );
        c.entered_in_error = true;
        assert_eq!(
            encounter(&c, "p1").expect("represented")["status"],
            "entered-in-error"
        );
        c.entered_in_error = false;
        c.status = 0;
        assert!(encounter(&c, "p1").is_err());
        let refused: Vec<String> = request(&crate::pairs(Some("patient=p1&date=2026")), "")
            .expect_err("date is not served")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(refused, ["date"]);
    }
}
