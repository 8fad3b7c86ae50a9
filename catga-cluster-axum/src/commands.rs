//! Typed commands forwarded to the leader: the server side of
//! `catga_cluster_tower::JsonForwarder`.
//!
//! A [`CommandRegistry`] maps command names to typed handlers, each a tower
//! [`Service`] from a deserialisable request to a serialisable response.
//! `POST /cluster/forward/{command}` decodes the JSON body into the
//! handler's request type (a body that does not decode answers
//! `bad-request`), calls it, and answers its response as JSON; a handler
//! error becomes a problem response (fail with a [`Problem`] to choose the
//! status). An unknown command answers `not-found`.
//!
//! The route serves on the leader. On any other node it forwards the
//! request to the leader like any forwarding route (a request that arrives
//! already forwarded is refused with `hop-limit` instead), so register the
//! **leader-side** service here, not a forwarding stack.
//!
//! ```
//! use catga_cluster_axum::commands::CommandRegistry;
//! use tower::service_fn;
//!
//! #[derive(serde::Deserialize)]
//! struct CreateOrder { customer: String }
//! #[derive(serde::Serialize)]
//! struct OrderCreated { id: u64 }
//!
//! let mut commands = CommandRegistry::new();
//! commands
//!     .register(
//!         "create-order",
//!         service_fn(|cmd: CreateOrder| async move {
//!             let _ = cmd.customer;
//!             Ok::<_, std::convert::Infallible>(OrderCreated { id: 1 })
//!         }),
//!     )
//!     .unwrap();
//! assert_eq!(commands.names().collect::<Vec<_>>(), ["create-order"]);
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use catga_cluster_core::BoxError;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::problem::Problem;
use crate::response::json;

/// The longest command name, in bytes.
pub const MAX_COMMAND_NAME_LEN: usize = 128;

type Handler = BoxCloneSyncService<Bytes, Response, Infallible>;

/// Why a command could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty, too long, or has characters other than ASCII
    /// letters, digits, `-`, `_` and `.`.
    #[error("invalid command name `{0}`: use 1 to 128 ASCII letters, digits, `-`, `_` or `.`")]
    InvalidName(String),
    /// A handler is registered under this name already.
    #[error("a command named `{0}` is registered already")]
    Duplicate(String),
}

/// Typed command handlers by name; see the [module docs](self). Cloning
/// shares the handlers.
#[derive(Clone, Default)]
pub struct CommandRegistry {
    handlers: BTreeMap<String, Handler>,
}

impl fmt::Debug for CommandRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandRegistry")
            .field("commands", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_COMMAND_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl CommandRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        CommandRegistry::default()
    }

    /// Registers `service` under `name`.
    ///
    /// The service is cloned per request and driven to readiness before it
    /// is called.
    pub fn register<Req, Resp, S>(
        &mut self,
        name: impl Into<String>,
        service: S,
    ) -> Result<&mut Self, RegisterError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        S: Service<Req, Response = Resp> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let name = name.into();
        if !valid_name(&name) {
            return Err(RegisterError::InvalidName(name));
        }
        if self.handlers.contains_key(&name) {
            return Err(RegisterError::Duplicate(name));
        }
        let handler = tower::service_fn(move |body: Bytes| {
            let service = service.clone();
            async move {
                let request: Req = match serde_json::from_slice(&body) {
                    Ok(request) => request,
                    Err(e) => {
                        return Ok::<_, Infallible>(
                            Problem::bad_request(format!("the command does not decode: {e}"))
                                .into_response(),
                        )
                    }
                };
                Ok(match service.oneshot(request).await {
                    Ok(answer) => json(StatusCode::OK, &answer),
                    Err(error) => Problem::from_error(error.into().as_ref()).into_response(),
                })
            }
        });
        self.handlers
            .insert(name, BoxCloneSyncService::new(handler));
        Ok(self)
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Whether no command is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Runs the command `name` on `body`.
    pub(crate) async fn dispatch(&self, name: &str, body: Bytes) -> Response {
        match self.handlers.get(name) {
            Some(handler) => match handler.clone().oneshot(body).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            None => Problem::not_found(format!("no command named `{name}` is registered"))
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let mut r = CommandRegistry::new();
        let svc = tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) });
        assert!(r.register("a-b_c.1", svc).is_ok());
        assert_eq!(
            r.register("a-b_c.1", svc).unwrap_err(),
            RegisterError::Duplicate("a-b_c.1".into())
        );
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(matches!(
                r.register(bad, svc),
                Err(RegisterError::InvalidName(_))
            ));
        }
    }
}
