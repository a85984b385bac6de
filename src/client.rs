//! Kubernetes configuration through the kube crate: kubeconfig or in-cluster.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The bound on one API call of an operator's command (inspect, force-release, step-down):
/// long enough for a slow server, short enough that a hung one is reported.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Which API server and namespace: the kubeconfig and context to use, or in-cluster.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// None: with a kubeconfig, its context's ("default" when it names none); without one,
    /// in a pod, the service account's.
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read kubeconfig {path}: {source}. Check --kubeconfig / LEADERRUN_KUBECONFIG")]
    ReadKubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path} cannot be used: {source}")]
    UseKubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "--context {0:?} was given but no kubeconfig was found (set --kubeconfig or KUBECONFIG)"
    )]
    ContextWithoutKubeconfig(String),
    #[error("no kubeconfig found (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not running in a cluster ({0}). Point --kubeconfig at one")]
    Nothing(kube::config::InClusterError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(kube::Error),
    #[error("cannot build a Kubernetes client: the kubeconfig's tls-server-name {0:?} is not a valid server name")]
    ServerName(String),
}

fn default_kubeconfig_exists() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::home_dir().is_some_and(|h| h.join(".kube/config").is_file())
}

/// Loads the configuration and returns a client and the namespace to use.
pub async fn connect(target: &Target) -> Result<(Client, String), ConfigError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let mut config = if let Some(path) = &target.kubeconfig {
        let kc = Kubeconfig::read_from(path).map_err(|source| ConfigError::ReadKubeconfig {
            path: path.clone(),
            source,
        })?;
        Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|source| ConfigError::UseKubeconfig {
                path: path.display().to_string(),
                source,
            })?
    } else if default_kubeconfig_exists() {
        Config::from_kubeconfig(&options)
            .await
            .map_err(|source| ConfigError::UseKubeconfig {
                path: "$KUBECONFIG or ~/.kube/config".into(),
                source,
            })?
    } else if let Some(ctx) = &target.context {
        return Err(ConfigError::ContextWithoutKubeconfig(ctx.clone()));
    } else {
        Config::incluster().map_err(ConfigError::Nothing)?
    };
    // kube retries 429/503/504 up to 15 times over minutes by default; our own
    // loops retry within the renew deadline instead.
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("leaderrun/", env!("CARGO_PKG_VERSION"))),
    ));
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = build_client(config)?;
    Ok((client, namespace))
}

/// kube's client with a connector of our own: TCP_NODELAY on (kube's leaves Nagle on, and
/// the first request on a new TLS connection to kube-apiserver then waits about 40 ms for a
/// delayed ACK), and HTTP/2 when the server offers it, so that a waiting copy's acquiring
/// write travels on its watch's connection instead of opening one. TLS settings, auth
/// (tokens, exec plugins, client certificates) and headers stay kube's own layers. Through
/// a proxy, kube's stack is used unchanged.
fn build_client(config: Config) -> Result<Client, ConfigError> {
    use kube::client::ConfigExt;
    if config.proxy_url.is_some() {
        return Client::try_from(config).map_err(ConfigError::Client);
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    if config.cluster_url.scheme_str() == Some("http") {
        // No TLS to set up (`kubectl proxy`, the emulator): kube's TLS settings without a
        // CA read and parse every certificate in the system's store, milliseconds of a
        // one-shot's start.
        return with_connector(config, http);
    }
    let tls = config.rustls_client_config().map_err(ConfigError::Client)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = name
                .clone()
                .try_into()
                .map_err(|_| ConfigError::ServerName(name.clone()))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let https = builder.enable_http1().enable_http2().wrap_connector(http);
    with_connector(config, https)
}

/// kube's client over `connector`, with kube's layers (base URI, auth, headers).
fn with_connector<C>(config: Config, connector: C) -> Result<Client, ConfigError>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            // A connection that stops answering pings is dead: its requests and watch fail
            // at once instead of waiting on a half-open socket.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .http2_keep_alive_while_idle(true)
            .build::<_, kube::client::Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(ConfigError::Client)?)
        .layer(config.extra_headers_layer().map_err(ConfigError::Client)?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}

/// What can go wrong before the first request about a lock.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Settings(_) => crate::exit::USAGE,
            SetupError::Config(_) => crate::exit::CONFIG,
        }
    }
}

/// Checks the lock's name and namespace, connects, and checks the namespace the
/// configuration chose: every subcommand's first step.
pub async fn connect_to_lock(target: &Target, name: &str) -> Result<(Client, String), SetupError> {
    use crate::settings::{validate_name, validate_namespace};
    validate_name(name)?;
    if let Some(ns) = &target.namespace {
        validate_namespace(ns)?;
    }
    let (client, namespace) = connect(target).await?;
    validate_namespace(&namespace)?;
    Ok((client, namespace))
}
