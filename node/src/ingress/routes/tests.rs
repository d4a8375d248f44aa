use serde_json::json;

use super::*;

fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": spec,
    }))
    .expect("ingress")
}

fn backend(service: &str) -> serde_json::Value {
    json!({"service": {"name": service, "port": {"number": 80}}})
}

fn path(path: &str, path_type: &str, service: &str) -> serde_json::Value {
    json!({"path": path, "pathType": path_type, "backend": backend(service)})
}

fn rule(host: Option<&str>, paths: Vec<serde_json::Value>) -> serde_json::Value {
    let mut rule = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        rule["host"] = json!(h);
    }
    rule
}

fn table(ingresses: &[Ingress]) -> RouteTable {
    RouteTable::build(&ordered(ingresses), &Objects::new(), &Objects::new())
}

fn service_for(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    table.route(host, path).map(|b| b.service.clone())
}

#[test]
fn hosts_match_exactly_ignoring_case_and_port() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(Some("foo.example.com"), vec![path("/", "Prefix", "foo")])]}),
    )]);
    assert_eq!(
        service_for(&t, "FOO.example.com:8080", "/x").as_deref(),
        Some("foo")
    );
    assert_eq!(
        service_for(&t, "foo.example.com.", "/").as_deref(),
        Some("foo")
    );
    assert_eq!(service_for(&t, "bar.example.com", "/"), None);
    assert_eq!(service_for(&t, "", "/"), None);
}

#[test]
fn a_wildcard_host_matches_exactly_one_label_and_loses_to_an_exact_host() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [
            rule(Some("*.example.com"), vec![path("/", "Prefix", "wild")]),
            rule(Some("www.example.com"), vec![path("/", "Prefix", "www")]),
        ]}),
    )]);
    assert_eq!(
        service_for(&t, "a.example.com", "/").as_deref(),
        Some("wild")
    );
    assert_eq!(
        service_for(&t, "www.example.com", "/").as_deref(),
        Some("www")
    );
    assert_eq!(service_for(&t, "example.com", "/"), None);
    assert_eq!(service_for(&t, "a.b.example.com", "/"), None);
}

#[test]
fn a_host_without_a_matching_path_falls_through_to_hostless_rules() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [
            rule(Some("app.test"), vec![path("/api", "Prefix", "api")]),
            rule(None, vec![path("/", "Prefix", "web")]),
        ]}),
    )]);
    assert_eq!(
        service_for(&t, "app.test", "/api/x").as_deref(),
        Some("api")
    );
    assert_eq!(
        service_for(&t, "app.test", "/other").as_deref(),
        Some("web")
    );
    assert_eq!(service_for(&t, "else.test", "/api").as_deref(), Some("web"));
}

#[test]
fn prefix_matches_whole_path_elements() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/foo", "Prefix", "foo")])]}),
    )]);
    for yes in ["/foo", "/foo/", "/foo/bar", "/foo//bar"] {
        assert_eq!(service_for(&t, "h", yes).as_deref(), Some("foo"), "{yes}");
    }
    for no in ["/foobar", "/", "/fo", "/bar/foo"] {
        assert_eq!(service_for(&t, "h", no), None, "{no}");
    }
}

#[test]
fn a_prefix_with_a_trailing_slash_matches_without_it() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/foo/", "Prefix", "foo")])]}),
    )]);
    assert_eq!(service_for(&t, "h", "/foo").as_deref(), Some("foo"));
    assert_eq!(service_for(&t, "h", "/foo/x").as_deref(), Some("foo"));
}

#[test]
fn exact_matches_only_the_same_path() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/foo", "Exact", "foo")])]}),
    )]);
    assert_eq!(service_for(&t, "h", "/foo").as_deref(), Some("foo"));
    assert_eq!(service_for(&t, "h", "/foo/"), None);
    assert_eq!(service_for(&t, "h", "/foo/bar"), None);
}

#[test]
fn implementation_specific_is_a_prefix() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/foo", "ImplementationSpecific", "foo")])]}),
    )]);
    assert_eq!(service_for(&t, "h", "/foo/bar").as_deref(), Some("foo"));
    assert_eq!(service_for(&t, "h", "/foobar"), None);
}

#[test]
fn the_longest_path_wins_across_ingresses_and_exact_beats_prefix() {
    let t = table(&[
        ingress(
            "root",
            "2024-01-01T00:00:00Z",
            json!({"rules": [rule(None, vec![path("/", "Prefix", "root")])]}),
        ),
        ingress(
            "api",
            "2024-01-02T00:00:00Z",
            json!({"rules": [rule(None, vec![
                path("/api", "Prefix", "api-prefix"),
                path("/api/v1", "Prefix", "v1"),
            ])]}),
        ),
        ingress(
            "exact",
            "2024-01-03T00:00:00Z",
            json!({"rules": [rule(None, vec![path("/api", "Exact", "api-exact")])]}),
        ),
    ]);
    assert_eq!(service_for(&t, "h", "/").as_deref(), Some("root"));
    assert_eq!(service_for(&t, "h", "/apix").as_deref(), Some("root"));
    assert_eq!(service_for(&t, "h", "/api").as_deref(), Some("api-exact"));
    assert_eq!(service_for(&t, "h", "/api/").as_deref(), Some("api-prefix"));
    assert_eq!(service_for(&t, "h", "/api/v1/users").as_deref(), Some("v1"));
}

#[test]
fn on_a_tie_the_older_ingress_wins() {
    let t = table(&[
        ingress(
            "young",
            "2024-02-01T00:00:00Z",
            json!({"rules": [rule(None, vec![path("/", "Prefix", "young")])]}),
        ),
        ingress(
            "old",
            "2024-01-01T00:00:00Z",
            json!({"rules": [rule(None, vec![path("/", "Prefix", "old")])]}),
        ),
    ]);
    assert_eq!(service_for(&t, "h", "/").as_deref(), Some("old"));
}

#[test]
fn the_default_backend_of_the_oldest_ingress_answers_when_nothing_matches() {
    let t = table(&[
        ingress(
            "b",
            "2024-02-01T00:00:00Z",
            json!({"defaultBackend": backend("second")}),
        ),
        ingress(
            "a",
            "2024-01-01T00:00:00Z",
            json!({
                "defaultBackend": backend("first"),
                "rules": [rule(Some("app.test"), vec![path("/", "Prefix", "app")])],
            }),
        ),
    ]);
    assert_eq!(service_for(&t, "app.test", "/").as_deref(), Some("app"));
    assert_eq!(service_for(&t, "other.test", "/").as_deref(), Some("first"));
    assert_eq!(service_for(&table(&[]), "other.test", "/"), None);
}

fn objects() -> (Objects<Service>, Objects<Endpoints>) {
    let key = ("default".to_string(), "web".to_string());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [
            {"name": "http", "port": 80},
            {"name": "metrics", "port": 9090},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]},
    }))
    .expect("service");
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{
            "addresses": [{"ip": "10.244.0.2"}, {"ip": "10.244.0.1"}],
            "notReadyAddresses": [{"ip": "10.244.0.3"}],
            "ports": [
                {"name": "http", "port": 8080},
                {"name": "metrics", "port": 9100},
                {"name": "dns", "port": 5353, "protocol": "UDP"},
            ],
        }],
    }))
    .expect("endpoints");
    (
        Objects::from([(key.clone(), service.into())]),
        Objects::from([(key, endpoints.into())]),
    )
}

fn port(value: serde_json::Value) -> ServiceBackendPort {
    serde_json::from_value(value).expect("port")
}

#[test]
fn backends_resolve_ports_by_number_or_name_to_ready_endpoints() {
    let (services, endpoints) = objects();
    let addrs = |p: serde_json::Value| {
        resolve("default", "web", Some(&port(p)), &services, &endpoints)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        addrs(json!({"name": "http"})),
        ["10.244.0.1:8080", "10.244.0.2:8080"]
    );
    assert_eq!(
        addrs(json!({"number": 80})),
        ["10.244.0.1:8080", "10.244.0.2:8080"]
    );
    assert_eq!(
        addrs(json!({"number": 9090})),
        ["10.244.0.1:9100", "10.244.0.2:9100"]
    );
    assert!(addrs(json!({"number": 81})).is_empty());
    assert!(
        addrs(json!({"name": "dns"})).is_empty(),
        "UDP is not proxied"
    );
    assert!(
        resolve(
            "default",
            "gone",
            Some(&port(json!({"number": 80}))),
            &services,
            &endpoints
        )
        .is_empty()
    );
}

#[test]
fn a_route_to_a_missing_service_still_names_it() {
    let t = table(&[ingress(
        "a",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/", "Prefix", "gone")])]}),
    )]);
    let backend = t.route("h", "/").expect("route");
    assert_eq!(backend.service, "gone");
    assert!(backend.endpoints.is_empty());
}

#[test]
fn round_robin_rotates_the_attempt_order() {
    let a: SocketAddr = "10.0.0.1:80".parse().expect("addr");
    let b: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let backend = Backend::new("default", "web", vec![a, b]);
    assert_eq!(backend.attempt_order(), [a, b]);
    assert_eq!(backend.attempt_order(), [b, a]);
    assert_eq!(backend.attempt_order(), [a, b]);
    assert!(
        Backend::new("default", "web", vec![])
            .attempt_order()
            .is_empty()
    );
}

fn class(annotations: serde_json::Value) -> IngressClass {
    serde_json::from_value(json!({"metadata": {"name": "peapod", "annotations": annotations}}))
        .expect("class")
}

#[test]
fn class_selection() {
    let named = |name: &str| {
        ingress(
            "a",
            "2024-01-01T00:00:00Z",
            json!({"ingressClassName": name}),
        )
    };
    let unnamed = ingress("a", "2024-01-01T00:00:00Z", json!({}));
    assert!(in_class(&named("peapod"), "peapod", false));
    assert!(!in_class(&named("nginx"), "peapod", true));
    assert!(in_class(&unnamed, "peapod", true));
    assert!(!in_class(&unnamed, "peapod", false));

    assert!(class_is_default(None));
    assert!(class_is_default(Some(&class(
        json!({DEFAULT_CLASS_ANNOTATION: "true"})
    ))));
    assert!(!class_is_default(Some(&class(json!({})))));
    assert!(!class_is_default(Some(&class(
        json!({DEFAULT_CLASS_ANNOTATION: "false"})
    ))));
}

#[test]
fn hosts_are_normalized() {
    assert_eq!(normalize_host("Example.COM:8080"), "example.com");
    assert_eq!(normalize_host("example.com."), "example.com");
    assert_eq!(normalize_host("[::1]:80"), "[::1]");
    assert_eq!(normalize_host("[::1]"), "[::1]");
    assert_eq!(normalize_host("10.0.0.1"), "10.0.0.1");
}
