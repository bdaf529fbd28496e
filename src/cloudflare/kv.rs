//! [`KvStore`] on a Workers KV namespace binding.
//!
//! Reads call the binding's `getWithMetadata(key, {type: "arrayBuffer"})` directly: the value
//! stays a JavaScript buffer ([`JsBytes`], handed to the visitor's response without a copy into
//! wasm memory), and the metadata comes across as one JSON string (`JSON.stringify`), not
//! field by field. Writes, deletes and lists go through the `worker` crate.

use crate::http::Body;
use crate::body::ExternalBody;
use crate::store::{validate_key, validate_put, KvStore, ListPage, ListedKey, PutOptions, StoreError, StoredValue};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use std::any::Any;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::kv::{KvError, KvStore as WorkerKv};

/// A Workers KV namespace.
pub struct WorkersKv {
    kv: WorkerKv,
    binding: Object,
    get_with_metadata: Function,
}

impl WorkersKv {
    /// Wraps a binding: the `worker` crate's handle and the raw JavaScript object.
    pub fn new(kv: WorkerKv, binding: JsValue) -> Result<Self, String> {
        let binding: Object = binding.dyn_into().map_err(|_| "the KV binding is not an object".to_string())?;
        let get_with_metadata = Reflect::get(&binding, &JsValue::from_str("getWithMetadata"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or("the KV binding has no getWithMetadata")?;
        Ok(Self {
            kv,
            binding,
            get_with_metadata,
        })
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

fn classify(e: KvError) -> StoreError {
    classify_message(e.to_string())
}

fn classify_js(e: JsValue) -> StoreError {
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    classify_message(message)
}

fn field(object: &JsValue, name: &str) -> Result<JsValue, StoreError> {
    Reflect::get(object, &JsValue::from_str(name)).map_err(classify_js)
}

impl KvStore for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        validate_key(key)?;
        let options = Object::new();
        Reflect::set(&options, &JsValue::from_str("type"), &JsValue::from_str("arrayBuffer")).map_err(classify_js)?;
        let promise: Promise = self
            .get_with_metadata
            .call2(&self.binding, &JsValue::from_str(key), &options)
            .map_err(classify_js)?
            .dyn_into()
            .map_err(classify_js)?;
        let result = JsFuture::from(promise).await.map_err(classify_js)?;
        let value = field(&result, "value")?;
        if value.is_null() || value.is_undefined() {
            return Ok(None);
        }
        let metadata = field(&result, "metadata")?;
        let metadata = if metadata.is_null() || metadata.is_undefined() {
            None
        } else {
            js_sys::JSON::stringify(&metadata).ok().and_then(|s| s.as_string())
        };
        Ok(Some(StoredValue {
            value: Body::external(Rc::new(JsBytes(Uint8Array::new(&value)))),
            metadata,
        }))
    }

    async fn put(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError> {
        // Check KV's limits here too, so production fails the same way the native tests do.
        validate_put(key, value.len(), &opts)?;
        let mut put = self.kv.put_bytes(key, &value).map_err(classify)?;
        if let Some(m) = &opts.metadata {
            let json: serde_json::Value = serde_json::from_str(m).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            put = put.metadata(json).map_err(classify)?;
        }
        if let Some(ttl) = opts.expiration_ttl {
            put = put.expiration_ttl(ttl);
        }
        put.execute().await.map_err(classify)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.kv.delete(key).await.map_err(classify)
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, StoreError> {
        let mut list = self.kv.list().prefix(prefix.to_string()).limit(u64::from(limit.clamp(1, 1000)));
        if let Some(c) = cursor {
            list = list.cursor(c.to_string());
        }
        let page = list.execute().await.map_err(classify)?;
        Ok(ListPage {
            keys: page
                .keys
                .into_iter()
                .map(|k| ListedKey {
                    name: k.name,
                    metadata: k.metadata.map(|m| m.to_string()),
                })
                .collect(),
            cursor: page.cursor.filter(|c| !c.is_empty()),
            complete: page.list_complete,
        })
    }
}
