//! The embedded backend: redb on disk, every object also held in memory.
//!
//! Writes go through one writer thread that commits whatever requests are
//! waiting in a single fsync'd transaction (group commit): durability of
//! every acknowledged write, at the cost of one fsync per batch rather than
//! one per write. Reads and lists are served from memory; watches read the
//! in-memory event history, so a slow watcher costs nothing until it falls
//! behind the kept history, at which point it gets `Gone` and relists.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures::stream;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Event, EventType, Object, Result, Store, StoreError, WatchStream, set_revision};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";

/// How many events the history keeps for watch replay, and how many bytes
/// of objects (as stored) at most: a churn of large objects would otherwise
/// hold 100,000 old copies in memory.
const HISTORY: usize = 100_000;
const HISTORY_BYTES: usize = 128 * 1024 * 1024;
/// The most write requests one transaction takes.
const BATCH: usize = 1024;

pub struct RedbStore {
    shared: Arc<Shared>,
    /// `None` only while dropping, so that the writer sees the channel close.
    writes: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: RwLock<State>,
    /// The newest committed revision; watchers wait on its changes.
    committed: watch::Sender<u64>,
}

struct State {
    objects: BTreeMap<String, Object>,
    /// Events with contiguous revisions `first..=revision`, each with the
    /// size of its object as stored.
    history: VecDeque<(Arc<Event>, usize)>,
    /// The sum of the sizes in `history`.
    history_bytes: usize,
    /// The most bytes `history` may hold.
    max_history_bytes: usize,
    revision: u64,
}

impl State {
    /// The oldest revision a watch may resume after.
    fn oldest(&self) -> u64 {
        self.history
            .front()
            .map_or(self.revision, |(e, _)| e.revision - 1)
    }

    /// Events after `after` whose key starts with `prefix`, at most `limit`.
    fn events_after(&self, prefix: &str, after: u64, limit: usize) -> Result<Vec<Arc<Event>>> {
        let oldest = self.oldest();
        if after < oldest {
            return Err(StoreError::Gone {
                requested: after,
                oldest,
            });
        }
        let skip = (after - oldest) as usize;
        Ok(self
            .history
            .iter()
            .skip(skip)
            .map(|(e, _)| e)
            .filter(|e| e.key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }
}

enum Op {
    Create(String, Value),
    Update(String, Value, Option<u64>),
    Delete(String, Option<u64>),
}

struct WriteRequest {
    op: Op,
    reply: oneshot::Sender<Result<Object>>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path` and loads it into memory.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_history(path, HISTORY_BYTES)
    }

    fn open_with_history(path: &Path, max_history_bytes: usize) -> Result<Self> {
        let db = Database::create(path).map_err(backend)?;
        // The store holds Secrets.
        peapod_common::private::file(path).map_err(backend)?;
        let (objects, revision) = load(&db)?;
        let (committed, _) = watch::channel(revision);
        let shared = Arc::new(Shared {
            state: RwLock::new(State {
                objects,
                history: VecDeque::new(),
                history_bytes: 0,
                max_history_bytes,
                revision,
            }),
            committed,
        });
        let (tx, rx) = mpsc::channel(4 * BATCH);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer(db, writer_shared, rx))
            .map_err(backend)?;
        Ok(RedbStore {
            shared,
            writes: Some(tx),
            writer: Some(writer),
        })
    }

    async fn write(&self, op: Op) -> Result<Object> {
        let (reply, rx) = oneshot::channel();
        let writes = self.writes.as_ref().expect("store is open");
        writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?
    }
}

impl Drop for RedbStore {
    /// Closes the database: the writer finishes its batch and releases the file.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn load(db: &Database) -> Result<(BTreeMap<String, Object>, u64)> {
    // Make sure both tables exist so that a read transaction can open them.
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(OBJECTS).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    txn.commit().map_err(backend)?;

    let txn = db.begin_read().map_err(backend)?;
    let revision = txn
        .open_table(META)
        .map_err(backend)?
        .get(REVISION_KEY)
        .map_err(backend)?
        .map_or(0, |v| v.value());
    let mut objects = BTreeMap::new();
    for entry in txn
        .open_table(OBJECTS)
        .map_err(backend)?
        .iter()
        .map_err(backend)?
    {
        let (key, value) = entry.map_err(backend)?;
        let object: Value = serde_json::from_slice(value.value()).map_err(backend)?;
        objects.insert(key.value().to_string(), Arc::new(object));
    }
    Ok((objects, revision))
}

/// A write that passed its checks and awaits the commit.
struct Staged {
    reply: oneshot::Sender<Result<Object>>,
    event: Arc<Event>,
    /// The size of the event's object, for the history's budget.
    bytes: usize,
}

fn writer(db: Database, shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteRequest>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.blocking_recv_many(&mut batch, BATCH) > 0 {
        let requests = std::mem::take(&mut batch);
        if let Err(e) = commit_batch(&db, &shared, requests) {
            tracing::error!("store commit failed: {e}");
        }
    }
}

fn commit_batch(db: &Database, shared: &Shared, requests: Vec<WriteRequest>) -> Result<()> {
    let mut revision = shared.state.read().expect("store lock").revision;
    // Keys written earlier in this batch, as later requests must see them.
    let mut overlay: HashMap<String, Option<Object>> = HashMap::new();
    let mut staged = Vec::with_capacity(requests.len());

    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let outcome: Result<()> = (|| {
        let mut table = txn.open_table(OBJECTS).map_err(backend)?;
        for WriteRequest { op, reply } in requests {
            let key = match &op {
                Op::Create(k, _) | Op::Update(k, _, _) | Op::Delete(k, _) => k.clone(),
            };
            let current = match overlay.get(&key) {
                Some(o) => o.clone(),
                None => shared
                    .state
                    .read()
                    .expect("store lock")
                    .objects
                    .get(&key)
                    .cloned(),
            };
            let checked = check(op, &key, current.as_ref());
            let (kind, mut object) = match checked {
                Ok(v) => v,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    continue;
                }
            };
            revision += 1;
            set_revision(&mut object, revision);
            let object = Arc::new(object);
            let size = if kind == EventType::Deleted {
                table.remove(key.as_str()).map_err(backend)?;
                overlay.insert(key.clone(), None);
                crate::limits::size(&object)
            } else {
                let bytes = serde_json::to_vec(&*object).map_err(backend)?;
                table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                overlay.insert(key.clone(), Some(object.clone()));
                bytes.len()
            };
            staged.push(Staged {
                reply,
                bytes: size,
                event: Arc::new(Event {
                    kind,
                    key: key.into(),
                    revision,
                    object,
                }),
            });
        }
        txn.open_table(META)
            .map_err(backend)?
            .insert(REVISION_KEY, revision)
            .map_err(backend)?;
        Ok(())
    })();
    let outcome = outcome.and_then(|()| txn.commit().map_err(backend));
    if let Err(e) = outcome {
        for s in staged {
            let _ = s.reply.send(Err(StoreError::Backend(e.to_string())));
        }
        return Err(e);
    }
    if staged.is_empty() {
        return Ok(());
    }

    {
        let mut state = shared.state.write().expect("store lock");
        for s in &staged {
            let e = &s.event;
            match e.kind {
                EventType::Deleted => state.objects.remove(&*e.key),
                _ => state.objects.insert(e.key.to_string(), e.object.clone()),
            };
            state.history.push_back((e.clone(), s.bytes));
            state.history_bytes += s.bytes;
        }
        // The newest event stays even when it alone is over the budget.
        while state.history.len() > 1
            && (state.history.len() > HISTORY || state.history_bytes > state.max_history_bytes)
        {
            if let Some((_, bytes)) = state.history.pop_front() {
                state.history_bytes -= bytes;
            }
        }
        state.revision = revision;
    }
    shared.committed.send_replace(revision);
    for s in staged {
        let _ = s.reply.send(Ok(s.event.object.clone()));
    }
    Ok(())
}

/// Checks a write against the current value; returns the event kind and the
/// object to store.
fn check(op: Op, key: &str, current: Option<&Object>) -> Result<(EventType, Value)> {
    let expect = |expected: Option<u64>, current: &Object| -> Result<()> {
        let actual = super::revision_of(current);
        match expected {
            Some(expected) if expected != actual => Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    };
    match (op, current) {
        (Op::Create(..), Some(_)) => Err(StoreError::AlreadyExists(key.to_string())),
        (Op::Create(_, object), None) => Ok((EventType::Added, object)),
        (Op::Update(_, object, expected), Some(current)) => {
            expect(expected, current)?;
            Ok((EventType::Modified, object))
        }
        (Op::Delete(_, expected), Some(current)) => {
            expect(expected, current)?;
            Ok((EventType::Deleted, (**current).clone()))
        }
        (Op::Update(..) | Op::Delete(..), None) => Err(StoreError::NotFound(key.to_string())),
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    fn revision(&self) -> u64 {
        *self.shared.committed.borrow()
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        Ok(self
            .shared
            .state
            .read()
            .expect("store lock")
            .objects
            .get(key)
            .cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<Object>, u64)> {
        let state = self.shared.state.read().expect("store lock");
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, state.revision))
    }

    async fn create(&self, key: &str, object: Value) -> Result<Object> {
        self.write(Op::Create(key.to_string(), object)).await
    }

    async fn update(&self, key: &str, object: Value, expected: Option<u64>) -> Result<Object> {
        self.write(Op::Update(key.to_string(), object, expected))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Object> {
        self.write(Op::Delete(key.to_string(), expected)).await
    }

    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        // Fail fast when the revision is already gone.
        self.shared
            .state
            .read()
            .expect("store lock")
            .events_after(prefix, after, 0)?;
        let watcher = Watcher {
            shared: self.shared.clone(),
            committed: self.shared.committed.subscribe(),
            prefix: prefix.to_string(),
            last: after,
            pending: VecDeque::new(),
        };
        Ok(Box::pin(stream::unfold(watcher, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })))
    }
}

struct Watcher {
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    prefix: String,
    /// The revision of the last event handed out (or scanned past).
    last: u64,
    pending: VecDeque<Arc<Event>>,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Arc<Event>>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            let newest = *self.committed.borrow_and_update();
            if newest > self.last {
                let state = self.shared.state.read().expect("store lock");
                match state.events_after(&self.prefix, self.last, 1024) {
                    Ok(events) if events.is_empty() => self.last = state.revision,
                    Ok(events) => {
                        self.last = events.last().map_or(self.last, |e| e.revision);
                        self.pending.extend(events);
                    }
                    Err(e) => {
                        // Hand the error out once, then end the stream.
                        self.last = u64::MAX;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            if self.last == u64::MAX || self.committed.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
