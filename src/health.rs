//! `--health-addr`: `/healthz` (503 while the leader is past its renew deadline), `/readyz`
//! (200 while this copy takes part: a leader renewing on time, or a standby the API server
//! answered lately), `/leaderz` (200 only while leader) and `/metrics` (Prometheus text
//! format), served with hyper from the numbers in `metrics.rs`.

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

fn answer(
    metrics: &Metrics,
    path: &str,
    stale_after: Duration,
) -> (StatusCode, &'static str, String) {
    let now = Instant::now();
    let text = |code, body: String| (code, "text/plain", body);
    match path {
        "/healthz" if metrics.overdue(now) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "overdue: leader past its renew deadline\n".into(),
        ),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match metrics.ready(now, stale_after) {
            Ok(()) if metrics.is_leader() => text(StatusCode::OK, "ready: leader\n".into()),
            Ok(()) => text(StatusCode::OK, "ready: standby\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/leaderz" if metrics.is_leader() => text(StatusCode::OK, "leader\n".into()),
        "/leaderz" => text(StatusCode::SERVICE_UNAVAILABLE, "not leader\n".into()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(now),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz, /leaderz, /metrics\n".into(),
        ),
    }
}

/// Binds `addr` and serves until the process ends. A standby is ready while the API server
/// answered about the lock within `stale_after`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stale_after: Duration,
) -> std::io::Result<SocketAddr> {
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
                    let (status, ctype, body) = answer(&metrics, req.uri().path(), stale_after);
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
    fn leaderz_follows_leadership_and_health_the_deadline() {
        let m = Metrics::default();
        let t0 = Instant::now();
        let stale = Duration::from_secs(15);
        assert_eq!(
            answer(&m, "/leaderz", stale).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(answer(&m, "/healthz", stale).0, StatusCode::OK);
        m.became_leader(3, t0, t0 + Duration::from_secs(3600));
        assert_eq!(answer(&m, "/leaderz", stale).0, StatusCode::OK);
        assert!(!m.overdue(t0));
        assert!(m.overdue(t0 + Duration::from_secs(3601)));
        m.lost_leadership();
        assert_eq!(
            answer(&m, "/leaderz", stale).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        m.leadership_ended();
        assert!(!m.overdue(t0 + Duration::from_secs(3601)));
    }

    #[test]
    fn readiness_is_taking_part_leader_or_standby() {
        let m = Metrics::default();
        let t0 = Instant::now();
        let stale = Duration::from_secs(15);
        // Not yet in touch with the API server.
        assert!(m.ready(t0, stale).is_err());
        assert_eq!(
            answer(&m, "/readyz", stale).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A standby the API server answered: ready, until it has not heard for `stale`.
        m.heard(t0);
        assert_eq!(m.ready(t0 + stale, stale), Ok(()));
        assert!(m
            .ready(t0 + stale + Duration::from_millis(1), stale)
            .is_err());
        // A leader is ready while renewing on time, not once past its deadline.
        m.became_leader(1, t0, t0 + Duration::from_secs(10));
        assert_eq!(m.ready(t0 + Duration::from_secs(9), stale), Ok(()));
        assert!(m
            .ready(t0 + Duration::from_secs(11), stale)
            .is_err_and(|w| w.contains("overdue")));
        m.leadership_ended();
        m.heard(t0 + Duration::from_secs(20));
        assert_eq!(m.ready(t0 + Duration::from_secs(21), stale), Ok(()));
    }
}
