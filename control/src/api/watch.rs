//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, resumed
//! from a resourceVersion, with bookmarks and a timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::codec::{Rendering, render_object};
use super::resource::Call;
use crate::error::{ApiError, ApiResult};
use crate::objects::{ListOptions, filter_watch, store_error};
use crate::resources::ResourceType;
use crate::resources::table;
use crate::selector::fields::FieldRequirement;
use crate::store::{EventType, revision_of};

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// How many bytes of events may wait for one watcher to read them.
const BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How long a watcher may leave its buffer full before it is closed (as
/// kube-apiserver closes unresponsive watchers); it relists or resumes.
const UNRESPONSIVE: Duration = Duration::from_secs(30);

/// The events on their way to one watcher, bounded in bytes.
struct Outbox {
    tx: mpsc::Sender<(bytes::Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

impl Outbox {
    /// Queues `line`; false when the watch is over (the client went, or
    /// left its buffer full for too long).
    async fn send(&self, line: bytes::Bytes, resource: &str) -> bool {
        let queued = tokio::time::timeout(UNRESPONSIVE, async {
            let n = line.len().clamp(1, BUFFER_BYTES) as u32;
            let permit = self.budget.clone().acquire_many_owned(n).await.ok()?;
            self.tx.send((line, permit)).await.ok()
        });
        match queued.await {
            Ok(sent) => sent.is_some(),
            Err(_) => {
                tracing::warn!(
                    "closed a watch on {resource}: the client read nothing for {}s",
                    UNRESPONSIVE.as_secs()
                );
                false
            }
        }
    }
}

/// Renders watch event objects, with Table headers on the first only.
struct Encoder {
    rt: &'static ResourceType,
    how: Rendering,
    sent_headers: bool,
    api: std::sync::Arc<super::Api>,
}

impl Encoder {
    fn line(&mut self, kind: &str, object: &Value) -> bytes::Bytes {
        if self.how == Rendering::Object {
            return super::encoded::watch_line(kind, &self.api.encoded.json(object));
        }
        let object = match self.how {
            Rendering::Table(include) => {
                let t = table::table(
                    self.rt,
                    &[object],
                    json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
                    include,
                    !self.sent_headers,
                );
                self.sent_headers = true;
                t
            }
            other => render_object(self.rt, object, other),
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        line.into()
    }
}

fn error_line(e: &ApiError) -> bytes::Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    line.into()
}

pub async fn serve(call: &Call<'_>) -> ApiResult<Response> {
    let rt = call.rt;
    // Held by the watch's task: one fewer for the client when it ends.
    let counted = match call.client {
        None => None,
        Some(ip) => Some(call.api.watches.admit(ip).ok_or_else(|| {
            tracing::warn!(
                "{ip} holds {} watches: refused one more",
                call.api.watches.limit()
            );
            ApiError::too_many_requests("Too many requests, please try again later.", 1)
        })?),
    };
    let how = call.rendering()?;
    let mut opts: ListOptions = call.params.list_options()?;
    if let Some(name) = &call.name {
        opts.fields.requirements.push(FieldRequirement {
            field: "metadata.name".into(),
            value: name.clone(),
            negate: false,
        });
    }
    opts.check(rt)?;
    opts.limit = None;
    opts.continue_token = None;
    let objects = call.api.objects.clone();
    let namespace = call.namespace.clone();
    let (initial, after) = match call.params.resource_version() {
        None | Some("0") => {
            let listed = objects.list(rt, namespace.as_deref(), &opts).await?;
            (listed.items, listed.revision)
        }
        Some(rv) => {
            let rv = rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid resourceVersion {rv:?}: must be an integer"
                ))
            })?;
            (Vec::new(), rv)
        }
    };
    let bookmarks = call.params.flag("allowWatchBookmarks");
    let timeout = match call.params.timeout_seconds()? {
        Some(t) => Duration::from_secs(t),
        // As kube-apiserver: a random time between 30 and 60 minutes.
        None => Duration::from_secs(rand::rng().random_range(1800..3600)),
    };
    let stream = objects
        .watch(rt, namespace.as_deref(), after)
        .map(|s| filter_watch(rt, s, opts));

    let (tx, rx) = mpsc::channel(64);
    let out = Outbox {
        tx,
        budget: Arc::new(Semaphore::new(BUFFER_BYTES)),
    };
    let api = call.api.clone();
    tokio::spawn(async move {
        let _counted = counted;
        let mut enc = Encoder {
            rt,
            how,
            sent_headers: false,
            api,
        };
        for o in &initial {
            if !out.send(enc.line("ADDED", o), rt.plural).await {
                return;
            }
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                out.send(error_line(&e), rt.plural).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        let mut last = after;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"kind": rt.kind, "apiVersion": rt.api_version(),
                        "metadata": {"resourceVersion": last.to_string()}});
                    let mut l = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": mark})).unwrap_or_default();
                    l.push(b'\n');
                    bytes::Bytes::from(l)
                }
                event = stream.next() => match event {
                    None => return,
                    Some(Err(e)) => {
                        out.send(error_line(&store_error(rt, "", e)), rt.plural).await;
                        return;
                    }
                    Some(Ok(event)) => {
                        last = revision_of(&event.object).max(event.revision);
                        let kind = match event.kind {
                            EventType::Added => "ADDED",
                            EventType::Modified => "MODIFIED",
                            EventType::Deleted => "DELETED",
                        };
                        enc.line(kind, &event.object)
                    }
                },
                _ = out.tx.closed() => return,
            };
            if !out.send(line, rt.plural).await {
                return;
            }
        }
    });

    // A line's share of the budget comes back as hyper takes it.
    let lines = ReceiverStream::new(rx).map(|(line, _permit)| Ok::<_, std::io::Error>(line));
    let mut r = Response::new(Body::from_stream(lines));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
