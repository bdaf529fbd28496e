//! Bodies of requests, responses and stored values.
//!
//! Usually bytes in this program's memory (reference-counted, so handing the same page to the
//! visitor and to the store costs no copy). A body can also stay where the platform keeps it
//! ([`ExternalBody`]): on Workers, a page read from KV stays a JavaScript `Uint8Array` and goes
//! straight into the visitor's response, never copied into wasm memory and back. Rules that do
//! look at the bytes (a lease, a tag list, an ETag) get them copied once, on first use.
//!
//! A third kind, [`Body::served`], is a body the engine may only hand on: a page read for a
//! visitor's answer ([`crate::store::KvStore::get_to_serve`]), on Workers KV's stream going
//! straight into the response. Its bytes are nowhere the engine can read them, so reading one
//! (its length or its bytes) is a bug, and panics the same way in the native tests as it would
//! on Workers. An origin's answer that is only passed on ([`crate::runtime::origin::Origin::fetch_to_serve`])
//! is one too: a download or an event stream goes from the origin to the visitor as it arrives.
//!
//! A fourth kind, [`Body::streaming`], is a body still arriving from the platform
//! ([`StreamingBody`]): a visitor's request body, passed on to the origin as it arrives (uploads
//! of any size), or read into memory with a cap ([`Body::read_capped`]) where the engine needs
//! the bytes (the webhook, the admin page); or an origin's page on a MISS, split in two
//! ([`Body::tee`]) so that the visitor gets it as it arrives while the other branch is read
//! whole for the store. Its length and bytes cannot be read otherwise (a panic, as above).

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use std::any::Any;
use std::cell::OnceCell;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

/// Bytes held by the platform (e.g. a JavaScript buffer).
pub trait ExternalBody: Any {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the body is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A copy of the bytes in this program's memory.
    fn to_bytes(&self) -> Bytes;
    /// For the adapter that made it, to take its own type back.
    fn as_any(&self) -> &dyn Any;
}

/// A body still arriving from the platform: a visitor's upload, or an origin's page on a MISS.
pub trait StreamingBody: Any {
    /// Reads the whole body into memory, giving up with [`ReadError::TooLarge`] as soon as more
    /// than `limit` bytes have arrived (the rest is never read, and the stream is cancelled).
    fn read_capped(&self, limit: usize) -> LocalBoxFuture<'_, Result<Body, ReadError>>;
    /// Reads what is left of the body and drops it as it arrives (nothing is kept): the
    /// visitor, who is usually still sending, then gets the answer instead of a reset
    /// connection.
    fn discard(&self) -> LocalBoxFuture<'_, ()>;
    /// Two bodies still arriving that each get every byte still to arrive
    /// (`ReadableStream.tee()`): the first to hand on (to the visitor), the second to read
    /// ([`StreamingBody::read_capped`]); either can be cancelled on its own. `None` when this
    /// body cannot be split (an upload).
    fn tee(&self) -> Option<(Body, Body)> {
        None
    }
    /// Stops reading: the platform drops what is left (for a branch of [`StreamingBody::tee`],
    /// the other branch goes on, and nothing more is buffered for this one).
    fn cancel(&self) {}
    /// For the adapter that made it, to take its own type back (and hand the stream on).
    fn as_any(&self) -> &dyn Any;
}

/// Why a body could not be read into memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// More than the limit arrived.
    TooLarge,
    /// The stream failed (the visitor went away, say).
    Failed(String),
}

#[derive(Clone)]
enum Repr {
    Local(Bytes),
    External(Rc<dyn ExternalBody>, Rc<OnceCell<Bytes>>),
    Served(Rc<dyn Any>),
    Streaming(Rc<dyn StreamingBody>),
}

const SERVED_READ: &str = "edge-isr: the engine read a body that is only passed on (KvStore::get_to_serve, Origin::fetch_to_serve, a request's stream: use Body::read_capped)";

/// A body: see the module documentation.
#[derive(Clone)]
pub struct Body(Repr);

impl Body {
    /// An empty body.
    pub const fn new() -> Body {
        Body(Repr::Local(Bytes::new()))
    }

    /// A body the platform holds.
    pub fn external(body: Rc<dyn ExternalBody>) -> Body {
        Body(Repr::External(body, Rc::default()))
    }

    /// A body only the platform can send (see the module documentation): `handle` is whatever
    /// the store that read it needs to send it on (on Workers, the KV stream).
    pub fn served(handle: Rc<dyn Any>) -> Body {
        Body(Repr::Served(handle))
    }

    /// A request body still arriving (see the module documentation).
    pub fn streaming(body: Rc<dyn StreamingBody>) -> Body {
        Body(Repr::Streaming(body))
    }

    /// The platform's body, when this is one that was never copied.
    pub fn as_external(&self) -> Option<&dyn ExternalBody> {
        match &self.0 {
            Repr::External(e, _) => Some(e.as_ref()),
            Repr::Local(_) | Repr::Served(_) | Repr::Streaming(_) => None,
        }
    }

    /// The store's handle, when this is a body read only to be served.
    pub fn as_served(&self) -> Option<&dyn Any> {
        match &self.0 {
            Repr::Served(handle) => Some(handle.as_ref()),
            Repr::Local(_) | Repr::External(..) | Repr::Streaming(_) => None,
        }
    }

    /// The stream, when this is a request body still arriving.
    pub fn as_streaming(&self) -> Option<&dyn StreamingBody> {
        match &self.0 {
            Repr::Streaming(s) => Some(s.as_ref()),
            Repr::Local(_) | Repr::External(..) | Repr::Served(_) => None,
        }
    }

    /// The body in memory, if it is at most `limit` bytes: a stream is read until it ends or
    /// passes the limit (so an oversized upload costs at most `limit` bytes of memory), a body
    /// already in memory is checked. A body that is only served cannot be read.
    pub async fn read_capped(&self, limit: usize) -> Result<Body, ReadError> {
        match &self.0 {
            Repr::Streaming(s) => s.read_capped(limit).await,
            Repr::Served(_) => Err(ReadError::Failed("a served body cannot be read".into())),
            Repr::Local(_) | Repr::External(..) if self.len() > limit => Err(ReadError::TooLarge),
            Repr::Local(_) | Repr::External(..) => Ok(self.clone()),
        }
    }

    /// A body still arriving, split in two (see [`StreamingBody::tee`]); `None` for other bodies.
    pub fn tee(&self) -> Option<(Body, Body)> {
        self.as_streaming()?.tee()
    }

    /// Stops reading a body still arriving (see [`StreamingBody::cancel`]); nothing for others.
    pub fn cancel(&self) {
        if let Repr::Streaming(s) = &self.0 {
            s.cancel();
        }
    }

    /// Drops what is left of a request body still arriving (see [`StreamingBody::discard`]);
    /// nothing for other bodies.
    pub async fn discard(&self) {
        if let Repr::Streaming(s) = &self.0 {
            s.discard().await;
        }
    }

    /// Length in bytes (without copying an external body). Panics for a served or streaming
    /// body.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Local(b) => b.len(),
            Repr::External(e, _) => e.len(),
            Repr::Served(_) | Repr::Streaming(_) => panic!("{SERVED_READ}"),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::new()
    }
}

impl Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Local(b) => b,
            Repr::External(e, copy) => copy.get_or_init(|| e.to_bytes()),
            Repr::Served(_) | Repr::Streaming(_) => panic!("{SERVED_READ}"),
        }
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && **self == **other
    }
}

impl Eq for Body {}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Local(b) => fmt::Debug::fmt(b, f),
            Repr::External(e, _) => write!(f, "Body(external, {} bytes)", e.len()),
            Repr::Served(_) => f.write_str("Body(served)"),
            Repr::Streaming(_) => f.write_str("Body(streaming)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body(Repr::Local(b))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body(Repr::Local(Bytes::from(v)))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body(Repr::Local(Bytes::from(s)))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body(Repr::Local(Bytes::from_static(s.as_bytes())))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Body(Repr::Local(Bytes::from_static(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counted {
        data: &'static [u8],
        copies: Rc<Cell<u32>>,
    }

    impl ExternalBody for Counted {
        fn len(&self) -> usize {
            self.data.len()
        }
        fn to_bytes(&self) -> Bytes {
            self.copies.set(self.copies.get() + 1);
            Bytes::from_static(self.data)
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn a_served_body_is_only_handed_on() {
        let body = Body::served(Rc::new(7u32));
        let handed_on = body.clone();
        assert_eq!(handed_on.as_served().and_then(|h| h.downcast_ref::<u32>()), Some(&7));
        assert!(handed_on.as_external().is_none());
        assert_eq!(format!("{body:?}"), "Body(served)");
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.len())).is_err(), "its length cannot be read");
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.to_vec())).is_err(), "nor its bytes");
    }

    #[test]
    fn an_external_body_is_copied_once_and_only_when_read() {
        let copies = Rc::new(Cell::new(0));
        let body = Body::external(Rc::new(Counted { data: b"page", copies: copies.clone() }));
        let served = body.clone();
        assert_eq!((body.len(), copies.get()), (4, 0), "length without a copy");
        assert!(served.as_external().is_some(), "still the platform's buffer when served");
        assert_eq!(&body[..], b"page");
        assert_eq!(&served[..], b"page");
        assert_eq!(copies.get(), 1, "clones share the one copy");
        assert_eq!(body, Body::from("page"));
    }
}
