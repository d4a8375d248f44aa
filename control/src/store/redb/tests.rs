use super::*;
use futures::StreamExt;
use serde_json::json;

fn obj(name: &str) -> Value {
    json!({"metadata": {"name": name}, "data": {"k": "v"}})
}

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(&dir.path().join("db.redb")).unwrap()
}

#[tokio::test]
async fn writes_are_compare_and_swap_on_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store
        .create("core/configmaps/ns/a", obj("a"))
        .await
        .unwrap();
    assert_eq!(super::super::revision_of(&a), 1);
    assert!(matches!(
        store.create("core/configmaps/ns/a", obj("a")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let b = store
        .update("core/configmaps/ns/a", obj("a"), Some(1))
        .await
        .unwrap();
    assert_eq!(super::super::revision_of(&b), 2);
    assert!(matches!(
        store
            .update("core/configmaps/ns/a", obj("a"), Some(1))
            .await,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        store.delete("core/configmaps/ns/missing", None).await,
        Err(StoreError::NotFound(_))
    ));
    let gone = store.delete("core/configmaps/ns/a", Some(2)).await.unwrap();
    assert_eq!(super::super::revision_of(&gone), 3);
    assert!(store.get("core/configmaps/ns/a").await.unwrap().is_none());
}

#[tokio::test]
async fn lists_by_prefix_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for key in [
        "core/pods/b/x",
        "core/pods/a/y",
        "core/pods/a/x",
        "core/podsx/a/z",
    ] {
        store.create(key, obj("o")).await.unwrap();
    }
    let (items, rev) = store.list("core/pods/a/").await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(rev, 4);
    let (items, _) = store.list("core/pods/").await.unwrap();
    assert_eq!(items.len(), 3);
}

#[tokio::test]
async fn acknowledged_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.create("k/1", obj("1")).await.unwrap();
        store.create("k/2", obj("2")).await.unwrap();
        store.delete("k/1", None).await.unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.revision(), 3);
    assert!(store.get("k/1").await.unwrap().is_none());
    let two = store.get("k/2").await.unwrap().unwrap();
    assert_eq!(two["metadata"]["resourceVersion"], "2");
    let next = store.create("k/3", obj("3")).await.unwrap();
    assert_eq!(next["metadata"]["resourceVersion"], "4");
}

#[tokio::test]
async fn concurrent_writes_get_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&format!("k/{i}"), obj("o")).await.unwrap() })
        })
        .collect();
    let mut revs: Vec<u64> = Vec::new();
    for t in tasks {
        revs.push(super::super::revision_of(&t.await.unwrap()));
    }
    revs.sort();
    assert_eq!(revs, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_replays_then_streams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create("a/1", obj("1")).await.unwrap();
    store.create("b/1", obj("1")).await.unwrap();
    store.update("a/1", obj("1"), None).await.unwrap();
    let mut w = store.watch("a/", 0).unwrap();
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.kind, e.revision), (EventType::Added, 1));
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.kind, e.revision), (EventType::Modified, 3));
    store.create("b/2", obj("2")).await.unwrap();
    store.delete("a/1", None).await.unwrap();
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.kind, e.revision), (EventType::Deleted, 5));
    assert_eq!(e.object["metadata"]["resourceVersion"], "5");
}

#[tokio::test]
async fn watch_from_before_the_kept_history_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.create("a/1", obj("1")).await.unwrap();
        store.create("a/2", obj("2")).await.unwrap();
    }
    let store = open(&dir);
    assert!(matches!(store.watch("a/", 1), Err(StoreError::Gone { .. })));
    assert!(store.watch("a/", 2).is_ok());
}

#[tokio::test]
async fn the_history_keeps_a_bounded_number_of_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with_history(&dir.path().join("db.redb"), 100 * 1024).unwrap();
    let big =
        |i: u32| json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(10 * 1024), "i": i}});
    store.create("a/big", big(0)).await.unwrap();
    for i in 1..50 {
        store.update("a/big", big(i), None).await.unwrap();
    }
    // About ten 10 KiB versions fit in 100 KiB: the first writes are gone,
    // the recent ones still replay.
    assert!(matches!(store.watch("a/", 1), Err(StoreError::Gone { .. })));
    let events: Vec<_> = store.watch("a/", 45).unwrap().take(5).collect().await;
    assert_eq!(events.len(), 5);
    let state = store.shared.state.read().unwrap();
    assert!(state.history_bytes <= 100 * 1024, "{}", state.history_bytes);
    assert!(state.history.len() >= 8, "{}", state.history.len());
}
