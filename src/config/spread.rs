//! `prefer = "spread"`: each resource's order of preference over `[cluster]
//! nodes`, by rendezvous (highest-random-weight) hashing. Every node ranks
//! the nodes by a score of (resource, node), highest first. Two properties
//! follow, and the tests hold them:
//!
//! - **even**: each node comes first for about 1/N of the resources;
//! - **minimal movement**: removing a node changes the first choice only of
//!   the resources whose first choice it was (every other pair's score is
//!   unchanged), and adding one moves only resources to the new node.
//!
//! Every node must compute the same order, from the same names, whatever
//! its build: so the hash is FNV-1a (the `file` backend's, `lock::twin`)
//! and a fixed finalizer, not std's `DefaultHasher` (whose algorithm may
//! change between Rust releases) nor a crate's (a few lines; no crate
//! would give more than a promise of the same).

/// The nodes in `resource`'s order of preference: by score, highest first
/// (by name between equal scores, which 64 bits make a formality).
pub fn order(resource: &str, nodes: &[String]) -> Vec<String> {
    let mut ranked: Vec<(u64, &String)> = nodes.iter().map(|n| (score(resource, n), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, n)| n.clone()).collect()
}

/// The weight of `node` for `resource`: 64-bit FNV-1a of `resource \0
/// node` (the NUL keeps ("ab", "c") apart from ("a", "bc")), then
/// splitmix64's finalizer, since FNV-1a alone mixes the last bytes poorly
/// and node names often differ only there ("node-1", "node-2").
pub fn score(resource: &str, node: &str) -> u64 {
    let mut key = Vec::with_capacity(resource.len() + 1 + node.len());
    key.extend_from_slice(resource.as_bytes());
    key.push(0);
    key.extend_from_slice(node.as_bytes());
    let mut h = crate::lock::twin::fnv1a(&key);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn vips() -> Vec<String> {
        (0..100).map(|i| format!("vip{i:03}")).collect()
    }

    fn first(resource: &str, list: &[String]) -> String {
        order(resource, list)[0].clone()
    }

    /// Fixed expectations (computed apart, in Python): a change of the
    /// hash, which would make nodes of two versions disagree, fails here.
    #[test]
    fn the_order_is_fixed() {
        let abc = nodes(&["a", "b", "c"]);
        assert_eq!(score("web", "a"), 0x65a4_544e_f9d6_eec5);
        let got: Vec<String> = (0..10)
            .map(|i| order(&format!("vip{i:03}"), &abc).join(","))
            .collect();
        assert_eq!(
            got,
            [
                "b,a,c", "c,b,a", "a,b,c", "a,c,b", "a,b,c", "b,c,a", "a,c,b", "b,c,a", "c,b,a",
                "a,b,c"
            ]
        );
    }

    #[test]
    fn the_order_does_not_depend_on_how_the_nodes_are_listed() {
        let (abc, cab) = (nodes(&["a", "b", "c"]), nodes(&["c", "a", "b"]));
        for r in vips() {
            assert_eq!(order(&r, &abc), order(&r, &cab), "{r}");
            let mut sorted = order(&r, &abc);
            sorted.sort();
            assert_eq!(sorted, abc, "every node, once");
        }
    }

    #[test]
    fn a_hundred_resources_spread_evenly_over_three_nodes() {
        let abc = nodes(&["a", "b", "c"]);
        for n in &abc {
            let count = vips().iter().filter(|r| first(r, &abc) == *n).count();
            assert!((25..=42).contains(&count), "{n} first for {count} of 100");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_resources() {
        let (abc, ab) = (nodes(&["a", "b", "c"]), nodes(&["a", "b"]));
        let mut moved = 0;
        for r in vips() {
            let (before, after) = (first(&r, &abc), first(&r, &ab));
            if before == "c" {
                moved += 1;
                // It goes to its second choice: the order of the others
                // stays.
                assert_eq!(after, order(&r, &abc)[1], "{r}");
            } else {
                assert_eq!(
                    before, after,
                    "{r} moved although c was not its first choice"
                );
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn adding_a_node_moves_resources_only_to_it() {
        let (abc, abcd) = (nodes(&["a", "b", "c"]), nodes(&["a", "b", "c", "d"]));
        let mut moved = 0;
        for r in vips() {
            let (before, after) = (first(&r, &abc), first(&r, &abcd));
            if before != after {
                assert_eq!(after, "d", "{r} moved from {before} to {after}");
                moved += 1;
            }
        }
        assert!((15..=35).contains(&moved), "{moved} of 100 moved to d");
    }
}
