//! Stored page metadata: any bytes as the KV metadata string of a page.
//!
//! Invariants:
//! - no panic;
//! - a decoded meta has the current version;
//! - it re-encodes: whenever the input leaves room for the fields `encode` always writes
//!   (`"h":[]` when the input had no headers), and what it encodes to fits KV's 1024 bytes,
//!   decodes to the same meta and encodes to the same string again.
#![no_main]

use edge_isr::rules::meta::{MetaError, PageMeta, META_VERSION};
use edge_isr::store::limits::MAX_METADATA_BYTES;
use libfuzzer_sys::fuzz_target;

/// `,"h":[]`: the most a compact input can grow by when re-encoded.
const SLACK: usize = 7;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    match PageMeta::decode(Some(&raw)) {
        Ok(meta) => {
            assert_eq!(meta.version, META_VERSION);
            let mut again = meta.clone();
            match again.encode() {
                Ok(json) => {
                    assert!(json.len() <= MAX_METADATA_BYTES, "encoded to {} bytes", json.len());
                    assert_eq!(PageMeta::decode(Some(&json)).as_ref(), Ok(&again), "{json}");
                    let mut third = again.clone();
                    assert_eq!(third.encode().as_deref(), Ok(json.as_str()), "encoding is not stable");
                }
                Err(reason) => assert!(
                    raw.len() + SLACK > MAX_METADATA_BYTES,
                    "a decoded meta of {} bytes does not re-encode ({reason:?}): {raw}",
                    raw.len()
                ),
            }
        }
        Err(MetaError::UnknownVersion(v)) => assert_ne!(v, META_VERSION),
        Err(MetaError::Missing) => panic!("Missing for a present value"),
        Err(e @ MetaError::Malformed(_)) => {
            let _ = e.to_string();
        }
    }
});
