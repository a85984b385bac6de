//! `--health-addr`: `/healthz` (503 while the leader is past its renew deadline),
//! `/readyz` (200 only while leader) and `/metrics` (Prometheus text format), served with
//! hyper from the numbers in `metrics.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::metrics::Metrics;

fn answer(metrics: &Metrics, path: &str) -> (StatusCode, &'static str, String) {
    let now = Instant::now();
    match path {
        "/healthz" if metrics.overdue(now) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "overdue: leader past its renew deadline\n".into(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if metrics.is_leader() => (StatusCode::OK, "text/plain", "leader\n".into()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not leader\n".into(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(now),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /healthz, /readyz, /metrics\n".into(),
        ),
    }
}

/// Binds `addr` and serves until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            // An accept error (EMFILE: out of descriptors) would repeat at once: pause.
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (status, ctype, body) = answer(&metrics, req.uri().path());
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(ctype),
                    );
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_leadership_and_health_the_deadline() {
        let m = Metrics::default();
        let t0 = Instant::now();
        assert_eq!(answer(&m, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer(&m, "/healthz").0, StatusCode::OK);
        m.became_leader(3, t0, t0 + Duration::from_secs(3600));
        assert_eq!(answer(&m, "/readyz").0, StatusCode::OK);
        assert!(!m.overdue(t0));
        assert!(m.overdue(t0 + Duration::from_secs(3601)));
        m.lost_leadership();
        assert_eq!(answer(&m, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        m.leadership_ended();
        assert!(!m.overdue(t0 + Duration::from_secs(3601)));
    }
}
