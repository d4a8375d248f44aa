//! Names the control plane's Knative controllers and the nodes' activator
//! agree on.

/// Set on the public Service of a function that may scale to zero: the
/// nodes send its traffic to their activator while it has no endpoint.
pub const ACTIVATOR_ANNOTATION: &str = "peapod.dev/activator";
/// The Deployment the activator scales up from zero.
pub const SCALE_TARGET_ANNOTATION: &str = "peapod.dev/scale-target";
