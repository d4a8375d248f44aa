//! `kubectl port-forward` on the node, served as kubelet serves it: one
//! SPDY/3.1 session per `kubectl port-forward`, in which each forwarded
//! connection is a pair of streams the client opens, `streamtype: error`
//! and `streamtype: data`, tied by `requestid` and naming the pod's `port`.
//! The node answers each stream, connects to the pod's IP and port, copies
//! bytes between the data stream and that connection, writes a failure to
//! connect on the error stream, and finishes both streams when done.
//!
//! The session comes either on a plain `Upgrade: SPDY/3.1` connection or
//! tunnelled in the binary messages of a WebSocket with the subprotocol
//! `SPDY/3.1+portforward.k8s.io`, which kubectl tries first.
//!
//! kubectl's SPDY library, moby/spdystream, has no flow control: it never
//! sends WINDOW_UPDATE and ignores those it gets. So the session neither
//! waits for send windows nor grants any; a connection that cannot keep up
//! slows the whole session, as it does with kubelet.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio::time::MissedTickBehavior;

mod upgrade;

pub use self::upgrade::{WsStream, is_spdy_upgrade, is_websocket, offered_protocols};
use super::spdy::{Decoder, Encoder, Frame, Headers, SpdyError, goaway, rst};

/// The stream protocol, in `X-Stream-Protocol-Version`.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that carries a SPDY session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `Upgrade` token of a plain SPDY session.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

const PORT_HEADER: &str = "port";
const STREAM_TYPE_HEADER: &str = "streamType";
const REQUEST_ID_HEADER: &str = "requestID";

/// How long the second stream of a pair may keep the first waiting
/// (kubelet's default stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
const SWEEP_PERIOD: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the last frames may take to leave once the session is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the pod per data frame.
const CHUNK: usize = 32 * 1024;
/// Frames waiting for the connection to the client.
const OUT_QUEUE: usize = 64;
/// Client data frames waiting for a pod connection.
const IN_QUEUE: usize = 16;
/// Decoded frames waiting for the session.
const FRAME_QUEUE: usize = 16;
/// Frames already queued are written together, up to this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Runs a port-forward session on an upgraded connection until the client
/// leaves, forwarding to ports of `pod_ip`.
pub async fn serve<IO>(io: IO, pod_ip: Ipv4Addr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let encoder = match Encoder::new() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("port-forward: {e}");
            return;
        }
    };
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let mut writer = tokio::spawn(write_frames(wr, encoder, out_rx));
    let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
    let reader = tokio::spawn(read_frames(rd, frames_tx));
    Session::new(pod_ip, out_tx).run(frames_rx).await;
    reader.abort();
    // The writer ends when the last sender is gone, once it has sent what
    // is queued and closed the connection.
    if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    frames: mpsc::Sender<Result<Frame, SpdyError>>,
) {
    let mut decoder = Decoder::default();
    loop {
        match decoder.decode() {
            Ok(Some(frame)) => {
                if frames.send(Ok(frame)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = frames.send(Err(e)).await;
                return;
            }
        }
        match rd.read_buf(decoder.read_buffer()).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("port-forward: reading from the client: {e}");
                return;
            }
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut encoder: Encoder,
    mut frames: mpsc::Receiver<Frame>,
) {
    let mut buf = Vec::with_capacity(WRITE_BATCH + CHUNK);
    let mut held = None;
    'session: loop {
        let first = match held.take() {
            Some(frame) => frame,
            None => match frames.recv().await {
                Some(frame) => frame,
                None => break,
            },
        };
        // Frames already queued go out in the same write (and, tunnelled,
        // in the same WebSocket message), except that a frame with a
        // header block starts a write: spdystream ends the session unless
        // its inflater has taken in the whole block by the time the
        // headers are parsed, which holds when one read brings the block.
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if let Err(e) = encoder.encode(&frame, &mut buf) {
                tracing::warn!("port-forward: encoding a frame: {e}");
                break 'session;
            }
            if buf.len() < WRITE_BATCH {
                next = frames.try_recv().ok();
            }
            if next.as_ref().is_some_and(has_header_block) {
                held = next.take();
            }
        }
        let written = match wr.write_all(&buf).await {
            Ok(()) => wr.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::debug!("port-forward: writing to the client: {e}");
            break;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

fn has_header_block(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::SynStream { .. } | Frame::SynReply { .. } | Frame::Headers { .. }
    )
}

/// The connection to the client is gone.
#[derive(Debug)]
struct Closed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// A stream the client has opened and not reset.
struct ClientStream {
    request_id: String,
    /// Where the client's bytes go; `None` for error streams and after
    /// the client's FIN.
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Whether the pod connection exists, so that data may wait for it.
    forwarding: bool,
    /// Dropped with the stream when the client resets it, which stops the
    /// forward of a data stream.
    _reset: Option<oneshot::Sender<()>>,
}

/// The streams of one forwarded connection, while they arrive.
struct Pair {
    since: Instant,
    error: Option<u32>,
    data: Option<DataStream>,
}

struct DataStream {
    id: u32,
    port: u16,
    inbound: mpsc::Receiver<Bytes>,
    reset: oneshot::Receiver<()>,
}

struct Session {
    pod_ip: Ipv4Addr,
    out: mpsc::Sender<Frame>,
    /// The last stream the client opened: stream ids only grow.
    last_stream_id: u32,
    streams: HashMap<u32, ClientStream>,
    pairs: HashMap<String, Pair>,
    forwards: JoinSet<(u32, u32)>,
}

impl Session {
    fn new(pod_ip: Ipv4Addr, out: mpsc::Sender<Frame>) -> Session {
        Session {
            pod_ip,
            out,
            last_stream_id: 0,
            streams: HashMap::new(),
            pairs: HashMap::new(),
            forwards: JoinSet::new(),
        }
    }

    async fn run(mut self, mut frames: mpsc::Receiver<Result<Frame, SpdyError>>) {
        let mut sweep = tokio::time::interval(SWEEP_PERIOD);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end: Result<(), SpdyError> = loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(frame)) => match self.on_frame(frame).await {
                        Ok(true) => {}
                        Ok(false) | Err(Closed) => break Ok(()),
                    },
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                Some(done) = self.forwards.join_next(), if !self.forwards.is_empty() => {
                    self.forwarded(done);
                }
                _ = sweep.tick() => {
                    if self.expire_pairs().await.is_err() {
                        break Ok(());
                    }
                }
            }
        };
        self.forwards.shutdown().await;
        if let Err(e) = end {
            tracing::debug!("port-forward: ending the session: {e}");
            let goaway = Frame::GoAway {
                last_good_stream_id: self.last_stream_id,
                status: goaway::PROTOCOL_ERROR,
            };
            let _ = self.send(goaway).await;
        }
    }

    // `&mut self`, not `&self`: a shared borrow held across the await
    // would need the session to be `Sync` for its future to be `Send`.
    async fn send(&mut self, frame: Frame) -> Result<(), Closed> {
        self.out.send(frame).await.map_err(|_| Closed)
    }

    /// Handles a frame from the client: `Ok(false)` once it goes away.
    async fn on_frame(&mut self, frame: Frame) -> Result<bool, Closed> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => self.open(stream_id, fin, &headers).await?,
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.receive(stream_id, fin, data).await?,
            Frame::RstStream { stream_id, .. } => self.reset(stream_id),
            // spdystream echoes the pings whose ids have the peer's parity:
            // a client's are odd.
            Frame::Ping { id } if !id.is_multiple_of(2) => self.send(Frame::Ping { id }).await?,
            Frame::GoAway { .. } => return Ok(false),
            // No flow control to honour (see the module docs), no settings
            // that matter, no headers after a stream opens.
            Frame::Ping { .. }
            | Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
        Ok(true)
    }

    /// A new stream: checked and answered as kubelet does, then paired.
    async fn open(&mut self, id: u32, fin: bool, headers: &Headers) -> Result<(), Closed> {
        // Client stream ids are odd and grow; spdystream resets any other
        // with PROTOCOL_ERROR.
        if id.is_multiple_of(2) || id <= self.last_stream_id {
            return self.refuse(id, rst::PROTOCOL_ERROR).await;
        }
        self.last_stream_id = id;
        let (kind, port) = match stream_kind(headers) {
            Ok(k) => k,
            Err(reason) => {
                tracing::warn!("port-forward: stream {id} rejected: {reason}");
                return self.refuse(id, rst::CANCEL).await;
            }
        };
        let request_id = request_id(headers, id, kind);
        let duplicate = self.pairs.get(&request_id).is_some_and(|p| match kind {
            Kind::Error => p.error.is_some(),
            Kind::Data => p.data.is_some(),
        });
        if duplicate {
            tracing::warn!("port-forward: request {request_id} has a {kind:?} stream already");
            return self.refuse(id, rst::CANCEL).await;
        }
        let reply = Frame::SynReply {
            stream_id: id,
            fin: false,
            headers: Headers::default(),
        };
        self.send(reply).await?;
        let mut stream = ClientStream {
            request_id: request_id.clone(),
            inbound: None,
            forwarding: false,
            _reset: None,
        };
        let pair = self
            .pairs
            .entry(request_id.clone())
            .or_insert_with(|| Pair {
                since: Instant::now(),
                error: None,
                data: None,
            });
        match kind {
            Kind::Error => pair.error = Some(id),
            Kind::Data => {
                let (tx, rx) = mpsc::channel(IN_QUEUE);
                let (reset_tx, reset_rx) = oneshot::channel();
                // A SYN_STREAM with FIN: the client sends nothing at all.
                stream.inbound = (!fin).then_some(tx);
                stream._reset = Some(reset_tx);
                pair.data = Some(DataStream {
                    id,
                    port,
                    inbound: rx,
                    reset: reset_rx,
                });
            }
        }
        let complete = pair.error.is_some() && pair.data.is_some();
        self.streams.insert(id, stream);
        if complete && let Some(pair) = self.pairs.remove(&request_id) {
            self.start(pair);
        }
        Ok(())
    }

    /// Resets a stream the node will not serve.
    async fn refuse(&mut self, id: u32, status: u32) -> Result<(), Closed> {
        self.reset(id);
        self.send(Frame::RstStream {
            stream_id: id,
            status,
        })
        .await
    }

    /// Client bytes, for the pod connection of a data stream.
    async fn receive(&mut self, id: u32, fin: bool, data: Bytes) -> Result<(), Closed> {
        // Data for a stream that is finished, reset or was never opened is
        // dropped, as spdystream drops it.
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let forwarding = stream.forwarding;
        let inbound = if fin {
            stream.inbound.take()
        } else {
            stream.inbound.clone()
        };
        let Some(inbound) = inbound else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        if forwarding {
            // Waiting here holds up the whole session, as there is no flow
            // control to hold up just this stream.
            let _ = inbound.send(data).await;
        } else if inbound.try_send(data).is_err() {
            tracing::warn!("port-forward: stream {id} sent too much before its connection");
            return self.refuse(id, rst::CANCEL).await;
        }
        Ok(())
    }

    /// Forgets a stream; for a data stream, that stops its forward.
    fn reset(&mut self, id: u32) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        let emptied = match self.pairs.get_mut(&stream.request_id) {
            Some(pair) => {
                if pair.error == Some(id) {
                    pair.error = None;
                }
                if pair.data.as_ref().is_some_and(|d| d.id == id) {
                    pair.data = None;
                }
                pair.error.is_none() && pair.data.is_none()
            }
            None => false,
        };
        if emptied {
            self.pairs.remove(&stream.request_id);
        }
    }

    fn start(&mut self, pair: Pair) {
        let (Some(error), Some(data)) = (pair.error, pair.data) else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&data.id) {
            stream.forwarding = true;
        }
        let forward = Forward {
            error,
            data: data.id,
            port: data.port,
            inbound: data.inbound,
            reset: data.reset,
        };
        self.forwards
            .spawn(forward.run(self.pod_ip, self.out.clone()));
    }

    fn forwarded(&mut self, done: Result<(u32, u32), JoinError>) {
        if let Ok((error, data)) = done {
            self.streams.remove(&error);
            self.streams.remove(&data);
        }
    }

    /// Gives up on connections whose second stream has not come in time,
    /// telling the client on the error stream as kubelet does.
    async fn expire_pairs(&mut self) -> Result<(), Closed> {
        let expired: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.since.elapsed() >= STREAM_CREATION_TIMEOUT)
            .map(|(r, _)| r.clone())
            .collect();
        for request_id in expired {
            let Some(pair) = self.pairs.remove(&request_id) else {
                continue;
            };
            if let Some(error) = pair.error {
                self.streams.remove(&error);
                let message = format!("(request={request_id}) timed out waiting for streams");
                self.send(Frame::data(error, Bytes::from(message), false))
                    .await?;
                self.send(Frame::data(error, Bytes::new(), true)).await?;
            }
            if let Some(data) = pair.data {
                self.streams.remove(&data.id);
                self.send(Frame::data(data.id, Bytes::new(), true)).await?;
            }
        }
        Ok(())
    }
}

/// Checks a new stream's headers as kubelet does, with its messages.
fn stream_kind(headers: &Headers) -> Result<(Kind, u16), String> {
    let Some(text) = headers.get(PORT_HEADER).filter(|p| !p.is_empty()) else {
        return Err(format!("{PORT_HEADER:?} header is required"));
    };
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "unable to parse {text:?} as a port: invalid syntax"
        ));
    }
    let port: u16 = text
        .parse()
        .map_err(|e| format!("unable to parse {text:?} as a port: {e}"))?;
    if port == 0 {
        return Err(format!("port {text:?} must be > 0"));
    }
    let kind = match headers.get(STREAM_TYPE_HEADER).filter(|t| !t.is_empty()) {
        None => return Err(format!("{STREAM_TYPE_HEADER:?} header is required")),
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        Some(other) => return Err(format!("invalid stream type {other:?}")),
    };
    Ok((kind, port))
}

/// The forwarded connection a stream belongs to. Streams from clients that
/// predate request ids are paired by id as kubelet pairs them: error
/// stream n with data stream n + 2.
fn request_id(headers: &Headers, id: u32, kind: Kind) -> String {
    match headers.get(REQUEST_ID_HEADER).filter(|r| !r.is_empty()) {
        Some(r) => r.to_owned(),
        None => match kind {
            Kind::Error => id.to_string(),
            Kind::Data => (i64::from(id) - 2).to_string(),
        },
    }
}

/// One forwarded connection.
struct Forward {
    error: u32,
    data: u32,
    port: u16,
    inbound: mpsc::Receiver<Bytes>,
    reset: oneshot::Receiver<()>,
}

enum Outcome {
    /// The pod's side ended; the data stream is finished.
    Finished,
    /// The client reset the data stream.
    Reset,
    /// No connection to the pod: what to tell the client.
    Failed(String),
}

impl Forward {
    /// Connects to the pod and copies until the connection ends; returns
    /// the pair's stream ids for the session to forget.
    async fn run(self, pod_ip: Ipv4Addr, out: mpsc::Sender<Frame>) -> (u32, u32) {
        let Forward {
            error,
            data,
            port,
            inbound,
            mut reset,
        } = self;
        let target = SocketAddrV4::new(pod_ip, port);
        tracing::debug!("port-forward: streams {error} and {data} to {target}");
        let outcome = tokio::select! {
            outcome = pipe(target, inbound, &out, data) => outcome,
            _ = &mut reset => Outcome::Reset,
        };
        match outcome {
            Outcome::Finished | Outcome::Reset => {}
            Outcome::Failed(message) => {
                tracing::debug!("port-forward: {message}");
                let _ = out
                    .send(Frame::data(error, Bytes::from(message), false))
                    .await;
                let _ = out.send(Frame::data(data, Bytes::new(), true)).await;
            }
        }
        // kubectl lets a connection go only once its error stream ends.
        let _ = out.send(Frame::data(error, Bytes::new(), true)).await;
        (error, data)
    }
}

/// Copies between the data stream and a new connection to the pod, until
/// the pod's side ends (kubectl resets the stream once it has read that).
async fn pipe(
    target: SocketAddrV4,
    mut inbound: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<Frame>,
    data: u32,
) -> Outcome {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Outcome::Failed(connect_error(target, &e.to_string())),
        Err(_) => return Outcome::Failed(connect_error(target, "i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let upstream = async move {
        while let Some(bytes) = inbound.recv().await {
            if let Err(e) = to_pod.write_all(&bytes).await {
                tracing::debug!("port-forward: writing to {target}: {e}");
                return;
            }
        }
        // The client has finished sending: the pod gets a half-close.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match from_pod.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {
                    let chunk = Frame::data(data, buf.split().freeze(), false);
                    if out.send(chunk).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("port-forward: reading from {target}: {e}");
                    break;
                }
            }
        }
        let _ = out.send(Frame::data(data, Bytes::new(), true)).await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut downstream => {}
        () = &mut upstream => downstream.await,
    }
    Outcome::Finished
}

/// The failure kubectl prints, framed as kubelet frames it.
fn connect_error(target: SocketAddrV4, cause: &str) -> String {
    format!(
        "error forwarding port {} to pod {}: failed to connect to {target}: {cause}",
        target.port(),
        target.ip()
    )
}

#[cfg(test)]
mod tests;
