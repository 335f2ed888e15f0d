//! Given past events, when a command, then these events or this refusal.

use carelog_kernel::Aggregate as _;
use carelog_kernel::date::PartialDate;
use carelog_proto::tasks::v1 as pb;
use chrono::Utc;
use pb::TaskStatus as S;
use pb::event::Event as E;
use pb::performer::Performer as P;

use super::*;

const TASK: &str = "01930000-0000-7000-8000-0000000000aa";

fn who(user: &str) -> Who {
    Who {
        user_id: user.into(),
        display_name: format!("Dr {user}"),
        role: "R8000".into(),
        organisation: "A81001".into(),
        teams: vec![],
    }
}

fn in_team(user: &str, team: &str) -> Who {
    Who {
        teams: vec![team.into()],
        ..who(user)
    }
}

fn team(id: &str) -> Option<pb::Performer> {
    Some(pb::Performer {
        performer: Some(P::TeamId(id.into())),
    })
}

fn organisation(ods: &str) -> Option<pb::Performer> {
    Some(pb::Performer {
        performer: Some(P::OrganisationOds(ods.into())),
    })
}

/// A medication review for the practice pharmacists' team.
fn review() -> NewTask {
    NewTask {
        task_id: TASK.into(),
        patient_id: "01930000-0000-7000-8000-000000000001".into(),
        title: "Medication review".into(),
        description: "Annual review of repeat medication".into(),
        focus: Some(pb::Focus {
            kind: pb::FocusKind::MedicationAuthorisation as i32,
            reference: "01930000-0000-7000-8000-0000000000bb".into(),
            display: "Atorvastatin 20mg".into(),
        }),
        performer: team("A81001/pharmacists"),
        priority: pb::TaskPriority::Urgent,
        ..Default::default()
    }
}

/// A scenario: the events so far, folded with the aggregate's own `apply`.
struct Given(TaskList);

fn given(commands: &[(Who, Command)]) -> Given {
    let mut list = TaskList::default();
    for (actor, command) in commands {
        let events = decide(&list, actor, None, command, Utc::now()).expect("given");
        events.iter().for_each(|e| list.apply(e));
    }
    Given(list)
}

fn created() -> (Who, Command) {
    (who("dr-jones"), Command::Create(review()))
}

fn act(user: Who, command: Command) -> (Who, Command) {
    (user, command)
}

impl Given {
    fn when(&self, actor: &Who, command: Command) -> Result<Vec<pb::Event>, Error> {
        decide(&self.0, actor, None, &command, Utc::now())
    }

    /// The command succeeds; the task's status after it.
    fn then_status(&self, actor: &Who, command: Command) -> S {
        let mut list = self.0.clone();
        let events = self.when(actor, command).expect("accepted");
        events.iter().for_each(|e| list.apply(e));
        S::try_from(list.task(TASK).expect("task").status).expect("status")
    }
}

fn claim() -> Command {
    Command::Claim {
        task_id: TASK.into(),
    }
}
fn start() -> Command {
    Command::Start {
        task_id: TASK.into(),
    }
}
fn hold() -> Command {
    Command::PutOnHold {
        task_id: TASK.into(),
        reason: "awaiting bloods".into(),
    }
}
fn resume() -> Command {
    Command::Resume {
        task_id: TASK.into(),
    }
}
fn complete(outcome: &str) -> Command {
    Command::Complete {
        task_id: TASK.into(),
        outcome: outcome.into(),
    }
}
fn cancel(reason: &str) -> Command {
    Command::Cancel {
        task_id: TASK.into(),
        reason: reason.into(),
    }
}
fn reject(reason: &str) -> Command {
    Command::Reject {
        task_id: TASK.into(),
        reason: reason.into(),
    }
}
fn error(reason: &str) -> Command {
    Command::EnterInError {
        task_id: TASK.into(),
        reason: reason.into(),
    }
}

fn transition(result: Result<Vec<pb::Event>, Error>) -> (&'static str, &'static str) {
    match result {
        Err(Error::InvalidTransition { from, to, .. }) => (from, to),
        other => panic!("expected an invalid transition, got {other:?}"),
    }
}

fn invalid_field(result: Result<Vec<pb::Event>, Error>) -> String {
    match result {
        Err(Error::Invalid(v)) => v.iter().map(|v| v.field.clone()).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn when_a_medication_review_is_created_for_the_team_then_it_is_requested_and_urgent() {
    let events = given(&[])
        .when(&who("dr-jones"), Command::Create(review()))
        .expect("created");
    let Some(E::TaskCreated(e)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(e.priority, pb::TaskPriority::Urgent as i32);
    assert_eq!(
        e.requester.as_ref().map(|r| r.user_id.as_str()),
        Some("dr-jones")
    );
    let mut list = TaskList::default();
    list.apply(&events[0]);
    assert_eq!(list.task(TASK).map(|t| t.status), Some(S::Requested as i32));
}

#[test]
fn when_a_task_names_no_priority_then_it_is_routine() {
    let events = given(&[])
        .when(
            &who("dr-jones"),
            Command::Create(NewTask {
                priority: pb::TaskPriority::Unspecified,
                ..review()
            }),
        )
        .expect("created");
    let Some(E::TaskCreated(e)) = &events[0].event else {
        panic!()
    };
    assert_eq!(e.priority, pb::TaskPriority::Routine as i32);
}

#[test]
fn when_a_task_names_neither_owner_nor_performer_then_it_is_refused() {
    let result = given(&[]).when(
        &who("dr-jones"),
        Command::Create(NewTask {
            performer: None,
            ..review()
        }),
    );
    assert_eq!(invalid_field(result), "owner_user_id");
}

#[test]
fn when_a_task_is_due_before_the_patient_was_born_then_it_is_refused() {
    let born = PartialDate::new(1950, 3, 14).expect("date");
    let result = decide(
        &TaskList::default(),
        &who("dr-jones"),
        Some(&Patient {
            birth_date: Some(born),
        }),
        &Command::Create(NewTask {
            due_date: Some(PartialDate::new(1949, 1, 1).expect("date")),
            ..review()
        }),
        Utc::now(),
    );
    assert_eq!(invalid_field(result), "due_date");
}

#[test]
fn given_a_task_when_it_is_created_again_then_it_is_refused() {
    assert!(matches!(
        given(&[created()]).when(&who("dr-jones"), Command::Create(review())),
        Err(Error::Exists(_))
    ));
}

#[test]
fn given_a_team_task_when_a_team_member_claims_it_then_it_is_theirs_and_accepted() {
    let g = given(&[created()]);
    let pharmacist = in_team("ph-patel", "A81001/pharmacists");
    assert_eq!(g.then_status(&pharmacist, claim()), S::Accepted);
    let events = g.when(&pharmacist, claim()).expect("claimed");
    assert!(matches!(&events[0].event, Some(E::TaskClaimed(c)) if c.owner_user_id == "ph-patel"));
}

#[test]
fn given_a_team_task_when_someone_outside_the_team_claims_it_then_it_is_refused() {
    assert!(matches!(
        given(&[created()]).when(&in_team("dr-bloggs", "A81001/nurses"), claim()),
        Err(Error::NotTeamMember { team, .. }) if team == "A81001/pharmacists"
    ));
}

#[test]
fn given_a_task_for_the_practice_when_a_user_of_another_organisation_claims_it_then_it_is_refused()
{
    let g = given(&[(
        who("dr-jones"),
        Command::Create(NewTask {
            performer: organisation("A81001"),
            ..review()
        }),
    )]);
    assert_eq!(g.then_status(&who("rx-clerk"), claim()), S::Accepted);
    let outsider = Who {
        organisation: "B82002".into(),
        ..who("dr-far")
    };
    assert!(matches!(
        g.when(&outsider, claim()),
        Err(Error::OtherOrganisation { organisation, .. }) if organisation == "A81001"
    ));
}

#[test]
fn given_a_task_owned_by_a_user_when_someone_claims_it_then_they_are_told_to_reassign() {
    let g = given(&[
        created(),
        act(in_team("ph-patel", "A81001/pharmacists"), claim()),
    ]);
    assert!(matches!(
        g.when(&in_team("ph-khan", "A81001/pharmacists"), claim()),
        Err(Error::AlreadyOwned { owner, .. }) if owner == "ph-patel"
    ));
    assert_eq!(
        g.when(&in_team("ph-patel", "A81001/pharmacists"), claim())
            .expect("repeat claim")
            .len(),
        0,
        "claiming one's own task again changes nothing"
    );
}

#[test]
fn given_a_task_for_one_user_when_it_is_claimed_then_it_is_not_claimable() {
    let g = given(&[(
        who("dr-jones"),
        Command::Create(NewTask {
            owner_user_id: "dr-jones".into(),
            performer: None,
            ..review()
        }),
    )]);
    assert!(matches!(
        g.when(&who("dr-jones"), claim()),
        Err(Error::NotClaimable(_))
    ));
}

#[test]
fn given_a_claimed_task_when_it_is_reassigned_then_the_new_owner_and_the_previous_are_recorded() {
    let g = given(&[
        created(),
        act(in_team("ph-patel", "A81001/pharmacists"), claim()),
    ]);
    let events = g
        .when(
            &who("dr-jones"),
            Command::Assign {
                task_id: TASK.into(),
                owner: Some("ph-khan".into()),
                performer: None,
            },
        )
        .expect("reassigned");
    let Some(E::TaskAssigned(a)) = &events[0].event else {
        panic!()
    };
    assert_eq!(
        (a.owner_user_id.as_str(), a.previous_owner_user_id.as_str()),
        ("ph-khan", "ph-patel")
    );
    assert_eq!(a.performer, team("A81001/pharmacists"), "the team stays");
}

#[test]
fn when_an_assignment_would_leave_the_task_with_no_one_then_it_is_refused() {
    let result = given(&[created()]).when(
        &who("dr-jones"),
        Command::Assign {
            task_id: TASK.into(),
            owner: None,
            performer: Some(None),
        },
    );
    assert_eq!(invalid_field(result), "update_mask");
}

#[test]
fn given_a_completed_task_when_it_is_assigned_then_it_is_closed() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph, complete("done")),
    ]);
    assert!(matches!(
        g.when(
            &who("dr-jones"),
            Command::Assign {
                task_id: TASK.into(),
                owner: Some("dr-jones".into()),
                performer: None,
            }
        ),
        Err(Error::Closed {
            status: "completed",
            ..
        })
    ));
}

#[test]
fn given_an_unchanged_assignment_then_nothing_is_recorded() {
    let events = given(&[created()])
        .when(
            &who("dr-jones"),
            Command::Assign {
                task_id: TASK.into(),
                owner: None,
                performer: Some(team("A81001/pharmacists")),
            },
        )
        .expect("no-op");
    assert!(events.is_empty());
}

#[test]
fn given_a_claimed_task_when_its_owner_starts_holds_resumes_and_completes_it_then_each_status_follows()
 {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let claimed = given(&[created(), act(ph.clone(), claim())]);
    assert_eq!(claimed.then_status(&ph, start()), S::InProgress);
    let started = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph.clone(), start()),
    ]);
    assert_eq!(started.then_status(&ph, hold()), S::OnHold);
    let held = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph.clone(), start()),
        act(ph.clone(), hold()),
    ]);
    assert_eq!(held.then_status(&ph, resume()), S::InProgress);
    assert_eq!(
        started.then_status(&ph, complete("Switched to rosuvastatin")),
        S::Completed
    );
}

#[test]
fn given_a_claimed_task_when_its_owner_completes_it_at_once_then_it_is_completed() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[created(), act(ph.clone(), claim())]);
    assert_eq!(
        g.then_status(&ph, complete("Reviewed: no change")),
        S::Completed
    );
}

#[test]
fn given_an_owned_task_when_someone_else_starts_or_completes_it_then_only_the_owner_may() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[created(), act(ph, claim())]);
    assert!(matches!(
        g.when(&who("dr-jones"), start()),
        Err(Error::NotOwner { owner, .. }) if owner == "ph-patel"
    ));
    assert!(matches!(
        g.when(&who("dr-jones"), complete("done")),
        Err(Error::NotOwner { .. })
    ));
}

#[test]
fn given_an_unclaimed_team_task_when_someone_starts_it_then_they_must_claim_it_first() {
    let g = given(&[created()]);
    let ph = in_team("ph-patel", "A81001/pharmacists");
    assert!(matches!(g.when(&ph, start()), Err(Error::Unowned(_))));
    let owned = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph.clone(), start()),
    ]);
    assert!(matches!(
        owned.when(&who("dr-jones"), hold()),
        Err(Error::NotOwner { .. })
    ));
    let held = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph.clone(), start()),
        act(ph, hold()),
    ]);
    assert!(matches!(
        held.when(&who("dr-jones"), resume()),
        Err(Error::NotOwner { .. })
    ));
}

#[test]
fn when_a_task_is_completed_without_an_outcome_then_it_is_refused() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[created(), act(ph.clone(), claim())]);
    assert_eq!(invalid_field(g.when(&ph, complete("  "))), "outcome");
}

#[test]
fn given_a_requested_task_when_it_is_completed_then_the_transition_is_refused_naming_both_states() {
    let g = given(&[created()]);
    assert_eq!(
        transition(g.when(&who("dr-jones"), complete("done"))),
        ("requested", "completed")
    );
}

#[test]
fn given_a_claimed_task_when_it_is_rejected_then_it_must_be_cancelled_instead() {
    // Accepted means the performer agreed; FHIR's rejected is a refusal
    // before that.
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[created(), act(ph.clone(), claim())]);
    assert_eq!(
        transition(g.when(&ph, reject("not ours"))),
        ("accepted", "rejected")
    );
    assert_eq!(g.then_status(&ph, cancel("not ours")), S::Cancelled);
}

#[test]
fn given_an_in_progress_task_when_it_is_resumed_then_it_was_not_on_hold() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[
        created(),
        act(ph.clone(), claim()),
        act(ph.clone(), start()),
    ]);
    assert_eq!(
        transition(g.when(&ph, resume())),
        ("in-progress", "in-progress")
    );
    let requested = given(&[created()]);
    assert_eq!(
        transition(requested.when(&ph, hold())),
        ("requested", "on-hold")
    );
}

#[test]
fn given_a_requested_task_when_it_is_cancelled_or_rejected_then_a_reason_is_required() {
    let g = given(&[created()]);
    assert_eq!(
        g.then_status(&who("dr-jones"), cancel("No longer on statin")),
        S::Cancelled
    );
    assert_eq!(
        invalid_field(g.when(&who("dr-jones"), cancel(""))),
        "reason"
    );
    let ph = in_team("ph-patel", "A81001/pharmacists");
    assert_eq!(
        g.then_status(&ph, reject("Needs a GP, not a pharmacist")),
        S::Rejected
    );
    assert_eq!(invalid_field(g.when(&ph, reject(" "))), "reason");
}

#[test]
fn given_a_cancelled_task_when_anything_but_entered_in_error_happens_then_it_is_terminal() {
    let ph = in_team("ph-patel", "A81001/pharmacists");
    let g = given(&[created(), act(who("dr-jones"), cancel("duplicate"))]);
    assert_eq!(transition(g.when(&ph, claim())), ("cancelled", "accepted"));
    assert_eq!(
        transition(g.when(&ph, start())),
        ("cancelled", "in-progress")
    );
    assert_eq!(
        transition(g.when(&ph, reject("no"))),
        ("cancelled", "rejected")
    );
    assert_eq!(
        transition(g.when(&ph, cancel("again"))),
        ("cancelled", "cancelled")
    );
    assert_eq!(
        g.then_status(&who("dr-jones"), error("Created for the wrong patient")),
        S::EnteredInError
    );
}

#[test]
fn given_a_task_entered_in_error_when_anything_happens_then_it_is_refused() {
    let g = given(&[created(), act(who("dr-jones"), error("wrong patient"))]);
    assert_eq!(
        transition(g.when(&who("dr-jones"), error("again"))),
        ("entered-in-error", "entered-in-error")
    );
    assert!(matches!(
        g.when(
            &who("dr-jones"),
            Command::Comment {
                task_id: TASK.into(),
                text: "note".into()
            }
        ),
        Err(Error::Closed { .. })
    ));
    assert_eq!(
        invalid_field(given(&[created()]).when(&who("dr-jones"), error(""))),
        "reason"
    );
}

#[test]
fn given_a_task_when_a_colleague_comments_then_the_note_is_kept_with_its_author() {
    let g = given(&[created()]);
    let events = g
        .when(
            &who("dr-bloggs"),
            Command::Comment {
                task_id: TASK.into(),
                text: "Patient prefers a phone review".into(),
            },
        )
        .expect("commented");
    let mut list = g.0.clone();
    events.iter().for_each(|e| list.apply(e));
    let note = &list.task(TASK).expect("task").notes[0];
    assert_eq!(note.text, "Patient prefers a phone review");
    assert_eq!(
        note.author.as_ref().map(|a| a.user_id.as_str()),
        Some("dr-bloggs")
    );
    assert_eq!(
        invalid_field(g.when(
            &who("dr-bloggs"),
            Command::Comment {
                task_id: TASK.into(),
                text: "".into()
            }
        )),
        "text"
    );
}

#[test]
fn when_a_command_names_an_unknown_task_then_it_is_not_found() {
    assert!(matches!(
        given(&[]).when(&who("dr-jones"), start()),
        Err(Error::NotFound(id)) if id == TASK
    ));
}

#[test]
fn the_transition_table_follows_fhir_terminal_states() {
    for terminal in [S::Completed, S::Cancelled, S::Rejected, S::Failed] {
        assert_eq!(status::allowed(terminal), &[S::EnteredInError]);
        assert!(status::is_terminal(terminal));
    }
    assert!(status::allowed(S::EnteredInError).is_empty());
    for active in status::ACTIVE {
        assert!(!status::is_terminal(active));
        assert!(status::can_move(active, S::Cancelled), "{active:?}");
    }
}

#[test]
fn given_the_practices_review_when_a_user_of_another_organisation_reassigns_cancels_rejects_or_voids_it_then_it_is_refused()
 {
    // Given the practice's medication review for its pharmacists
    let g = given(&[created()]);
    // and a hospital doctor admitted to the patient (by an agreement)
    let hospital = Who {
        organisation: "RR8".into(),
        ..who("dr-ward")
    };
    let take = Command::Assign {
        task_id: TASK.into(),
        owner: Some("dr-ward".into()),
        performer: None,
    };
    // When they take it, cancel it, reject it or mark it in error
    for command in [
        take,
        cancel("not needed"),
        reject("not ours"),
        error("wrong patient"),
    ] {
        // Then each is refused: admission to the patient is not a part in
        // the task
        assert!(
            matches!(
                g.when(&hospital, command.clone()),
                Err(Error::NotParty { .. })
            ),
            "{command:?}"
        );
    }
    // And a receptionist of the practice, which asked, may cancel it but not
    // reject it: rejecting is the performer's decision
    let receptionist = who("rec-1");
    assert!(matches!(
        g.when(&receptionist, reject("no capacity")),
        Err(Error::NotParty {
            parties: "the performer",
            ..
        })
    ));
    assert_eq!(
        g.then_status(&receptionist, cancel("patient moved away")),
        S::Cancelled
    );
    // while a pharmacist of the team may reject it
    assert_eq!(
        g.then_status(
            &in_team("ph-khan", "A81001/pharmacists"),
            reject("no capacity")
        ),
        S::Rejected
    );
}

#[test]
fn given_a_claimed_task_handed_back_to_its_team_when_a_member_claims_it_then_it_is_theirs() {
    // Given the pharmacists' review claimed by one, then handed back to the
    // team with no owner
    let g = given(&[
        created(),
        act(in_team("ph-khan", "A81001/pharmacists"), claim()),
        act(
            who("dr-jones"),
            Command::Assign {
                task_id: TASK.into(),
                owner: Some(String::new()),
                performer: None,
            },
        ),
    ]);
    assert!(g.0.task(TASK).expect("task").owner_user_id.is_empty());
    // When another pharmacist claims it, then it is theirs and accepted
    let colleague = in_team("ph-ali", "A81001/pharmacists");
    assert_eq!(g.then_status(&colleague, claim()), S::Accepted);
    let events = g.when(&colleague, claim()).expect("claimed");
    assert!(matches!(
        events.first().and_then(|e| e.event.as_ref()),
        Some(E::TaskClaimed(c)) if c.owner_user_id == "ph-ali"
    ));
}

#[test]
fn a_team_task_recorded_before_teams_were_qualified_belongs_to_the_requesters_organisations_team() {
    // Given a task created for "pharmacists" before team ids named their
    // organisation
    let mut list = TaskList::default();
    list.apply(&pb::Event {
        event: Some(E::TaskCreated(pb::TaskCreated {
            task_id: TASK.into(),
            title: "Medication review".into(),
            requester: Some(pb::Participant {
                user_id: "dr-jones".into(),
                organisation_ods: "A81001".into(),
                ..Default::default()
            }),
            performer: team("pharmacists"),
            ..Default::default()
        })),
    });
    // Then it is the practice's pharmacists' task: theirs to claim
    let task = list.task(TASK).expect("task");
    assert_eq!(task.performer, team("A81001/pharmacists"));
    let g = Given(list);
    assert_eq!(
        g.then_status(&in_team("ph-patel", "A81001/pharmacists"), claim()),
        S::Accepted
    );
    // and not a hospital team's of the same name
    let hospital = Who {
        organisation: "RR8".into(),
        ..in_team("ph-ward", "RR8/pharmacists")
    };
    assert!(matches!(
        g.when(&hospital, claim()),
        Err(Error::NotTeamMember { .. })
    ));
}
