//! Where a request stands with respect to the cache, reported in `x-isr-cache` and in logs.

use std::fmt;

/// The cache state of one answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// A fresh stored page was served.
    Hit,
    /// A stored page past its revalidate time was served; a regeneration runs in the background.
    Stale,
    /// No usable stored page: the origin rendered it while the visitor waited.
    Miss,
    /// The request or response is not cacheable; it went to the origin untouched.
    Bypass(BypassReason),
}

impl CacheState {
    /// The value of the `x-isr-cache` header.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheState::Hit => "HIT",
            CacheState::Stale => "STALE",
            CacheState::Miss => "MISS",
            CacheState::Bypass(_) => "BYPASS",
        }
    }
}

impl fmt::Display for CacheState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheState::Bypass(r) => write!(f, "BYPASS ({})", r.as_str()),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why a request or response was not cached. Carried as data so logs and the
/// `x-isr-reason` header can say exactly why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BypassReason {
    /// Method other than GET/HEAD.
    Method,
    /// The request carries `Authorization`.
    Authorization,
    /// The request carries a configured session or preview cookie.
    SessionCookie,
    /// The URL cannot be keyed (malformed, or path too long).
    Unkeyable,
    /// The request asks for an event stream (`Accept: text/event-stream`, what `EventSource`
    /// sends): it never ends, so it is streamed through, never stored.
    EventStream,
    /// The origin set a cookie.
    SetCookie,
    /// The origin said `private`, `no-store` or `no-cache`.
    NotPublic,
    /// The origin's revalidate time is 0.
    ZeroRevalidate,
    /// The status is not one ISR stores (only 200, 203, 301, 308, 404, 410 are).
    Status(u16),
    /// The origin varies on request headers other than `Accept-Encoding`.
    Vary,
    /// The body is over KV's 25 MiB value limit.
    TooLarge,
    /// The headers do not fit in KV's 1024-byte metadata.
    HeadersTooLarge,
}

impl BypassReason {
    /// Short kebab-case name, the value of `x-isr-reason`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BypassReason::Method => "method",
            BypassReason::Authorization => "authorization",
            BypassReason::SessionCookie => "session-cookie",
            BypassReason::Unkeyable => "unkeyable-url",
            BypassReason::EventStream => "event-stream",
            BypassReason::SetCookie => "set-cookie",
            BypassReason::NotPublic => "not-public",
            BypassReason::ZeroRevalidate => "zero-revalidate",
            BypassReason::Status(_) => "status",
            BypassReason::Vary => "vary",
            BypassReason::TooLarge => "too-large",
            BypassReason::HeadersTooLarge => "headers-too-large",
        }
    }
}
