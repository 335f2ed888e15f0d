//! The access guard: what every RPC handler asks after the role check,
//! before it touches a patient's record (ADR 0020, 0021). It gathers the
//! facts (the patient from the demographics history; agreements, groups and
//! relationships from the read models, through `AccessFacts`), asks the one
//! decision (`access_control::decide`), records every refusal and every
//! emergency access on `CARELOG_ACCESS`, and raises the privacy officer's
//! task for an emergency access (`BreakGlassHook`).

use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use tonic::Code;

use carelog_proto::access::v1 as pb;

use crate::access::{self, AccessSink};
use crate::access_control::{
    self, Caller, PatientAccess, Question, Refusal, Relationship, Rule, Sharing,
};
use crate::actor::{Actor, RequestContext};
use crate::error::Failure;
use crate::ids::PatientId;
use crate::policy::{Permission, Policy};

/// Where the guard's facts come from.
pub trait AccessFacts: Send + Sync + std::fmt::Debug {
    /// The patient's facts from the demographics history (freshest: a
    /// patient registered a moment ago is known); `None` when unknown.
    fn patient(&self, id: PatientId) -> BoxFuture<'_, Result<Option<PatientAccess>, Failure>>;

    /// The agreements whose receiving side holds `organisation` (directly
    /// or through a group), and the groups they name.
    fn sharing<'a>(&'a self, organisation: &'a str) -> BoxFuture<'a, Result<Sharing, Failure>>;

    /// The relationships on record with these patients: open tasks and
    /// unsigned consultations, each with its patient id.
    fn relationships<'a>(
        &'a self,
        patients: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Relationship)>, Failure>>;
}

/// Raises the privacy officer's review of an emergency access: a task in
/// the work list of the patient's registered organisation, created once per
/// access event.
pub trait BreakGlassHook: Send + Sync + std::fmt::Debug {
    fn raise<'a>(&'a self, event: &'a pb::RecordAccessed) -> BoxFuture<'a, Result<(), Failure>>;
}

/// The outcome of one patient of a list: admitted under a rule, or not.
pub type Verdict = Result<Rule, Refusal>;

/// Asked by every handler; see the module documentation.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Arc<Policy>,
    facts: Arc<dyn AccessFacts>,
    log: Arc<dyn AccessSink>,
    hook: Option<Arc<dyn BreakGlassHook>>,
}

impl Guard {
    pub fn new(policy: Arc<Policy>, facts: Arc<dyn AccessFacts>, log: Arc<dyn AccessSink>) -> Self {
        Self {
            policy,
            facts,
            log,
            hook: None,
        }
    }

    /// Emergency accesses raise the privacy officer's task through `hook`.
    pub fn with_break_glass(mut self, hook: Arc<dyn BreakGlassHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn caller(ctx: &RequestContext) -> Caller<'_> {
        Caller {
            user_id: &ctx.actor.user_id,
            organisation: ctx.actor.organisation.as_str(),
            teams: &ctx.teams,
        }
    }

    /// Admits the caller to one patient or refuses (PERMISSION_DENIED with
    /// the reason code, the refusal recorded). An unknown patient is
    /// NOT_FOUND. On success the context names the rule that held.
    pub async fn admit(
        &self,
        ctx: &mut RequestContext,
        patient: PatientId,
    ) -> Result<PatientAccess, Failure> {
        let facts = self
            .facts
            .patient(patient)
            .await?
            .ok_or_else(|| Failure::not_found("patient", &patient.to_string()))?;
        ctx.registered_organisation = facts.registered_practice.clone();
        let break_glass = (!ctx.break_glass.is_empty()).then_some(ctx.break_glass.as_str());
        match self.verdict(ctx, &facts, break_glass).await? {
            Ok(rule) => {
                ctx.access_rule = rule.to_string();
                if rule == Rule::BreakGlass {
                    self.broke_glass(ctx, &facts).await?;
                }
                Ok(facts)
            }
            Err(refusal) => Err(self.refuse(ctx, &facts.patient_id, refusal).await),
        }
    }

    /// The verdict for one patient.
    async fn verdict(
        &self,
        ctx: &RequestContext,
        facts: &PatientAccess,
        break_glass: Option<&str>,
    ) -> Result<Verdict, Failure> {
        Ok(self
            .decide(ctx, std::slice::from_ref(facts), break_glass)
            .await?
            .pop()
            .unwrap_or(Err(Refusal::NoLegitimateRelationship)))
    }

    /// Grants the caller access on facts it holds already (the record a
    /// command is about to decide on, ADR 0032) when an ordinary rule holds:
    /// true, with the rule named in the context. Otherwise false, and
    /// nothing is recorded: no refusal and no emergency access is decided on
    /// facts that may be stale, so the caller then admits as usual (also
    /// when the guard's own reads fail here).
    pub async fn try_admit_on(&self, ctx: &mut RequestContext, facts: &PatientAccess) -> bool {
        if !ctx.break_glass.is_empty() {
            return false;
        }
        match self.verdict(ctx, facts, None).await {
            Ok(Ok(rule)) => {
                ctx.registered_organisation = facts.registered_practice.clone();
                ctx.access_rule = rule.to_string();
                true
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }

    /// The facts of a patient named by its id text; `None` when the id is
    /// not a patient's.
    pub async fn patient_facts(&self, id: &str) -> Result<Option<PatientAccess>, Failure> {
        match PatientId::parse(id) {
            Ok(id) => self.facts.patient(id).await,
            Err(_) => Ok(None),
        }
    }

    /// Of these patients (ids as text; repeats and blanks ignored), those the
    /// caller may access by an ordinary rule, each with the rule: for lists
    /// that span patients (work lists, audit activity), which show only
    /// them. Unknown patients are left out. Nothing is recorded: the caller
    /// records what it shows, naming each rule.
    pub async fn admitted<'a>(
        &self,
        ctx: &RequestContext,
        patients: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashMap<String, String>, Failure> {
        Ok(self
            .admitted_with_facts(ctx, patients)
            .await?
            .into_iter()
            .map(|(id, (rule, _))| (id, rule))
            .collect())
    }

    /// [`Guard::admitted`], each patient with the access facts it was
    /// decided on (its restriction, for what the caller is shown of it).
    pub async fn admitted_with_facts<'a>(
        &self,
        ctx: &RequestContext,
        patients: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashMap<String, (String, PatientAccess)>, Failure> {
        let mut ids: Vec<&str> = patients.into_iter().filter(|p| !p.is_empty()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut facts = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(f) = self.patient_facts(id).await? {
                facts.push(f);
            }
        }
        let verdicts = self.verdicts(ctx, &facts).await?;
        Ok(facts
            .into_iter()
            .zip(verdicts)
            .filter_map(|(f, verdict)| {
                verdict
                    .ok()
                    .map(|rule| (f.patient_id.clone(), (rule.to_string(), f)))
            })
            .collect())
    }

    /// The verdict for each of several patients (a search's hits), without
    /// breaking glass and without recording anything: the caller records
    /// what it shows.
    pub async fn verdicts(
        &self,
        ctx: &RequestContext,
        patients: &[PatientAccess],
    ) -> Result<Vec<Verdict>, Failure> {
        self.decide(ctx, patients, None).await
    }

    async fn decide(
        &self,
        ctx: &RequestContext,
        patients: &[PatientAccess],
        break_glass: Option<&str>,
    ) -> Result<Vec<Verdict>, Failure> {
        let caller = Self::caller(ctx);
        let outside: Vec<String> = patients
            .iter()
            .filter(|p| p.registered_practice != caller.organisation)
            .map(|p| p.patient_id.clone())
            .collect();
        let (sharing, relationships) = if outside.is_empty() {
            (Sharing::default(), Vec::new())
        } else {
            (
                self.facts.sharing(caller.organisation).await?,
                self.facts.relationships(&outside).await?,
            )
        };
        let now = Utc::now();
        Ok(patients
            .iter()
            .map(|patient| {
                let mine: Vec<Relationship> = relationships
                    .iter()
                    .filter(|(id, _)| *id == patient.patient_id)
                    .map(|(_, r)| r.clone())
                    .collect();
                access_control::decide(&Question {
                    caller,
                    patient,
                    sharing: &sharing,
                    relationships: &mine,
                    break_glass,
                    purpose_of_use: &ctx.purpose_of_use,
                    now,
                })
            })
            .collect())
    }

    /// Admits the registration of a patient at `practice`: only at the
    /// caller's own organisation.
    pub async fn admit_registration(
        &self,
        ctx: &mut RequestContext,
        practice: &str,
    ) -> Result<(), Failure> {
        match access_control::decide_registration(&Self::caller(ctx), practice) {
            Ok(rule) => {
                ctx.access_rule = rule.to_string();
                Ok(())
            }
            Err(refusal) => Err(self.refuse(ctx, "", refusal).await),
        }
    }

    /// Whether this caller sees a restricted patient's hidden fields.
    pub fn sees_restricted(&self, ctx: &RequestContext, patient: &PatientAccess) -> bool {
        self.sees_restricted_as(&ctx.actor, patient)
    }

    /// Whether `actor` (the caller, or a reader an audit query shows) sees
    /// a restricted patient's hidden fields.
    pub fn sees_restricted_as(&self, actor: &Actor, patient: &PatientAccess) -> bool {
        access_control::sees_restricted(
            actor.organisation.as_str(),
            self.policy
                .grants(&actor.role, Permission::ManageDemographics),
            patient,
        )
    }

    /// Records a refusal and returns what the caller is told.
    pub async fn refuse(
        &self,
        ctx: &RequestContext,
        patient_id: &str,
        refusal: Refusal,
    ) -> Failure {
        self.record_refusal_of(ctx, patient_id, refusal.code())
            .await;
        refusal.failure()
    }

    /// `outcome` of a command on `patient`, its refusal recorded when it is
    /// one by a rule of the context (`PERMISSION_DENIED`: not a party to
    /// the task, not the consultation's author), as every refusal is
    /// (ADR 0021); any other failure is not a refusal and records nothing.
    pub async fn recorded<T>(
        &self,
        ctx: &RequestContext,
        patient: PatientId,
        outcome: Result<T, Failure>,
    ) -> Result<T, Failure> {
        if let Err(failure) = &outcome
            && failure.code == Code::PermissionDenied
        {
            self.record_refusal_of(ctx, &patient.to_string(), failure.reason)
                .await;
        }
        outcome
    }

    async fn record_refusal_of(&self, ctx: &RequestContext, patient_id: &str, reason_code: &str) {
        let (service, method) = ctx.service_and_method();
        let event = access::refused(ctx, service, method, patient_id, reason_code);
        tracing::warn!(
            user_id = %ctx.actor.user_id,
            organisation = %ctx.actor.organisation,
            rpc = %ctx.rpc,
            reason = reason_code,
            "access refused"
        );
        // The refusal stands whether or not it could be recorded.
        if let Err(e) = self.log.append(vec![event]).await {
            tracing::error!(error = %e, rpc = %ctx.rpc, "a refusal could not be recorded");
        }
    }

    /// Records an emergency access and raises the privacy officer's task;
    /// when either fails the access is refused (UNAVAILABLE): an emergency
    /// access nobody will review does not happen.
    async fn broke_glass(
        &self,
        ctx: &RequestContext,
        facts: &PatientAccess,
    ) -> Result<(), Failure> {
        let (service, method) = ctx.service_and_method();
        let event = access::granted(
            ctx,
            service,
            method,
            &facts.patient_id,
            access::BREAK_GLASS_RULE,
        );
        tracing::warn!(
            user_id = %ctx.actor.user_id,
            organisation = %ctx.actor.organisation,
            rpc = %ctx.rpc,
            "emergency access (break glass)"
        );
        let unrecorded = |e: Failure| {
            tracing::error!(error = %e, "emergency access not recorded; refused");
            Failure::unavailable(
                "the emergency access could not be recorded, so it is refused; retry",
            )
        };
        self.log
            .append(vec![event.clone()])
            .await
            .map_err(unrecorded)?;
        if let Some(hook) = &self.hook {
            hook.raise(&event).await.map_err(unrecorded)?;
        }
        Ok(())
    }
}

/// A refusal of the role check, noted by the interceptor (which cannot
/// wait) for the server's RPC layer to record.
#[derive(Debug, Clone, Default)]
pub struct RoleRefusal(Arc<Mutex<Option<Actor>>>);

impl RoleRefusal {
    pub fn note(&self, actor: &Actor) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(actor.clone());
        }
    }

    pub fn take(&self) -> Option<Actor> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Records a call refused by the role check (its patient is not known).
pub async fn record_role_refusal(log: &dyn AccessSink, actor: Actor, rpc: &str) {
    let mut ctx = RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new());
    ctx.rpc = rpc.to_owned();
    let (service, method) = ctx.service_and_method();
    let event = access::refused(&ctx, service, method, "", Refusal::PermissionMissing.code());
    if let Err(e) = log.append(vec![event]).await {
        tracing::error!(error = %e, rpc, "a refusal could not be recorded");
    }
}
