//! Orders: the HTTP handlers and their storage in the replicated key-value
//! store.
//!
//! An order lives under `orders/{id}` as JSON. `POST /orders` runs on the
//! leader (the router forwards it there from any node); reads run on any
//! node and are linearizable.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use catga_cluster_core::protocol::problem as slug;
use catga_cluster_core::{ClusterCoordinator, ClusterError};
use catga_cluster_raft::{CasOutcome, RaftNode};
use catga_cluster_tower::problem::Problem;
use serde::{Deserialize, Serialize};

/// The key prefix of orders in the key-value store.
pub const ORDER_PREFIX: &str = "orders/";

/// The most orders `GET /orders` returns.
pub const LIST_LIMIT: usize = 1000;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Accepted, waiting for the outbox.
    Pending,
    /// Handled by the outbox, exactly once.
    Processed,
}

/// How the outbox handled an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processing {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The node whose outbox handled it.
    pub by_node: u64,
    /// The leadership fence of that outbox run: term …
    pub fence_term: u64,
    /// … and log index.
    pub fence_index: u64,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub id: String,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<OrderItem>,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The node that accepted it (the leader then).
    pub accepted_by: u64,
    /// How the outbox handled it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub processing: Option<Processing>,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders.
    pub customer: String,
    /// What.
    pub items: Vec<OrderItem>,
}

/// The shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// This node.
    pub node: RaftNode,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn bad_request(detail: impl Into<String>) -> Response {
    problem(Problem::new(
        StatusCode::BAD_REQUEST,
        slug::BAD_REQUEST,
        "Bad request",
        detail,
    ))
}

fn not_found(id: &str) -> Response {
    problem(Problem::new(
        StatusCode::NOT_FOUND,
        slug::NOT_FOUND,
        "No such order",
        format!("there is no order `{id}`"),
    ))
}

fn problem(p: Problem) -> Response {
    p.into_response::<axum::body::Body>()
}

fn cluster_error(e: &ClusterError) -> Response {
    problem(Problem::from_error(e))
}

impl NewOrder {
    fn validate(&self) -> Result<(), String> {
        let customer = self.customer.trim();
        if customer.is_empty() || customer.chars().count() > 200 {
            return Err("`customer` must be 1 to 200 characters".into());
        }
        if self.items.is_empty() || self.items.len() > 100 {
            return Err("`items` must hold 1 to 100 lines".into());
        }
        for (i, item) in self.items.iter().enumerate() {
            if item.sku.trim().is_empty() || item.sku.len() > 64 {
                return Err(format!("`items[{i}].sku` must be 1 to 64 characters"));
            }
            if item.quantity == 0 || item.quantity > 10_000 {
                return Err(format!("`items[{i}].quantity` must be 1 to 10000"));
            }
        }
        Ok(())
    }
}

/// An order id from an `Idempotency-Key`, or a fresh time-ordered one.
fn order_id(headers: &HeaderMap) -> Result<String, String> {
    match headers.get("idempotency-key") {
        None => Ok(format!("{:013}-{:08x}", now_ms(), fastrand::u32(..))),
        Some(key) => {
            let key = key
                .to_str()
                .map_err(|_| "the Idempotency-Key header must be visible ASCII".to_owned())?;
            let valid = !key.is_empty()
                && key.len() <= 100
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(
                    "the Idempotency-Key header must be 1 to 100 letters, digits, `-`, `_` or `.`"
                        .to_owned(),
                );
            }
            Ok(format!("idem-{key}"))
        }
    }
}

fn created(order: &Order, status: StatusCode) -> Response {
    let mut response = (status, Json(order)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `POST /orders`: accepts an order (on the leader).
pub async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(body) => body,
        // 415 (not JSON), 413 (too large), 400/422 (malformed): the
        // rejection keeps its status; the application's
        // ProblemResponsesLayer makes it a problem document.
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(reason) = new.validate() {
        return bad_request(reason);
    }
    let id = match order_id(&headers) {
        Ok(id) => id,
        Err(reason) => return bad_request(reason),
    };
    let order = Order {
        id: id.clone(),
        customer: new.customer.trim().to_owned(),
        items: new.items,
        status: OrderStatus::Pending,
        created_at_ms: now_ms(),
        accepted_by: state.node.node().id.get(),
        processing: None,
    };
    let value = match serde_json::to_vec(&order) {
        Ok(v) => v,
        Err(e) => return bad_request(e.to_string()),
    };
    let key = format!("{ORDER_PREFIX}{id}");
    // Only if absent: a retry with the same Idempotency-Key finds the first
    // order instead of creating a second one.
    match state.node.compare_and_set(&key, 0, value).await {
        Ok(CasOutcome::Written(_)) => {
            tracing::info!(order_id = %id, customer = %order.customer, "order accepted");
            created(&order, StatusCode::CREATED)
        }
        Ok(CasOutcome::Mismatch(_)) => match state.node.get(&key).await {
            Ok(Some(existing)) => match serde_json::from_slice::<Order>(&existing.value) {
                Ok(existing) => created(&existing, StatusCode::OK),
                Err(e) => bad_request(format!("the stored order does not decode: {e}")),
            },
            Ok(None) => not_found(&id),
            Err(e) => cluster_error(&e),
        },
        Err(e) => cluster_error(&e),
    }
}

/// `GET /orders/{id}`: one order, linearizable, on any node.
pub async fn get_order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 200 {
        return bad_request("the order id must be 1 to 200 characters");
    }
    match state.node.get(&format!("{ORDER_PREFIX}{id}")).await {
        Ok(Some(v)) => match serde_json::from_slice::<Order>(&v.value) {
            Ok(order) => Json(order).into_response(),
            Err(e) => bad_request(format!("the stored order does not decode: {e}")),
        },
        Ok(None) => not_found(&id),
        Err(e) => cluster_error(&e),
    }
}

/// Every stored order with its revision, oldest key first.
pub async fn load_orders(node: &RaftNode) -> Result<Vec<(Order, u64)>, ClusterError> {
    let entries = node.list(ORDER_PREFIX, LIST_LIMIT).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(key, v)| match serde_json::from_slice::<Order>(&v.value) {
            Ok(order) => Some((order, v.revision)),
            Err(e) => {
                tracing::warn!(%key, error = %e, "skipping an order that does not decode");
                None
            }
        })
        .collect())
}

/// `GET /orders`: all orders, newest first, linearizable, on any node.
pub async fn list_orders(State(state): State<AppState>) -> Response {
    match load_orders(&state.node).await {
        Ok(orders) => {
            let mut orders: Vec<Order> = orders.into_iter().map(|(o, _)| o).collect();
            orders.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
            Json(orders).into_response()
        }
        Err(e) => cluster_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut order = NewOrder {
            customer: "alice".into(),
            items: vec![OrderItem {
                sku: "A-1".into(),
                quantity: 2,
            }],
        };
        assert!(order.validate().is_ok());
        order.items[0].quantity = 0;
        assert!(order.validate().unwrap_err().contains("items[0].quantity"));
        order.items.clear();
        assert!(order.validate().unwrap_err().contains("items"));
        order.customer = " ".into();
        assert!(order.validate().unwrap_err().contains("customer"));
    }

    #[test]
    fn idempotency_keys_make_stable_ids() {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_static("abc-123"));
        assert_eq!(order_id(&headers).unwrap(), "idem-abc-123");
        headers.insert("idempotency-key", HeaderValue::from_static("no spaces"));
        assert!(order_id(&headers).is_err());
        let fresh = order_id(&HeaderMap::new()).unwrap();
        assert_eq!(fresh.len(), 13 + 1 + 8);
    }
}
