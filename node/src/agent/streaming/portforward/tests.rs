//! Port-forward sessions against real sockets.

use axum::http::{HeaderMap, header};

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
