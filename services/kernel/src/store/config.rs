//! The immutable configuration of carelog's streams (docs/ARCHITECTURE.md,
//! "Subjects and streams"), and the check that an existing stream is not
//! weaker than it.

use async_nats::jetstream::stream::{
    Config, DiscardPolicy, PersistenceMode, RetentionPolicy, StorageType,
};
use thiserror::Error;

use super::StoreOptions;

/// A context's stream: `CARELOG_<CONTEXT>` over `carelog.<context>.>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextStream {
    pub context: &'static str,
    pub name: String,
    pub subject_prefix: String,
}

impl ContextStream {
    pub fn new(context: &'static str) -> Self {
        Self {
            context,
            name: format!("CARELOG_{}", context.to_ascii_uppercase()),
            subject_prefix: format!("carelog.{context}"),
        }
    }

    /// The stream name of a context, e.g. `CARELOG_CONSULTATIONS`.
    pub fn new_named(context: &str) -> String {
        format!("CARELOG_{}", context.to_ascii_uppercase())
    }

    /// The subject of one aggregate (a patient's record in this context).
    pub fn subject(&self, aggregate_id: &impl std::fmt::Display) -> String {
        format!("{}.{aggregate_id}", self.subject_prefix)
    }

    /// The subject of a uniqueness claim; the value is hashed so that
    /// identifiers never appear in subject names (which monitoring shows).
    pub fn claim_subject(&self, kind: &str, value: &str) -> String {
        let digest = crate::envelope::digest(format!("{kind}:{value}").as_bytes());
        format!(
            "{}.claims.{kind}.{}",
            self.subject_prefix,
            hex::encode(digest)
        )
    }

    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// Whether a subject is a uniqueness claim (see `claim_subject`): its name is
/// derived from an identifier such as the NHS number, so it is never logged
/// or put in a span.
pub fn is_claim_subject(subject: &str) -> bool {
    subject.contains(".claims.")
}

/// The context prefix of a subject, `carelog.<context>`: subjects with the
/// same prefix are in the same stream.
pub fn subject_prefix(subject: &str) -> &str {
    match subject.match_indices('.').nth(1) {
        Some((i, _)) => &subject[..i],
        None => subject,
    }
}

/// A subject as it may appear in logs: a claim subject is replaced by its
/// context prefix.
pub fn loggable_subject(subject: &str) -> &str {
    if is_claim_subject(subject) {
        subject_prefix(subject)
    } else {
        subject
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "stream {stream} has {setting}: {found}; carelog requires {setting}: {required} \
     (streams are immutable by configuration; fix or recreate the stream)"
)]
pub struct StreamCheckError {
    pub stream: String,
    pub setting: &'static str,
    pub found: String,
    pub required: String,
}

pub fn required_config(stream: &ContextStream, options: &StoreOptions) -> Config {
    Config {
        name: stream.name.clone(),
        description: Some(format!("carelog {} events (immutable)", stream.context)),
        subjects: vec![stream.all_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: options.replicas,
        discard: DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: std::time::Duration::ZERO,
        duplicate_window: options.duplicate_window,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// Names the first setting of `found` that is weaker than `wanted`.
pub fn check(found: &Config, wanted: &Config) -> Result<(), StreamCheckError> {
    let fail = |setting: &'static str, found: String, required: String| StreamCheckError {
        stream: wanted.name.clone(),
        setting,
        found,
        required,
    };
    let unlimited = |v: i64| v <= 0;
    let checks: [(&'static str, bool, String, String); 19] = [
        (
            "deny_delete",
            found.deny_delete,
            found.deny_delete.to_string(),
            "true".into(),
        ),
        (
            "deny_purge",
            found.deny_purge,
            found.deny_purge.to_string(),
            "true".into(),
        ),
        (
            "allow_rollup_hdrs",
            !found.allow_rollup,
            found.allow_rollup.to_string(),
            "false".into(),
        ),
        (
            "storage",
            found.storage == StorageType::File,
            format!("{:?}", found.storage),
            "file".into(),
        ),
        (
            "allow_direct",
            found.allow_direct,
            found.allow_direct.to_string(),
            "true".into(),
        ),
        (
            "allow_atomic",
            found.allow_atomic_publish,
            found.allow_atomic_publish.to_string(),
            "true".into(),
        ),
        (
            "discard",
            found.discard == DiscardPolicy::New,
            format!("{:?}", found.discard),
            "new".into(),
        ),
        (
            "retention",
            found.retention == RetentionPolicy::Limits,
            format!("{:?}", found.retention),
            "limits".into(),
        ),
        (
            "max_msgs",
            unlimited(found.max_messages),
            found.max_messages.to_string(),
            "-1 (no limit)".into(),
        ),
        (
            "max_bytes",
            unlimited(found.max_bytes),
            found.max_bytes.to_string(),
            "-1 (no limit)".into(),
        ),
        (
            "max_msgs_per_subject",
            unlimited(found.max_messages_per_subject),
            found.max_messages_per_subject.to_string(),
            "-1 (no limit)".into(),
        ),
        (
            "max_age",
            found.max_age.is_zero(),
            format!("{:?}", found.max_age),
            "0 (no limit)".into(),
        ),
        // More replicas than asked for are stronger, not weaker.
        (
            "num_replicas",
            found.num_replicas.max(1) >= wanted.num_replicas.max(1),
            found.num_replicas.to_string(),
            format!("{} or more", wanted.num_replicas.max(1)),
        ),
        // Asynchronous persistence acknowledges an append before it is
        // stored: a command would be answered for a commit a crash loses.
        (
            "persist_mode",
            found.persist_mode != Some(PersistenceMode::Async),
            format!("{:?}", found.persist_mode.unwrap_or_default()).to_lowercase(),
            "default (acknowledged once stored)".into(),
        ),
        (
            "allow_msg_ttl",
            !found.allow_message_ttl,
            found.allow_message_ttl.to_string(),
            "false".into(),
        ),
        (
            "allow_msg_counter",
            !found.allow_message_counter,
            found.allow_message_counter.to_string(),
            "false".into(),
        ),
        (
            "sealed",
            !found.sealed,
            found.sealed.to_string(),
            "false".into(),
        ),
        // Every append is acknowledged once stored: it is how a command knows.
        (
            "no_ack",
            !found.no_ack,
            found.no_ack.to_string(),
            "false".into(),
        ),
        (
            "max_msg_size",
            unlimited(found.max_message_size.into()),
            found.max_message_size.to_string(),
            "-1 (no limit)".into(),
        ),
    ];
    for (setting, ok, f, r) in checks {
        if !ok {
            return Err(fail(setting, f, r));
        }
    }
    // A mirror or a sourced stream holds what another stream holds, not
    // carelog's own appends.
    if let Some(mirror) = &found.mirror {
        return Err(fail(
            "mirror",
            mirror.name.clone(),
            "none (the stream takes carelog's appends itself)".into(),
        ));
    }
    if let Some(sources) = found.sources.as_ref().filter(|s| !s.is_empty()) {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        return Err(fail(
            "sources",
            names.join(","),
            "none (the stream takes carelog's appends itself)".into(),
        ));
    }
    // A republish copies every clinical record to plain subjects, outside
    // the stream's permissions and retention.
    if let Some(republish) = &found.republish {
        return Err(fail(
            "republish",
            format!("{} -> {}", republish.source, republish.destination),
            "none (clinical records are not copied to plain subjects)".into(),
        ));
    }
    if let Some(transform) = &found.subject_transform {
        return Err(fail(
            "subject_transform",
            format!("{} -> {}", transform.source, transform.destination),
            "none (carelog's subjects are stored as written)".into(),
        ));
    }
    // The duplicate window is not checked: a request id is remembered by
    // its aggregate beyond the window (ADR 0002), and an operator who
    // changes the window must not be stopped by the streams made before.
    for subject in &wanted.subjects {
        if !found.subjects.contains(subject) {
            return Err(fail("subjects", found.subjects.join(","), subject.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ContextStream, loggable_subject};

    #[test]
    fn a_claim_subject_is_logged_as_its_context_only() {
        let stream = ContextStream::new("demographics");
        let claim = stream.claim_subject("nhs-number", "9434765919");
        assert_eq!(loggable_subject(&claim), "carelog.demographics");
        let aggregate = stream.subject(&"0190-aa");
        assert_eq!(loggable_subject(&aggregate), aggregate);
    }

    use super::*;

    #[test]
    fn a_stream_that_allows_deletes_is_named_as_weaker() {
        let stream = ContextStream::new("demographics");
        let wanted = required_config(&stream, &StoreOptions::default());
        assert_eq!(check(&wanted, &wanted), Ok(()));
        let mut weak = wanted.clone();
        weak.deny_delete = false;
        let err = check(&weak, &wanted).expect_err("weaker");
        assert_eq!(err.setting, "deny_delete");
        assert!(
            err.to_string()
                .contains("CARELOG_DEMOGRAPHICS has deny_delete: false")
        );
        let mut aged = wanted.clone();
        aged.max_age = std::time::Duration::from_secs(3600);
        assert_eq!(check(&aged, &wanted).expect_err("aged").setting, "max_age");
    }

    #[test]
    fn a_stream_that_is_not_acknowledged_copied_or_limited_is_named_as_weaker() {
        use async_nats::jetstream::stream::{Republish, Source};
        let stream = ContextStream::new("demographics");
        let wanted = required_config(&stream, &StoreOptions::default());
        let weaker = |change: &dyn Fn(&mut Config)| {
            let mut found = wanted.clone();
            change(&mut found);
            check(&found, &wanted).map_err(|e| (e.setting, e.to_string()))
        };
        let (setting, message) = weaker(&|c| c.no_ack = true).expect_err("no_ack");
        assert_eq!(setting, "no_ack");
        assert!(message.contains("CARELOG_DEMOGRAPHICS has no_ack: true"));
        let source = Source {
            name: "ELSEWHERE".into(),
            ..Default::default()
        };
        let (setting, message) = weaker(&|c| c.mirror = Some(source.clone())).expect_err("mirror");
        assert_eq!(setting, "mirror");
        assert!(message.contains("has mirror: ELSEWHERE"));
        let (setting, _) =
            weaker(&|c| c.sources = Some(vec![source.clone()])).expect_err("sources");
        assert_eq!(setting, "sources");
        let (setting, message) = weaker(&|c| {
            c.republish = Some(Republish {
                source: "carelog.demographics.>".into(),
                destination: "copies.>".into(),
                headers_only: false,
            })
        })
        .expect_err("republish");
        assert_eq!(setting, "republish");
        assert!(message.contains("carelog.demographics.> -> copies.>"));
        let (setting, message) =
            weaker(&|c| c.max_message_size = 1024 * 1024).expect_err("max_msg_size");
        assert_eq!(setting, "max_msg_size");
        assert!(message.contains("has max_msg_size: 1048576"));
        let (setting, message) = weaker(&|c| {
            c.subject_transform = Some(async_nats::jetstream::stream::SubjectTransform {
                source: "carelog.demographics.>".into(),
                destination: "elsewhere.>".into(),
            })
        })
        .expect_err("subject_transform");
        assert_eq!(setting, "subject_transform");
        assert!(message.contains("elsewhere.>"));
        let (setting, message) =
            weaker(&|c| c.persist_mode = Some(PersistenceMode::Async)).expect_err("persist_mode");
        assert_eq!(setting, "persist_mode");
        assert!(message.contains("has persist_mode: async"), "{message}");
    }

    #[test]
    fn a_stream_stronger_than_required_passes() {
        let stream = ContextStream::new("demographics");
        let wanted = required_config(&stream, &StoreOptions::default());
        let mut found = wanted.clone();
        // as nats-server reports them: no limit as -1, no sources as empty,
        // and a duplicate window changed since the stream was made
        found.max_message_size = -1;
        found.sources = Some(Vec::new());
        found.duplicate_window = wanted.duplicate_window * 2;
        assert_eq!(check(&found, &wanted), Ok(()));
        found.duplicate_window = wanted.duplicate_window / 2;
        assert_eq!(check(&found, &wanted), Ok(()));
        // more replicas than asked for, persisted before each acknowledgement
        found.num_replicas = 3;
        found.persist_mode = Some(PersistenceMode::Default);
        assert_eq!(check(&found, &wanted), Ok(()));
        // while fewer are weaker
        let three = Config {
            num_replicas: 3,
            ..wanted.clone()
        };
        let err = check(&wanted, &three).expect_err("one replica of three");
        assert_eq!(
            (err.setting, err.required.as_str()),
            ("num_replicas", "3 or more")
        );
    }

    #[test]
    fn claim_subjects_never_hold_the_value() {
        let stream = ContextStream::new("demographics");
        let subject = stream.claim_subject("nhs-number", "9434765919");
        assert!(subject.starts_with("carelog.demographics.claims.nhs-number."));
        assert!(!subject.contains("9434765919"));
    }
}
