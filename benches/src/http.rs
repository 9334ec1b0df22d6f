//! HTTP/1.1 over keep-alive connections, with hyper's low-level client: one
//! TCP connection per caller, requests back to back on it, nothing pooled or
//! hidden in between. Also a small JSON client for the set-up calls.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::load::Caller;

/// A server to send requests to: only loopback addresses are accepted, since
/// load may only ever go to this machine.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value (`127.0.0.1:PORT`).
    pub host: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT` (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let host = rest.trim_end_matches('/');
        if host.contains('/') {
            return Err(format!("{url}: give the server's root URL, without a path"));
        }
        let host = host.replacen("localhost", "127.0.0.1", 1);
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| format!("{url}: want http://IP:PORT ({e})"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("{url}: refusing a non-loopback target"));
        }
        Ok(Target { addr, host })
    }

    /// Opens one keep-alive HTTP/1.1 connection.
    pub async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {}: {e}", self.addr))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Builds a request for `path` with an optional JSON body.
    pub fn request(&self, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host);
        if !body.is_empty() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body))
            .expect("static request parts are valid")
    }
}

/// Sends one request on `sender` and reads the whole answer.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// One request of a load run: method, path (with query) and body.
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// Origin-form path, e.g. `/api/db/x/query`.
    pub path: String,
    /// The request body; empty for none.
    pub body: Bytes,
}

/// Makes the next request of a run from the caller's random source.
pub type CallMaker = Arc<dyn Fn(&mut fastrand::Rng) -> Call + Send + Sync>;

/// A load-run caller: one keep-alive connection, reopened if it breaks.
pub struct HttpCaller {
    /// Where to send.
    target: Target,
    /// The open connection, if any.
    sender: Option<SendRequest<Full<Bytes>>>,
    /// What to send next.
    make: CallMaker,
    /// Per-caller random source (keys, mix choices), seeded per caller.
    rng: fastrand::Rng,
    /// A byte string every successful answer must contain, so that a server
    /// answering fast with the wrong thing does not count.
    expect: Option<&'static [u8]>,
}

impl HttpCaller {
    /// `n` callers against `target`, each with its own seed.
    pub fn many(
        target: &Target,
        n: usize,
        make: CallMaker,
        expect: Option<&'static [u8]>,
    ) -> Vec<HttpCaller> {
        (0..n)
            .map(|i| HttpCaller {
                target: target.clone(),
                sender: None,
                make: make.clone(),
                rng: fastrand::Rng::with_seed(0x5eed_0000 + i as u64),
                expect,
            })
            .collect()
    }
}

impl Caller for HttpCaller {
    async fn call(&mut self) -> Result<(), String> {
        let sender = match &mut self.sender {
            Some(s) => s,
            None => self.sender.insert(self.target.connect().await?),
        };
        let c = (self.make)(&mut self.rng);
        let req = self.target.request(c.method, &c.path, c.body);
        let (status, body) = match send(sender, req).await {
            Ok(x) => x,
            Err(e) => {
                self.sender = None;
                return Err(e);
            }
        };
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        if let Some(want) = self.expect {
            if !contains(&body, want) {
                return Err(format!(
                    "answer lacks {:?}: {}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
        }
        Ok(())
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A JSON client for set-up and tear-down calls (one connection, reopened on
/// failure).
pub struct JsonClient {
    /// Where to send.
    pub target: Target,
    /// The open connection, if any.
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl JsonClient {
    /// A client that connects on first use.
    pub fn new(target: &Target) -> JsonClient {
        JsonClient {
            target: target.clone(),
            sender: None,
        }
    }

    /// Sends a request and parses the answer as JSON (`Null` when empty or
    /// not JSON).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = self.target.request(method, path, bytes);
        let sender = match &mut self.sender {
            Some(s) => s,
            None => self.sender.insert(self.target.connect().await?),
        };
        match send(sender, req).await {
            Ok((status, body)) => {
                Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
            }
            Err(e) => {
                self.sender = None;
                Err(e)
            }
        }
    }

    /// Like [`JsonClient::call`], but any status outside 2xx is an error.
    pub async fn ok(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!("{method} {path}: HTTP {status}: {v}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse("http://127.0.0.1:8080").is_ok());
        assert!(Target::parse("http://localhost:8080/").is_ok());
        assert!(Target::parse("http://[::1]:80").is_ok());
        assert!(Target::parse("http://10.0.0.1:8080").is_err());
        assert!(Target::parse("http://127.0.0.1:8080/api").is_err());
        assert!(Target::parse("https://127.0.0.1:8080").is_err());
    }

    #[test]
    fn contains_finds_substrings() {
        assert!(contains(b"{\"data\":[{", b"data\":[{"));
        assert!(!contains(b"{\"data\":[]}", b"data\":[{"));
    }
}
