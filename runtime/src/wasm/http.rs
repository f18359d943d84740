//! Serving a `wasi:http/proxy` component, as `wasmtime serve` does: an
//! HTTP/1.1 server on an address of the container's network namespace,
//! each request handled by a fresh instance of the pre-instantiated
//! component, in a store of its own held to the guest's limits.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use wasmtime::Engine;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use super::component::{Ctx, Linked};
use super::{new_store, stop_signal, Guest, Limits};

/// The container env variable naming the address to listen on, as
/// runwasi's wasmtime shim reads it.
pub(crate) const ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";
/// Where `wasmtime serve` listens unless told otherwise.
const DEFAULT_ADDR: &str = "0.0.0.0:8080";
/// How often the accept loop looks for a stop signal.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// What every request's handler needs.
struct Server {
    engine: Engine,
    pre: ProxyPre<Ctx>,
    guest: Guest,
    limits: Limits,
}

/// An HTTP/1.0 request may come without a Host header, which wasi:http
/// needs (the request's authority): the address it came to stands in.
fn ensure_host<B>(req: &mut hyper::Request<B>, local: SocketAddr) {
    if req.uri().authority().is_none() && !req.headers().contains_key(hyper::header::HOST) {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&local.to_string()) {
            req.headers_mut().insert(hyper::header::HOST, v);
        }
    }
}

/// Serves until a signal stops the container; returns 128+signal then.
/// Fails when the address is bad or taken.
pub(super) fn serve(
    engine: &Engine,
    linked: &Linked,
    guest: &Guest,
    limits: Limits,
) -> wasmtime::Result<i32> {
    let Linked::Http(pre, uses_fs) = linked else {
        wasmtime::bail!("not a wasi:http proxy component");
    };
    let mut guest = guest.clone();
    if !*uses_fs {
        guest.grants.preopens.clear();
    }
    let addr = listen_addr(&guest)?;
    // Worker threads start only now, after the init's seccomp filter, so
    // they run under it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .enable_all()
        .build()?;
    let server = Arc::new(Server {
        engine: engine.clone(),
        pre: pre.clone(),
        guest,
        limits,
    });
    let result = rt.block_on(accept_loop(server, addr));
    // The process exits next: tearing the runtime down is waste.
    std::mem::forget(rt);
    result
}

/// The address from the guest's env, else the annotation's, else
/// 0.0.0.0:8080.
fn listen_addr(guest: &Guest) -> wasmtime::Result<SocketAddr> {
    let Some((_, addr)) = guest.env.iter().find(|(k, _)| k == ADDR_ENV) else {
        return Ok(guest
            .grants
            .http_listen
            .unwrap_or_else(|| DEFAULT_ADDR.parse().expect("an address")));
    };
    addr.parse()
        .map_err(|_| wasmtime::format_err!("{ADDR_ENV}={addr}: not an IP address and port"))
}

async fn accept_loop(server: Arc<Server>, addr: SocketAddr) -> wasmtime::Result<i32> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| wasmtime::format_err!("cannot listen on {addr}: {e}"))?;
    let _ = writeln!(
        std::io::stderr(),
        "Serving HTTP on http://{}/",
        listener.local_addr()?
    );
    let mut tick = tokio::time::interval(SIGNAL_POLL);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                // A failed accept (the peer gone, fds exhausted) ends
                // that connection, not the server.
                let Ok((conn, _)) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let Ok(local) = conn.local_addr() else { continue };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |mut req| {
                        let server = server.clone();
                        ensure_host(&mut req, local);
                        async move { server.handle(req).await }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
            _ = tick.tick() => {
                if let Some(sig) = stop_signal() {
                    return Ok(128 + sig);
                }
            }
        }
    }
}

impl Server {
    /// One request: a new instance's `wasi:http/incoming-handler.handle`.
    /// The handler runs as a task of its own, so it may stream the body on
    /// after it has set the response.
    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        let wasi = self
            .guest
            .builder(false)
            .map_err(wasmtime::Error::msg)?
            .build();
        let mut store = new_store(
            &self.engine,
            Ctx::new(wasi, self.limits, self.guest.grants.http_outgoing.clone()),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let pre = self.pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(wasmtime::format_err!("the handler failed: {code:?}")),
            // The outparam went unset: the task says why.
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => wasmtime::format_err!("the handler set no response"),
                    Ok(Err(e)) => e,
                    Err(e) => wasmtime::Error::msg(e.to_string()),
                };
                let _ = writeln!(std::io::stderr(), "amphi: {}", super::describe_trap(&e));
                Err(e)
            }
        }
    }
}
