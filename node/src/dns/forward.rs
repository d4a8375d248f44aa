//! Forwarding to the upstream nameservers: the query as the client sent
//! it, over UDP to each upstream in turn, and again over TCP to the same
//! upstream when the UDP answer is truncated.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer, per transport.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The header's TC bit (in its third byte).
const TRUNCATED: u8 = 0x02;

/// The upstream nameservers.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Forwarder {
            upstreams,
            timeout: UPSTREAM_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The first answer an upstream gives to `query` (a whole DNS message
    /// in wire format); `None` when none answers in time.
    pub async fn exchange(&self, query: &[u8]) -> Option<Message> {
        for upstream in &self.upstreams {
            match exchange_with(*upstream, query, self.timeout).await {
                Ok(reply) => match Message::from_vec(&reply) {
                    Ok(message) => return Some(message),
                    Err(e) => tracing::debug!("DNS: bad answer from {upstream}: {e}"),
                },
                Err(e) => tracing::debug!("DNS: upstream {upstream}: {e}"),
            }
        }
        None
    }
}

/// One upstream's answer: over UDP, then over TCP if it was truncated
/// (keeping the truncated answer, which tells the client to retry over
/// TCP itself, when TCP fails).
async fn exchange_with(
    upstream: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    if query.len() < 12 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "short DNS message",
        ));
    }
    let reply = tokio::time::timeout(timeout, over_udp(upstream, query))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over UDP"))??;
    if reply[2] & TRUNCATED == 0 {
        return Ok(reply);
    }
    match tokio::time::timeout(timeout, over_tcp(upstream, query)).await {
        Ok(Ok(full)) => Ok(full),
        Ok(Err(e)) => {
            tracing::debug!("DNS: upstream {upstream} over TCP: {e}");
            Ok(reply)
        }
        Err(_) => Ok(reply),
    }
}

async fn over_udp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Skip strays: the answer carries the query's ID.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn over_tcp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    if reply.len() < 12 || reply[..2] != query[..2] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer to another query",
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `example.com. A` with ID 0x1234.
    fn query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    /// The query turned into an empty answer, with the given flags byte.
    fn answer(flags: u8) -> Vec<u8> {
        let mut a = query();
        a[2] = 0x81 | flags;
        a[3] = 0x80;
        a
    }

    #[tokio::test]
    async fn the_first_upstream_that_answers_wins() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let good = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (_, from) = good.recv_from(&mut buf).await.unwrap();
            // A stray first, then the answer.
            let mut stray = answer(0);
            stray[1] = 0x99;
            good.send_to(&stray, from).await.unwrap();
            good.send_to(&answer(0), from).await.unwrap();
        });
        let forwarder = Forwarder::new(vec![silent.local_addr().unwrap(), good_addr])
            .with_timeout(Duration::from_millis(200));
        let message = forwarder.exchange(&query()).await.expect("an answer");
        assert_eq!(message.metadata.id, 0x1234);
    }

    #[tokio::test]
    async fn a_truncated_answer_is_fetched_again_over_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (_, from) = udp.recv_from(&mut buf).await.unwrap();
            udp.send_to(&answer(TRUNCATED), from).await.unwrap();
        });
        tokio::spawn(async move {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut q).await.unwrap();
            let a = answer(0);
            stream
                .write_all(&(a.len() as u16).to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&a).await.unwrap();
        });
        let forwarder = Forwarder::new(vec![addr]).with_timeout(Duration::from_millis(500));
        let message = forwarder.exchange(&query()).await.expect("an answer");
        assert!(!message.metadata.truncation);
    }

    #[tokio::test]
    async fn no_answer_is_none() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let forwarder = Forwarder::new(vec![silent.local_addr().unwrap()])
            .with_timeout(Duration::from_millis(100));
        assert!(forwarder.exchange(&query()).await.is_none());
        assert!(
            Forwarder::new(Vec::new())
                .exchange(&query())
                .await
                .is_none()
        );
    }
}
