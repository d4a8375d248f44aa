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
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::http::{HeaderMap, HeaderName, header};
use bytes::{Bytes, BytesMut};
use futures::{Sink as _, Stream as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio::time::MissedTickBehavior;

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

/// Whether a request asks for a WebSocket.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a request asks for a SPDY/3.1 upgrade, checked as kubelet's
/// upgrader checks it.
pub fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let contains = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(token))
    };
    contains(header::CONNECTION, "upgrade") && contains(header::UPGRADE, "spdy/3.1")
}

/// The stream protocols a SPDY upgrade offers: `X-Stream-Protocol-Version`,
/// repeated or comma-separated.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A WebSocket as a byte stream, the way client-go's `TunnelingConnection`
/// uses one: each write is one binary message, and message boundaries mean
/// nothing to the reader.
pub struct WsStream {
    socket: Pin<Box<WebSocket>>,
    unread: Bytes,
    read_closed: bool,
    close_sent: bool,
}

impl WsStream {
    pub fn new(socket: WebSocket) -> WsStream {
        WsStream {
            socket: Box::pin(socket),
            unread: Bytes::new(),
            read_closed: false,
            close_sent: false,
        }
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.socket.as_mut().poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.unread = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message in a SPDY tunnel",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => this.read_closed = true,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &mut self.socket;
        ready!(socket.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
        socket
            .as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket
            .as_mut()
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.close_sent {
            ready!(this.socket.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
            // A normal closure (1000): client-go's tunnel reads it as the
            // end of the stream, and any other close as an error.
            let close = CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            };
            this.socket
                .as_mut()
                .start_send(Message::Close(Some(close)))
                .map_err(io::Error::other)?;
            this.close_sent = true;
        }
        this.socket
            .as_mut()
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

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
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(10);

    /// kubectl's side of a session, on a pipe to the node's.
    struct Kubectl {
        io: DuplexStream,
        encoder: Encoder,
        decoder: Decoder,
        /// Data received, by stream.
        data: HashMap<u32, Vec<u8>>,
        /// Streams the node has finished.
        finished: Vec<u32>,
        /// Every other frame, in order.
        control: Vec<Frame>,
    }

    impl Kubectl {
        fn connect() -> Kubectl {
            let (io, node) = tokio::io::duplex(1 << 20);
            tokio::spawn(serve(node, Ipv4Addr::LOCALHOST));
            Kubectl {
                io,
                encoder: Encoder::new().unwrap(),
                decoder: Decoder::default(),
                data: HashMap::new(),
                finished: Vec::new(),
                control: Vec::new(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut bytes = Vec::new();
            self.encoder.encode(&frame, &mut bytes).unwrap();
            self.io.write_all(&bytes).await.unwrap();
        }

        /// Opens a stream with the headers kubectl sends.
        async fn open(&mut self, id: u32, kind: &str, port: &str, request: &str) {
            let mut headers = Headers::default();
            headers.push("streamType", kind);
            headers.push("port", port);
            headers.push("requestID", request);
            self.send(Frame::SynStream {
                stream_id: id,
                fin: false,
                headers,
            })
            .await;
        }

        /// Opens the two streams of a forwarded connection as kubectl does,
        /// waiting for each reply and closing its side of the error stream.
        async fn forward(&mut self, error: u32, data: u32, port: &str, request: &str) {
            self.open(error, "error", port, request).await;
            self.expect_reply(error).await;
            self.send(Frame::data(error, Bytes::new(), true)).await;
            self.open(data, "data", port, request).await;
            self.expect_reply(data).await;
        }

        /// Reads a frame; `None` once the node has closed the session.
        async fn next(&mut self) -> Option<()> {
            loop {
                if let Some(frame) = self.decoder.decode().unwrap() {
                    match frame {
                        Frame::Data {
                            stream_id,
                            fin,
                            data,
                        } => {
                            self.data
                                .entry(stream_id)
                                .or_default()
                                .extend_from_slice(&data);
                            if fin {
                                self.finished.push(stream_id);
                            }
                        }
                        other => self.control.push(other),
                    }
                    return Some(());
                }
                let read = self.io.read_buf(self.decoder.read_buffer());
                let n = tokio::time::timeout(WAIT, read)
                    .await
                    .expect("the node answers in time")
                    .unwrap();
                if n == 0 {
                    return None;
                }
            }
        }

        async fn until(&mut self, done: impl Fn(&Kubectl) -> bool) {
            while !done(self) {
                assert!(self.next().await.is_some(), "the session ended early");
            }
        }

        async fn expect_reply(&mut self, id: u32) {
            self.until(|k| {
                k.control
                    .iter()
                    .any(|f| matches!(f, Frame::SynReply { stream_id, .. } if *stream_id == id))
            })
            .await;
        }

        /// What the node sent on a stream, once it has finished it.
        async fn expect_fin(&mut self, id: u32) -> Vec<u8> {
            self.until(|k| k.finished.contains(&id)).await;
            self.data.remove(&id).unwrap_or_default()
        }
    }

    /// A pod port that echoes what it reads, then closes.
    async fn echo_port() -> String {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port.to_string()
    }

    #[tokio::test]
    async fn bytes_reach_the_pod_and_its_answer_comes_back() {
        let port = echo_port().await;
        let mut kubectl = Kubectl::connect();
        kubectl.forward(1, 3, &port, "0").await;
        kubectl
            .send(Frame::data(3, Bytes::from_static(b"hello, pod"), false))
            .await;
        kubectl.send(Frame::data(3, Bytes::new(), true)).await;
        assert_eq!(kubectl.expect_fin(3).await, b"hello, pod");
        // Nothing went wrong, and the error stream says so by ending empty.
        assert_eq!(kubectl.expect_fin(1).await, b"");
    }

    #[tokio::test]
    async fn connections_on_one_session_do_not_mix() {
        let port = echo_port().await;
        let mut kubectl = Kubectl::connect();
        kubectl.forward(1, 3, &port, "0").await;
        kubectl.forward(5, 7, &port, "1").await;
        kubectl
            .send(Frame::data(7, Bytes::from_static(b"second"), true))
            .await;
        kubectl
            .send(Frame::data(3, Bytes::from_static(b"first"), true))
            .await;
        assert_eq!(kubectl.expect_fin(3).await, b"first");
        assert_eq!(kubectl.expect_fin(7).await, b"second");
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_reported_on_the_error_stream() {
        let port = {
            let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            taken.local_addr().unwrap().port()
        };
        let mut kubectl = Kubectl::connect();
        kubectl.forward(1, 3, &port.to_string(), "0").await;
        let message = String::from_utf8(kubectl.expect_fin(1).await).unwrap();
        assert!(
            message.starts_with(&format!("error forwarding port {port} to pod 127.0.0.1")),
            "{message}"
        );
        kubectl.expect_fin(3).await;
    }

    #[tokio::test]
    async fn resetting_the_data_stream_closes_the_pod_connection_and_the_error_stream() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let (accepted_tx, accepted_rx) = oneshot::channel();
        let (closed_tx, closed_rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = accepted_tx.send(());
            let mut buf = [0u8; 64];
            while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            let _ = closed_tx.send(());
        });
        let mut kubectl = Kubectl::connect();
        kubectl.forward(1, 3, &port, "0").await;
        tokio::time::timeout(WAIT, accepted_rx)
            .await
            .unwrap()
            .unwrap();
        kubectl
            .send(Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            })
            .await;
        assert_eq!(kubectl.expect_fin(1).await, b"");
        tokio::time::timeout(WAIT, closed_rx)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn streams_without_a_usable_port_are_refused() {
        let mut kubectl = Kubectl::connect();
        kubectl.open(1, "error", "0", "0").await;
        kubectl.open(3, "data", "http", "1").await;
        kubectl.open(5, "stdin", "80", "2").await;
        let reset = |id| Frame::RstStream {
            stream_id: id,
            status: rst::CANCEL,
        };
        kubectl
            .until(|k| [1, 3, 5].iter().all(|id| k.control.contains(&reset(*id))))
            .await;
        assert!(
            !kubectl
                .control
                .iter()
                .any(|f| matches!(f, Frame::SynReply { .. }))
        );
    }

    #[tokio::test]
    async fn pings_are_answered() {
        let mut kubectl = Kubectl::connect();
        kubectl.send(Frame::Ping { id: 1 }).await;
        kubectl
            .until(|k| k.control.contains(&Frame::Ping { id: 1 }))
            .await;
    }

    #[tokio::test]
    async fn the_session_ends_when_kubectl_goes_away() {
        let mut kubectl = Kubectl::connect();
        kubectl
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: 0,
            })
            .await;
        assert!(kubectl.next().await.is_none());
    }

    #[tokio::test]
    async fn a_malformed_frame_ends_the_session_with_a_protocol_error() {
        let mut kubectl = Kubectl::connect();
        // A PING two bytes long.
        let ping = [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x02, 0xab, 0xcd];
        kubectl.io.write_all(&ping).await.unwrap();
        while kubectl.next().await.is_some() {}
        let goaway = Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::PROTOCOL_ERROR,
        };
        assert_eq!(kubectl.control, vec![goaway]);
    }

    #[test]
    fn kubectl_upgrade_requests_are_recognised() {
        let mut spdy = HeaderMap::new();
        spdy.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        spdy.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        spdy.append(PROTOCOL_HEADER, "portforward.k8s.io".parse().unwrap());
        assert!(is_spdy_upgrade(&spdy) && !is_websocket(&spdy));
        assert_eq!(offered_protocols(&spdy), vec![PROTOCOL]);

        let mut ws = HeaderMap::new();
        ws.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        ws.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_websocket(&ws) && !is_spdy_upgrade(&ws));
    }
}
