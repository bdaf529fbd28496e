//! Header lists as one string, the form in which they cross between wasm and JavaScript on
//! Workers, and the answer headers a page's answers share, kept on the JavaScript side.
//!
//! The text is `name\nvalue\n` per entry. One string per list, instead of one call (and two
//! string conversions) per entry: a HIT converts the visitor's headers and its answer's, and
//! those calls were a tenth of its CPU (BENCHMARKS.md, "HIT path"). `\n` cannot occur in a name
//! or a value of a `Headers` object (the Fetch standard refuses CR, LF and NUL), so it
//! separates them unambiguously.
//!
//! Why [`KeptHeaders`]: every HIT of a page answers with the same headers but for two numbers
//! (`age`, and the KV read's time in `server-timing`). Building a `Headers` object entry by
//! entry in JavaScript was, after the KV read itself, the largest part of a HIT's answer
//! (BENCHMARKS.md, issue 15), and each string handed out of wasm memory costs a decoding. So
//! the set is made a `Headers` object once and kept by the JavaScript side under a number
//! ([`split`]), and each answer is made from it (`new Response(body, {headers: kept})`, a copy
//! inside the runtime) with the two entries added from two plain numbers.

use super::Headers;
use std::collections::HashMap;

/// Headers that differ from one answer of a page to the next: left out of what is kept.
pub const PER_ANSWER: [&str; 2] = ["age", "server-timing"];
/// How many header sets an isolate keeps (all forgotten at once when full: a site with more
/// pages than this keeps making some again, which costs what it cost before they were kept).
pub const MAX_KEPT: usize = 1024;
/// Longer sets are not kept (the memo stays at a few megabytes at most).
pub const MAX_KEPT_TEXT: usize = 4096;

/// `headers` as one string; `Err` names a header whose name or value holds a line break
/// (which `Headers` would refuse anyway, and which would misalign the pairs).
pub fn as_text(headers: &Headers) -> Result<String, String> {
    let mut text = String::with_capacity(256);
    for (name, value) in headers.iter() {
        push(&mut text, name, value)?;
    }
    Ok(text)
}

/// The headers in `text` (as [`as_text`] gives them).
pub fn of_text(text: &str) -> Headers {
    let mut parts = text.split('\n');
    let mut out = Headers::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        out.append(name, value);
    }
    out
}

fn push(text: &mut String, name: &str, value: &str) -> Result<(), String> {
    if name.contains('\n') || value.contains('\n') {
        return Err(format!("the answer's header {name:?} holds a line break, which HTTP does not allow"));
    }
    text.push_str(name);
    text.push('\n');
    text.push_str(value);
    text.push('\n');
    Ok(())
}

/// How many [`PER_ANSWER`] entries an answer made from a kept set may have.
pub const MAX_PER_ANSWER: usize = 2;
/// The longest trailing number [`split`] takes out of a value (an `f64` holds it exactly).
const MAX_DIGITS: usize = 15;

/// `headers` as a set to keep and what this answer adds to it; `None` when it has more than
/// [`MAX_PER_ANSWER`] per-answer entries.
pub fn split(headers: &Headers) -> Result<Option<Split>, String> {
    let mut kept = String::with_capacity(256);
    let mut tail = String::with_capacity(48);
    let mut numbers = [None; MAX_PER_ANSWER];
    let mut per_answer = 0;
    for (name, value) in headers.iter() {
        if !PER_ANSWER.contains(&name) {
            push(&mut kept, name, value)?;
            continue;
        }
        if per_answer == MAX_PER_ANSWER {
            return Ok(None);
        }
        let (prefix, number) = trailing_number(value);
        push(&mut tail, name, prefix)?;
        numbers[per_answer] = number;
        per_answer += 1;
    }
    kept.push('\0');
    kept.push_str(&tail);
    Ok(Some(Split { kept, numbers }))
}

/// `value` as the text before its trailing number, and that number (the digits that reproduce
/// it exactly: no leading zero, at most [`MAX_DIGITS`]).
fn trailing_number(value: &str) -> (&str, Option<u64>) {
    let digits = value.len() - value.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return (value, None);
    }
    let run = &value[value.len() - digits..];
    let zeros = run.len() - run.trim_start_matches('0').len();
    let start = value.len() - digits + zeros.min(digits - 1);
    let number = &value[start..];
    if number.len() > MAX_DIGITS {
        return (value, None);
    }
    (&value[..start], number.parse().ok())
}

/// What [`split`] gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// The set to keep: the shared entries (as [`as_text`] writes them), NUL (which no header
    /// holds), then each per-answer entry's name and its value without its trailing number.
    pub kept: String,
    /// Each per-answer entry's trailing number, in order (`None`: it has none, or no entry).
    pub numbers: [Option<u64>; MAX_PER_ANSWER],
}

impl Split {
    /// The answer's headers again, from the set and the numbers (what the JavaScript side
    /// makes of them: `src/cloudflare/js.rs`, `response_from_kept`).
    pub fn headers(&self) -> Headers {
        let (shared, tail) = self.kept.split_once('\0').unwrap_or((&self.kept, ""));
        let mut out = of_text(shared);
        for (i, (name, prefix)) in of_text(tail).into_pairs().into_iter().enumerate() {
            out.append(&name, self.numbers.get(i).copied().flatten().map_or(prefix.clone(), |n| format!("{prefix}{n}")));
        }
        out
    }
}

/// The shared header sets the JavaScript side keeps, by their text: the number each is kept
/// under there.
///
/// Numbers restart from 0 when the memo is full, and in a new wasm instance after a crash,
/// while the JavaScript side keeps what it was given: a number is therefore used only after
/// it was handed out by [`KeptHeaders::number`] of this very memo, which gives [`Kept::New`]
/// first, and the caller hands the set to JavaScript under that number before using it (or
/// [`KeptHeaders::forget`]s it when JavaScript refused it).
#[derive(Debug, Default)]
pub struct KeptHeaders {
    numbers: HashMap<String, u32>,
    /// The next number to hand out; numbers stay below [`MAX_KEPT`].
    next: u32,
}

/// What [`KeptHeaders::number`] says of a shared set.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Kept under this number already.
    Known(u32),
    /// Not kept yet: to be handed to JavaScript under this number, now.
    New(u32),
    /// Too long to keep ([`MAX_KEPT_TEXT`]).
    NotKept,
}

impl KeptHeaders {
    /// The number `shared` is (or is to be) kept under.
    pub fn number(&mut self, shared: &str) -> Kept {
        if let Some(&n) = self.numbers.get(shared) {
            return Kept::Known(n);
        }
        if shared.len() > MAX_KEPT_TEXT {
            return Kept::NotKept;
        }
        if self.next as usize >= MAX_KEPT {
            self.numbers.clear();
            self.next = 0;
        }
        let n = self.next;
        self.next += 1;
        self.numbers.insert(shared.to_string(), n);
        Kept::New(n)
    }

    /// Forgets `shared` (JavaScript refused to keep it). Its number is not handed out again
    /// before the memo is cleared.
    pub fn forget(&mut self, shared: &str) {
        self.numbers.remove(shared);
    }

    /// How many sets are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Whether none is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    #[test]
    fn text_round_trips_and_keeps_order_and_repeats() {
        let h = headers(&[("content-type", "text/html"), ("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-empty", "")]);
        let text = as_text(&h).unwrap();
        assert_eq!(text, "content-type\ntext/html\nset-cookie\na=1\nset-cookie\nb=2\nx-empty\n\n");
        assert_eq!(of_text(&text), h);
        assert_eq!(of_text(""), Headers::new());
    }

    #[test]
    fn a_line_break_in_a_name_or_value_is_refused_by_name() {
        let e = as_text(&headers(&[("ok", "1"), ("x-bad", "a\nb")])).unwrap_err();
        assert!(e.contains("x-bad"), "{e}");
        assert!(split(&headers(&[("x\nbad", "1")])).is_err());
        assert!(split(&headers(&[("age", "1\n2")])).is_err(), "per-answer entries are checked too");
    }

    #[test]
    fn split_keeps_all_but_the_per_answer_numbers_and_the_answer_comes_back_whole() {
        let h = headers(&[
            ("content-type", "text/html"),
            ("age", "3"),
            ("etag", "\"1\""),
            ("server-timing", "cache;desc=HIT, kv;dur=12"),
            ("x-isr-cache", "HIT"),
        ]);
        let s = split(&h).unwrap().unwrap();
        assert_eq!(s.kept, "content-type\ntext/html\netag\n\"1\"\nx-isr-cache\nHIT\n\0age\n\nserver-timing\ncache;desc=HIT, kv;dur=\n");
        assert_eq!(s.numbers, [Some(3), Some(12)]);
        // The same page a moment later: the same set, other numbers.
        let later = headers(&[("content-type", "text/html"), ("age", "40"), ("etag", "\"1\""), ("server-timing", "cache;desc=HIT, kv;dur=0"), ("x-isr-cache", "HIT")]);
        let l = split(&later).unwrap().unwrap();
        assert_eq!(l.kept, s.kept);
        assert_eq!(l.numbers, [Some(40), Some(0)]);
        // Every entry is there again (per-answer ones last).
        let mut back = s.headers().into_pairs();
        let mut want = h.into_pairs();
        back.sort();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn values_without_a_number_or_with_odd_digits_come_back_exactly() {
        for value in ["", "none", "0", "00", "007", "10", "x1y", "12345678901234567890", "dur=000120"] {
            let h = headers(&[("a", "1"), ("server-timing", value)]);
            let s = split(&h).unwrap().unwrap();
            assert_eq!(s.headers(), h, "{value:?} as {s:?}");
        }
        let s = split(&headers(&[("age", "12345678901234567890")])).unwrap().unwrap();
        assert_eq!(s.numbers, [None, None], "too long for an f64: kept in the set");
        let s = split(&headers(&[("age", "007")])).unwrap().unwrap();
        assert_eq!((s.kept.as_str(), s.numbers), ("\0age\n00\n", [Some(7), None]));
    }

    #[test]
    fn more_per_answer_entries_than_two_are_not_kept() {
        assert_eq!(split(&headers(&[("age", "1"), ("age", "2"), ("server-timing", "x")])).unwrap(), None);
        assert!(split(&headers(&[("age", "1"), ("server-timing", "x")])).unwrap().is_some());
        assert_eq!(split(&headers(&[("etag", "x")])).unwrap().unwrap().numbers, [None, None]);
    }

    #[test]
    fn a_set_is_new_once_then_known_under_the_same_number() {
        let mut k = KeptHeaders::default();
        assert_eq!(k.number("a\n1\n"), Kept::New(0));
        assert_eq!(k.number("b\n2\n"), Kept::New(1));
        assert_eq!(k.number("a\n1\n"), Kept::Known(0));
        assert_eq!(k.number("b\n2\n"), Kept::Known(1));
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn a_refused_set_is_forgotten_and_its_number_never_given_to_another_before_a_clear() {
        let mut k = KeptHeaders::default();
        assert_eq!(k.number("bad"), Kept::New(0));
        k.forget("bad");
        assert_eq!(k.number("good"), Kept::New(1), "number 0 may still hold what JavaScript refused");
        assert_eq!(k.number("bad"), Kept::New(2), "asked again, it is new again");
    }

    #[test]
    fn long_sets_are_not_kept() {
        let mut k = KeptHeaders::default();
        let long = "x".repeat(MAX_KEPT_TEXT + 1);
        assert_eq!(k.number(&long), Kept::NotKept);
        assert!(k.is_empty());
    }

    #[test]
    fn when_full_everything_is_forgotten_and_numbers_start_again() {
        let mut k = KeptHeaders::default();
        for i in 0..MAX_KEPT {
            assert_eq!(k.number(&format!("h\n{i}\n")), Kept::New(i as u32));
        }
        assert_eq!(k.len(), MAX_KEPT);
        // Every number below MAX_KEPT is in use: the next set clears the memo and takes 0, and
        // a set kept before is new again (JavaScript's slot 0 is overwritten before any use).
        assert_eq!(k.number("another\n"), Kept::New(0));
        assert_eq!(k.len(), 1);
        assert_eq!(k.number("h\n0\n"), Kept::New(1));
    }
}
