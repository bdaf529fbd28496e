//! [`KvStore`] on a Workers KV namespace binding.

use crate::http::Body;
use crate::store::{validate_key, validate_put, KvStore, ListPage, ListedKey, PutOptions, StoreError, StoredValue};
use worker::kv::{KvError, KvStore as WorkerKv};

/// A Workers KV namespace.
pub struct WorkersKv(WorkerKv);

impl WorkersKv {
    /// Wraps a binding.
    pub fn new(kv: WorkerKv) -> Self {
        Self(kv)
    }
}

/// Sorts KV's errors into the kinds the core acts on (429 is retried, the rest logged).
fn classify(e: KvError) -> StoreError {
    let message = e.to_string();
    if message.contains("429") || message.contains("Too Many Requests") {
        StoreError::RateLimited
    } else if message.contains("Too many API requests") {
        StoreError::OperationLimit
    } else {
        StoreError::Unavailable(message)
    }
}

impl KvStore for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        validate_key(key)?;
        let (value, metadata) = self
            .0
            .get(key)
            .bytes_with_metadata::<serde_json::Value>()
            .await
            .map_err(classify)?;
        Ok(value.map(|v| StoredValue {
            value: Body::from(v),
            metadata: metadata.filter(|m| !m.is_null()).map(|m| m.to_string()),
        }))
    }

    async fn put(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError> {
        // Check KV's limits here too, so production fails the same way the native tests do.
        validate_put(key, value.len(), &opts)?;
        let mut put = self.0.put_bytes(key, &value).map_err(classify)?;
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
        self.0.delete(key).await.map_err(classify)
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, StoreError> {
        let mut list = self.0.list().prefix(prefix.to_string()).limit(u64::from(limit.clamp(1, 1000)));
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
