//! `serve` on real sockets without Raft: connection info for protected
//! routes, graceful shutdown, and a listener with a handshake (as TLS
//! would do) that slow clients cannot block.

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use catga_cluster_axum::{serve, ClusterRoutes, HandshakeListener, ShutdownHook};
use catga_cluster_core::testing::ManualCoordinator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// Sends one HTTP/1.1 request on `stream` and reads the whole answer.
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends one raw HTTP/1.1 request on a new connection and reads the
/// answer until the server closes it.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The cluster routes' router, and the hook `serve` runs on shutdown.
fn app() -> (Router, ShutdownHook) {
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
    (routes.mount(Router::new()), routes.shutdown_hook())
}

#[tokio::test]
async fn serve_gives_routes_the_peer_address_and_stops_on_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, hook) = app();
    let server = tokio::spawn(async move {
        serve(listener, app, hook, async {
            let _ = stopped.await;
        })
        .await
    });

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut stream, "/health/ready").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-catga-served-by: 1"), "{answer}");
    // A protected route sees a loopback peer: no secret needed.
    let raw = |host: &str, extra: &str| {
        format!(
            "POST /cluster/forward/none HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\n{{}}"
        )
    };
    let answer = raw_exchange(addr, &raw(&addr.to_string(), "")).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("\"type\":\"not-found\""), "{answer}");
    // A DNS-rebinding page reaches the loopback listener under its own host
    // name; a cross-site page sends its Origin. Both are refused.
    for request in [
        raw("rebound.example:80", ""),
        raw("localhost", "origin: https://evil.example\r\n"),
    ] {
        let answer = raw_exchange(addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("\"type\":\"forbidden\""), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
    // A form post from a page is not JSON.
    let form = format!(
        "POST /cluster/forward/none HTTP/1.1\r\nhost: {addr}\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    let answer = raw_exchange(addr, &form).await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(answer.contains("unsupported-media-type"), "{answer}");

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn handshakes_run_concurrently_and_failures_drop_the_connection() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    // A stand-in for a TLS handshake: the client must send `HELO` first.
    let listener = HandshakeListener::new(tcp, |mut stream: TcpStream| async move {
        let mut hello = [0u8; 4];
        stream.read_exact(&mut hello).await?;
        if &hello != b"HELO" {
            return Err(std::io::Error::other("not a hello"));
        }
        Ok(stream)
    })
    .unwrap()
    .handshake_timeout(Duration::from_secs(30));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, hook) = app();
    let server = tokio::spawn(async move {
        serve(listener, app, hook, async {
            let _ = stopped.await;
        })
        .await
    });

    // A client that connects and never finishes its handshake...
    let _stalled = TcpStream::connect(addr).await.unwrap();
    // ...and one that fails it...
    let mut rude = TcpStream::connect(addr).await.unwrap();
    rude.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, rude.read_to_end(&mut buf))
        .await
        .expect("the failed handshake closes the connection");
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
    // ...do not keep a well-behaved client waiting.
    let mut polite = TcpStream::connect(addr).await.unwrap();
    polite.write_all(b"HELO").await.unwrap();
    let answer = exchange(&mut polite, "/health/live").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// A `HandshakeListener` keeps accepting after its first connection (it
/// once dropped its accept loop on the second `accept`, so a node served
/// one connection and then refused every other).
#[tokio::test]
async fn a_handshake_listener_serves_connection_after_connection() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener =
        catga_cluster_axum::HandshakeListener::new(
            tcp,
            |io| async move { Ok::<_, std::io::Error>(io) },
        )
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, hook) = app();
    let server = tokio::spawn(async move {
        serve(listener, app, hook, async {
            let _ = stopped.await;
        })
        .await
    });
    for _ in 0..5 {
        let request =
            format!("GET /health/live HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        let answer = raw_exchange(addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// The hook given to `serve` runs whatever the router does with requests:
/// here every request is refused by a layer of the application.
#[tokio::test]
async fn the_shutdown_hook_runs_whatever_the_router_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
    let app = routes.mount(Router::new()).layer(axum::middleware::from_fn(
        |_: axum::extract::Request, _: axum::middleware::Next| async {
            http::StatusCode::FORBIDDEN
        },
    ));
    let hook = routes.shutdown_hook();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        serve(listener, app, hook.clone(), async {
            let _ = stopped.await;
        })
        .into_future(),
    );
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(
        hook.is_draining(),
        "readiness turned 503 before the server stopped"
    );
}

/// What one keep-alive client saw while the server drained.
#[derive(Debug, Default)]
struct ClientTally {
    answered: u64,
    /// Requests sent on a connection that had served an answer before
    /// (a reused keep-alive connection) that got no answer.
    failed: Vec<String>,
    /// First requests of a fresh connection that got no answer: the kernel
    /// resets a connect that completes just as the listening socket closes
    /// (nothing the server can avoid while a client reconnects in a tight
    /// loop to a node that drains).
    failed_fresh: Vec<String>,
    /// A connect failed (refused): nothing was sent.
    refused: bool,
    /// Answers that asked to close the connection.
    told_to_close: u64,
}

/// A client that keeps one keep-alive connection busy, opens a new one
/// when the server closed it after an answer, and stops at the first
/// refused connect (where a real client would try another node).
async fn keep_alive_client(
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> ClientTally {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let mut tally = ClientTally::default();
    while !*stop.borrow() {
        let stream = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            // The connect failed: nothing was sent.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                tally.refused = true;
                return tally;
            }
            Err(e) => panic!("connect: {e}"),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut reused = false;
        while !*stop.borrow() {
            if sender.ready().await.is_err() {
                // Closed by the server after an answer: open another.
                break;
            }
            let request = http::Request::get("/health/live")
                .header(http::header::HOST, addr.to_string())
                .body(Empty::new())
                .unwrap();
            match sender.send_request(request).await {
                Ok(response) => {
                    let close = response
                        .headers()
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v == "close");
                    match response.into_body().collect().await {
                        Ok(_) => tally.answered += 1,
                        Err(e) => tally.failed.push(format!("body: {e}")),
                    }
                    reused = true;
                    if close {
                        tally.told_to_close += 1;
                        break;
                    }
                }
                Err(e) if reused => {
                    tally.failed.push(format!("{e:?}"));
                    break;
                }
                Err(e) => {
                    tally.failed_fresh.push(format!("{e:?}"));
                    break;
                }
            }
        }
    }
    tally
}

/// A drain under keep-alive load fails no request on a kept-alive
/// connection: during the drain every answer says `Connection: close`, the
/// listener keeps accepting for the drain delay, then refuses connects
/// (nothing sent), and no connection is closed under a request that was
/// already on its way. Clients here reconnect in a tight loop to the
/// draining node, the worst case: a connect that completes in the instant
/// the socket closes is reset by the kernel, so a first request on a fresh
/// connection may fail then (the socket's queue is reset or closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_keep_alive_load_fails_no_request() {
    for round in 0..5 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (app, hook) = app();
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            serve(listener, app, hook, async {
                let _ = server_stopped.await;
            })
            .drain_delay(catga_cluster_axum::serve::DEFAULT_DRAIN_DELAY)
            .into_future(),
        );
        let (stop_clients, clients_stop) = tokio::sync::watch::channel(false);
        let clients: Vec<_> = (0..16)
            .map(|_| tokio::spawn(keep_alive_client(addr, clients_stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop_server.send(()).unwrap();
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        stop_clients.send(true).unwrap();
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let mut answered = 0;
        let mut told_to_close = 0;
        let mut failed_fresh = Vec::new();
        for client in clients {
            let tally = tokio::time::timeout(DEADLINE, client)
                .await
                .expect("the client ends")
                .unwrap();
            assert!(
                tally.failed.is_empty(),
                "round {round}: requests failed during the drain: {:?}",
                tally.failed
            );
            answered += tally.answered;
            told_to_close += tally.told_to_close;
            failed_fresh.extend(tally.failed_fresh);
        }
        // At most one per client: the next connect is refused.
        assert!(
            failed_fresh.len() <= 16,
            "round {round}: first requests on fresh connections failed: {failed_fresh:?}"
        );
        assert!(
            answered > 0 && told_to_close > 0,
            "round {round}: {answered} answered, {told_to_close} told to close"
        );
    }
}
