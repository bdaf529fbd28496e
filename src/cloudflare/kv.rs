//! [`KvStore`] on a Workers KV namespace binding.
//!
//! Every call goes to the binding's JavaScript methods directly (see [`super::js`]). A visitor's
//! HIT reads `getWithMetadata(key, {type: "stream"})` and the stream goes into the response as
//! it is ([`Body::served`]); other reads use `{type: "arrayBuffer"}` and the value stays a JavaScript
//! buffer ([`JsBytes`]), copied into wasm memory only if the engine looks at it. Metadata comes
//! across as one JSON string (`JSON.stringify`), not field by field.

use super::js;
use crate::http::body::ExternalBody;
use crate::engine::memo::Memo;
use crate::http::Body;
use crate::store::{validate_key, validate_put, KvStore, ListPage, ListedKey, PutOptions, StoreError, StoredValue};
use js_sys::{Array, Uint8Array};
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};

/// A Workers KV namespace.
pub struct WorkersKv {
    binding: JsValue,
}

impl WorkersKv {
    /// Wraps a namespace binding (the object `env.PAGES` holds).
    pub fn new(binding: JsValue) -> Result<Self, String> {
        if !binding.is_object() {
            return Err("it is not a KV namespace".to_string());
        }
        Ok(Self { binding })
    }
}

/// A value read from KV, still in JavaScript memory.
pub struct JsBytes(pub Uint8Array);

impl ExternalBody for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }

    fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.0.to_vec())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Sorts KV's errors into the kinds the core acts on (429 is retried, the rest logged).
fn classify_message(message: String) -> StoreError {
    if message.contains("429") || message.contains("Too Many Requests") {
        StoreError::RateLimited
    } else if message.contains("Too many API requests") {
        StoreError::OperationLimit
    } else {
        StoreError::Unavailable(message)
    }
}

pub(crate) fn classify_js(e: JsValue) -> StoreError {
    classify_message(js::error_message(&e))
}

fn field(object: &JsValue, name: &str) -> Result<JsValue, StoreError> {
    js::get(object, name).map_err(classify_js)
}

/// KV metadata as the core keeps it: JSON text (absent when null or undefined).
fn metadata_text(metadata: JsValue) -> Option<String> {
    if metadata.is_null() || metadata.is_undefined() {
        None
    } else {
        js_sys::JSON::stringify(&metadata).ok().and_then(|s| s.as_string())
    }
}

impl WorkersKv {
    /// `getWithMetadata(key, {type})`, the value made a body by `body`, the metadata as JSON text.
    async fn get_with_metadata(&self, key: &str, kind: &str, body: impl FnOnce(JsValue) -> Body) -> Result<Option<StoredValue>, StoreError> {
        validate_key(key)?;
        let options = js::object(&[("type", kind.into())]).map_err(classify_js)?;
        let result = js::call_async(&self.binding, "getWithMetadata", &[key.into(), options.into()]).await.map_err(classify_js)?;
        stored_value(&result, body)
    }

    /// Starts the read [`KvStore::get_to_serve`] makes, and returns KV's promise of
    /// `{value, metadata}` (value a stream, or `null`) unawaited, for the entry point to chain
    /// (see [`super::fast`]).
    pub(crate) fn start_get_to_serve(&self, key: &str) -> Result<js_sys::Promise, StoreError> {
        Ok(js::kv_get_to_serve(&self.binding, &key_string(key)?))
    }
}

/// How many KV keys an isolate keeps as JavaScript strings (at most 512 bytes each: KV's limit).
const MAX_KEY_STRINGS: usize = 1024;

thread_local! {
    /// The keys of the pages read lately for visitors, checked and made JavaScript strings:
    /// a page's HITs read the same key again and again, and each read otherwise checked it and
    /// copied it out of wasm memory into a new string. All are forgotten at once when full.
    static KEY_STRINGS: RefCell<Memo<JsValue>> = RefCell::new(Memo::new(MAX_KEY_STRINGS));
}

/// `key`, checked against KV's limits, as a JavaScript string.
fn key_string(key: &str) -> Result<JsValue, StoreError> {
    KEY_STRINGS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(string) = keys.get(key) {
            return Ok(string.clone());
        }
        validate_key(key)?;
        let string = JsValue::from_str(key);
        keys.insert(key, string.clone());
        Ok(string)
    })
}

/// What `getWithMetadata` gave: `None` for no value, else the value made a body by `body` and
/// the metadata as JSON text.
fn stored_value(result: &JsValue, body: impl FnOnce(JsValue) -> Body) -> Result<Option<StoredValue>, StoreError> {
    let value = field(result, "value")?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(StoredValue { value: body(value), metadata: metadata_text(field(result, "metadata")?) }))
}

/// A value read to be served: KV's `ReadableStream`, which `convert::to_web_response` sends on.
pub(crate) fn served_body(value: JsValue) -> Body {
    Body::served(Rc::new(value.unchecked_into::<web_sys::ReadableStream>()))
}

impl KvStore for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        self.get_with_metadata(key, "arrayBuffer", |value| Body::external(Rc::new(JsBytes(Uint8Array::new(&value))))).await
    }

    async fn get_to_serve(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        // The same read the fast path makes (`start_get_to_serve`), awaited here.
        let result = wasm_bindgen_futures::JsFuture::from(self.start_get_to_serve(key)?).await.map_err(classify_js)?;
        stored_value(&result, served_body)
    }

    async fn put(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError> {
        // Check KV's limits here too, so production fails the same way the native tests do.
        validate_put(key, value.len(), &opts)?;
        let metadata = match &opts.metadata {
            Some(m) => js_sys::JSON::parse(m).map_err(classify_js)?,
            None => JsValue::UNDEFINED,
        };
        let ttl = opts.expiration_ttl.map_or(JsValue::UNDEFINED, |t| JsValue::from_f64(t as f64));
        let options = js::object(&[("metadata", metadata), ("expirationTtl", ttl)]).map_err(classify_js)?;
        let bytes = match value.as_external().and_then(|e| e.as_any().downcast_ref::<JsBytes>()) {
            Some(js) => js.0.clone(),
            None => Uint8Array::from(&value[..]),
        };
        js::call_async(&self.binding, "put", &[key.into(), bytes.into(), options.into()]).await.map_err(classify_js)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        js::call_async(&self.binding, "delete", &[key.into()]).await.map_err(classify_js)?;
        Ok(())
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, StoreError> {
        let options = js::object(&[
            ("prefix", prefix.into()),
            ("limit", limit.clamp(1, 1000).into()),
            ("cursor", cursor.map_or(JsValue::UNDEFINED, JsValue::from)),
        ])
        .map_err(classify_js)?;
        let page = js::call_async(&self.binding, "list", &[options.into()]).await.map_err(classify_js)?;
        let keys: Array = field(&page, "keys")?.dyn_into().map_err(|_| StoreError::Unavailable("KV list answered without a keys array".into()))?;
        let keys = keys
            .iter()
            .map(|k| {
                Ok(ListedKey { name: field(&k, "name")?.as_string().unwrap_or_default(), metadata: metadata_text(field(&k, "metadata")?) })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(ListPage {
            keys,
            cursor: field(&page, "cursor")?.as_string().filter(|c| !c.is_empty()),
            // Without the flag, take it as the last page: a sweep must not loop forever.
            complete: field(&page, "list_complete")?.as_bool().unwrap_or(true),
        })
    }
}
