//! The HTTP server: accept loop, graceful shutdown, body limits, and the
//! one place where results and errors become responses.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::ApiError;
use crate::registry::Registry;

mod handlers;
pub mod routes;

/// How long a client may take to send a request's headers (and an idle
/// keep-alive connection may wait for its next request) before the
/// connection is closed: a bound on connections held open by slow clients.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every request handler shares.
pub struct App {
    /// The databases.
    pub registry: Registry,
    /// The configuration read at start-up.
    pub config: Arc<Config>,
    /// Set once shutdown has begun: new data-plane work is refused.
    pub shutting_down: AtomicBool,
}

/// A successful answer: status and JSON body.
pub struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(body).expect("answers always serialize"),
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, then drains
/// in-flight requests for at most the configured grace and closes every
/// session pool.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(app, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    app.shutting_down.store(true, Ordering::SeqCst);
    let grace = std::time::Duration::from_millis(app.config.shutdown_grace_ms);
    tracing::info!(
        connections = graceful.count(),
        ?grace,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    app.registry.close_all().await;
    tracing::info!("shut down");
    Ok(())
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = routes::route(&method, req.uri().path());
    let label = route.as_ref().map(|r| r.label()).unwrap_or("unrouted");
    let db = route
        .as_ref()
        .ok()
        .and_then(|r| r.db())
        .map(str::to_owned)
        .unwrap_or_default();
    let result = match route {
        Ok(route) => handlers::dispatch(&app, route, req).await,
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(reply) => respond(reply.status, reply.body),
        Err(e) => error_response(&e),
    };
    tracing::info!(
        method = %method,
        route = label,
        db = %db,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The one place an error becomes a response.
fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let parts = e.parts();
    let body = serde_json::to_vec(&e.body()).expect("error bodies serialize");
    let mut response = respond(parts.status, body);
    if let Some(secs) = parts.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let ApiError::MethodNotAllowed { allow } = e {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// Reads the whole body, refusing more than `limit` bytes without reading
/// them (413). `None` when the body is empty.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Option<Bytes>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::MalformedJson(format!("the body could not be read: {e}"))
            }
        })?
        .to_bytes();
    Ok((!body.is_empty()).then_some(body))
}

/// Parses a JSON body: not JSON is a 400, JSON of the wrong shape a 422.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::Validation(format!("Invalid request body: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedJson(e.to_string())
            }
        }
    })
}
