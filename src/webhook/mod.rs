//! The on-demand revalidation webhook's pure logic: who may call it, and what a call asks for.
//!
//! The webhook is the one endpoint that changes the cache on someone else's behalf, usually a
//! headless CMS that can only be configured, not programmed. So every rule about it lives here
//! as a pure function of the request (no I/O, no clock: "now" is an argument), unit-tested
//! natively; the adapter reads the body, calls [`authenticate`] then [`parse_request`], and acts
//! on the resulting [`Invalidation`] or answers with [`WebhookError::to_response`].
//!
//! - [`authenticate`]: a shared secret (Bearer, header or query), an edge-isr signature, or a
//!   CMS's native signature (Sanity, Contentful). Failure is a 401 and nothing else happens.
//! - [`parse_request`]: the edge-isr JSON shape and query parameters, or a CMS's own payload
//!   translated by configured [`Mappings`] (`WEBHOOK_MAPPINGS`).
//!
//! Limits are public constants so the documentation and the error messages cannot drift apart.

mod auth;
mod collect;
mod contentful;
pub(crate) mod crypto;
mod error;
mod mapping;
mod request;
mod sanity;
mod signature;
mod template;
mod validate;

pub use crate::rules::invalidation::{Invalidation, InvalidationMode};
pub use auth::{authenticate, AuthMethod, SECRET_HEADER, SECRET_QUERY_PARAM};
pub use contentful::{
    CONTENTFUL_SIGNATURE_HEADER, CONTENTFUL_SIGNED_HEADERS_HEADER, CONTENTFUL_TIMESTAMP_HEADER, CONTENTFUL_TTL_S,
};
pub use error::WebhookError;
pub use mapping::Mappings;
pub use request::{parse_request, refuse_unsigned_query};
pub use crypto::secret_matches;
pub use sanity::SANITY_SIGNATURE_HEADER;
pub use signature::ISR_SIGNATURE_HEADER;

/// Largest request body read, in bytes (64 KiB); larger bodies are answered 413.
///
/// Invalidation requests are lists of short strings and CMS payloads are single documents;
/// the cap bounds parsing and signature work an unauthenticated caller can cause.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most entries per request, counted after de-duplication across tags, paths and prefixes together.
pub const MAX_ITEMS: usize = 256;

/// Longest path or prefix, in characters.
pub const MAX_PATH_CHARS: usize = 1024;

/// How far the timestamp of an `x-isr-signature` or `sanity-webhook-signature` may be from the
/// worker's clock, in seconds, either way (a replayed request is refused after this).
pub const REPLAY_WINDOW_S: u64 = 300;
