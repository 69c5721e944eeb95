//! The webhook router, in process with `oneshot` over the in-memory ports, and served
//! on a local listener where a test needs a real connection.

mod auth;
mod bodies;
mod messages;
mod operations;

use serde_json::Value;

use crate::serve_support::customer_json;

/// The customer most tests send: an email with spaces and capitals to clean.
fn ada() -> Value {
    customer_json("c1", 1, Some(" Ada@Example.COM "))
}
