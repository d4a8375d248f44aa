//! What the control plane and the node both use: the watch layer, event
//! recording, pacing, telemetry, TLS serving, quantities, token checks,
//! the names and wire types they agree on.

pub mod conn;
pub mod events;
pub mod knative;
pub mod pace;
pub mod private;
pub mod quantity;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod token;
pub mod watch;
pub mod wire;
