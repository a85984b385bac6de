//! What a lock call can fail with, and the one mapping of kube's errors onto it (a call on
//! one lock object, or a list of them).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("somebody else wrote the {0} first (409 Conflict)")]
    Conflict(String),
    #[error("the {0} was created by somebody else first (409 AlreadyExists)")]
    AlreadyExists(String),
    #[error("the {0} does not exist")]
    NotFound(String),
    #[error("namespace {0:?} does not exist. Check -n/--namespace (or the kubeconfig context's namespace)")]
    NamespaceNotFound(String),
    #[error("the {object} holds a leader record that cannot be read: {reason}. leaderrun will not overwrite it; fix or delete it (kubectl edit / delete), or use another --name")]
    Unreadable { object: String, reason: String },
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the API server refused to {verb} the {object} ({code} {reason}): {message}. {hint}")]
    Refused {
        verb: &'static str,
        object: String,
        code: u16,
        reason: String,
        message: String,
        hint: String,
    },
    #[error("the API server answered {code} to {verb} of the {object}: {message}")]
    Api {
        verb: &'static str,
        object: String,
        code: u16,
        message: String,
    },
    #[error("cannot reach the API server to {verb} the {object}: {message}")]
    Transport {
        verb: &'static str,
        object: String,
        message: String,
    },
}

impl LockError {
    /// A 401 or 403: the credentials or RBAC, or a server whose caches are not filled yet.
    pub fn is_refusal(&self) -> bool {
        matches!(self, LockError::Refused { .. })
    }

    /// Worth trying again later: the server or the network may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            LockError::Timeout(_) | LockError::Transport { .. } => true,
            LockError::Api { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }
}

/// A call to the API about lock objects: what to say in an error about it.
pub struct Call<'a> {
    /// The verb, as RBAC names it (get, create, update, watch, list).
    pub verb: &'static str,
    /// What the call was about: `lease default/nightly-report`, `leases in all namespaces`.
    pub object: String,
    /// The namespace the call was in (None: all namespaces).
    pub namespace: Option<&'a str>,
    /// `lease` or `configmap`; the plural resource and API group, for RBAC hints.
    pub kind: &'static str,
    pub resource: &'static str,
    pub group: &'static str,
}

impl Call<'_> {
    /// kube's error as one of ours: what it means for the lock, with what to do about it.
    pub fn error(&self, e: kube::Error) -> LockError {
        let (verb, object) = (self.verb, self.object.clone());
        match e {
            kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => {
                LockError::AlreadyExists(object)
            }
            kube::Error::Api(s) if s.code == 409 => LockError::Conflict(object),
            // A create into a namespace that does not exist: the details name the namespace.
            kube::Error::Api(s)
                if s.code == 404
                    && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
                    && self.namespace.is_some() =>
            {
                LockError::NamespaceNotFound(self.namespace.unwrap_or_default().to_string())
            }
            kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound" && verb != "list" => {
                LockError::NotFound(object)
            }
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => LockError::Refused {
                verb,
                object,
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
                hint: self.hint(s.code),
            },
            kube::Error::Api(s) => LockError::Api {
                verb,
                object,
                code: s.code,
                message: if s.message.is_empty() {
                    s.reason.clone()
                } else {
                    s.message.clone()
                },
            },
            kube::Error::SerdeError(e) => LockError::Unreadable {
                object,
                reason: format!("the API server's answer is not a valid {} ({e})", self.kind),
            },
            other => LockError::Transport {
                verb,
                object,
                message: error_chain(&other),
            },
        }
    }

    /// What to do about a 401 or 403.
    fn hint(&self, code: u16) -> String {
        if code == 401 {
            return "Check the credentials in the kubeconfig or the service account token".into();
        }
        match (self.verb, self.namespace) {
            ("list", ns) => format!(
                "Grant the identity RBAC verb \"list\" on resource {:?} in API group {:?} ({}), or name one lock with --name",
                self.resource,
                self.group,
                if ns.is_some() { "in that namespace" } else { "cluster-wide, for -A" }
            ),
            (verb, ns) => format!(
                "Grant the identity RBAC verb {verb:?} on resource {:?} in API group {:?} in namespace {:?} (see deploy/rbac.yaml)",
                self.resource,
                self.group,
                ns.unwrap_or_default()
            ),
        }
    }
}

/// The error and its causes: kube's own message ("client error (Connect)") hides
/// the reason an operator needs (a refused connection, an unknown certificate).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// `f`, or a `Timeout` error when it takes longer than `timeout`.
pub async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, LockError>>,
) -> Result<T, LockError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(LockError::Timeout(timeout)))
}
