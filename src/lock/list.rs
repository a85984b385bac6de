//! Listing the lock objects leaderrun created (`inspect` without --name).

use kube::{Api, Client};

use super::error::{within, Call};
use super::kube::{observe, LockObject};
use super::{LockError, Observed, MANAGED_BY};

/// One lock object found by `list_managed`: where it is, and what it holds.
pub struct Listed<K> {
    pub namespace: String,
    pub name: String,
    pub seen: Result<Observed<K>, LockError>,
}

/// The objects of kind `K` that leaderrun created (the `MANAGED_BY` label), in `namespace`,
/// or in every namespace when None.
pub async fn list_managed<K: LockObject>(
    client: Client,
    namespace: Option<&str>,
) -> Result<Vec<Listed<K>>, LockError> {
    use kube::api::ListParams;
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let params = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let where_ = namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n:?}"));
    let call = Call {
        verb: "list",
        object: format!("{}s in {where_}", K::KIND),
        namespace,
        kind: K::KIND,
        resource: K::RESOURCE,
        group: K::GROUP,
    };
    let list = within(crate::client::CALL_TIMEOUT, async {
        api.list(&params).await.map_err(|e| call.error(e))
    })
    .await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let namespace = o.meta().namespace.clone().unwrap_or_default();
            let name = o.meta().name.clone().unwrap_or_default();
            let describe = format!("{} {namespace}/{name}", K::KIND);
            Listed {
                seen: observe(o, &describe),
                namespace,
                name,
            }
        })
        .collect())
}
