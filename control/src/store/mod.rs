//! The store: the single source of truth for every API object.
//!
//! Objects are JSON documents keyed by `group/resource/namespace/name`. The
//! store owns the cluster-wide revision: every write gets the next revision,
//! and the store writes it into `metadata.resourceVersion` of the object it
//! returns, so callers never compute revisions themselves (as etcd's
//! mod_revision works for Kubernetes). Writes are compare-and-swap on that
//! revision. Watches replay from a revision, then stream; a revision older
//! than the kept history is `Gone`.

mod redb;

pub use self::redb::RedbStore;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use serde_json::Value;

/// An object as stored: immutable, shared, with `metadata.resourceVersion` set.
pub type Object = Arc<Value>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("revision {requested} is older than the oldest kept revision {oldest}")]
    Gone { requested: u64, oldest: u64 },
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch delivers it. For `Deleted`, `object` is the last
/// state of the object with the revision of the delete.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventType,
    pub key: Arc<str>,
    pub revision: u64,
    pub object: Object,
}

/// What a watch yields: events in revision order, or an error that ends it
/// (a `Gone` when the watcher fell too far behind).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Arc<Event>>> + Send>>;

/// The storage contract. Implementations: redb (embedded), etcd (HA).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest committed revision.
    fn revision(&self) -> u64;

    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// Every object whose key starts with `prefix`, in key order, and the
    /// revision the listing reflects.
    async fn list(&self, prefix: &str) -> Result<(Vec<Object>, u64)>;

    /// Creates `key`; fails with `AlreadyExists` if it is present.
    async fn create(&self, key: &str, object: Value) -> Result<Object>;

    /// Replaces `key` if its current revision is `expected` (any when `None`).
    async fn update(&self, key: &str, object: Value, expected: Option<u64>) -> Result<Object>;

    /// Removes `key` if its current revision is `expected` (any when `None`).
    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Object>;

    /// Events for keys under `prefix` with a revision strictly after `after`.
    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream>;
}

/// Reads `metadata.resourceVersion` as the store revision it encodes.
pub fn revision_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn set_revision(object: &mut Value, revision: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}
