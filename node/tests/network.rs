//! Pod networking against the real kernel (needs root): a sandbox, made
//! afresh or taken from the warm pool, gets a namespace, an address
//! reachable from the host, and leaves nothing behind when removed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peapod_node::network::{Network, NetworkConfig, Sandbox, WARM_SANDBOXES, netns};

/// Unique names per test run, so parallel runs do not collide.
fn unique() -> String {
    format!("{:x}", std::process::id() & 0xfffff)
}

/// A test network on its own bridge, chain and /24, torn down on drop
/// (after its pool filler, if any, stopped).
struct TestNetwork(Arc<Network>, Option<tokio::task::AbortHandle>);

impl TestNetwork {
    async fn start(test: u32) -> TestNetwork {
        let id = format!("{}{test}", unique());
        let dir = tempfile::tempdir().unwrap().keep();
        // A /24 from an unusual range, unlikely to meet anything on the host.
        let third = (std::process::id() * 2 + test) % 200 + 20;
        let config = NetworkConfig {
            run_dir: dir.join("run"),
            state_dir: dir.join("state"),
            bridge: format!("pt{id}"),
            pod_cidr: format!("10.233.{third}.0/24").parse().unwrap(),
            cluster_cidr: "10.233.0.0/16".parse().unwrap(),
            chain: format!("PEAPOD-TEST-{id}"),
        };
        TestNetwork(Arc::new(Network::start(config).await.unwrap()), None)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if let Some(filler) = self.1.take() {
            filler.abort();
        }
        // The netlink connection lives on the test's runtime: block in
        // place so its other worker keeps driving it.
        let n = self.0.clone();
        let _ = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(n.teardown())
        });
        let _ = std::fs::remove_dir_all(n.state_dir().parent().unwrap());
    }
}

fn links() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server inside the pod's namespace answers on the pod address.
fn assert_reachable(sandbox: &Sandbox) {
    let listener = netns::in_net(&sandbox.net, || TcpListener::bind("0.0.0.0:8080"))
        .unwrap()
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello from the pod").unwrap();
    });
    let mut conn =
        TcpStream::connect_timeout(&(sandbox.ip, 8080).into(), Duration::from_secs(5)).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    server.join().unwrap();
    assert_eq!(reply, "hello from the pod");
    assert!(sandbox.uts.exists() && sandbox.ipc.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_is_reachable_and_leaves_nothing_behind() {
    let test = TestNetwork::start(0).await;
    let network = &test.0;
    let sandbox = network.create("test-pod-uid-0001", "web-0").await.unwrap();
    assert_reachable(&sandbox);

    network.remove("test-pod-uid-0001").await;
    assert!(!sandbox.net.exists());
    assert!(network.known_pods().is_empty());
    assert!(
        !links().contains(&peapod_node::network::links::host_interface(
            "test-pod-uid-0001"
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_sandbox_becomes_a_pods_and_goes_with_it() {
    let mut test = TestNetwork::start(1).await;
    let network = test.0.clone();
    let filler = tokio::spawn({
        let n = network.clone();
        async move { n.keep_warm().await }
    });
    test.1 = Some(filler.abort_handle());
    let deadline = Instant::now() + Duration::from_secs(30);
    while network.warm_count() < WARM_SANDBOXES {
        assert!(Instant::now() < deadline, "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warm_links = links().matches("ppwarm").count();

    let sandbox = network.create("test-pod-uid-0002", "web-1").await.unwrap();
    assert_eq!(
        network.warm_count(),
        WARM_SANDBOXES - 1,
        "taken from the pool"
    );
    assert_eq!(network.known_pods(), ["test-pod-uid-0002"]);
    assert_reachable(&sandbox);

    // Refilled, and removing the pod removes the veth it took.
    let deadline = Instant::now() + Duration::from_secs(30);
    while network.warm_count() < WARM_SANDBOXES {
        assert!(Instant::now() < deadline, "the pool was not refilled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(links().matches("ppwarm").count(), warm_links + 1);
    network.remove("test-pod-uid-0002").await;
    assert!(!sandbox.net.exists() && !sandbox.ipc.exists());
    assert!(network.known_pods().is_empty());
    assert_eq!(links().matches("ppwarm").count(), warm_links);
}
