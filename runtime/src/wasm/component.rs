//! WASI 0.2 components: which world a component serves, the host's
//! interfaces linked for it (wasmtime-wasi's p2 with sockets, and
//! wasi:http), and running a `wasi:cli/command`.

use std::path::Path;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::http_outgoing::Outgoing;

use super::cache::{process_engine, Kind};
use super::{new_store, one_line, stop_signal, Limited, Limits};
use crate::{Error, Result};

/// The export that makes a component a `wasi:cli/command`.
const RUN: &str = "wasi:cli/run@0.2";
/// The export that makes a component a `wasi:http/proxy`.
const HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// A component's store data: its WASI and wasi:http contexts, their
/// shared resource table, the guest's limits and its outgoing policy.
pub(super) struct Ctx {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: Limits,
    hooks: Hooks,
}

impl Ctx {
    pub(super) fn new(wasi: WasiCtx, limits: Limits, outgoing: Outgoing) -> Ctx {
        Ctx {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            hooks: Hooks { outgoing },
        }
    }
}

/// wasi:http's default behaviour, with outgoing requests held to the
/// container's policy (`io.amphi.wasm.http-outgoing`).
struct Hooks {
    outgoing: Outgoing,
}

type Io = Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: ::http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Io,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(::http::Response<WasiBody>, Io)>,
            > + Send,
    > {
        let uri = request.uri();
        let https = uri.scheme() == Some(&::http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !uri.host().is_some_and(|h| self.outgoing.allows(h, port)) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Io))
        })
    }
}

impl Limited for Ctx {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A component with its imports resolved, by the world it serves.
pub(super) enum Linked {
    Command(CommandPre<Ctx>),
    /// With whether it imports the filesystem: a `wasi:http/proxy`
    /// proper does not, and then no request pays for opening preopens.
    Http(ProxyPre<Ctx>, bool),
}

/// Everything a component may import: WASI 0.2 (cli, whose
/// `exit-with-code` lets a p1 program's `proc_exit(42)` exit 42,
/// filesystem, sockets, clocks, random, io) and wasi:http.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<Ctx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// The world `component` serves, once the host is known to provide every
/// import it has: else one line naming the interface that is missing.
pub(super) fn check(engine: &Engine, component: &Component) -> std::result::Result<Kind, String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let kind = if exports.iter().any(|n| n.starts_with(RUN)) {
        Kind::Command
    } else if exports.iter().any(|n| n.starts_with(HANDLER)) {
        Kind::Http
    } else {
        return Err(format!(
            "a component exporting neither wasi:cli/run nor wasi:http/incoming-handler (exports: {}): \
             not a WASI 0.2 command or HTTP proxy",
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        ));
    };
    link(engine, component, kind).map_err(|e| missing_import(&e))?;
    Ok(kind)
}

/// wasmtime says "component imports instance `wasi:x/y@0.2.0`, but a
/// matching implementation was not found in the linker": say it as ours.
fn missing_import(e: &wasmtime::Error) -> String {
    let msg = one_line(e);
    match msg.split('`').nth(1) {
        Some(name) if msg.contains("not found in the linker") => {
            format!("imports {name}, which amphi does not provide")
        }
        _ => msg,
    }
}

fn link(engine: &Engine, component: &Component, kind: Kind) -> wasmtime::Result<Linked> {
    let pre = linker(engine)?.instantiate_pre(component)?;
    Ok(match kind {
        Kind::Http => {
            let fs = component
                .component_type()
                .imports(engine)
                .any(|(name, _)| name.starts_with("wasi:filesystem/"));
            Linked::Http(ProxyPre::new(pre)?, fs)
        }
        _ => Linked::Command(CommandPre::new(pre)?),
    })
}

/// Maps the compiled component `file` (from `cwasm`) and resolves its
/// imports. Components are mapped by path only, and the cache may be out
/// of sight after pivot_root: the open file is mapped through
/// `/proc/self/fd` (read into memory if /proc is not there).
pub(super) fn load(cwasm: &Path, file: std::fs::File, kind: Kind) -> Result<Linked> {
    use std::os::fd::AsRawFd;
    let engine = match kind {
        Kind::Http => super::serving_engine()?,
        _ => process_engine()?,
    };
    let bad = |e: wasmtime::Error| Error::Wasm {
        path: cwasm.to_path_buf(),
        msg: one_line(&e),
    };
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: the cache holds only artifacts this runtime wrote, under a
    // root-owned directory, keyed by the engine's compatibility hash.
    let component = match unsafe { Component::deserialize_file(&engine, &by_fd) } {
        Ok(c) => c,
        Err(_) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(|e| Error::io(cwasm, e))?;
            // SAFETY: as above.
            unsafe { Component::deserialize(&engine, &bytes) }.map_err(bad)?
        }
    };
    link(&engine, &component, kind).map_err(bad)
}

/// Runs a command component's `wasi:cli/run`: 0 when it returns ok, 1
/// when it returns an error, the code it exits with otherwise.
pub(super) async fn run_command(
    engine: &Engine,
    linked: &Linked,
    wasi: WasiCtx,
    limits: Limits,
    outgoing: Outgoing,
) -> wasmtime::Result<i32> {
    let Linked::Command(pre) = linked else {
        wasmtime::bail!("not a wasi:cli command component");
    };
    let mut store = new_store(engine, Ctx::new(wasi, limits, outgoing));
    let command = pre.instantiate_async(&mut store).await?;
    // A signal that arrived before the store existed must still stop us.
    if stop_signal().is_some() {
        engine.increment_epoch();
    }
    Ok(match command.wasi_cli_run().call_run(&mut store).await? {
        Ok(()) => 0,
        Err(()) => 1,
    })
}
