//! `cartlab up`: load spin.toml and the runtime config, build stale
//! components, compile and pre-instantiate them, then serve — the lab host's
//! equivalent of `spin up`.

use crate::app::manifest::AppManifest;
use crate::app::runtime_config::{RuntimeConfig, StoreConfig};
use crate::app::variables::Variables;
use crate::commands::up::UpArgs;
use crate::runtime::guest_output::GuestOutput;
use crate::runtime::host_profile::{HostProfile, HttpWorld};
use crate::runtime::instance::{ComponentGrants, InstanceState};
use crate::runtime::instances::Instances;
use crate::runtime::kv::faults::Faults;
use crate::runtime::lab::Lab;
use crate::runtime::outbound::AllowedHosts;
use crate::runtime::pool::{HttpPre, POOLED_INSTANCES, PoolContext};
use crate::runtime::spin_redis::SharedRedis;
use crate::serve::host::{App, AppInfo};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre as IncomingHandlerPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// A loaded application, ready to serve.
pub struct LoadedApp {
    pub manifest: AppManifest,
    pub app: Arc<App>,
    pub stores: BTreeMap<String, StoreConfig>,
    /// The injected faults and their counts; `None` without `--kv-faults`.
    pub faults: Option<Arc<Faults>>,
}

fn engine(options: &UpArgs) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    config.concurrency_support(true);
    if let Some(file) = &options.cache {
        let cache = wasmtime::CacheConfig::from_file(Some(file))
            .and_then(wasmtime::Cache::new)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "--cache {}: not a usable wasmtime cache configuration",
                    file.display()
                )
            })?;
        config.cache(Some(cache));
    } else if !options.disable_cache {
        // wasmtime's own compilation cache (~/.cache/wasmtime): a restart, or
        // a test starting another host, does not compile the same .wasm again.
        match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(error) => tracing::warn!(error = %error, "compilation cache disabled"),
        }
    }
    config.debug_info(options.debug_info);
    if options.perfmap {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if !options.disable_pooling {
        // Instances come and go all the time (that is the lesson), so reuse
        // their memory slots instead of mapping fresh memory each time.
        let mut pooling = PoolingAllocationConfig::default();
        pooling.total_component_instances(u32::from(POOLED_INSTANCES));
        pooling.total_core_instances(1024);
        pooling.total_memories(512);
        pooling.total_tables(512);
        pooling.max_memory_size(options.max_instance_memory.unwrap_or(256 << 20));
        // A freed slot is reset with memset up to these sizes (only the pages the instance
        // touched, found by PAGEMAP_SCAN where the kernel has it) instead of madvise: the
        // next instance in the slot starts without page faults or TLB shootdowns.
        pooling.linear_memory_keep_resident(KEEP_RESIDENT);
        pooling.table_keep_resident(KEEP_RESIDENT);
        pooling.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to configure wasmtime")
}

/// Bytes of each freed memory and table slot kept resident (see `engine`).
const KEEP_RESIDENT: usize = 1 << 20;

fn linker(engine: &Engine) -> anyhow::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::runtime::spin_host::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Loads everything `cartlab up` serves; every configuration problem is an
/// error here, before any port is opened.
/// `guest_output` sends the components' stdout/stderr where `-L`, `--follow` and `--quiet`
/// say (as `spin up` does); without it they go nowhere.
pub async fn load(options: &UpArgs, guest_output: bool) -> anyhow::Result<LoadedApp> {
    options.unsupported.refuse()?;
    let policy = options.reuse_policy()?;
    let app_args = &options.app;
    let mut manifest = crate::app::manifest::load(&app_args.from)?;
    if !options.component_ids.is_empty() {
        manifest = manifest.retain_components(&options.component_ids)?;
    }
    let state_dir = app_args
        .state_dir
        .clone()
        .unwrap_or_else(|| manifest.dir.join(".spin"));
    let output = if guest_output {
        options.guest_output(&state_dir)
    } else {
        GuestOutput::silent()
    };
    output.prepare(manifest.components.keys().map(String::as_str))?;
    let runtime_config =
        crate::app::runtime_config::load(app_args.runtime_config_file.as_deref(), &state_dir)?;
    runtime_config.check_grants(&manifest)?;
    let cli_variables = crate::app::variables::collect_cli_variables(&app_args.variables)?;
    let variables = Variables::resolve(&manifest, &cli_variables, |name| std::env::var(name).ok())?;
    let router = manifest.router.clone();
    {
        // Building runs cargo and waits on it: keep it off the async workers.
        let (manifest, build) = (manifest.clone(), app_args.build);
        tokio::task::spawn_blocking(move || {
            if build {
                crate::runtime::component_build::build_all(&manifest)
            } else {
                crate::runtime::component_build::check_built(&manifest)
            }
        })
        .await??;
    }

    let engine = engine(options)?;
    let linker = linker(&engine)?;
    let kv_faults = options.kv_faults();
    let faults = (!kv_faults.is_none()).then(|| Faults::new(kv_faults));
    let stores = open_stores(&manifest, &runtime_config, faults.as_ref()).await?;
    seed_default_store(&options.key_values, &stores, &runtime_config).await?;

    let lab = Arc::new(Lab::new(options.lab_api));
    let mut components = BTreeMap::new();
    let shared_redis = Arc::new(SharedRedis::with_sentinels(
        runtime_config.redis_sentinels.clone(),
    ));
    for (id, decl) in &manifest.components {
        let allowed_outbound_hosts =
            AllowedHosts::parse(&decl.allowed_outbound_hosts, variables.app_values())
                .with_context(|| format!("spin.toml: component `{id}`"))?;
        if ["http", "https"]
            .iter()
            .any(|s| allowed_outbound_hosts.mentions_scheme(s))
        {
            tracing::warn!(
                component = %id,
                "allowed_outbound_hosts allows HTTP, but cartlab up does not provide outbound HTTP: requests will be denied"
            );
        }
        let bytes = std::fs::read(&decl.source).with_context(|| {
            format!(
                "component `{id}`: cannot read source {}",
                decl.source.display()
            )
        })?;
        let component = Component::new(&engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component `{id}`: {} is not a valid component",
                    decl.source.display()
                )
            })?;
        let pre = http_pre(&engine, &linker, &component, id, options.host_profile)?;
        let mut key_value = BTreeMap::new();
        for label in &decl.key_value_stores {
            let backend = stores.get(label).with_context(|| {
                format!("component `{id}`: key-value store `{label}` is granted but not defined")
            })?;
            key_value.insert(label.clone(), backend.clone());
        }
        let grants = Arc::new(ComponentGrants {
            id: id.clone(),
            key_value,
            variables: variables.component_values(id).cloned().unwrap_or_default(),
            environment: decl
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(app_args.env.iter().cloned())
                .collect(),
            allowed_outbound_hosts,
            shared_redis: shared_redis.clone(),
            output: output.sinks(id)?,
        });
        let context = PoolContext::new(engine.clone(), pre, grants, lab.clone());
        components.insert(
            id.clone(),
            Instances::new(context, &policy, options.fleet()),
        );
    }
    let store_configs = runtime_config.key_value.clone();
    let info = AppInfo {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
    };
    Ok(LoadedApp {
        manifest,
        app: Arc::new(App {
            info,
            router,
            components,
            lab,
        }),
        stores: store_configs,
        faults,
    })
}

/// Checks `component` against the host profile, links it, and finds the HTTP world it
/// exports: WASIp3 (`wasi:http/handler@0.3.0`) or WASIp2 (`wasi:http/incoming-handler@0.2.x`).
fn http_pre(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    component: &Component,
    id: &str,
    profile: HostProfile,
) -> anyhow::Result<HttpPre> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let world = if exports
        .iter()
        .any(|name| name.starts_with("wasi:http/handler@0.3."))
    {
        HttpWorld::Handler
    } else if exports
        .iter()
        .any(|name| name.starts_with("wasi:http/incoming-handler@0.2."))
    {
        HttpWorld::IncomingHandler
    } else {
        anyhow::bail!(
            "component `{id}` exports no HTTP handler (wasi:http/handler@0.3.0 or wasi:http/incoming-handler@0.2.0); exports: {}",
            exports.join(", ")
        );
    };
    profile.check(id, world, ty.imports(engine).map(|(name, _)| name))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!("component `{id}` imports something cartlab up does not provide")
        })?;
    let pre = match world {
        HttpWorld::Handler => ServicePre::new(pre).map(HttpPre::Service),
        HttpWorld::IncomingHandler => IncomingHandlerPre::new(pre).map(HttpPre::IncomingHandler),
    };
    let pre = pre.map_err(anyhow::Error::from).with_context(|| {
        format!("component `{id}`: its HTTP export does not have the expected type")
    })?;
    if let HttpPre::IncomingHandler(_) = pre {
        tracing::info!(
            component = %id,
            "WASIp2 component (wasi:http/incoming-handler@0.2.0): a fresh instance per request, as Spin runs it"
        );
    }
    Ok(pre)
}

async fn open_stores(
    manifest: &AppManifest,
    runtime_config: &RuntimeConfig,
    faults: Option<&Arc<Faults>>,
) -> anyhow::Result<BTreeMap<String, Arc<dyn crate::runtime::kv::KvBackend>>> {
    let mut stores = BTreeMap::new();
    let granted: std::collections::BTreeSet<&String> = manifest
        .components
        .values()
        .flat_map(|c| c.key_value_stores.iter())
        .collect();
    for label in granted {
        let config = runtime_config.key_value.get(label).with_context(|| {
            format!("key-value store `{label}` is granted but not defined in the runtime config")
        })?;
        let backend = crate::runtime::kv::open(label, config, faults)
            .await
            .with_context(|| format!("cannot open key-value store `{label}`"))?;
        stores.insert(label.clone(), backend);
    }
    if let Some(faults) = faults
        && faults.spec().spin_4_1
        && !stores.keys().any(|label| {
            matches!(
                runtime_config.key_value.get(label),
                Some(StoreConfig::Redis { .. })
            )
        })
    {
        tracing::warn!(
            "--kv-faults spin-4.1 applies to no store: no key-value store in use is type = \"redis\""
        );
    }
    Ok(stores)
}

/// `--key-value`: the pairs are written into the store `default` before serving, as Spin
/// writes them (the backend's own `set`; a component reads them with `get`).
async fn seed_default_store(
    pairs: &[(String, String)],
    stores: &BTreeMap<String, Arc<dyn crate::runtime::kv::KvBackend>>,
    runtime_config: &RuntimeConfig,
) -> anyhow::Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let label = crate::app::runtime_config::DEFAULT_LABEL;
    let store = match stores.get(label) {
        Some(store) => store.clone(),
        // No component is granted `default`: Spin still has it, so open it for the pairs.
        None => {
            let config = runtime_config
                .key_value
                .get(label)
                .with_context(|| format!("--key-value: no key-value store `{label}`"))?;
            crate::runtime::kv::open(label, config, None)
                .await
                .with_context(|| format!("--key-value: cannot open key-value store `{label}`"))?
        }
    };
    for (key, value) in pairs {
        store
            .set(key.clone(), value.clone().into_bytes())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("--key-value: cannot set `{key}` in store `{label}`"))?;
    }
    tracing::info!(
        store = label,
        keys = pairs.len(),
        "--key-value pairs written"
    );
    Ok(())
}

/// Ports `--find-free-port` tries, `--listen`'s first, as Spin does.
const FREE_PORT_TRIES: u16 = 10;

/// Listens on `address`, or with `find_free_port` on the first free port from it on.
async fn bind(address: SocketAddr, find_free_port: bool) -> anyhow::Result<TcpListener> {
    let tries = if find_free_port && address.port() != 0 {
        FREE_PORT_TRIES
    } else {
        1
    };
    let mut candidate = address;
    for _ in 0..tries {
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                if !find_free_port {
                    anyhow::bail!(
                        "{address} is already in use; to listen on the next free port, use --find-free-port"
                    );
                }
                let Some(next) = candidate.port().checked_add(1) else {
                    break;
                };
                candidate.set_port(next);
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot listen on {candidate}"));
            }
        }
    }
    anyhow::bail!(
        "--find-free-port: no free port among the {FREE_PORT_TRIES} from {}",
        address.port()
    )
}

/// How long requests in flight may finish once a host is told to stop.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A lab host serving in this process on `UpArgs::listen`: what `cartlab up`
/// serves, and what `cartlab demo` and `cartlab experiment` run against when
/// no URL is given.
pub struct LocalHost {
    pub url: String,
    pub address: std::net::SocketAddr,
    pub loaded: LoadedApp,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl LocalHost {
    pub async fn start(options: &UpArgs, guest_output: bool) -> anyhow::Result<Self> {
        // Bad limits are a start-up error, before anything is loaded.
        options.limits.check()?;
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(crate::serve::tls::acceptor(cert, key)?),
            _ => None,
        };
        let loaded = load(options, guest_output).await?;
        let listener = bind(options.listen, options.find_free_port).await?;
        let address = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::serve::server::serve(
            loaded.app.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
            SHUTDOWN_GRACE,
            options.limits.clone(),
            tls,
        ));
        Ok(Self {
            url: format!("{scheme}://{address}"),
            address,
            loaded,
            stop,
            task,
        })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.loaded.app
    }

    /// Stops accepting, lets requests in flight finish (up to
    /// [`SHUTDOWN_GRACE`]), then ends the instances and logs the faults
    /// injected, if any.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let served = self
            .task
            .await
            .context("the lab host's server task failed")?;
        for instances in self.loaded.app.components.values() {
            instances.begin_shutdown();
        }
        if let Some(faults) = &self.loaded.faults {
            faults.log_summary();
        }
        served
    }
}
