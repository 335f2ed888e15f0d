//! The gRPC face of sharing administration: requests are checked at the
//! edge and become commands on one group or agreement through the kernel
//! executor (request_id idempotency, actor and reason on every commit);
//! queries read the projected tables through the `queries` port. Every RPC
//! requires `administer_sharing` (the role check, policy::RPCS).

use std::sync::Arc;

use carelog_demographics::api::page;
use carelog_kernel::{Decision, Executor, Failure, OdsCode, PatientId, RequestContext, Violations};
use carelog_proto::sharing::v1 as pb;
use chrono::Utc;
use pb::sharing_service_server::SharingService;
use tonic::{Code, Request, Response, Status};

use crate::domain::{Command, Error, SharingRecord, decide};
use crate::queries::{Consistency, SharingQueries};

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Exists(id) => {
                Failure::new(Code::AlreadyExists, "ALREADY_EXISTS", message).with("id", id)
            }
            Error::NotFound(what) => {
                Failure::new(Code::NotFound, "NOT_FOUND", message).with("resource", what)
            }
            Error::AlreadyMember(ods) => {
                Failure::new(Code::AlreadyExists, "ALREADY_MEMBER", message)
                    .with("organisationOds", ods)
            }
            Error::NotMember(ods) => Failure::new(Code::FailedPrecondition, "NOT_MEMBER", message)
                .with("organisationOds", ods),
            Error::AlreadyEnded => {
                Failure::new(Code::FailedPrecondition, "AGREEMENT_ALREADY_ENDED", message)
            }
            Error::Invalid { field, rule } => Failure::invalid_field(field, rule),
        }
    }
}

/// The sharing gRPC service.
pub struct SharingApi<Q> {
    executor: Arc<Executor<SharingRecord>>,
    queries: Arc<Q>,
}

impl<Q> std::fmt::Debug for SharingApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharingApi")
    }
}

/// The id of a group or agreement a command creates: derived from (user,
/// request id) when a request id was sent, so a retry names the same one.
fn new_id(ctx: &RequestContext, kind: &str) -> PatientId {
    PatientId::from_uuid(ctx.new_resource_id(&format!("carelog.sharing.{kind}"), None))
}

fn id(field: &str, text: &str) -> Result<PatientId, Failure> {
    PatientId::parse(text.trim()).map_err(|e| Failure::invalid_field(field, e.to_string()))
}

fn ods(field: &str, text: &str, v: &mut Violations) -> String {
    v.check(field, OdsCode::parse(text))
        .map(|o| o.to_string())
        .unwrap_or_default()
}

fn party(field: &str, p: Option<pb::Party>, v: &mut Violations) -> pb::Party {
    use pb::party::Party as P;
    let checked = match p.and_then(|p| p.party) {
        Some(P::OrganisationOds(o)) => Some(P::OrganisationOds(ods(
            &format!("{field}.organisation_ods"),
            &o,
            v,
        ))),
        Some(P::GroupId(g)) => {
            if PatientId::parse(g.trim()).is_err() {
                v.add(format!("{field}.group_id"), "must be a group's id (UUID)");
            }
            Some(P::GroupId(g.trim().to_owned()))
        }
        None => {
            v.add(field, "is required: an organisation_ods or a group_id");
            None
        }
    };
    pb::Party { party: checked }
}

fn reason_required(reason: &str, v: &mut Violations) {
    if reason.trim().is_empty() {
        v.add("reason", "is required: say on what basis");
    }
}

impl<Q: SharingQueries> SharingApi<Q> {
    pub fn new(executor: Arc<Executor<SharingRecord>>, queries: Arc<Q>) -> Self {
        Self { executor, queries }
    }

    async fn run(
        &self,
        ctx: &RequestContext,
        id: PatientId,
        command: Command,
        create: bool,
    ) -> Result<(SharingRecord, i64, u64), Status> {
        let decide = |loaded: &[&carelog_kernel::Loaded<SharingRecord>]| {
            decide(&loaded[0].state, &command)
                .map(|events| Decision::single(id, events))
                .map_err(Failure::from)
        };
        let committed = if create {
            self.executor.create(ctx, id, decide).await?
        } else {
            self.executor.execute(ctx, &[id], decide).await?
        };
        let loaded = committed
            .aggregates
            .first()
            .ok_or_else(|| Failure::not_found("sharing", &id.to_string()))?;
        Ok((
            loaded.state.clone(),
            loaded.version as i64,
            committed.sequence,
        ))
    }

    async fn group_command(
        &self,
        ctx: RequestContext,
        id: PatientId,
        command: Command,
        create: bool,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        let (record, version, sequence) = self.run(&ctx, id, command, create).await?;
        let mut group = record
            .group
            .ok_or_else(|| Failure::not_found("group", &id.to_string()))?;
        group.version = version;
        group.stream_sequence = sequence;
        Ok(Response::new(group))
    }

    async fn agreement_command(
        &self,
        ctx: RequestContext,
        id: PatientId,
        command: Command,
        create: bool,
    ) -> Result<Response<pb::SharingAgreement>, Status> {
        let (record, version, sequence) = self.run(&ctx, id, command, create).await?;
        let mut agreement = record
            .agreement
            .ok_or_else(|| Failure::not_found("agreement", &id.to_string()))?;
        agreement.version = version;
        agreement.stream_sequence = sequence;
        Ok(Response::new(agreement))
    }

    async fn member(
        &self,
        request: Request<pb::GroupMemberRequest>,
        add: bool,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let group = id("group_id", &r.group_id)?;
        let mut v = Violations::new();
        let member = ods("organisation_ods", &r.organisation_ods, &mut v);
        v.into_result()?;
        let command = if add {
            Command::AddMember { ods: member }
        } else {
            Command::RemoveMember { ods: member }
        };
        self.group_command(ctx, group, command, false).await
    }
}

#[tonic::async_trait]
impl<Q: SharingQueries> SharingService for SharingApi<Q> {
    async fn create_organisation_group(
        &self,
        request: Request<pb::CreateOrganisationGroupRequest>,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let name = r.name.trim().to_owned();
        if name.is_empty() {
            v.add("name", "is required, at most 200 characters");
        }
        carelog_kernel::edge::check_text("name", &name, 200, &mut v);
        let members: Vec<String> = r
            .member_ods
            .iter()
            .enumerate()
            .map(|(i, m)| ods(&format!("member_ods[{i}]"), m, &mut v))
            .collect();
        v.into_result()?;
        let group = new_id(&ctx, "group");
        let command = Command::CreateGroup {
            group_id: group.to_string(),
            name,
            members,
        };
        self.group_command(ctx, group, command, true).await
    }

    async fn add_group_member(
        &self,
        request: Request<pb::GroupMemberRequest>,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        self.member(request, true).await
    }

    async fn remove_group_member(
        &self,
        request: Request<pb::GroupMemberRequest>,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        self.member(request, false).await
    }

    async fn get_organisation_group(
        &self,
        request: Request<pb::GetOrganisationGroupRequest>,
    ) -> Result<Response<pb::OrganisationGroup>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let group = id("group_id", &r.group_id)?;
        let found = self
            .queries
            .group(
                &group.to_string(),
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?
            .ok_or_else(|| Failure::not_found("group", &group.to_string()))?;
        Ok(Response::new(found))
    }

    async fn list_organisation_groups(
        &self,
        request: Request<pb::ListOrganisationGroupsRequest>,
    ) -> Result<Response<pb::ListOrganisationGroupsResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let (groups, next_page_token) = self
            .queries
            .groups(&page, Consistency::until_deadline(&ctx, r.min_sequence))
            .await?;
        Ok(Response::new(pb::ListOrganisationGroupsResponse {
            groups,
            next_page_token,
        }))
    }

    async fn create_sharing_agreement(
        &self,
        request: Request<pb::CreateSharingAgreementRequest>,
    ) -> Result<Response<pb::SharingAgreement>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let from = party("from", r.from, &mut v);
        let to = party("to", r.to, &mut v);
        if r.purpose != pb::SharingPurpose::DirectCare as i32 {
            v.add("purpose", "is required: DIRECT_CARE");
        }
        let valid_from = match r.valid_from.as_ref() {
            None => Some(Utc::now()),
            Some(t) => v.check("valid_from", carelog_kernel::edge::instant(t)),
        };
        let valid_until = match r.valid_until.as_ref() {
            None => None,
            Some(t) => v.check("valid_until", carelog_kernel::edge::instant(t)),
        };
        reason_required(&r.reason, &mut v);
        v.into_result()?;
        let agreement = new_id(&ctx, "agreement");
        let command = Command::MakeAgreement {
            agreement_id: agreement.to_string(),
            from,
            to,
            valid_from: valid_from.unwrap_or_else(Utc::now),
            valid_until,
        };
        self.agreement_command(ctx, agreement, command, true).await
    }

    async fn end_sharing_agreement(
        &self,
        request: Request<pb::EndSharingAgreementRequest>,
    ) -> Result<Response<pb::SharingAgreement>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let agreement = id("agreement_id", &r.agreement_id)?;
        let mut v = Violations::new();
        reason_required(&r.reason, &mut v);
        v.into_result()?;
        let command = Command::EndAgreement {
            at: Utc::now(),
            reason: r.reason.trim().to_owned(),
        };
        self.agreement_command(ctx, agreement, command, false).await
    }

    async fn get_sharing_agreement(
        &self,
        request: Request<pb::GetSharingAgreementRequest>,
    ) -> Result<Response<pb::SharingAgreement>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let agreement = id("agreement_id", &r.agreement_id)?;
        let found = self
            .queries
            .agreement(
                &agreement.to_string(),
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?
            .ok_or_else(|| Failure::not_found("agreement", &agreement.to_string()))?;
        Ok(Response::new(found))
    }

    async fn list_sharing_agreements(
        &self,
        request: Request<pb::ListSharingAgreementsRequest>,
    ) -> Result<Response<pb::ListSharingAgreementsResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let (agreements, next_page_token) = self
            .queries
            .agreements(&page, Consistency::until_deadline(&ctx, r.min_sequence))
            .await?;
        Ok(Response::new(pb::ListSharingAgreementsResponse {
            agreements,
            next_page_token,
        }))
    }
}
