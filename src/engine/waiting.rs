//! Requests waiting between the two steps of [`super::flow`] while their page is read outside
//! the engine (the Workers fast path, `src/cloudflare/fast.rs`): each is parked under a number
//! the runtime is handed with the read, and taken back with it.
//!
//! Why each is kept with its request too: after a crash the Workers adapter runs on a new wasm
//! instance, whose table starts empty and numbers from 0 again, while reads begun on the old
//! instance still come back with the old numbers. Such a number may by then be a new request's:
//! only the request it was given for takes an entry, any other gets nothing (and the adapter
//! takes that request again from the start).

use std::collections::HashMap;

/// Parked requests' states `T`, each with its request `R` (compared by `==`), by number.
pub struct Waiting<T, R> {
    next: u32,
    parked: HashMap<u32, (R, T)>,
}

impl<T, R> Default for Waiting<T, R> {
    fn default() -> Self {
        Waiting { next: 0, parked: HashMap::new() }
    }
}

impl<T, R: PartialEq> Waiting<T, R> {
    /// Parks `state` of `request`; the number to take it back with.
    pub fn park(&mut self, request: R, state: T) -> u32 {
        let number = self.next;
        self.next = self.next.wrapping_add(1);
        self.parked.insert(number, (request, state));
        number
    }

    /// The state parked under `number`, if it was parked for `request` (then it is no longer
    /// parked); `None` otherwise, and whatever is parked there stays.
    pub fn take(&mut self, number: u32, request: &R) -> Option<T> {
        if self.parked.get(&number)?.0 != *request {
            return None;
        }
        self.parked.remove(&number).map(|(_, state)| state)
    }

    /// How many requests are parked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Whether none is parked.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_request_is_taken_back_once_by_its_number() {
        let mut w = Waiting::default();
        let a = w.park("request a", "state a");
        let b = w.park("request b", "state b");
        assert_ne!(a, b);
        assert_eq!(w.take(b, &"request b"), Some("state b"));
        assert_eq!(w.take(b, &"request b"), None, "taken once");
        assert_eq!(w.take(a, &"request a"), Some("state a"));
        assert!(w.is_empty());
    }

    #[test]
    fn after_a_crash_an_old_number_never_takes_a_new_request() {
        // The old instance parked `old` under 0; the crash replaced its table with a new one,
        // which parks `new` under 0 as well.
        let mut before = Waiting::default();
        let old = before.park("old request", "old state");
        let mut after = Waiting::default();
        let new = after.park("new request", "new state");
        assert_eq!(old, new, "both instances count from 0");
        // The old read comes back first, with its number: it gets nothing, the new one stays.
        assert_eq!(after.take(old, &"old request"), None);
        assert_eq!(after.len(), 1);
        assert_eq!(after.take(new, &"new request"), Some("new state"));
    }
}
