//! The bounded per-isolate memo behind what a HIT remembers between requests: what each URL is
//! ([`super::routes`]), each page's decoded metadata ([`super::decoded`]), and on Workers each
//! page's KV key as a JavaScript string (`src/cloudflare/kv.rs`).
//!
//! Why one shape for all: each is keyed by something a visitor chooses (a URL, and the pages
//! it leads to), so each must stay bounded whatever is asked; and each is worth keeping only
//! because a page's visitors ask for the same thing again and again. So a memo holds at most
//! its bound of entries and, when a new key arrives with it full, forgets everything at once:
//! a flood of distinct keys costs one insert each and never more memory, and no bookkeeping
//! per hit (no recency order to update on a HIT).

use std::collections::HashMap;

/// Values `V` by string key, at most `max` of them.
pub struct Memo<V> {
    max: usize,
    entries: HashMap<String, V>,
}

impl<V> Memo<V> {
    /// An empty memo that keeps at most `max` entries.
    pub fn new(max: usize) -> Self {
        Memo { max, entries: HashMap::new() }
    }

    /// The value kept for `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    /// Keeps `value` for `key` (replacing what was kept for it), first forgetting everything
    /// when the memo is full and `key` is a new one.
    pub fn insert(&mut self, key: &str, value: V) {
        if self.entries.len() >= self.max && !self.entries.contains_key(key) {
            self.entries.clear();
        }
        self.entries.insert(key.to_string(), value);
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memo_forgets_everything_for_a_new_key_but_not_for_a_kept_one() {
        let mut m = Memo::new(3);
        for k in ["a", "b", "c"] {
            m.insert(k, k.len());
        }
        assert_eq!(m.len(), 3);
        m.insert("b", 7);
        assert_eq!((m.len(), m.get("b")), (3, Some(&7)), "a kept key is replaced in place");
        m.insert("d", 1);
        assert_eq!(m.len(), 1, "a new key into a full memo forgets the rest");
        assert_eq!((m.get("a"), m.get("d")), (None, Some(&1)));
        assert!(!m.is_empty());
    }
}
