//! Test fixtures shared by the proxy and TLS tests: small HTTP backends on
//! loopback, a one-Service routing table, TLS Secrets.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use super::routes::{Objects, RouteTable};

/// An HTTP/1.1 backend on loopback that answers every request with its
/// name and what it received:
/// `<name> host=.. xff=.. proto=.. xfh=.. secret=.. uri=.. body=<length>`.
pub async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    // In a block, so no borrow of the request outlives it.
                    let seen = {
                        let header = |n: &str| {
                            request
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        format!(
                            "{name} host={} xff={} proto={} xfh={} secret={} uri={} ",
                            header("host"),
                            header("x-forwarded-for"),
                            header("x-forwarded-proto"),
                            header("x-forwarded-host"),
                            header("x-secret"),
                            request.uri(),
                        )
                    };
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let answer = format!("{seen}body={}", body.len());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// The routes of one Ingress: host `app.test`, every path, to Service
/// `default/web` port 80, whose endpoints are `127.0.0.1:<port>` for each
/// of `ports`.
pub fn web_table(ports: &[u16]) -> RouteTable {
    let key = ("default".to_string(), "web".to_string());
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"rules": [{"host": "app.test", "http": {"paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}},
        }]}}]},
    }))
    .expect("ingress");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]},
    }))
    .expect("service");
    let subsets: Vec<serde_json::Value> = ports
        .iter()
        .map(|p| json!({"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": p}]}))
        .collect();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": subsets,
    }))
    .expect("endpoints");
    RouteTable::build(
        &[&ingress],
        &Objects::from([(key.clone(), service.into())]),
        &Objects::from([(key, endpoints.into())]),
    )
}

/// A `kubernetes.io/tls` Secret with a fresh self-signed certificate for
/// `hosts`, and that certificate.
pub fn tls_secret(
    namespace: &str,
    name: &str,
    hosts: &[&str],
) -> (Secret, CertificateDer<'static>) {
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("certificate");
    let der = made.cert.der().clone();
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), made.cert.pem().into_bytes()),
                (
                    "tls.key".to_string(),
                    made.signing_key.serialize_pem().into_bytes(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
            .collect(),
        ),
        ..Default::default()
    };
    (secret, der)
}

/// Sends one request on a fresh HTTP/1.1 connection; the status and body.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A backend that answers the first request of each connection and
/// closes it on the second without a word.
pub async fn answers_once_per_connection() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if tcp.read(&mut buf).await.unwrap_or(0) > 0 {
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    let _ = tcp.write_all(ok).await;
                }
                let _ = tcp.read(&mut buf).await;
            });
        }
    });
    address
}
