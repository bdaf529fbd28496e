//! Property tests of the core's invariants, over generated inputs.

use edge_isr::runtime::clock::Clock;
use edge_isr::rules::config::Config;
use edge_isr::rules::freshness::{freshness, Freshness};
use edge_isr::rules::invalidation::Invalidation;
use edge_isr::rules::key::normalise;
use edge_isr::store::layout;
use edge_isr::rules::meta::PageMeta;
use edge_isr::testing::{page_meta, Bench, Reply};
use futures::executor::block_on;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn meta(rendered_at: u64, revalidate_s: u32, invalidated_at: Option<u64>, expired: bool) -> PageMeta {
    PageMeta { invalidated_at, expired, ..page_meta(rendered_at, revalidate_s) }
}

/// Path-ish strings with the characters that matter to normalisation.
fn raw_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_string()),
            Just("//".to_string()),
            Just("/./".to_string()),
            Just("/../".to_string()),
            Just("%2e%2e".to_string()),
            Just("%2F".to_string()),
            Just("%41".to_string()),
            Just("%zz".to_string()),
            Just("%".to_string()),
            Just("%2".to_string()),
            Just("%3".to_string()),
            Just("é".to_string()),
            Just("?".to_string()),
            Just("&".to_string()),
            Just("=".to_string()),
            Just("#".to_string()),
            "[a-zA-Z0-9._~-]{1,4}",
        ],
        0..12,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    /// The origin is fetched at the key's URL; that URL must normalise to the same key, or the
    /// page stored under a key would not be the origin's page for that key.
    #[test]
    fn normalising_the_origin_url_of_a_key_gives_the_same_key(path in raw_path(), params in "(page|utm_source|x)?") {
        let mut config = Config::for_origin("http://origin.test");
        if !params.is_empty() {
            config.query_params = edge_isr::rules::config::QueryParams::Only(vec!["page".into(), "x".into()]);
        }
        let url = format!("https://Site.Test{path}");
        if let Ok(key) = normalise(&url, &config) {
            let origin = url::Url::parse(&format!("https://{}", key.host)).unwrap();
            let again = normalise(&key.origin_url(&origin), &config).unwrap();
            prop_assert_eq!(again, key);
        }
    }

    /// A page is fresh exactly while younger than its revalidate time and not invalidated.
    #[test]
    fn freshness_rules(rendered_at in 0u64..1u64 << 50, revalidate_s in 0u32..100_000, age in 0u64..200_000_000,
                       invalidated in proptest::option::of(0u64..1u64 << 50), expired: bool) {
        let m = meta(rendered_at, revalidate_s, invalidated, expired);
        let now = rendered_at + age;
        let f = freshness(&m, now);
        match invalidated {
            Some(_) => prop_assert_eq!(f, if expired { Freshness::Expired } else { Freshness::Stale }),
            None => prop_assert_eq!(f == Freshness::Fresh, age < u64::from(revalidate_s) * 1000),
        }
    }
}

/// One step of a generated history: store page `page` with tags, or invalidate a tag.
#[derive(Clone, Debug)]
enum Step {
    Store(usize, BTreeSet<usize>),
    Invalidate(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0usize..6, proptest::collection::btree_set(0usize..5, 0..4)).prop_map(|(p, t)| Step::Store(p, t)),
            1 => (0usize..5).prop_map(Step::Invalidate),
        ],
        1..25,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the order of stores, tag changes and invalidations:
    /// - the tag index holds exactly each stored page's current tags;
    /// - no page whose render is older than an invalidation of one of its tags is served fresh.
    #[test]
    fn tag_index_and_invalidation_invariants(history in steps()) {
        let b = Bench::new();
        let path = |p: usize| format!("/p{p}");
        let tag = |t: usize| format!("tag{t}");
        // The tags each page had when it was last rendered, and when that render started.
        let mut current: BTreeMap<usize, (BTreeSet<usize>, u64)> = BTreeMap::new();
        let mut invalidated_at: BTreeMap<usize, u64> = BTreeMap::new();
        block_on(async {
            for step in &history {
                b.clock.advance(1_500); // past KV's one write per second per key
                match step {
                    Step::Store(p, tags) => {
                        let header = tags.iter().map(|t| tag(*t)).collect::<Vec<_>>().join(",");
                        // Pages never go stale by time here: only invalidations make them stale.
                        b.origin.reply(&path(*p), Reply::page("x", &[("cache-tag", &header), ("cache-control", "s-maxage=86400")]));
                        if current.contains_key(p) {
                            // Re-render a stored page: invalidate its path, then visit it.
                            let req = Invalidation { paths: vec![path(*p)], ..Default::default() };
                            b.kv.begin_invocation();
                            b.engine().invalidate(&["site.test".to_string()], &req).await;
                            b.clock.advance(1_500);
                        }
                        let started = b.clock.now_ms();
                        let state = edge_isr::testing::cache_state(&b.get(&path(*p)).await).to_string();
                        prop_assert!(state == "MISS" || state == "STALE", "{state}");
                        b.run_background().await;
                        // The page now holds this render's tags.
                        current.insert(*p, (tags.clone(), started));
                    }
                    Step::Invalidate(t) => {
                        let req = Invalidation { tags: vec![tag(*t)], ..Default::default() };
                        b.kv.begin_invocation();
                        b.engine().invalidate(&["site.test".to_string()], &req).await;
                        invalidated_at.insert(*t, b.clock.now_ms());
                    }
                }
            }
            for t in 0..5 {
                let prefix = layout::tag_prefix("1", &tag(t));
                let members: BTreeSet<String> = b.kv.visible_keys().into_iter().filter_map(|k| k.strip_prefix(&prefix).map(String::from)).collect();
                let expected: BTreeSet<String> = current.iter().filter(|(_, (tags, _))| tags.contains(&t)).map(|(p, _)| format!("site.test{}", path(*p))).collect();
                prop_assert_eq!(members, expected, "index of {}", tag(t));
            }
            for (p, (tags, rendered)) in &current {
                let stale_by_tag = tags.iter().any(|t| invalidated_at.get(t).is_some_and(|at| at > rendered));
                if stale_by_tag {
                    b.kv.begin_invocation();
                    let state = edge_isr::testing::cache_state(&b.get(&path(*p)).await).to_string();
                    prop_assert_ne!(state, "HIT", "{} was rendered before an invalidation of its tag", path(*p));
                    b.queue.take_all();
                }
            }
            Ok(())
        })?;
    }
}
