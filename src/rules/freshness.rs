//! Whether a stored page may be served as it is: a pure function of its metadata and `now`.

use crate::runtime::clock::Millis;
use crate::rules::meta::PageMeta;

/// How usable a stored page is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Within its revalidate time and not invalidated: serve it (HIT).
    Fresh,
    /// Past its revalidate time, or invalidated: serve it and regenerate in the background (STALE).
    Stale,
    /// Invalidated with `mode: expire`: render before answering; serve it only if the origin fails.
    Expired,
}

/// Decides the freshness of a page at `now`.
///
/// A page is stale once `now >= rendered_at + revalidate`: with `revalidate = 60`, a page
/// rendered at t=0 is a HIT up to t=59.999 s and STALE from t=60 s (Next.js's rule).
pub fn freshness(meta: &PageMeta, now: Millis) -> Freshness {
    if meta.invalidated_at.is_some() {
        return if meta.expired { Freshness::Expired } else { Freshness::Stale };
    }
    let fresh_until = meta.rendered_at.saturating_add(u64::from(meta.revalidate_s) * 1000);
    if now < fresh_until {
        Freshness::Fresh
    } else {
        Freshness::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::page_meta as meta;

    #[test]
    fn fresh_until_the_revalidate_time_then_stale() {
        let m = meta(10_000, 60);
        assert_eq!(freshness(&m, 10_000), Freshness::Fresh);
        assert_eq!(freshness(&m, 69_999), Freshness::Fresh);
        assert_eq!(freshness(&m, 70_000), Freshness::Stale);
        assert_eq!(freshness(&m, u64::MAX), Freshness::Stale);
    }

    #[test]
    fn a_clock_behind_the_render_time_counts_as_fresh() {
        assert_eq!(freshness(&meta(10_000, 1), 5_000), Freshness::Fresh);
    }

    #[test]
    fn invalidation_makes_a_fresh_page_stale_or_expired() {
        let mut m = meta(10_000, 3600);
        m.invalidated_at = Some(11_000);
        assert_eq!(freshness(&m, 12_000), Freshness::Stale);
        m.expired = true;
        assert_eq!(freshness(&m, 12_000), Freshness::Expired);
    }

    #[test]
    fn huge_revalidate_times_do_not_overflow() {
        assert_eq!(freshness(&meta(u64::MAX - 5, u32::MAX), u64::MAX - 1), Freshness::Fresh);
    }
}
