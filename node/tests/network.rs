//! Pod networking against the real kernel (needs root): a sandbox gets a
//! namespace, an address reachable from the host, and leaves nothing
//! behind when removed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use peapod_node::network::{Network, NetworkConfig, netns};

/// Unique names per test run, so parallel runs do not collide.
fn unique() -> String {
    format!("{:x}", std::process::id() & 0xfffff)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_is_reachable_and_leaves_nothing_behind() {
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let bridge = format!("pt{id}");
    let chain = format!("PEAPOD-TEST-{id}");
    // A /24 from an unusual range, unlikely to meet anything on the host.
    let third = std::process::id() % 200 + 20;
    let config = NetworkConfig {
        run_dir: dir.path().join("run"),
        state_dir: dir.path().join("state"),
        bridge: bridge.clone(),
        pod_cidr: format!("10.233.{third}.0/24").parse().unwrap(),
        cluster_cidr: "10.233.0.0/16".parse().unwrap(),
        chain: chain.clone(),
    };
    let network = Network::start(config).await.unwrap();
    struct Cleanup<'a>(&'a Network);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            // The netlink connection lives on the test's runtime: block in
            // place so its other worker keeps driving it.
            let n = self.0;
            let _ = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(n.teardown())
            });
        }
    }
    let _cleanup = Cleanup(&network);

    let sandbox = network.create("test-pod-uid-0001", "web-0").await.unwrap();
    // A server inside the pod's namespace answers on the pod address.
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
    // The hostname was set in the pod's UTS namespace.
    assert!(sandbox.uts.exists());

    network.remove("test-pod-uid-0001").await;
    assert!(!sandbox.net.exists());
    assert!(network.known_pods().is_empty());
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&peapod_node::network::links::host_interface(
            "test-pod-uid-0001"
        ))
    );
}
