//! Headers across the proxy. Hop-by-hop headers describe one connection
//! and must not cross to the next; the backend learns who asked, over
//! what and for which host from the `X-Forwarded-*` headers, and still
//! sees the client's own `Host`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Uri, header};

/// Headers that belong to one connection (RFC 9110 §7.6.1, plus the
/// old `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The tokens of every `Connection` header, lowercase.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether an HTTP/1.1 message asks to switch protocols (WebSocket), which
/// the proxy passes through instead of stripping. `h2c` is not passed: it
/// is about this hop's connection, and the backend hop is HTTP/1.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let protocol = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    protocol.is_some_and(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        && connection_tokens(headers).iter().any(|t| t == "upgrade")
}

/// Removes hop-by-hop headers and those the `Connection` header names. An
/// upgrade keeps `Upgrade` and `Connection: upgrade`, which is what the
/// next hop needs to switch protocols too.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let upgrade_to = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in connection_tokens(headers) {
        // A name that is not a valid header name matches nothing.
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if let Some(protocol) = upgrade_to {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The host the client asked for: `Host`, or the URI's authority (HTTP/2
/// sends `:authority` and no `Host`).
pub fn original_host(headers: &HeaderMap, uri: &Uri) -> Option<HeaderValue> {
    headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Tells the backend about the client: `X-Forwarded-For` gets the client's
/// address appended (earlier proxies' entries kept), `X-Forwarded-Proto`
/// and `X-Forwarded-Host` are set, and `Host` stays the client's.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    https: bool,
    host: Option<HeaderValue>,
) {
    let client = client.to_canonical().to_string();
    let chain = {
        let prior: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if prior.is_empty() {
            client.clone()
        } else {
            format!("{}, {client}", prior.join(", "))
        }
    };
    let chain = HeaderValue::from_str(&chain)
        .or_else(|_| HeaderValue::from_str(&client))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    headers.insert(X_FORWARDED_FOR, chain);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
            headers.insert(header::HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut n: Vec<String> = h.keys().map(|k| k.as_str().to_string()).collect();
        n.sort();
        n
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn an_upgrade_keeps_what_the_backend_needs_to_switch() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "abc");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c")
        ])));
    }

    #[test]
    fn forwarded_headers_append_the_client_and_keep_the_host() {
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "ftp")]);
        let host = HeaderValue::from_static("app.test:8080");
        add_forwarded(&mut h, "10.0.0.9".parse().expect("ip"), true, Some(host));
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.test:8080");
        assert_eq!(h["host"], "app.test:8080");

        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "::ffff:10.0.0.9".parse().expect("ip"), false, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn the_host_comes_from_the_authority_when_there_is_no_host_header() {
        let uri: Uri = "https://app.test/x".parse().expect("uri");
        assert_eq!(
            original_host(&HeaderMap::new(), &uri).expect("host"),
            "app.test"
        );
        let h = map(&[("host", "other.test")]);
        assert_eq!(original_host(&h, &uri).expect("host"), "other.test");
        assert_eq!(
            original_host(&HeaderMap::new(), &"/x".parse().expect("uri")),
            None
        );
    }
}
