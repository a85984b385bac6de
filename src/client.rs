//! Kubernetes configuration through the kube crate: kubeconfig or in-cluster.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::LockArgs;

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
}

fn default_kubeconfig_exists() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::home_dir().is_some_and(|h| h.join(".kube/config").is_file())
}

/// Loads the configuration and returns a client and the namespace to use.
pub async fn connect(lock: &LockArgs) -> Result<(Client, String), ConfigError> {
    let options = KubeConfigOptions {
        context: lock.context.clone(),
        ..Default::default()
    };
    let mut config = if let Some(path) = &lock.kubeconfig {
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
    } else if let Some(ctx) = &lock.context {
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
    let namespace = lock
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(ConfigError::Client)?;
    Ok((client, namespace))
}
