//! Names the control plane's Knative controllers and the nodes' activator
//! agree on.

/// Set on the public Service of a function that may scale to zero: the
/// nodes send its traffic to their activator while it has no endpoint.
pub const ACTIVATOR_ANNOTATION: &str = "peapod.dev/activator";
/// The Deployment the activator scales up from zero.
pub const SCALE_TARGET_ANNOTATION: &str = "peapod.dev/scale-target";

/// On a pod of an HTTP function: the most requests one instance of each
/// Wasm container serves at once (a Revision's `containerConcurrency`);
/// more wait for one to finish.
pub const CONCURRENCY_ANNOTATION: &str = "peapod.dev/container-concurrency";
/// On a pod of an HTTP function: a request of a Wasm container still
/// running after this many seconds is cancelled (a Revision's
/// `timeoutSeconds`).
pub const REQUEST_TIMEOUT_ANNOTATION: &str = "peapod.dev/request-timeout-seconds";
/// Knative's default `timeoutSeconds`, and its maximum.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 300;
pub const MAX_REQUEST_TIMEOUT_SECONDS: u64 = 600;
