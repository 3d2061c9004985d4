//! What one component instance's store holds: WASI and wasi:http contexts, the
//! resource table, and the component's grants (key-value labels, variables,
//! outbound hosts).

use crate::runtime::bindings::variables;
use crate::runtime::guest_output::ComponentOutput;
use crate::runtime::kv::KvBackend;
use crate::runtime::outbound::AllowedHosts;
use crate::runtime::spin_redis::SharedRedis;
use bytes::Bytes;
use cart_core::contract::INSTANCE_ID_ENV;
use http_body_util::combinators::UnsyncBoxBody;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{TrappableError, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{RequestOptions, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wasmtime_wasi_http::{WasiHttpCtx, p2};

/// What a component may reach, fixed at start-up and shared by its instances.
pub struct ComponentGrants {
    pub id: String,
    /// Granted key-value labels and the backend each one opens.
    pub key_value: BTreeMap<String, Arc<dyn KvBackend>>,
    /// The component's variables, resolved from the manifest, `--variable` and env.
    pub variables: BTreeMap<String, String>,
    /// `-e/--env` pairs, visible through wasi:cli/environment.
    pub environment: Vec<(String, String)>,
    /// `allowed_outbound_hosts`, templates resolved; checked by `spin:redis` `open`.
    pub allowed_outbound_hosts: AllowedHosts,
    /// The host's `spin:redis` connections, one set for all components.
    pub shared_redis: Arc<SharedRedis>,
    /// Where the component's stdout and stderr go (nowhere for the demo and the experiment,
    /// whose output is a table).
    pub output: ComponentOutput,
}

impl ComponentGrants {
    pub fn key_value_store(&self, label: &str) -> Option<Arc<dyn KvBackend>> {
        self.key_value.get(label).cloned()
    }

    /// `spin:variables/get`: names follow Spin's rule, and only the variables
    /// the component declares are visible.
    pub fn variable(&self, name: &str) -> Result<String, variables::Error> {
        if crate::app::expressions::validate_key(name).is_err() {
            return Err(variables::Error::InvalidName(name.to_string()));
        }
        self.variables
            .get(name)
            .cloned()
            .ok_or_else(|| variables::Error::Undefined(name.to_string()))
    }
}

type Body = UnsyncBoxBody<Bytes, ErrorCode>;
type IoFuture = Box<dyn Future<Output = Result<(), ErrorCode>> + Send>;

/// Outbound HTTP is not granted to any cartlab component: refuse it, as Spin
/// does for a host that is not in `allowed_outbound_hosts`.
#[derive(Default)]
pub struct NoOutboundHttp;

impl WasiHttpHooks for NoOutboundHttp {
    fn send_request(
        &mut self,
        _request: http::Request<Body>,
        _options: Option<RequestOptions>,
        _io: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<Body>, IoFuture), TrappableError<ErrorCode>>>
            + Send,
    > {
        Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) })
    }
}

/// The data of one instance's wasmtime `Store`.
pub struct InstanceState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: NoOutboundHttp,
    pub component: Arc<ComponentGrants>,
}

impl InstanceState {
    /// A new instance's store; `server_id` is handed to it through its environment.
    pub fn new(component: Arc<ComponentGrants>, server_id: &str) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(component.output.stdout.clone())
            .stderr(component.output.stderr.clone());
        // The host names its instances; a user's `-e` of the same name does not.
        for (key, value) in &component.environment {
            if key != INSTANCE_ID_ENV {
                wasi.env(key, value);
            }
        }
        wasi.env(INSTANCE_ID_ENV, server_id);
        Self {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: NoOutboundHttp,
            component,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// WASIp2 guests (`wasi:http/incoming-handler@0.2.0`): the same refusal of outbound HTTP.
impl p2::WasiHttpHooks for NoOutboundHttp {
    fn send_request(
        &mut self,
        _request: hyper::Request<p2::body::HyperOutgoingBody>,
        _config: p2::types::OutgoingRequestConfig,
    ) -> p2::HttpResult<p2::types::HostFutureIncomingResponse> {
        Err(p2::bindings::http::types::ErrorCode::HttpRequestDenied.into())
    }
}

impl p2::WasiHttpView for InstanceState {
    fn http(&mut self) -> p2::WasiHttpCtxView<'_> {
        p2::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
