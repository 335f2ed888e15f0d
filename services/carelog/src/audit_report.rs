//! `carelog audit report`: one self-contained HTML page, for a reader who
//! is not technical, of a patient's audit history over a time range: who
//! accessed the record, the changes made to it, and whether the audit log
//! verifies against its signed checkpoints. Gathering reads PostgreSQL (and
//! JetStream, to verify); [`render`] is pure.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use carelog_demographics::queries::{Consistency, PageRequest, PatientQueries as _};
use carelog_kernel::PatientId;
use carelog_kernel::envelope::from_timestamp;
use carelog_kernel::merkle::checkpoint::VerifyingKey;
use carelog_projections::audit_log::{self, StoredCheckpoint, VerifyReport};
use carelog_projections::audit_queries::{self, TimeRange};
use carelog_proto::audit::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub connections: crate::cli::Connections,
    /// The patient's surrogate id.
    #[arg(long)]
    pub patient: String,
    /// From this time (RFC 3339) or day (YYYY-MM-DD, from its start, UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this time (RFC 3339, exclusive) or day (YYYY-MM-DD, to its
    /// end, UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Writes the report here (otherwise to standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The audit log's public key (PEM): checkpoint signatures are checked.
    /// After a key rotation give every key the log was signed with
    /// (repeat the flag).
    #[arg(long)]
    pub public_key: Vec<PathBuf>,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub patient_id: String,
    /// "Jane SMITH" and the NHS number, when the read model has the patient.
    pub name: Option<String>,
    pub nhs_number: Option<String>,
    pub range: TimeRange,
    pub generated_at: DateTime<Utc>,
    pub accesses: Vec<pb::PatientAccess>,
    pub changes: Vec<pb::ActorActivity>,
    /// The latest signed checkpoint of each log.
    pub checkpoints: Vec<StoredCheckpoint>,
    pub verification: VerifyReport,
    /// Whether checkpoint signatures were checked with the public key.
    pub signatures_checked: bool,
}

/// A time or a day: `2026-11-22T10:00:00Z`, or `2026-11-22` (its start, or
/// with `end_of_day` the next day's start).
pub fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a YYYY-MM-DD day"))?;
    let day = if end_of_day {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

pub async fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let config = crate::commands::ConfigError;
    let patient = PatientId::parse(&args.patient).map_err(|e| config(format!("--patient: {e}")))?;
    let range = TimeRange {
        from: args
            .from
            .as_deref()
            .map(|t| parse_time(t, false))
            .transpose()
            .map_err(|e| config(format!("--from: {e}")))?,
        to: args
            .to
            .as_deref()
            .map(|t| parse_time(t, true))
            .transpose()
            .map_err(|e| config(format!("--to: {e}")))?,
    };
    let keys = crate::audit_cli::load_public_keys(&args.public_key)?;
    let (pool, store) = crate::audit_cli::connect(&args.connections).await?;
    let report = gather(&pool, &store, patient, range, &keys).await?;
    let html = render(&report);
    match &args.out {
        Some(path) => std::fs::write(path, html)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{html}"),
    }
    Ok(())
}

/// Every page of a paged audit query.
async fn all_pages<T, F, Fut>(mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), carelog_kernel::Failure>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(PageRequest {
            size: carelog_kernel::edge::MAX_PAGE,
            token,
        })
        .await
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// Reads what the report shows, and verifies the audit log.
pub async fn gather(
    pool: &sqlx::PgPool,
    store: &carelog_kernel::store::EventStore,
    patient: PatientId,
    range: TimeRange,
    keys: &[VerifyingKey],
) -> anyhow::Result<Report> {
    let id = patient.to_string();
    let now = Consistency {
        min_sequence: 0,
        deadline: tokio::time::Instant::now(),
    };
    let record = carelog_projections::patients::PgPatientQueries::new(pool.clone())
        .get(patient, now)
        .await
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    let details = record.and_then(|p| p.details);
    let name = details.as_ref().and_then(|d| d.name.as_ref()).map(|n| {
        let mut parts = n.given.clone();
        parts.push(n.family.to_uppercase());
        parts.join(" ")
    });
    let nhs_number = details.map(|d| d.nhs_number).filter(|n| !n.is_empty());
    let accesses = all_pages(|page| {
        let (pool, id) = (pool.clone(), id.clone());
        async move { audit_queries::patient_access(&pool, &id, range, &page, now).await }
    })
    .await?;
    let changes = all_pages(|page| {
        let (pool, id) = (pool.clone(), id.clone());
        async move { audit_queries::patient_changes(&pool, &id, range, &page).await }
    })
    .await?;
    let mut checkpoints = Vec::new();
    for log in audit_log::LOGS.iter().copied().chain([audit_log::HISTORY]) {
        if let Some(cp) = audit_log::latest_checkpoint(pool, log).await? {
            checkpoints.push(cp);
        }
    }
    let verification = audit_log::verify(pool, store, keys).await?;
    Ok(Report {
        patient_id: id,
        name,
        nhs_number,
        range,
        generated_at: Utc::now(),
        accesses,
        changes,
        checkpoints,
        verification,
        signatures_checked: !keys.is_empty(),
    })
}

/// Text made safe to place in HTML, in an element or an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn when(at: Option<&prost_types::Timestamp>) -> String {
    from_timestamp(at).map_or_else(
        || "unknown".to_owned(),
        |t| t.format("%d %b %Y %H:%M:%S UTC").to_string(),
    )
}

/// `PatientRegistered` → `Patient registered`.
fn in_words(event_type: &str) -> String {
    let mut out = String::new();
    for (i, c) in event_type.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `carelog.demographics.v1.DemographicsService` → `demographics`.
fn area(service: &str) -> &str {
    service
        .strip_prefix("carelog.")
        .and_then(|s| s.split('.').next())
        .unwrap_or(service)
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Arial,sans-serif;\
margin:2rem auto;max-width:70rem;color:#1b1b1b;line-height:1.45;padding:0 1rem}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;\
border-bottom:2px solid #005eb8;padding-bottom:.2rem}table{border-collapse:collapse;\
width:100%;font-size:.92rem}th,td{border:1px solid #c8c8c8;padding:.35rem .5rem;\
text-align:left;vertical-align:top}th{background:#eef3f8}.muted{color:#5a5a5a}\
.ok{color:#00703c;font-weight:bold}.bad{color:#b10e1e;font-weight:bold}\
pre{white-space:pre-wrap;word-break:break-all;font-size:.8rem;background:#f6f6f6;padding:.5rem}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:bold}";

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let title = format!(
        "Audit report for {}",
        r.name.as_deref().unwrap_or("patient")
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let period = match (r.range.from, r.range.to) {
        (None, None) => "the whole record".to_owned(),
        (Some(f), None) => format!("from {}", f.format("%d %b %Y %H:%M UTC")),
        (None, Some(t)) => format!("up to {}", t.format("%d %b %Y %H:%M UTC")),
        (Some(f), Some(t)) => format!(
            "from {} up to {}",
            f.format("%d %b %Y %H:%M UTC"),
            t.format("%d %b %Y %H:%M UTC")
        ),
    };
    let _ = writeln!(
        h,
        "<p class=\"muted\">Covering {}. Produced {} from carelog's audit history.</p>",
        escape(&period),
        r.generated_at.format("%d %b %Y %H:%M UTC")
    );
    h.push_str(&patient_section(r));
    h.push_str(&access_section(&r.accesses));
    h.push_str(&changes_section(&r.changes));
    h.push_str(&verification_section(r));
    h.push_str("</body></html>\n");
    h
}

fn patient_section(r: &Report) -> String {
    let mut h = String::from("<h2>The patient</h2>\n<dl>");
    let _ = writeln!(
        h,
        "<dt>Name</dt><dd>{}</dd><dt>NHS number</dt><dd>{}</dd><dt>carelog id</dt><dd>{}</dd></dl>",
        escape(r.name.as_deref().unwrap_or("not known to carelog")),
        escape(r.nhs_number.as_deref().unwrap_or("not recorded")),
        escape(&r.patient_id)
    );
    h
}

fn access_section(accesses: &[pb::PatientAccess]) -> String {
    let mut h = String::from("<h2>Who looked at the record</h2>\n");
    if accesses.is_empty() {
        h.push_str("<p>Nobody looked at the record in this period.</p>\n");
        return h;
    }
    let _ = write!(
        h,
        "<p>{} time(s) the record, or part of it, was shown to someone. Each row is one look.</p>\n\
         <table><thead><tr><th>When</th><th>Who</th><th>Role</th><th>Organisation</th>\
         <th>Why</th><th>What was looked at</th><th>Records</th><th>Anything withheld</th></tr></thead><tbody>\n",
        accesses.len()
    );
    for a in accesses {
        let e = a.access.clone().unwrap_or_default();
        let actor = e.actor.clone().unwrap_or_default();
        let who = if actor.display_name.is_empty() {
            actor.user_id.clone()
        } else {
            format!("{} ({})", actor.display_name, actor.user_id)
        };
        let purpose = match (e.purpose_of_use.as_str(), e.on_behalf_of.as_str()) {
            (p, "") => p.to_owned(),
            (p, behalf) => format!("{p}, on behalf of {behalf}"),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}: {}</td><td>{}</td><td>{}</td></tr>",
            escape(&when(a.recorded_at.as_ref())),
            escape(&who),
            escape(&actor.role),
            escape(&actor.organisation_ods),
            escape(&purpose),
            escape(area(&e.service)),
            escape(&in_words(&e.method)),
            e.record_count,
            if e.withheld { "yes" } else { "no" }
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

/// The changes made to the record: who, when, why and what kind of change.
/// One row per recorded event; a fuller view (before and after) extends
/// this section.
pub fn changes_section(changes: &[pb::ActorActivity]) -> String {
    let mut h = String::from("<h2>Changes made to the record</h2>\n");
    if changes.is_empty() {
        h.push_str("<p>No changes were made in this period.</p>\n");
        return h;
    }
    h.push_str(
        "<table><thead><tr><th>When</th><th>Who</th><th>Role</th><th>Organisation</th>\
         <th>Part of the record</th><th>What changed</th><th>Reason given</th></tr></thead><tbody>\n",
    );
    for c in changes {
        let actor = c.actor.clone().unwrap_or_default();
        let who = if actor.display_name.is_empty() {
            actor.user_id.clone()
        } else {
            format!("{} ({})", actor.display_name, actor.user_id)
        };
        let reason = if c.reason.is_empty() {
            "none given"
        } else {
            &c.reason
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&when(c.recorded_at.as_ref())),
            escape(&who),
            escape(&actor.role),
            escape(&actor.organisation_ods),
            escape(&c.context),
            escape(&in_words(&c.event_type)),
            escape(reason)
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

fn verification_section(r: &Report) -> String {
    let mut h = String::from("<h2>Can this history be trusted?</h2>\n");
    let v = &r.verification;
    if v.ok() {
        let _ = writeln!(
            h,
            "<p class=\"ok\">The audit log verifies.</p><p>Each of its {} entries was recomputed from \
             the event store and matches; every signed checkpoint matches the recomputed log{}.</p>",
            v.entries(),
            if r.signatures_checked {
                ", and its signature is valid for the organisation's public key"
            } else {
                " (signatures were not checked: no public key was given)"
            }
        );
    } else {
        h.push_str("<p class=\"bad\">The audit log does NOT verify.</p><p>What differs:</p><ul>\n");
        for f in &v.findings {
            let _ = writeln!(h, "<li>{}</li>", escape(&f.to_string()));
        }
        h.push_str("</ul>\n");
    }
    if r.checkpoints.is_empty() {
        h.push_str("<p>No checkpoint has been signed yet.</p>\n");
        return h;
    }
    h.push_str(
        "<p>The latest signed checkpoints: each is the organisation's signed statement of how \
         many entries a log held and their hash at that time. Anyone with the public key can \
         check them (docs/audit-proofs.md).</p>\n<table><thead><tr><th>Log</th><th>Entries</th>\
         <th>Signed</th><th>Signed checkpoint</th></tr></thead><tbody>\n",
    );
    for cp in &r.checkpoints {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(&cp.log),
            cp.tree_size,
            cp.signed_at.format("%d %b %Y %H:%M:%S UTC"),
            escape(&cp.note)
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_elements_and_attributes() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    fn sample() -> Report {
        use carelog_proto::access::v1::RecordAccessed;
        use carelog_proto::kernel::v1::Actor;
        let at = Some(carelog_kernel::envelope::timestamp(
            DateTime::from_timestamp(1_795_000_000, 0).expect("time"),
        ));
        let actor = Actor {
            user_id: "u-1".into(),
            display_name: "Dr <b>Evil</b>".into(),
            role: "R8000".into(),
            organisation_ods: "B82002".into(),
        };
        Report {
            patient_id: "p-1".into(),
            name: Some("Jane O'Hara & <i>co</i>".into()),
            nhs_number: Some("9990000018".into()),
            range: TimeRange::default(),
            generated_at: DateTime::from_timestamp(1_795_000_100, 0).expect("time"),
            accesses: vec![pb::PatientAccess {
                position: None,
                recorded_at: at,
                access: Some(RecordAccessed {
                    actor: Some(actor.clone()),
                    purpose_of_use: "DIRECT_CARE".into(),
                    service: "carelog.medications.v1.MedicationsService".into(),
                    method: "ListAllergies".into(),
                    record_count: 2,
                    withheld: true,
                    ..Default::default()
                }),
            }],
            changes: vec![pb::ActorActivity {
                recorded_at: at,
                context: "consultations".into(),
                event_type: "EntryAmended".into(),
                actor: Some(actor),
                reason: "typo <script>".into(),
                ..Default::default()
            }],
            checkpoints: Vec::new(),
            verification: VerifyReport::default(),
            signatures_checked: false,
        }
    }

    #[test]
    fn every_value_a_person_typed_is_escaped_and_each_section_reads_plainly() {
        let html = render(&sample());
        for raw in ["<b>Evil", "<i>co", "<script>"] {
            assert!(!html.contains(raw), "{raw} unescaped");
        }
        assert!(html.contains("Jane O&#39;Hara &amp; &lt;i&gt;co&lt;/i&gt;"));
        assert!(html.contains("Dr &lt;b&gt;Evil&lt;/b&gt; (u-1)"));
        assert!(html.contains("<td>medications: List allergies</td><td>2</td><td>yes</td>"));
        assert!(html.contains("<td>Entry amended</td><td>typo &lt;script&gt;</td>"));
        assert!(html.contains("The audit log verifies."));
        assert!(html.contains("signatures were not checked"));
        assert!(html.contains("No checkpoint has been signed yet."));
        assert!(html.contains("Covering the whole record."));
    }

    #[test]
    fn times_days_and_words() {
        let day = parse_time("2026-11-22", false).expect("day");
        assert_eq!(day.to_rfc3339(), "2026-11-22T00:00:00+00:00");
        let end = parse_time("2026-11-22", true).expect("day");
        assert_eq!(end.to_rfc3339(), "2026-11-23T00:00:00+00:00");
        let at = parse_time("2026-11-22T10:15:00+01:00", true).expect("time");
        assert_eq!(at.to_rfc3339(), "2026-11-22T09:15:00+00:00");
        assert!(parse_time("yesterday", false).is_err());
        assert_eq!(in_words("PatientRegistered"), "Patient registered");
        assert_eq!(
            area("carelog.demographics.v1.DemographicsService"),
            "demographics"
        );
    }
}
