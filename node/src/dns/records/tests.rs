use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto, port)| ServicePort {
                        name: Some(name.to_string()),
                        protocol: Some(proto.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `ready` and `not_ready` are (ip, hostname).
fn endpoints(
    ns: &str,
    name: &str,
    ready: &[(&str, Option<&str>)],
    not_ready: &[(&str, Option<&str>)],
    ports: &[(&str, &str, i32)],
) -> Endpoints {
    let addresses = |list: &[(&str, Option<&str>)]| -> Option<Vec<EndpointAddress>> {
        Some(
            list.iter()
                .map(|(ip, host)| EndpointAddress {
                    ip: ip.to_string(),
                    hostname: host.map(String::from),
                    ..Default::default()
                })
                .collect(),
        )
    };
    Endpoints {
        metadata: meta(ns, name),
        subsets: Some(vec![EndpointSubset {
            addresses: addresses(ready),
            not_ready_addresses: addresses(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto, port)| EndpointPort {
                        name: Some(name.to_string()),
                        protocol: Some(proto.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

/// A cluster with a normal Service `web` (ports http/80 and
/// dns/53 UDP, endpoints on 8080 and 5353), a headless Service `db`
/// of two StatefulSet pods and one unnamed pod, and an ExternalName.
fn cluster() -> Records {
    let services = vec![
        service(
            "default",
            "web",
            "10.96.0.10",
            &[("http", "TCP", 80), ("dns", "UDP", 53)],
        ),
        service("shop", "db", "None", &[("pg", "TCP", 5432)]),
        service("shop", "empty", "None", &[("pg", "TCP", 5432)]),
        external("shop", "search", "search.example.com"),
        external("shop", "alias", "web.default.svc.cluster.local"),
    ];
    let endpoints = vec![
        endpoints(
            "default",
            "web",
            &[("10.244.1.5", None), ("10.244.2.7", None)],
            &[],
            &[("http", "TCP", 8080), ("dns", "UDP", 5353)],
        ),
        endpoints(
            "shop",
            "db",
            &[
                ("10.244.1.8", Some("db-0")),
                ("10.244.2.9", Some("db-1")),
                ("10.244.3.4", None),
            ],
            &[("10.244.3.99", Some("db-2"))],
            &[("pg", "TCP", 15432)],
        ),
    ];
    build(&services, &endpoints, "cluster.local")
}

fn a(name: &str, ip: &str) -> Rr {
    Rr {
        name: name.into(),
        data: RrData::A(ip.parse().unwrap()),
    }
}

fn srv(name: &str, weight: u16, port: u16, target: &str) -> Rr {
    Rr {
        name: name.into(),
        data: RrData::Srv {
            priority: 0,
            weight,
            port,
            target: target.into(),
        },
    }
}

fn found(answers: Vec<Rr>, additionals: Vec<Rr>) -> Answer {
    Answer::Found {
        answers,
        additionals,
    }
}

fn nodata() -> Answer {
    found(Vec::new(), Vec::new())
}

#[test]
fn a_service_name_answers_its_cluster_ip() {
    let name = "web.default.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::A),
        found(vec![a(name, "10.96.0.10")], vec![])
    );
}

#[test]
fn names_are_matched_in_any_case_with_or_without_the_root_dot() {
    let records = cluster();
    let expected = found(
        vec![a("web.default.svc.cluster.local.", "10.96.0.10")],
        vec![],
    );
    assert_eq!(
        records.lookup("Web.DEFAULT.svc.Cluster.Local", RecordType::A),
        expected
    );
    assert_eq!(
        records.lookup("web.default.svc.cluster.local", RecordType::A),
        expected
    );
}

#[test]
fn a_headless_service_answers_every_ready_endpoint() {
    let name = "db.shop.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::A),
        found(
            vec![
                a(name, "10.244.1.8"),
                a(name, "10.244.2.9"),
                a(name, "10.244.3.4")
            ],
            vec![]
        )
    );
}

#[test]
fn a_headless_service_without_ready_endpoints_exists_but_is_empty() {
    assert_eq!(
        cluster().lookup("empty.shop.svc.cluster.local", RecordType::A),
        nodata()
    );
}

#[test]
fn a_statefulset_pod_is_found_by_hostname_under_its_service() {
    let name = "db-1.db.shop.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::A),
        found(vec![a(name, "10.244.2.9")], vec![])
    );
}

#[test]
fn an_endpoint_without_hostname_is_found_by_dashed_ip() {
    let name = "10-244-3-4.db.shop.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::A),
        found(vec![a(name, "10.244.3.4")], vec![])
    );
}

#[test]
fn not_ready_endpoints_have_no_names() {
    let records = cluster();
    assert_eq!(
        records.lookup("db-2.db.shop.svc.cluster.local", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        records.lookup("10-244-3-99.db.shop.svc.cluster.local", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn a_named_port_of_a_service_is_an_srv_record_to_the_service() {
    let svc = "web.default.svc.cluster.local.";
    let name = "_http._tcp.web.default.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::SRV),
        found(vec![srv(name, 100, 80, svc)], vec![a(svc, "10.96.0.10")])
    );
    let name = "_dns._udp.web.default.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::SRV),
        found(vec![srv(name, 100, 53, svc)], vec![a(svc, "10.96.0.10")])
    );
}

#[test]
fn a_named_port_of_a_headless_service_is_an_srv_record_per_endpoint() {
    let name = "_pg._tcp.db.shop.svc.cluster.local.";
    let t0 = "db-0.db.shop.svc.cluster.local.";
    let t1 = "db-1.db.shop.svc.cluster.local.";
    let t2 = "10-244-3-4.db.shop.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::SRV),
        found(
            vec![
                srv(name, 33, 15432, t0),
                srv(name, 33, 15432, t1),
                srv(name, 33, 15432, t2)
            ],
            vec![
                a(t0, "10.244.1.8"),
                a(t1, "10.244.2.9"),
                a(t2, "10.244.3.4")
            ]
        )
    );
}

#[test]
fn srv_on_the_service_name_lists_every_port() {
    let name = "web.default.svc.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::SRV),
        found(
            vec![srv(name, 50, 80, name), srv(name, 50, 53, name)],
            vec![a(name, "10.96.0.10")]
        )
    );
}

#[test]
fn an_unknown_port_or_protocol_does_not_exist() {
    let records = cluster();
    for name in [
        "_https._tcp.web.default.svc.cluster.local",
        "_http._udp.web.default.svc.cluster.local",
        "http.tcp.web.default.svc.cluster.local",
    ] {
        assert_eq!(
            records.lookup(name, RecordType::SRV),
            Answer::NxDomain,
            "{name}"
        );
    }
}

#[test]
fn a_pod_is_found_by_dashed_ip() {
    let name = "10-244-1-5.default.pod.cluster.local.";
    assert_eq!(
        cluster().lookup(name, RecordType::A),
        found(vec![a(name, "10.244.1.5")], vec![])
    );
    assert_eq!(
        cluster().lookup("10-244-1.default.pod.cluster.local", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        cluster().lookup("web.default.pod.cluster.local", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn an_external_name_service_is_an_alias() {
    let records = cluster();
    let name = "search.shop.svc.cluster.local.";
    let cname = Rr {
        name: name.into(),
        data: RrData::Cname("search.example.com.".into()),
    };
    assert_eq!(
        records.lookup(name, RecordType::A),
        found(vec![cname], vec![])
    );
    // An alias into the cluster is followed.
    let name = "alias.shop.svc.cluster.local.";
    let cname = Rr {
        name: name.into(),
        data: RrData::Cname("web.default.svc.cluster.local.".into()),
    };
    assert_eq!(
        records.lookup(name, RecordType::A),
        found(
            vec![cname, a("web.default.svc.cluster.local.", "10.96.0.10")],
            vec![]
        )
    );
}

#[test]
fn names_that_do_not_exist_are_nxdomain() {
    let records = cluster();
    for name in [
        "nope.default.svc.cluster.local",
        "web.nope.svc.cluster.local",
        "nope.svc.cluster.local",
        "db-9.db.shop.svc.cluster.local",
        "web.default.cluster.local",
        "a.b.c.d.e.f.svc.cluster.local",
        "google.com.default.svc.cluster.local",
        "web.default.svc.cluster.local.default.svc.cluster.local",
    ] {
        assert_eq!(
            records.lookup(name, RecordType::A),
            Answer::NxDomain,
            "{name}"
        );
        assert_eq!(
            records.lookup(name, RecordType::AAAA),
            Answer::NxDomain,
            "{name}"
        );
    }
}

#[test]
fn existing_names_without_records_of_the_type_are_nodata() {
    let records = cluster();
    for (name, qtype) in [
        ("web.default.svc.cluster.local", RecordType::AAAA),
        ("web.default.svc.cluster.local", RecordType::TXT),
        ("db.shop.svc.cluster.local", RecordType::AAAA),
        ("db-0.db.shop.svc.cluster.local", RecordType::AAAA),
        ("_http._tcp.web.default.svc.cluster.local", RecordType::A),
        ("_tcp.web.default.svc.cluster.local", RecordType::SRV),
        ("10-244-1-5.default.pod.cluster.local", RecordType::AAAA),
        ("default.svc.cluster.local", RecordType::A),
        ("svc.cluster.local", RecordType::A),
        ("pod.cluster.local", RecordType::A),
        ("cluster.local", RecordType::A),
    ] {
        assert_eq!(records.lookup(name, qtype), nodata(), "{name} {qtype}");
    }
}

#[test]
fn the_apex_has_an_soa() {
    let records = cluster().with_serial(7);
    let soa = Rr {
        name: "cluster.local.".into(),
        data: RrData::Soa {
            mname: "ns.dns.cluster.local.".into(),
            rname: "hostmaster.cluster.local.".into(),
            serial: 7,
        },
    };
    assert_eq!(records.soa(), soa);
    assert_eq!(
        records.lookup("cluster.local.", RecordType::SOA),
        found(vec![soa], vec![])
    );
}

#[test]
fn names_outside_the_domain_are_forwarded() {
    let records = cluster();
    for name in [
        "example.com.",
        "local.",
        ".",
        "cluster.local.example.com",
        "xcluster.local",
    ] {
        assert_eq!(
            records.lookup(name, RecordType::A),
            Answer::Forward,
            "{name}"
        );
        assert!(!records.in_domain(name), "{name}");
    }
    assert!(records.in_domain("web.default.svc.cluster.local."));
}

#[test]
fn before_the_first_list_the_domain_fails_and_the_rest_is_forwarded() {
    let records = Records::unsynced("cluster.local");
    assert!(!records.is_synced());
    assert_eq!(
        records.lookup("web.default.svc.cluster.local", RecordType::A),
        Answer::NotReady
    );
    assert_eq!(
        records.lookup("example.com", RecordType::A),
        Answer::Forward
    );
}

#[test]
fn the_domain_is_configurable() {
    let services = vec![service("default", "web", "10.96.0.10", &[])];
    let records = build(&services, &[], "Peapod.Test.");
    assert_eq!(records.domain(), "peapod.test");
    let name = "web.default.svc.peapod.test.";
    assert_eq!(
        records.lookup(name, RecordType::A),
        found(vec![a(name, "10.96.0.10")], vec![])
    );
    assert_eq!(
        records.lookup("web.default.svc.cluster.local", RecordType::A),
        Answer::Forward
    );
}

#[test]
fn ipv6_addresses_are_aaaa_records_and_dash_both_ways() {
    let services = vec![service("default", "v6", "fd00::10", &[])];
    let records = build(&services, &[], "cluster.local");
    let name = "v6.default.svc.cluster.local.";
    let aaaa = Rr {
        name: name.into(),
        data: RrData::Aaaa("fd00::10".parse().unwrap()),
    };
    assert_eq!(
        records.lookup(name, RecordType::AAAA),
        found(vec![aaaa], vec![])
    );
    assert_eq!(records.lookup(name, RecordType::A), nodata());
    assert_eq!(dashed("fd00::1".parse().unwrap()), "fd00--1");
    assert_eq!(undashed("fd00--1"), Some("fd00::1".parse().unwrap()));
    assert_eq!(undashed("10-0-0-1"), Some("10.0.0.1".parse().unwrap()));
}
