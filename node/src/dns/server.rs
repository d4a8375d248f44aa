//! The DNS server: hickory's UDP and TCP listeners, and a request
//! handler that answers the cluster domain from the records snapshot and
//! forwards every other name to the upstreams.

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, Message, MessageType, Metadata, OpCode, Query,
    ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use super::forward::Forwarder;
use super::records::{Answer, Rr, RrData, TTL};
use super::{DnsError, SharedRecords};

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_QUEUE: usize = 32;
/// The largest UDP answer, whatever a client's EDNS says it accepts.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// SOA timers (seconds), as CoreDNS's.
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;

/// Serves DNS on `addr` over UDP and TCP until the sockets fail: names in
/// the cluster domain from `records`, others from `upstreams` (`addr`
/// itself is never one of them).
pub async fn serve(
    addr: SocketAddr,
    records: SharedRecords,
    upstreams: Vec<SocketAddr>,
) -> Result<(), DnsError> {
    let upstreams: Vec<SocketAddr> = upstreams.into_iter().filter(|u| *u != addr).collect();
    let udp = UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::Bind { addr, source })?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::Bind { addr, source })?;
    tracing::info!("cluster DNS on {addr} (UDP and TCP), forwarding to {upstreams:?}");
    let mut server = Server::new(Handler {
        records,
        forwarder: Forwarder::new(upstreams),
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, TCP_QUEUE);
    server
        .block_until_done()
        .await
        .map_err(|e| DnsError::Server(e.to_string()))
}

struct Handler {
    records: SharedRecords,
    forwarder: Forwarder,
}

/// A response's code and sections.
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn empty(code: ResponseCode) -> Self {
        Reply {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// What to do with a query.
enum Plan {
    /// Not the cluster's: ask the upstreams.
    Forward,
    Reply(Reply),
    /// An ExternalName alias out of the cluster: the reply so far (the
    /// CNAME), then what the upstreams know of `target`.
    Chase {
        reply: Reply,
        target: Name,
        qtype: RecordType,
    },
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let edns: Option<Edns> = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().min(MAX_UDP_PAYLOAD));
            edns
        });
        let edns = edns.as_ref();
        if request.metadata.op_code != OpCode::Query {
            return reply(
                request,
                edns,
                Reply::empty(ResponseCode::NotImp),
                response_handle,
            )
            .await;
        }
        let [query] = request.queries.queries() else {
            return reply(
                request,
                edns,
                Reply::empty(ResponseCode::FormErr),
                response_handle,
            )
            .await;
        };
        match self.plan(query) {
            Plan::Forward => self.forward(request, edns, response_handle).await,
            Plan::Reply(answer) => reply(request, edns, answer, response_handle).await,
            Plan::Chase {
                reply: mut answer,
                target,
                qtype,
            } => {
                self.chase(&mut answer, target, qtype, request.metadata.id)
                    .await;
                reply(request, edns, answer, response_handle).await
            }
        }
    }
}

impl Handler {
    /// Decides from the snapshot (held only here, never across an await).
    fn plan(&self, query: &LowerQuery) -> Plan {
        let qname = query.original().name();
        let qtype = query.query_type();
        let ascii = qname.to_ascii();
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let soa = || to_records(&[records.soa()], qname, &ascii);
        match records.lookup(&ascii, qtype) {
            Answer::Forward => Plan::Forward,
            _ if query.query_class() != DNSClass::IN => {
                Plan::Reply(Reply::empty(ResponseCode::Refused))
            }
            Answer::NotReady => Plan::Reply(Reply::empty(ResponseCode::ServFail)),
            Answer::NxDomain => Plan::Reply(Reply {
                authorities: soa(),
                ..Reply::empty(ResponseCode::NXDomain)
            }),
            Answer::Found {
                answers,
                additionals,
            } => {
                let target = match answers.last() {
                    Some(Rr {
                        data: RrData::Cname(target),
                        ..
                    }) if matches!(qtype, RecordType::A | RecordType::AAAA)
                        && !records.in_domain(target) =>
                    {
                        Name::from_ascii(target).ok()
                    }
                    _ => None,
                };
                let reply = Reply {
                    code: ResponseCode::NoError,
                    authorities: if answers.is_empty() {
                        soa()
                    } else {
                        Vec::new()
                    },
                    answers: to_records(&answers, qname, &ascii),
                    additionals: to_records(&additionals, qname, &ascii),
                };
                match target {
                    Some(target) => Plan::Chase {
                        reply,
                        target,
                        qtype,
                    },
                    None => Plan::Reply(reply),
                }
            }
        }
    }

    /// Relays the upstreams' answer to the request; SERVFAIL without one.
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        response_handle: R,
    ) -> ResponseInfo {
        let Some(upstream) = self.forwarder.exchange(request.as_slice()).await else {
            return reply(
                request,
                edns,
                Reply::empty(ResponseCode::ServFail),
                response_handle,
            )
            .await;
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = upstream.metadata.response_code;
        metadata.authoritative = upstream.metadata.authoritative;
        metadata.truncation = upstream.metadata.truncation;
        metadata.recursion_available = upstream.metadata.recursion_available;
        metadata.authentic_data = upstream.metadata.authentic_data;
        send(
            request,
            edns,
            metadata,
            &upstream.answers,
            &upstream.authorities,
            &upstream.additionals,
            response_handle,
        )
        .await
    }

    /// Adds the upstreams' answers for `target` to `reply`.
    async fn chase(&self, reply: &mut Reply, target: Name, qtype: RecordType, id: u16) {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target, qtype));
        let bytes = match query.to_vec() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::debug!("DNS: encoding a query: {e}");
                return;
            }
        };
        if let Some(upstream) = self.forwarder.exchange(&bytes).await {
            reply.answers.extend(upstream.answers);
        }
    }
}

/// Sends one of our own replies: authoritative when it answers.
async fn reply<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    answer: Reply,
    response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = answer.code;
    metadata.authoritative = matches!(answer.code, ResponseCode::NoError | ResponseCode::NXDomain);
    metadata.recursion_available = true;
    send(
        request,
        edns,
        metadata,
        &answer.answers,
        &answer.authorities,
        &answer.additionals,
        response_handle,
    )
    .await
}

async fn send<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    metadata: Metadata,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    mut response_handle: R,
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answers,
        authorities,
        std::iter::empty::<&Record>(),
        additionals,
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("DNS: sending a response to {}: {e}", request.src());
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

fn to_records(rrs: &[Rr], qname: &Name, ascii: &str) -> Vec<Record> {
    rrs.iter()
        .filter_map(|rr| to_record(rr, qname, ascii))
        .collect()
}

/// The record on the wire; a record at the query's name keeps the case the
/// client asked in.
fn to_record(rr: &Rr, qname: &Name, ascii: &str) -> Option<Record> {
    let name = if rr.name.eq_ignore_ascii_case(ascii) {
        qname.clone()
    } else {
        Name::from_ascii(&rr.name).ok()?
    };
    let data = match &rr.data {
        RrData::A(ip) => RData::A(A(*ip)),
        RrData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RrData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(
            *priority,
            *weight,
            *port,
            Name::from_ascii(target).ok()?,
        )),
        RrData::Cname(target) => RData::CNAME(CNAME(Name::from_ascii(target).ok()?)),
        RrData::Soa {
            mname,
            rname,
            serial,
        } => RData::SOA(SOA::new(
            Name::from_ascii(mname).ok()?,
            Name::from_ascii(rname).ok()?,
            *serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            TTL,
        )),
    };
    Some(Record::from_rdata(name, TTL, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_at_the_query_name_keep_its_case() {
        let qname = Name::from_ascii("Web.Default.svc.cluster.local.").unwrap();
        let ascii = qname.to_ascii();
        let rr = Rr {
            name: "web.default.svc.cluster.local.".into(),
            data: RrData::A("10.96.0.10".parse().unwrap()),
        };
        let record = to_record(&rr, &qname, &ascii).unwrap();
        assert_eq!(record.name.to_ascii(), "Web.Default.svc.cluster.local.");
        assert_eq!(record.ttl, TTL);
        assert_eq!(record.data, RData::A(A("10.96.0.10".parse().unwrap())));
    }

    #[test]
    fn srv_records_name_their_targets() {
        let qname = Name::from_ascii("_http._tcp.web.default.svc.cluster.local.").unwrap();
        let ascii = qname.to_ascii();
        let rr = Rr {
            name: "_http._tcp.web.default.svc.cluster.local.".into(),
            data: RrData::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: "web.default.svc.cluster.local.".into(),
            },
        };
        let record = to_record(&rr, &qname, &ascii).unwrap();
        let target = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        assert_eq!(record.data, RData::SRV(SRV::new(0, 100, 80, target)));
    }
}
