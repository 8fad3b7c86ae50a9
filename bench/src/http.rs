//! The HTTP client of the load generator: hyper's pooled HTTP/1.1 client
//! with keep-alive, and the outcome of one request as the scenarios count it.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// A pooled keep-alive HTTP/1.1 client.
pub(crate) type Client = HyperClient<HttpConnector, Full<Bytes>>;

/// A client that keeps up to `idle` connections per host open.
pub(crate) fn client(idle: usize) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// How one request ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An answer with this status and body.
    Answer(StatusCode, Bytes),
    /// The connection could not be made (refused, or no route): the request
    /// was never sent, so a client may safely send it elsewhere.
    NotSent,
    /// The request may have been sent but no answer came: a broken or reset
    /// connection, or the deadline passed.
    Lost(String),
}

impl Outcome {
    /// The body of a 2xx answer.
    pub(crate) fn ok(self) -> Result<Bytes, String> {
        match self {
            Outcome::Answer(status, body) if status.is_success() => Ok(body),
            Outcome::Answer(status, body) => Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Outcome::NotSent => Err("connection refused".into()),
            Outcome::Lost(reason) => Err(reason),
        }
    }
}

/// Sends one request to `http://{authority}{path}` and reads the whole
/// answer, within `deadline`.
pub(crate) async fn send(
    client: &Client,
    method: Method,
    authority: &str,
    path: &str,
    content_type: Option<&'static str>,
    body: Bytes,
    deadline: Duration,
) -> Outcome {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"));
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(e) => return Outcome::Lost(format!("bad request: {e}")),
    };
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Outcome::NotSent,
            Err(e) => return Outcome::Lost(format!("request failed: {e}")),
        };
        let status = response.status();
        match response.into_body().collect().await {
            Ok(body) => Outcome::Answer(status, body.to_bytes()),
            Err(e) => Outcome::Lost(format!("answer broken: {e}")),
        }
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Lost(format!("no answer within {deadline:?}")),
    }
}
