//! Which node checks which instance, when several daemons share one store.
//!
//! Each instance is checked by exactly one online node: the node it runs on (its
//! `nodeUrl`) when that node is online, otherwise the node that wins rendezvous hashing
//! on (node, instance). Every node computes the same answer from the same node list, a
//! node going offline moves only its own share, and its return moves the share back.

use sha2::{Digest, Sha256};

fn score(node: &str, instance_id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(node.as_bytes())
        .chain_update([0])
        .chain_update(instance_id.as_bytes())
        .finalize();
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 8 bytes"),
    )
}

/// The node (of `online`, which is never empty) that checks the instance.
pub(super) fn checker<'a>(online: &'a [String], instance_id: &str, node_url: &str) -> &'a str {
    if let Some(own) = online.iter().find(|n| *n == node_url) {
        return own;
    }
    online
        .iter()
        .max_by_key(|node| (score(node, instance_id), node.as_str()))
        .map(String::as_str)
        .expect("the node doing the assignment is online")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn the_instances_own_node_checks_it() {
        let online = nodes(&["http://a", "http://b", "http://c"]);
        assert_eq!(checker(&online, "inst_1", "http://b"), "http://b");
    }

    #[test]
    fn shares_are_even_and_move_only_when_their_node_leaves() {
        let all = nodes(&["http://a", "http://b", "http://c"]);
        let ids: Vec<String> = (0..3000).map(|i| format!("inst_{i}")).collect();
        let before: Vec<&str> = ids.iter().map(|id| checker(&all, id, "")).collect();
        for node in &all {
            let share = before.iter().filter(|n| **n == node).count();
            assert!(
                (800..1200).contains(&share),
                "{node} checks {share} of 3000"
            );
        }
        let without_c = nodes(&["http://a", "http://b"]);
        for (id, was) in ids.iter().zip(&before) {
            let now = checker(&without_c, id, "");
            if *was != "http://c" {
                assert_eq!(now, *was, "{id} moved although its node stayed");
            }
        }
        // Back again: the same split as before.
        let again: Vec<&str> = ids.iter().map(|id| checker(&all, id, "")).collect();
        assert_eq!(again, before);
    }
}
