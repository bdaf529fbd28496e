//! The coordinator's wire protocol: what the worker sends to the Durable Object over its
//! stub's `fetch`, and what comes back (JSON bodies), shared by both sides.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /record` | [`crate::coordination::purges::RecordRequest`] (a log entry, and its Workers Cache purge targets) | [`Recorded`] |
//! | `GET /log?since=N` | | [`crate::coordination::log::LogSlice`] (with the purge planner's [`crate::coordination::purges::PurgeStatus`]) |
//! | `POST /claim` | [`ClaimRequest`] | [`crate::coordination::claims::ClaimAnswer`] |
//! | `POST /release` | [`ReleaseRequest`] | `{}` |
//! | `POST /purge/take` | [`crate::coordination::purges::TakeRequest`] | [`crate::coordination::purges::Taken`] |
//! | `POST /purge/done` | [`crate::coordination::purges::PurgeReport`] | `{}` |
//!
//! Errors are a non-2xx status with `{"error": "..."}`.

use crate::coordination::claims::Version;
use crate::runtime::clock::Millis;
use serde::{Deserialize, Serialize};

/// Base URL of requests to the object (the host is not used: a stub's `fetch` goes to the object).
pub const BASE_URL: &str = "https://coordinator.internal";
/// Name of the one coordinator object (every location talks to the same one).
pub const OBJECT_NAME: &str = "global";

/// Answer to `POST /record`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The entry's position in the log.
    pub seq: u64,
}

/// Body of `POST /claim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The page id (`host/path?query`).
    pub page: String,
    /// The page version being regenerated.
    pub version: Version,
    /// How long the claim lasts unless released (ms).
    pub ttl_ms: u64,
}

/// Body of `POST /release`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The page id.
    pub page: String,
    /// The version that was claimed.
    pub version: Version,
    /// After a failure: no new claim of this version before then (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
}

/// The `since` parameter of `GET /log` (0 when absent or unreadable: everything kept).
pub fn since_param(query: Option<&str>) -> u64 {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let claim = ClaimRequest {
            page: "site.test/a".into(),
            version: (5, 0),
            ttl_ms: 25_000,
        };
        let text = serde_json::to_string(&claim).unwrap();
        assert_eq!(text, r#"{"page":"site.test/a","version":[5,0],"ttl_ms":25000}"#);
        assert_eq!(serde_json::from_str::<ClaimRequest>(&text).unwrap(), claim);
        let release: ReleaseRequest = serde_json::from_str(r#"{"page":"p","version":[1,2]}"#).unwrap();
        assert_eq!(release.retry_at, None);
    }

    #[test]
    fn since_is_read_from_the_query() {
        assert_eq!(since_param(Some("since=42")), 42);
        assert_eq!(since_param(Some("x=1&since=7")), 7);
        assert_eq!(since_param(Some("since=-1")), 0);
        assert_eq!(since_param(None), 0);
    }
}
