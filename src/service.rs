//! `--service NAME`: a Service without a selector that reaches only the leader. While it
//! leads, leaderrun makes the Service's Endpoints this pod's address (the ports from the
//! Service); when it stops leading it takes its address out again. The control plane mirrors
//! Endpoints into EndpointSlices (1.19 and later), which kube-proxy reads.
//!
//! Every write is conditional on the resourceVersion just read, so a write of an earlier
//! leader that lands late (a partition heals, a request sat in a socket) meets a conflict
//! instead of undoing the next leader's; taking the address out only ever removes our own.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::lock::{Call, LockError};

/// The bound on each call: a hung request is given up and tried again later.
const CALL: Duration = Duration::from_secs(5);
/// Writes tried in a row when another client keeps changing the Endpoints.
const TRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("--service {name:?}: there is no Service {name:?} in namespace {namespace:?}. Create it (a Service without a selector, as deploy/service.yaml) or drop --service")]
    Missing { name: String, namespace: String },
    #[error("--service {0:?}: the Service has a selector, so Kubernetes' endpoints controller writes its endpoints and would undo leaderrun's. Remove spec.selector (see deploy/service.yaml)")]
    HasSelector(String),
    #[error("--service {0:?}: the Service has no ports; give it the port(s) the job listens on")]
    NoPorts(String),
    #[error("--service {name:?}: port {port} has the named targetPort {target:?}. A Service without a selector needs a number there (the port the job listens on)")]
    NamedTargetPort {
        name: String,
        port: i32,
        target: String,
    },
    #[error("--service needs this pod's IP address: pass --pod-ip, or set POD_IP (in a pod, from the downward API: fieldRef status.podIP)")]
    NoPodIp,
    #[error("--service cannot be used with --slots above 1: a Service that reaches the leader needs one leader")]
    WithSlots,
    #[error("--service: {0}")]
    Api(LockError),
    /// A signal that ends the wait for the API server came; nothing was written.
    #[error("stopped by signal {0} while reading the Service")]
    Stopped(i32),
}

impl ServiceError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ServiceError::Api(_) => crate::exit::API,
            ServiceError::WithSlots => crate::exit::USAGE,
            ServiceError::Stopped(sig) => crate::exit::for_signal(*sig),
            _ => crate::exit::CONFIG,
        }
    }
}

/// The Endpoints of one Service, and what they hold while this process leads.
pub struct LeaderService {
    api: Api<Endpoints>,
    name: String,
    namespace: String,
    ip: String,
    ours: Vec<EndpointSubset>,
}

/// One address and port of Endpoints, in a form that compares equal however it was written.
type Route = (String, Option<String>, i32, String);

impl LeaderService {
    /// Reads the Service and checks that leaderrun can keep its endpoints: it exists, has no
    /// selector, and its target ports are numbers. Nothing is written.
    pub async fn open(
        client: Client,
        namespace: &str,
        name: &str,
        ip: Option<IpAddr>,
        pod: Option<String>,
    ) -> Result<LeaderService, ServiceError> {
        let ip = ip.ok_or(ServiceError::NoPodIp)?.to_string();
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let call = call("get", "service", "services", namespace, name);
        let service = within(services.get_opt(name), &call)
            .await
            .map_err(ServiceError::Api)?
            .ok_or_else(|| ServiceError::Missing {
                name: name.into(),
                namespace: namespace.into(),
            })?;
        let spec = service.spec.unwrap_or_default();
        if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ServiceError::HasSelector(name.into()));
        }
        let ports = endpoint_ports(name, spec.ports.unwrap_or_default())?;
        let target_ref = pod.map(|pod| ObjectReference {
            kind: Some("Pod".into()),
            name: Some(pod),
            namespace: Some(namespace.into()),
            ..Default::default()
        });
        let ours = vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.clone(),
                target_ref,
                ..Default::default()
            }]),
            ports: Some(ports),
            ..Default::default()
        }];
        Ok(LeaderService {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
            ip,
            ours,
        })
    }

    /// `service jobs/nightly-report -> 10.244.0.7`, for the log.
    pub fn describe(&self) -> String {
        format!("service {}/{} -> {}", self.namespace, self.name, self.ip)
    }

    fn call(&self, verb: &'static str) -> Call<'_> {
        call(verb, "endpoints", "endpoints", &self.namespace, &self.name)
    }

    /// Makes the Endpoints this pod's address alone, replacing whatever a former leader left.
    /// Returns whether anything was written.
    pub async fn point_here(&self) -> Result<bool, LockError> {
        for _ in 0..TRIES {
            let current = within(self.api.get_opt(&self.name), &self.call("get")).await?;
            let written = match current {
                Some(e) if routes(&e.subsets) == routes(&Some(self.ours.clone())) => {
                    return Ok(false)
                }
                Some(mut e) => {
                    e.subsets = Some(self.ours.clone());
                    let pp = PostParams::default();
                    let put = self.api.replace(&self.name, &pp, &e);
                    within(put, &self.call("update")).await.map(|_| ())
                }
                None => {
                    let e = Endpoints {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            ..Default::default()
                        },
                        subsets: Some(self.ours.clone()),
                    };
                    let pp = PostParams::default();
                    let post = self.api.create(&pp, &e);
                    within(post, &self.call("create")).await.map(|_| ())
                }
            };
            match written {
                Ok(()) => return Ok(true),
                Err(LockError::Conflict(_) | LockError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(self.kept_changing())
    }

    /// Takes this pod's address out of the Endpoints, if it is there; leaves anyone else's.
    /// Returns whether anything was written.
    pub async fn withdraw(&self) -> Result<bool, LockError> {
        for _ in 0..TRIES {
            let Some(mut e) = within(self.api.get_opt(&self.name), &self.call("get")).await? else {
                return Ok(false);
            };
            let before = routes(&e.subsets);
            let kept: Vec<EndpointSubset> = e
                .subsets
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut s| {
                    for list in [&mut s.addresses, &mut s.not_ready_addresses] {
                        if let Some(a) = list.as_mut() {
                            a.retain(|a| a.ip != self.ip);
                        }
                    }
                    let empty =
                        |l: &Option<Vec<EndpointAddress>>| l.as_ref().is_none_or(Vec::is_empty);
                    (!(empty(&s.addresses) && empty(&s.not_ready_addresses))).then_some(s)
                })
                .collect();
            e.subsets = Some(kept);
            if routes(&e.subsets) == before {
                return Ok(false);
            }
            let pp = PostParams::default();
            let put = self.api.replace(&self.name, &pp, &e);
            match within(put, &self.call("update")).await {
                Ok(_) => return Ok(true),
                Err(LockError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(self.kept_changing())
    }

    fn kept_changing(&self) -> LockError {
        LockError::Api {
            verb: "update",
            object: format!("endpoints {}/{}", self.namespace, self.name),
            code: 409,
            message: format!("changed by another client {TRIES} times in a row"),
        }
    }
}

fn call<'a>(
    verb: &'static str,
    kind: &'static str,
    resource: &'static str,
    namespace: &'a str,
    name: &str,
) -> Call<'a> {
    Call {
        verb,
        object: format!("{kind} {namespace}/{name}"),
        namespace: Some(namespace),
        kind,
        resource,
        group: "",
    }
}

/// A call bounded by CALL, its error as one of ours.
async fn within<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
    call: &Call<'_>,
) -> Result<T, LockError> {
    match tokio::time::timeout(CALL, f).await {
        Ok(r) => r.map_err(|e| call.error(e)),
        Err(_) => Err(LockError::Timeout(CALL)),
    }
}

/// The Endpoints' ports for a Service's ports: the target port (a number), else the port.
fn endpoint_ports(
    name: &str,
    ports: Vec<k8s_openapi::api::core::v1::ServicePort>,
) -> Result<Vec<EndpointPort>, ServiceError> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if ports.is_empty() {
        return Err(ServiceError::NoPorts(name.into()));
    }
    ports
        .into_iter()
        .map(|p| {
            let port = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) if *n == 0 => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(s)) => match s.parse::<i32>() {
                    Ok(n) => n,
                    Err(_) => {
                        return Err(ServiceError::NamedTargetPort {
                            name: name.into(),
                            port: p.port,
                            target: s.clone(),
                        })
                    }
                },
            };
            Ok(EndpointPort {
                name: p.name,
                port,
                protocol: Some(p.protocol.unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol,
            })
        })
        .collect()
}

/// Every ready (address, port) of some Endpoints' subsets, sorted, and a marker per address
/// that is not ready: equal for two writes that route the same traffic.
fn routes(subsets: &Option<Vec<EndpointSubset>>) -> Vec<Route> {
    let mut out = Vec::new();
    for s in subsets.iter().flatten() {
        for p in s.ports.iter().flatten() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            for a in s.addresses.iter().flatten() {
                out.push((a.ip.clone(), p.name.clone(), p.port, proto.clone()));
            }
            for a in s.not_ready_addresses.iter().flatten() {
                out.push((a.ip.clone(), p.name.clone(), p.port, "not ready".into()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServicePort;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn port(name: Option<&str>, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: name.map(String::from),
            port,
            target_port: target,
            ..Default::default()
        }
    }

    #[test]
    fn endpoint_ports_take_the_target_port_and_refuse_a_named_one() {
        let ports = endpoint_ports(
            "s",
            vec![
                port(Some("http"), 80, Some(IntOrString::Int(8081))),
                port(Some("admin"), 9000, None),
                port(Some("quoted"), 81, Some(IntOrString::String("8082".into()))),
            ],
        )
        .expect("numeric ports");
        let got: Vec<(Option<String>, i32)> = ports.into_iter().map(|p| (p.name, p.port)).collect();
        assert_eq!(
            got,
            [
                (Some("http".into()), 8081),
                (Some("admin".into()), 9000),
                (Some("quoted".into()), 8082)
            ]
        );
        let named = endpoint_ports(
            "s",
            vec![port(None, 80, Some(IntOrString::String("web".into())))],
        );
        assert!(matches!(
            named,
            Err(ServiceError::NamedTargetPort { port: 80, .. })
        ));
        assert!(matches!(
            endpoint_ports("s", vec![]),
            Err(ServiceError::NoPorts(_))
        ));
    }

    #[test]
    fn routes_compare_what_traffic_reaches_not_how_it_was_written() {
        let subset = |ips: &[&str], proto: Option<&str>| EndpointSubset {
            addresses: Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                port: 8081,
                protocol: proto.map(String::from),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            routes(&Some(vec![subset(&["10.0.0.1"], None)])),
            routes(&Some(vec![subset(&["10.0.0.1"], Some("TCP"))]))
        );
        assert_ne!(
            routes(&Some(vec![subset(&["10.0.0.1"], None)])),
            routes(&Some(vec![subset(&["10.0.0.1", "10.0.0.2"], None)]))
        );
        assert!(routes(&Some(vec![])).is_empty());
        assert!(routes(&None).is_empty());
    }
}
