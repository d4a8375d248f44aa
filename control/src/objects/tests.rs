use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::store::RedbStore;

fn objects(dir: &tempfile::TempDir) -> Objects {
    Objects::new(Arc::new(RedbStore::open(&dir.path().join("db")).unwrap()))
}

fn rt(plural: &str, group: &str, version: &str) -> &'static ResourceType {
    Catalog::global().lookup(group, version, plural).unwrap()
}

async fn namespace(o: &Objects, name: &str) {
    o.create(
        rt("namespaces", "", "v1"),
        None,
        json!({"metadata": {"name": name}}),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    // What the namespace controller adds, which pods run as.
    crate::controllers::namespace::ensure_default_service_account(o, name)
        .await
        .unwrap();
}

fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

#[tokio::test]
async fn generation_follows_spec_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    namespace(&o, "ns").await;
    let deploy = rt("deployments", "apps", "v1");
    let created = o
        .create(
            deploy,
            Some("ns"),
            deployment("web", "a"),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    let t = Target {
        rt: deploy,
        namespace: Some("ns"),
        name: "web",
    };
    let relabeled = o
        .update_with(t, None, WriteOptions::default(), |cur| {
            let mut v = cur.clone();
            v["metadata"]["labels"] = json!({"x": "y"});
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(relabeled["metadata"]["generation"], 1);
    let changed = o
        .update_with(t, None, WriteOptions::default(), |cur| {
            let mut v = cur.clone();
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(changed["metadata"]["generation"], 2);
    // A status write changes only the status.
    let status = o
        .update_with(
            t,
            Some(crate::resources::Subresource::Status),
            WriteOptions::default(),
            |cur| {
                let mut v = cur.clone();
                v["status"] = json!({"replicas": 3});
                v["spec"]["replicas"] = json!(9);
                Ok(v)
            },
        )
        .await
        .unwrap();
    assert_eq!(status["status"]["replicas"], 3);
    assert_eq!(status["spec"]["replicas"], 1);
    assert_eq!(status["metadata"]["generation"], 2);
}

#[tokio::test]
async fn unchanged_updates_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    namespace(&o, "ns").await;
    let cm = rt("configmaps", "", "v1");
    let a = o
        .create(
            cm,
            Some("ns"),
            json!({"metadata": {"name": "c"}, "data": {"k": "v"}}),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    let t = Target {
        rt: cm,
        namespace: Some("ns"),
        name: "c",
    };
    let b = o
        .update_with(t, None, WriteOptions::default(), |cur| Ok(cur.clone()))
        .await
        .unwrap();
    assert_eq!(
        a["metadata"]["resourceVersion"],
        b["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    namespace(&o, "ns").await;
    let cm = rt("configmaps", "", "v1");
    o.create(
        cm,
        Some("ns"),
        json!({"metadata": {"name": "c", "finalizers": ["example.com/hold"]}}),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let t = Target {
        rt: cm,
        namespace: Some("ns"),
        name: "c",
    };
    let pending = o.delete(t, &DeleteOptions::default()).await.unwrap();
    assert!(matches!(pending, Deleted::Pending(_)));
    assert!(o.get(t).await.unwrap()["metadata"]["deletionTimestamp"].is_string());
    // Adding a finalizer to a deleting object is refused.
    let err = o
        .update_with(t, None, WriteOptions::default(), |cur| {
            let mut v = cur.clone();
            v["metadata"]["finalizers"] = json!(["example.com/hold", "example.com/more"]);
            Ok(v)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    o.update_with(t, None, WriteOptions::default(), |cur| {
        let mut v = cur.clone();
        v["metadata"]["finalizers"] = json!([]);
        Ok(v)
    })
    .await
    .unwrap();
    assert_eq!(o.get(t).await.unwrap_err().code, 404);
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_and_unbound_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    namespace(&o, "ns").await;
    let pods = rt("pods", "", "v1");
    for (name, node) in [("bound", "n1"), ("loose", "")] {
        o.create(
            pods,
            Some("ns"),
            json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let bound = Target {
        rt: pods,
        namespace: Some("ns"),
        name: "bound",
    };
    let loose = Target {
        rt: pods,
        namespace: Some("ns"),
        name: "loose",
    };
    assert!(matches!(
        o.delete(loose, &DeleteOptions::default()).await.unwrap(),
        Deleted::Now(_)
    ));
    match o.delete(bound, &DeleteOptions::default()).await.unwrap() {
        Deleted::Pending(p) => assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30),
        Deleted::Now(_) => panic!("a bound pod waits for its node"),
    }
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        o.delete(bound, &now).await.unwrap(),
        Deleted::Now(_)
    ));
}

#[tokio::test]
async fn paginated_lists_report_the_first_pages_revision() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    namespace(&o, "ns").await;
    let cm = rt("configmaps", "", "v1");
    for i in 0..5 {
        o.create(
            cm,
            Some("ns"),
            json!({"metadata": {"name": format!("c{i}")}}),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let first = o
        .list(
            cm,
            Some("ns"),
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.remaining, Some(3));
    o.create(
        cm,
        Some("ns"),
        json!({"metadata": {"name": "late"}}),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let second = o
        .list(
            cm,
            Some("ns"),
            &ListOptions {
                limit: Some(2),
                continue_token: first.continue_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.revision, first.revision);
    assert_eq!(super::name_of(&second.items[0]), "c2");
    let bad = ListOptions {
        continue_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(o.list(cm, Some("ns"), &bad).await.unwrap_err().code, 400);
}

#[tokio::test]
async fn creating_in_a_missing_or_terminating_namespace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects(&dir);
    let cm = rt("configmaps", "", "v1");
    let err = o
        .create(
            cm,
            Some("nope"),
            json!({"metadata": {"name": "c"}}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    namespace(&o, "going").await;
    let ns = Target {
        rt: rt("namespaces", "", "v1"),
        namespace: None,
        name: "going",
    };
    o.delete(ns, &DeleteOptions::default()).await.unwrap();
    let err = o
        .create(
            cm,
            Some("going"),
            json!({"metadata": {"name": "c"}}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 403);
}
