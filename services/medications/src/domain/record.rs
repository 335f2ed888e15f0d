//! The aggregate: one patient's medication record (allergies,
//! authorisations and their issues) as the resources it shows. `apply`
//! folds one event in, holds no rules and never fails; the write model and
//! the read model both use it.

use carelog_kernel::Aggregate;
use carelog_proto::medications::v1 as pb;
use pb::event::Event as E;

/// A patient's medication record (the patient id and sequences are set by
/// whoever holds it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MedicationRecord {
    pub allergies: Vec<pb::Allergy>,
    pub authorisations: Vec<pb::Authorisation>,
    pub issues: Vec<pb::Issue>,
    /// The ingredient codes of each authorisation's product, as the
    /// catalogue gave them when it was authorised (its allergy check on
    /// each issue).
    pub ingredients: std::collections::HashMap<String, Vec<String>>,
}

impl MedicationRecord {
    pub fn allergy(&self, id: &str) -> Option<&pb::Allergy> {
        self.allergies.iter().find(|a| a.allergy_id == id)
    }

    pub fn authorisation(&self, id: &str) -> Option<&pb::Authorisation> {
        self.authorisations
            .iter()
            .find(|a| a.authorisation_id == id)
    }

    pub fn issue(&self, id: &str) -> Option<&pb::Issue> {
        self.issues.iter().find(|i| i.issue_id == id)
    }

    fn authorisation_mut(&mut self, id: &str) -> Option<&mut pb::Authorisation> {
        self.authorisations
            .iter_mut()
            .find(|a| a.authorisation_id == id)
    }

    fn allergy_mut(&mut self, id: &str) -> Option<&mut pb::Allergy> {
        self.allergies.iter_mut().find(|a| a.allergy_id == id)
    }

    /// Overrides with the marking of the item each overrode. An override
    /// recorded before overrides carried it takes it from the allergy or
    /// authorisation of this record it names, so that reads withhold it
    /// alike (ADR 0024). One naming an item this record does not hold (a
    /// merged record's allergy) is marked confidential to no organisation:
    /// withheld from every reader rather than shown unchecked. One recorded
    /// before overrides named the prescriber's organisation is taken as
    /// given by `prescriber` (none, for an issue's: its event does not say
    /// who issued, so its reason is shown only inside the item's
    /// organisation).
    fn marked(
        &self,
        overrides: &[pb::SafetyOverride],
        prescriber: &str,
    ) -> Vec<pb::SafetyOverride> {
        use pb::safety_override::Kind;
        let unknown = (true, String::new());
        overrides
            .iter()
            .map(|o| {
                let mut o = o.clone();
                let marking = match Kind::try_from(o.kind) {
                    _ if !o.author_organisation_ods.is_empty() => None,
                    Ok(Kind::Allergy) => Some(self.allergy(&o.allergy_id).map_or_else(
                        || unknown.clone(),
                        |a| (a.confidential, a.author_organisation_ods.clone()),
                    )),
                    Ok(Kind::Duplicate) => {
                        Some(self.authorisation(&o.authorisation_id).map_or_else(
                            || unknown.clone(),
                            |a| (a.confidential, a.author_organisation_ods.clone()),
                        ))
                    }
                    _ => None,
                };
                if let Some((confidential, author)) = marking {
                    o.confidential = confidential;
                    o.author_organisation_ods = author;
                }
                if o.prescriber_organisation_ods.is_empty() {
                    o.prescriber_organisation_ods = prescriber.to_owned();
                }
                o
            })
            .collect()
    }

    pub fn active_allergies(&self) -> impl Iterator<Item = &pb::Allergy> {
        self.allergies
            .iter()
            .filter(|a| a.status == pb::AllergyStatus::Active as i32)
    }

    pub fn active_authorisations(&self) -> impl Iterator<Item = &pb::Authorisation> {
        self.authorisations
            .iter()
            .filter(|a| a.status == pb::AuthorisationStatus::Active as i32)
    }
}

/// The ids of the resources an event changes: (allergies, authorisations).
pub fn touched(event: &pb::Event) -> (Vec<&str>, Vec<&str>) {
    match &event.event {
        Some(E::AllergyRecorded(e)) => (vec![&e.allergy_id], vec![]),
        Some(E::AllergyResolved(e)) => (vec![&e.allergy_id], vec![]),
        Some(E::AllergyEnteredInError(e)) => (vec![&e.allergy_id], vec![]),
        Some(E::MedicationAuthorised(e)) => (vec![], vec![&e.authorisation_id]),
        Some(E::PrescriptionIssued(e)) => (vec![], vec![&e.authorisation_id]),
        Some(E::MedicationDiscontinued(e)) => (vec![], vec![&e.authorisation_id]),
        Some(E::MedicationReviewed(e)) => (
            vec![],
            e.authorisation_ids.iter().map(String::as_str).collect(),
        ),
        None => (vec![], vec![]),
    }
}

impl Aggregate for MedicationRecord {
    const CONTEXT: &'static str = "medications";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match &event.event {
            Some(E::AllergyRecorded(_)) => "AllergyRecorded",
            Some(E::AllergyResolved(_)) => "AllergyResolved",
            Some(E::AllergyEnteredInError(_)) => "AllergyEnteredInError",
            Some(E::MedicationAuthorised(_)) => "MedicationAuthorised",
            Some(E::PrescriptionIssued(_)) => "PrescriptionIssued",
            Some(E::MedicationDiscontinued(_)) => "MedicationDiscontinued",
            Some(E::MedicationReviewed(_)) => "MedicationReviewed",
            None => "Unknown",
        }
    }

    fn apply(&mut self, event: &pb::Event) {
        match &event.event {
            Some(E::AllergyRecorded(e)) => self.allergies.push(pb::Allergy {
                allergy_id: e.allergy_id.clone(),
                details: e.details.clone(),
                status: pb::AllergyStatus::Active as i32,
                recorded_on: e.recorded_on,
                confidential: e.confidential,
                author_organisation_ods: e.author_organisation_ods.clone(),
                ..Default::default()
            }),
            Some(E::AllergyResolved(e)) => {
                if let Some(a) = self.allergy_mut(&e.allergy_id) {
                    a.status = pb::AllergyStatus::Resolved as i32;
                    a.resolved_on = e.resolved_on;
                    a.resolution_reason = e.reason.clone();
                }
            }
            Some(E::AllergyEnteredInError(e)) => {
                if let Some(a) = self.allergy_mut(&e.allergy_id) {
                    a.status = pb::AllergyStatus::EnteredInError as i32;
                    a.entered_in_error_reason = e.reason.clone();
                }
            }
            Some(E::MedicationAuthorised(e)) => {
                self.ingredients
                    .insert(e.authorisation_id.clone(), e.ingredient_codes.clone());
                let overrides = self.marked(&e.overrides, &e.author_organisation_ods);
                self.authorisations.push(pb::Authorisation {
                    authorisation_id: e.authorisation_id.clone(),
                    details: e.details.clone(),
                    status: pb::AuthorisationStatus::Active as i32,
                    authorised_on: e.authorised_on,
                    replaces_authorisation_id: e.replaces_authorisation_id.clone(),
                    overrides,
                    confidential: e.confidential,
                    author_organisation_ods: e.author_organisation_ods.clone(),
                    ..Default::default()
                });
            }
            Some(E::PrescriptionIssued(e)) => {
                let overrides = self.marked(&e.overrides, "");
                let Some(a) = self.authorisation_mut(&e.authorisation_id) else {
                    return;
                };
                a.issues_made = a.issues_made.max(e.issue_number);
                a.last_issued_on = e.issued_on;
                a.overrides.extend(overrides);
                let details = a.details.clone().unwrap_or_default();
                let (confidential, author_organisation_ods) =
                    (a.confidential, a.author_organisation_ods.clone());
                self.issues.push(pb::Issue {
                    issue_id: e.issue_id.clone(),
                    authorisation_id: e.authorisation_id.clone(),
                    issue_number: e.issue_number,
                    product: details.product,
                    dose_instructions: details.dose_instructions,
                    quantity: details.quantity,
                    quantity_unit: details.quantity_unit,
                    issued_on: e.issued_on,
                    confidential,
                    author_organisation_ods,
                    ..Default::default()
                });
            }
            Some(E::MedicationDiscontinued(e)) => {
                if let Some(a) = self.authorisation_mut(&e.authorisation_id) {
                    a.status = pb::AuthorisationStatus::Discontinued as i32;
                    a.discontinued_on = e.discontinued_on;
                    a.discontinued_reason = e.reason.clone();
                    a.replaced_by_authorisation_id = e.replaced_by_authorisation_id.clone();
                }
            }
            Some(E::MedicationReviewed(e)) => {
                for id in &e.authorisation_ids {
                    if let Some(a) = self.authorisation_mut(id) {
                        a.last_reviewed_on = e.reviewed_on;
                        if let Some(d) = a.details.as_mut() {
                            d.review_date = e.next_review_date;
                        }
                    }
                }
            }
            None => {}
        }
    }
}
