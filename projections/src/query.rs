//! What every read model's queries share: the read-your-writes wait, the
//! mapping of database errors, the decoding of stored protobuf resources,
//! and keyset paging behind opaque page tokens that only the query which
//! issued them accepts.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_demographics::queries::{Consistency, PageRequest};
use carelog_kernel::Failure;
use sqlx::PgPool;
use tonic::Code;

use crate::checkpoint;
use crate::projection::database_unavailable;

/// Waits until `projection` has applied `at.min_sequence` of `stream`; past
/// `at.deadline`, `DEADLINE_EXCEEDED` / `NOT_YET_CONSISTENT`.
pub(crate) async fn caught_up(
    pool: &PgPool,
    projection: &str,
    stream: &str,
    at: Consistency,
) -> Result<(), Failure> {
    let ok = checkpoint::wait_for(pool, projection, stream, at.min_sequence, at.deadline)
        .await
        .map_err(db)?;
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            Code::DeadlineExceeded,
            "NOT_YET_CONSISTENT",
            format!(
                "the read model has not reached stream sequence {} within the deadline",
                at.min_sequence
            ),
        )
        .with("minSequence", at.min_sequence.to_string()))
    }
}

/// A read-model database error as the caller sees it: UNAVAILABLE while
/// the database cannot serve (unreachable, shutting down, starting or
/// recovering, overloaded: [`database_unavailable`]), which a retry may
/// get past; INTERNAL otherwise.
pub fn db(e: sqlx::Error) -> Failure {
    if database_unavailable(&e) {
        tracing::warn!(error = %e, "read model database unavailable");
        Failure::unavailable("the read model database is unavailable")
    } else {
        Failure::internal(&e)
    }
}

/// A resource stored as protobuf `bytea`.
pub(crate) fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Failure> {
    M::decode(bytes).map_err(|e| Failure::internal(&e))
}

/// A short stable fingerprint of a query's parameters, for its page tokens.
pub(crate) fn fingerprint(text: &str) -> String {
    let hash = carelog_kernel::envelope::digest(text.as_bytes());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn bad_token() -> Failure {
    Failure::invalid_field("page_token", "is not a page token of this query")
}

/// An opaque page token: the query it belongs to and the last key served.
pub(crate) fn token(query: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{query}|{key}"))
}

/// The key a page token carries (None on the first page); a token of
/// another query is refused.
pub(crate) fn key_of(query: &str, page: &PageRequest) -> Result<Option<String>, Failure> {
    if page.token.is_empty() {
        return Ok(None);
    }
    let text = URL_SAFE_NO_PAD
        .decode(&page.token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad_token)?;
    let (q, key) = text.split_once('|').ok_or_else(bad_token)?;
    if q != query {
        return Err(bad_token());
    }
    Ok(Some(key.to_owned()))
}

/// One part of a key.
pub(crate) fn parse<K: FromStr>(text: &str) -> Result<K, Failure> {
    text.parse().map_err(|_| bad_token())
}

/// A key of two parts joined by `separator`.
pub(crate) fn parse_pair<A: FromStr, B: FromStr>(
    key: &str,
    separator: char,
) -> Result<(A, B), Failure> {
    let (a, b) = key.split_once(separator).ok_or_else(bad_token)?;
    Ok((parse(a)?, parse(b)?))
}

/// The single-part key after which a page starts, or `start` for the first page.
pub(crate) fn after<K: FromStr>(query: &str, page: &PageRequest, start: K) -> Result<K, Failure> {
    match key_of(query, page)? {
        None => Ok(start),
        Some(key) => parse(&key),
    }
}

/// The row limit to fetch: one more than the page, to know whether more follow.
pub(crate) fn limit(page: &PageRequest) -> i64 {
    i64::from(page.size) + 1
}

/// A page of `rows` (fetched with [`limit`]), each made into an item and its
/// keyset key by `each`, and the next page's token (empty on the last page).
pub(crate) fn paged<R, M>(
    rows: Vec<R>,
    page: &PageRequest,
    query: &str,
    mut each: impl FnMut(R) -> Result<(M, String), Failure>,
) -> Result<(Vec<M>, String), Failure> {
    let more = rows.len() > page.size as usize;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows.into_iter().take(page.size as usize) {
        let (item, key) = each(row)?;
        items.push(item);
        last = Some(key);
    }
    let next = match (more, last) {
        (true, Some(key)) => token(query, &key),
        _ => String::new(),
    };
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(token: String) -> PageRequest {
        PageRequest { size: 2, token }
    }

    #[test]
    fn a_token_round_trips_for_its_own_query_only() {
        let t = token("versions-1", "7");
        assert_eq!(
            after("versions-1", &page(t.clone()), 0i64).expect("as asserted"),
            7
        );
        assert!(after("versions-2", &page(t), 0i64).is_err());
        assert_eq!(
            after("versions-1", &page(String::new()), 0i64).expect("as asserted"),
            0
        );
        assert!(key_of("q", &page("not base64!".into())).is_err());
    }

    #[test]
    fn a_database_shutting_down_recovering_or_unreachable_is_unavailable() {
        use crate::projection::postgres_error;
        // admin shutdown, cannot connect now (starting up or recovering),
        // connection failure, too many connections
        for code in ["57P01", "57P03", "08006", "08001", "53300"] {
            let failure = db(postgres_error(code, "the database system is shutting down"));
            assert_eq!(failure.code, Code::Unavailable, "{code}");
        }
        assert_eq!(db(sqlx::Error::PoolTimedOut).code, Code::Unavailable);
        // an error of the query itself stays internal, its details unsaid
        let failure = db(postgres_error(
            "42P01",
            "relation \"patients\" does not exist",
        ));
        assert_eq!(failure.code, Code::Internal);
        assert_eq!(failure.message, "internal error");
    }

    #[test]
    fn pairs_and_pages() {
        let t = token("q", "5|x");
        let key = key_of("q", &page(t))
            .expect("as asserted")
            .expect("as asserted");
        assert_eq!(key, "5|x");
        assert!(parse_pair::<i64, i64>(&key, '|').is_err());
        assert_eq!(
            parse_pair::<i64, i32>("5:-1", ':').expect("as asserted"),
            (5, -1)
        );
        let (items, next) = paged(vec![1, 2, 3], &page(String::new()), "q", |n| {
            Ok((n * 10, n.to_string()))
        })
        .expect("as asserted");
        assert_eq!(items, vec![10, 20]);
        assert_eq!(
            key_of("q", &page(next)).expect("as asserted").as_deref(),
            Some("2")
        );
        let (_, last) = paged(vec![1], &page(String::new()), "q", |n| {
            Ok((n, n.to_string()))
        })
        .expect("as asserted");
        assert!(last.is_empty());
    }
}
