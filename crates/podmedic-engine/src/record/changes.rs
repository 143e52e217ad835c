//! The text of `podmedic.io/changes`: what podmedic changed and why it left things out, rewritten
//! on every mutation rather than appended to, so that it stays readable and small.
//!
//! Entries are separated by `; `. A rewrite keeps the previous entries, adds the new ones, drops
//! repeats, and stops at [`MAX_CHANGES_LEN`] bytes with a visible `... and N more` marker (the
//! count carries over to the next rewrite). Objects have a 256 KiB budget for all annotations; a
//! record of a few KiB leaves it to the user. Decisions read the machine-readable record
//! ([`super::moved`]) instead; only convergence still reads the moves an older podmedic wrote here.

use std::collections::BTreeSet;

/// Longest value podmedic writes to `podmedic.io/changes`, in bytes.
pub const MAX_CHANGES_LEN: usize = 4096;

const SEPARATOR: &str = "; ";
const MARKER_PREFIX: &str = "... and ";
const MARKER_SUFFIX: &str = " more";

/// The new value of the annotation: `previous` entries, then `new` ones, without repeats, capped.
pub(crate) fn rewrite(previous: Option<&str>, new: &[String]) -> String {
    let mut hidden: usize = 0;
    // A B-tree, not a hash set: for the handful of entries of a usual record, a few string
    // comparisons cost less than hashing each entry (SipHash), and it stays n log n for long ones.
    let mut seen = BTreeSet::new();
    let mut entries: Vec<&str> = Vec::new();
    let previous = previous.into_iter().flat_map(|p| p.split(SEPARATOR));
    for entry in previous.chain(new.iter().map(String::as_str)).map(str::trim).filter(|e| !e.is_empty()) {
        crate::work::step(1);
        if let Some(count) = marker_count(entry) {
            hidden = hidden.saturating_add(count);
        } else if seen.insert(entry) {
            entries.push(entry);
        }
    }
    // Room for the marker is kept back only when it will be needed.
    let total: usize = entries.iter().map(|e| e.len()).sum::<usize>() + SEPARATOR.len() * entries.len();
    let budget = if hidden == 0 && total <= MAX_CHANGES_LEN + SEPARATOR.len() {
        MAX_CHANGES_LEN
    } else {
        MAX_CHANGES_LEN - SEPARATOR.len() - marker(usize::MAX).len()
    };
    let mut text = String::with_capacity(MAX_CHANGES_LEN);
    for entry in entries {
        let extra = if text.is_empty() { entry.len() } else { SEPARATOR.len() + entry.len() };
        if text.len() + extra > budget {
            hidden = hidden.saturating_add(1);
            continue;
        }
        if !text.is_empty() {
            text.push_str(SEPARATOR);
        }
        text.push_str(entry);
    }
    if hidden > 0 {
        if !text.is_empty() {
            text.push_str(SEPARATOR);
        }
        text.push_str(&marker(hidden));
    }
    text
}

fn marker(count: usize) -> String {
    format!("{MARKER_PREFIX}{count}{MARKER_SUFFIX}")
}

/// `... and 12 more` → 12.
fn marker_count(entry: &str) -> Option<usize> {
    entry.strip_prefix(MARKER_PREFIX)?.strip_suffix(MARKER_SUFFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn new_entries_follow_the_previous_ones_without_repeats() {
        let previous = "proxy: moved to initContainers; proxy: startupProbe httpGet /startup on port 9090";
        let text = rewrite(Some(previous), &strings(&["proxy: moved to initContainers", "istio-proxy: moved"]));
        assert_eq!(text, format!("{previous}; istio-proxy: moved"));
        assert_eq!(rewrite(None, &strings(&["a", "a", " ", "b"])), "a; b");
        assert_eq!(rewrite(Some(""), &strings(&["a"])), "a");
    }

    #[test]
    fn the_record_is_capped_with_a_visible_count_that_carries_over() {
        let many: Vec<String> = (0..500).map(|i| format!("container-{i:03}: moved to initContainers")).collect();
        let text = rewrite(None, &many);
        assert!(text.len() <= MAX_CHANGES_LEN, "{}", text.len());
        let shown = text.split(SEPARATOR).filter(|e| e.starts_with("container-")).count();
        assert!(text.ends_with(&format!("... and {} more", 500 - shown)), "{text}");
        assert!(shown > 50, "{shown}");
        // The next rewrite keeps the count and adds to it.
        let again = rewrite(Some(&text), &strings(&["late: moved to initContainers"]));
        assert!(again.len() <= MAX_CHANGES_LEN);
        assert!(again.ends_with(&format!("... and {} more", 500 - shown + 1)), "{again}");
        assert_eq!(rewrite(Some(&again), &[]), again, "a rewrite of the same record changes nothing");
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_counted_not_cut() {
        let huge = "x".repeat(MAX_CHANGES_LEN * 2);
        assert_eq!(rewrite(Some(&huge), &strings(&["proxy: moved"])), "proxy: moved; ... and 1 more");
        let exactly = "y".repeat(MAX_CHANGES_LEN);
        assert_eq!(rewrite(None, std::slice::from_ref(&exactly)), exactly, "a record that fits needs no marker");
    }
}
