//! Assertions the end-to-end tests share: what a refusal names, and the
//! golden samples of each context's events.

use std::path::PathBuf;

use carelog_kernel::Aggregate;
use prost::Message as _;
use tonic_types::StatusExt as _;

/// The fields a refusal names.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The stable (ErrorInfo) reason of a refusal.
pub fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Checks one sample of every event type of `A` against its golden file in
/// `golden/<context>` (`CARELOG_WRITE_GOLDEN=1` writes the missing ones):
/// the file still decodes to the same event type and re-encodes to the same
/// bytes, `apply` accepts it, and there is no golden file without a sample.
pub fn golden_samples<A: Aggregate>(
    context: &str,
    samples: Vec<A::Event>,
    mut apply: impl FnMut(&A::Event),
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(context);
    let write = std::env::var("CARELOG_WRITE_GOLDEN").is_ok_and(|v| v == "1");
    if write {
        std::fs::create_dir_all(&dir).expect("golden dir");
    }
    let count = samples.len();
    for sample in samples {
        let name = A::event_type(&sample);
        let path = dir.join(format!("{name}.bin"));
        if write && !path.exists() {
            std::fs::write(&path, sample.encode_to_vec()).expect("write golden sample");
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("golden sample {} missing ({e})", path.display()));
        let decoded = A::Event::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(A::event_type(&decoded), name);
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "{name} re-encodes differently"
        );
        apply(&decoded);
    }
    let files = std::fs::read_dir(&dir).expect("golden dir").count();
    assert_eq!(
        files, count,
        "a golden sample without an event type, or the reverse"
    );
}
