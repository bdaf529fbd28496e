//! The key-value store the cache lives in, shaped after Workers KV.
//!
//! The trait has exactly KV's operations (get with metadata, put with metadata and TTL,
//! delete, list by prefix) so that nothing in the core relies on a capability KV lacks
//! (no compare-and-swap, no transactions, no metadata-only update).

use crate::http::Body;
use std::fmt;

pub mod layout;
pub mod memory;

/// KV's documented limits (checked 2026-11, Cloudflare KV limits page).
pub mod limits {
    /// Longest key, in UTF-8 bytes.
    pub const MAX_KEY_BYTES: usize = 512;
    /// Largest value.
    pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
    /// Largest serialized metadata.
    pub const MAX_METADATA_BYTES: usize = 1024;
    /// Operations one worker invocation may make.
    pub const MAX_OPERATIONS_PER_INVOCATION: u32 = 1000;
    /// Shortest `expirationTtl`.
    pub const MIN_EXPIRATION_TTL_SECS: u64 = 60;
    /// Largest `limit` of one list call.
    pub const MAX_LIST_LIMIT: u32 = 1000;
    /// Minimum spacing of writes to one key.
    pub const WRITE_INTERVAL_MS: u64 = 1000;
}

/// A value read back with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The value bytes.
    pub value: Body,
    /// Raw metadata JSON, if the value was written with some.
    pub metadata: Option<String>,
}

/// Options of a write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Metadata JSON stored beside the value (at most 1024 bytes).
    pub metadata: Option<String>,
    /// Seconds until KV deletes the key by itself (at least 60).
    pub expiration_ttl: Option<u64>,
}

/// One key of a list result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    /// The key.
    pub name: String,
    /// Its metadata JSON, if any.
    pub metadata: Option<String>,
}

/// One page of a list result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys on this page, in UTF-8 byte order. May be empty even when more remain.
    pub keys: Vec<ListedKey>,
    /// Where to continue, when `complete` is false.
    pub cursor: Option<String>,
    /// Whether this was the last page.
    pub complete: bool,
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// More than one write per second to one key (KV answers 429). Retry later.
    RateLimited,
    /// The key is empty, `.`/`..`, or longer than 512 bytes.
    InvalidKey(String),
    /// The value is over 25 MiB.
    ValueTooLarge(usize),
    /// The metadata is over 1024 bytes.
    MetadataTooLarge(usize),
    /// The expiration TTL is under 60 seconds.
    InvalidExpiration(u64),
    /// This invocation has used up its 1,000 KV operations.
    OperationLimit,
    /// Any other failure reported by the store.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::RateLimited => write!(f, "KV write rate limit (1 write/s per key) hit"),
            StoreError::InvalidKey(k) => write!(f, "invalid KV key ({} bytes)", k.len()),
            StoreError::ValueTooLarge(n) => write!(f, "value of {n} bytes is over KV's 25 MiB limit"),
            StoreError::MetadataTooLarge(n) => {
                write!(f, "metadata of {n} bytes is over KV's 1024-byte limit")
            }
            StoreError::InvalidExpiration(s) => write!(f, "expiration TTL {s}s is under KV's 60s minimum"),
            StoreError::OperationLimit => {
                write!(f, "KV operation limit (1000 per invocation) reached")
            }
            StoreError::Unavailable(m) => write!(f, "KV error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Checks a key against KV's rules, so every store (and every test) rejects what KV rejects.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key == "." || key == ".." || key.len() > limits::MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Checks a write against KV's value, metadata and expiration limits.
pub fn validate_put(key: &str, value_len: usize, opts: &PutOptions) -> Result<(), StoreError> {
    validate_key(key)?;
    if value_len > limits::MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge(value_len));
    }
    if let Some(m) = &opts.metadata {
        if m.len() > limits::MAX_METADATA_BYTES {
            return Err(StoreError::MetadataTooLarge(m.len()));
        }
    }
    if let Some(ttl) = opts.expiration_ttl {
        if ttl < limits::MIN_EXPIRATION_TTL_SECS {
            return Err(StoreError::InvalidExpiration(ttl));
        }
    }
    Ok(())
}

/// A Workers-KV-shaped store.
///
/// No `Send` bound: the Workers runtime is single-threaded, and KV handles are not `Send`.
#[allow(async_fn_in_trait)]
pub trait KvStore {
    /// Reads a value and its metadata; `None` when the key is absent (or not yet visible here).
    async fn get(&self, key: &str) -> Result<Option<StoredValue>, StoreError>;
    /// Reads a value only to send it on as it is (a visitor's HIT or STALE): like [`get`], one
    /// read, but the store may hand back a body the engine cannot look into (on Workers, the
    /// value streamed straight from KV into the response, never buffered). The engine must not
    /// read such a body; it re-reads with [`get`] whatever it needs to inspect or re-store.
    ///
    /// [`get`]: KvStore::get
    async fn get_to_serve(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        self.get(key).await
    }
    /// Writes a value; the last write wins.
    async fn put(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError>;
    /// Deletes a key (deleting an absent key succeeds).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Lists keys starting with `prefix`, at most `limit` (<= 1000), from `cursor`.
    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, StoreError>;
}
