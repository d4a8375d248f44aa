//! Identity and RBAC as kubectl users meet them: client certificates from
//! `peapod kubeconfig`, roles and bindings made with `kubectl create`,
//! kube-apiserver's 403s, `kubectl auth can-i` and `whoami`, impersonation
//! with `--as`, and escalation refused. A real server, the real kubectl.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use support::{Server, eventually};

const WAIT: Duration = Duration::from_secs(10);

/// kubectl as another user, through a kubeconfig the server's CA signed.
struct As<'a> {
    server: &'a Server,
    config: PathBuf,
}

impl As<'_> {
    fn new<'a>(server: &'a Server, user: &str, groups: &[&str]) -> As<'a> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peapod"));
        cmd.args(["kubeconfig", "--user", user, "--data-dir"])
            .arg(server.dir.path());
        for g in groups {
            cmd.args(["--group", g]);
        }
        let out = cmd.output().expect("run peapod kubeconfig");
        assert!(
            out.status.success(),
            "peapod kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = server.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&config, &out.stdout).unwrap();
        As { server, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.server
            .command(args)
            .env("KUBECONFIG", &self.config)
            .output()
            .expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn denied(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} was allowed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl auth can-i`'s answer.
    fn can(&self, args: &[&str]) -> bool {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            said == "yes" || said == "no",
            "can-i {args:?}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success() && said == "yes"
    }
}

#[test]
fn a_viewer_reads_gets_kube_apiservers_403_on_writes_and_can_i_agrees() {
    let s = Server::start();
    let alice = As::new(&s, "alice", &["dev"]);
    let who = alice.ok(&["auth", "whoami"]);
    assert!(who.contains("alice") && who.contains("dev"), "{who}");
    assert!(who.contains("system:authenticated"), "{who}");
    // Authenticated, but bound to nothing: discovery works, pods do not.
    let err = alice.denied(&["get", "pods"]);
    assert!(
        err.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{err}"
    );
    s.ok(&[
        "create",
        "clusterrolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    assert!(eventually(WAIT, || alice
        .run(&["get", "pods"])
        .status
        .success()));
    alice.ok(&["get", "deployments,services,configmaps", "-A"]);
    let err = alice.denied(&["create", "configmap", "x", "--from-literal=a=b"]);
    assert!(
        err.contains(
            r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "default""#
        ),
        "{err}"
    );
    let err = alice.denied(&["delete", "namespace", "kube-public"]);
    assert!(
        err.contains(r#"namespaces "kube-public" is forbidden: User "alice" cannot delete resource "namespaces" in API group "" at the cluster scope"#),
        "{err}"
    );
    // view holds no Secrets.
    alice.denied(&["get", "secrets", "-n", "kube-system"]);
    for (args, want) in [
        (&["list", "pods"][..], true),
        (&["get", "pods", "--subresource=log"], true),
        (&["watch", "deployments.apps", "-n", "kube-system"], true),
        (&["create", "pods"], false),
        (&["delete", "deployments.apps"], false),
        (&["get", "secrets"], false),
        (&["create", "pods", "--subresource=exec"], false),
        (&["list", "nodes"], false),
        (&["get", "/healthz"], true),
        (&["get", "/metrics"], false),
    ] {
        assert_eq!(alice.can(args), want, "can-i {args:?}");
    }
    let list = alice.ok(&["auth", "can-i", "--list"]);
    assert!(
        list.contains("deployments.apps") && !list.contains("secrets"),
        "{list}"
    );
    // A ClusterRole labelled to aggregate into view adds to it, object and rights.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [example.com]
  resources: [widgets]
  verbs: [get, list]
"#,
    );
    assert!(eventually(WAIT, || s
        .ok(&["get", "clusterrole", "view", "-o", "yaml"])
        .contains("widgets")));
    // (Asked directly: kubectl's can-i sends an undiscovered resource
    // under the core group.)
    let may_list_widgets = || {
        let mut child = alice
            .server
            .command(&["create", "-o", "jsonpath={.status.allowed}", "-f", "-"])
            .env("KUBECONFIG", &alice.config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                br#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"group": "example.com", "resource": "widgets",
                "verb": "list", "namespace": "default"}}}"#,
            )
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout) == "true"
    };
    assert!(eventually(WAIT, may_list_widgets));
    // The admin may do anything; asked about alice, the server answers for her.
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let out = s.kubectl(&["auth", "can-i", "list", "pods", "--as=alice"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
    let out = s.kubectl(&["auth", "can-i", "create", "pods", "--as=alice"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    // A LocalSubjectAccessReview answers in its namespace, and is no
    // cluster-wide question.
    let local = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": "default"}, "spec": {"user": "alice",
        "resourceAttributes": {"verb": "list", "resource": "pods"}}}"#;
    let path = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    let answer = s.kubectl_stdin(&["create", "--raw", path, "-f", "-"], local);
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains(r#""allowed":true"#),
        "{answer:?}"
    );
    let cluster = "/apis/authorization.k8s.io/v1/localsubjectaccessreviews";
    let answer = s.kubectl_stdin(&["create", "--raw", cluster, "-f", "-"], local);
    assert!(
        String::from_utf8_lossy(&answer.stderr).contains("NotFound"),
        "{answer:?}"
    );
    // Unbound, the rights are gone.
    s.ok(&["delete", "clusterrolebinding", "alice-view"]);
    assert!(eventually(WAIT, || !alice
        .run(&["get", "pods"])
        .status
        .success()));
}

#[test]
fn impersonation_takes_the_impersonate_right_and_then_acts_as_the_other_user() {
    let s = Server::start();
    let alice = As::new(&s, "alice", &[]);
    // (`--raw`: kubectl's discovery drops the message of a 403.)
    let pods = "/api/v1/namespaces/default/pods";
    let err = alice.denied(&["get", "--raw", pods, "--as=bob"]);
    assert!(
        err.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    s.ok(&[
        "create",
        "clusterrole",
        "bob-impersonator",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "alice-as-bob",
        "--clusterrole=bob-impersonator",
        "--user=alice",
    ]);
    // As bob, alice has bob's rights: none on pods yet.
    let err = eventually_denied(&alice, &["get", "pods", "--as=bob"], "User \"bob\"");
    assert!(
        err.contains(r#"User "bob" cannot list resource "pods""#),
        "{err}"
    );
    s.ok(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "default",
    ]);
    assert!(eventually(WAIT, || alice
        .run(&["get", "pods", "--as=bob"])
        .status
        .success()));
    assert!(alice.ok(&["auth", "whoami", "--as=bob"]).contains("bob"));
    // Only bob: not carol, and not a group bob's right does not cover.
    alice.denied(&["get", "pods", "--as=carol"]);
    let err = alice.denied(&[
        "get",
        "--raw",
        pods,
        "--as=bob",
        "--as-group=system:masters",
    ]);
    assert!(
        err.contains(r#"groups "system:masters" is forbidden"#),
        "{err}"
    );
}

fn eventually_denied(who: &As, args: &[&str], until: &str) -> String {
    let mut last = String::new();
    eventually(WAIT, || {
        last = who.denied(args);
        last.contains(until)
    });
    last
}

#[test]
fn a_namespace_admin_cannot_grant_what_they_do_not_hold() {
    let s = Server::start();
    s.ok(&["create", "namespace", "team"]);
    s.ok(&[
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
        "-n",
        "team",
    ]);
    let alice = As::new(&s, "alice", &[]);
    assert!(eventually(WAIT, || alice
        .run(&["get", "pods", "-n", "team"])
        .status
        .success()));
    // What admin holds, alice may hand on, in her namespace.
    alice.ok(&[
        "create",
        "role",
        "config-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        "team",
    ]);
    alice.ok(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
        "-n",
        "team",
    ]);
    // Not more than she holds, nor anywhere else.
    let err = alice.denied(&[
        "create",
        "rolebinding",
        "alice-everything",
        "--clusterrole=cluster-admin",
        "--user=alice",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let err = alice.denied(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=persistentvolumes",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    alice.denied(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
        "-n",
        "default",
    ]);
    alice.denied(&[
        "create",
        "clusterrolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
    ]);
    // A binding's role cannot be swapped afterwards.
    let err = String::from_utf8_lossy(
        &s.kubectl(&[
            "patch",
            "rolebinding",
            "bob-edit",
            "-n",
            "team",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"admin"}}"#,
        ])
        .stderr,
    )
    .into_owned();
    assert!(err.contains("cannot change roleRef"), "{err}");
}

#[test]
fn without_credentials_a_client_is_anonymous_and_a_foreign_certificate_is_nobody() {
    let s = Server::start();
    let url = s
        .ok(&[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .trim()
        .to_string();
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-sk", &format!("{url}{path}")])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("/healthz"), "ok");
    let denied = curl("/api/v1/namespaces/default/pods");
    assert!(
        denied.contains(r#"User \"system:anonymous\" cannot list resource \"pods\""#)
            && denied.contains(r#""code":403"#),
        "{denied}"
    );
    assert!(curl("/api").contains(r#""code":403"#));
    // A certificate naming system:masters, signed by a CA of the
    // attacker's own, is refused during the handshake.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/O=system:masters/CN=admin",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let forged = s.kubeconfig_without_credentials();
    let out = s
        .command(&[
            "get",
            "pods",
            "--client-certificate",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
        ])
        .env("KUBECONFIG", &forged)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a foreign certificate was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls: unknown certificate"), "{err}");
}

/// kubectl with the server's cluster and CA, authenticating with `token` only.
fn with_token(s: &Server, token: &str, args: &[&str]) -> Output {
    let path = s.kubeconfig_without_credentials();
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    s.command(&all).env("KUBECONFIG", &path).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_service_account_token_acts_as_its_account_until_what_it_is_bound_to_is_gone() {
    let s = Server::start();
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "team",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "bot-reads",
        "--role=pod-reader",
        "--serviceaccount=team:bot",
        "-n",
        "team",
    ]);
    let token = s
        .ok(&["create", "token", "bot", "-n", "team"])
        .trim()
        .to_string();
    assert!(eventually(WAIT, || with_token(
        &s,
        &token,
        &["get", "pods", "-n", "team"]
    )
    .status
    .success()));
    let who =
        String::from_utf8_lossy(&with_token(&s, &token, &["auth", "whoami"]).stdout).into_owned();
    assert!(
        who.contains("system:serviceaccount:team:bot")
            && who.contains("system:serviceaccounts:team"),
        "{who}"
    );
    let other = with_token(&s, &token, &["get", "pods", "-n", "default"]);
    assert!(
        stderr(&other).contains(r#"User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        stderr(&other)
    );
    // The API server answers a TokenReview for it.
    let review = s.kubectl_stdin(
        &["create", "-o", "json", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {{"token": "{token}"}}}}"#
        ),
    );
    let review = String::from_utf8_lossy(&review.stdout);
    assert!(
        review.contains(r#""authenticated": true"#)
            && review.contains("system:serviceaccount:team:bot"),
        "{review}"
    );
    // Its account may read the issuer's keys, for verifiers outside the cluster.
    let jwks = with_token(&s, &token, &["get", "--raw", "/openid/v1/jwks"]);
    assert!(
        String::from_utf8_lossy(&jwks.stdout).contains(r#""alg":"ES256""#),
        "{}",
        stderr(&jwks)
    );
    // Tokens for another audience, edited, or too short-lived are refused.
    let vault = s.ok(&["create", "token", "bot", "-n", "team", "--audience=vault"]);
    let out = with_token(&s, vault.trim(), &["get", "pods", "-n", "team"]);
    assert!(
        stderr(&out).contains("You must be logged in"),
        "{}",
        stderr(&out)
    );
    let forged = format!("{token}x");
    assert!(
        !with_token(&s, &forged, &["get", "pods", "-n", "team"])
            .status
            .success()
    );
    let err = s.fails(&["create", "token", "bot", "-n", "team", "--duration=5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    // A token bound to a Secret ends with it; any token with its account.
    s.ok(&[
        "create",
        "secret",
        "generic",
        "holder",
        "--from-literal=a=b",
        "-n",
        "team",
    ]);
    let bound = s
        .ok(&[
            "create",
            "token",
            "bot",
            "-n",
            "team",
            "--bound-object-kind=Secret",
            "--bound-object-name=holder",
        ])
        .trim()
        .to_string();
    assert!(
        with_token(&s, &bound, &["get", "pods", "-n", "team"])
            .status
            .success()
    );
    s.ok(&["delete", "secret", "holder", "-n", "team"]);
    let out = with_token(&s, &bound, &["get", "pods", "-n", "team"]);
    assert!(
        stderr(&out).contains("You must be logged in"),
        "{}",
        stderr(&out)
    );
    assert!(
        with_token(&s, &token, &["get", "pods", "-n", "team"])
            .status
            .success()
    );
    s.ok(&["delete", "serviceaccount", "bot", "-n", "team"]);
    let out = with_token(&s, &token, &["get", "pods", "-n", "team"]);
    assert!(
        stderr(&out).contains("You must be logged in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn controllers_act_with_their_own_least_privilege_roles() {
    let s = Server::start();
    let can = |args: &[&str]| {
        let out = s.kubectl(&[&["auth", "can-i"], args].concat());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let rs = "--as=system:serviceaccount:kube-system:replicaset-controller";
    assert_eq!(can(&["create", "pods", rs, "-n", "any"]), "yes");
    assert_eq!(can(&["get", "secrets", rs, "-n", "any"]), "no");
    assert_eq!(can(&["delete", "nodes", rs]), "no");
    let scheduler = "--as=system:kube-scheduler";
    assert_eq!(
        can(&["create", "pods", "--subresource=binding", scheduler]),
        "yes"
    );
    assert_eq!(can(&["create", "pods", scheduler]), "no");
    // The ReplicaSet controller makes pods only while its role is bound.
    let binding = "system:controller:replicaset-controller";
    let saved = s.ok(&["get", "clusterrolebinding", binding, "-o", "json"]);
    s.ok(&["delete", "clusterrolebinding", binding]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
    ]);
    assert!(eventually(WAIT, || s
        .ok(&["get", "replicasets", "-o", "name"])
        .contains("web-")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.ok(&["get", "pods", "-o", "name"]), "", "no pods unbound");
    let mut restored: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let meta = restored["metadata"].as_object_mut().unwrap();
    for field in ["resourceVersion", "uid", "creationTimestamp"] {
        meta.remove(field);
    }
    s.kubectl_stdin(&["create", "-f", "-"], &restored.to_string());
    s.ok(&["scale", "deployment", "web", "--replicas=3"]);
    assert!(
        eventually(WAIT, || s
            .ok(&["get", "pods", "-o", "name"])
            .lines()
            .count()
            == 3),
        "{}",
        s.ok(&["get", "pods"])
    );
}
