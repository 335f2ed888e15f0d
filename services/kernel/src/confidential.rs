//! Confidential items (consultation entries, allergies, medication
//! authorisations and their issues): marked by their author, visible only to
//! users of the author's organisation. Every query that returns such items
//! leaves out those the caller may not see and says how many it left out,
//! never what they were; the read's access event is marked `withheld`.

use crate::actor::Actor;

/// Whether `actor` may see an item with this marking.
pub fn visible_to(actor: &Actor, confidential: bool, author_organisation: &str) -> bool {
    visible_to_organisation(
        actor.organisation.as_str(),
        confidential,
        author_organisation,
    )
}

/// Whether users of `organisation` may see an item with this marking. A
/// command names items by id: one they may not see is, to them, not there.
pub fn visible_to_organisation(
    organisation: &str,
    confidential: bool,
    author_organisation: &str,
) -> bool {
    !confidential || organisation == author_organisation
}

/// Keeps the items `actor` may see, in order; returns how many were left
/// out. `marking` gives an item's confidential flag and author organisation.
pub fn withhold<T>(items: &mut Vec<T>, actor: &Actor, marking: impl Fn(&T) -> (bool, &str)) -> i32 {
    let before = items.len();
    items.retain(|item| {
        let (confidential, organisation) = marking(item);
        visible_to(actor, confidential, organisation)
    });
    i32::try_from(before - items.len()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OdsCode;

    fn actor(org: &str) -> Actor {
        Actor {
            user_id: "u".into(),
            display_name: String::new(),
            role: "R8000".into(),
            organisation: OdsCode::parse(org).expect("ods"),
            purpose_of_use: "DIRECT_CARE".into(),
        }
    }

    #[test]
    fn confidential_items_are_seen_only_inside_the_authors_organisation() {
        let items = vec![
            (false, "A81001", "open"),
            (true, "A81001", "practice only"),
            (false, "RR8", "hospital"),
            (true, "RR8", "hospital only"),
        ];
        let mut practice = items.clone();
        assert_eq!(withhold(&mut practice, &actor("A81001"), |i| (i.0, i.1)), 1);
        assert_eq!(
            practice.iter().map(|i| i.2).collect::<Vec<_>>(),
            ["open", "practice only", "hospital"]
        );
        let mut elsewhere = items;
        assert_eq!(
            withhold(&mut elsewhere, &actor("Y00001"), |i| (i.0, i.1)),
            2
        );
        assert_eq!(
            elsewhere.iter().map(|i| i.2).collect::<Vec<_>>(),
            ["open", "hospital"]
        );
    }
}
