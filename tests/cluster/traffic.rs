//! Requests to the leader-only Service's cluster IP from this host, as a client of the worker
//! would send them, and the checks on their answers: every answer came from a worker that
//! was running (so from the copy leading at that moment), and how long no answer came.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{now_nanos, Line};

use crate::common;

/// One request: when it was sent and its answer came (host clock, ns), and the answer (the
/// worker's pod name and fencing token), or None when nothing answered within a second.
#[derive(Clone, Debug)]
pub struct Answer {
    pub sent: u128,
    pub recv: u128,
    pub from: Option<(String, i64)>,
}

/// Sends `GET /` to `ip:port` every 50 ms, for as long as the test's runtime lasts.
#[derive(Clone, Default)]
pub struct Prober {
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Prober {
    pub fn start(ip: String, port: u16) -> Prober {
        let p = Prober::default();
        let answers = p.answers.clone();
        tokio::spawn(async move {
            // Ends with the test's runtime.
            loop {
                let sent = now_nanos();
                let from = tokio::time::timeout(Duration::from_secs(1), get(&ip, port))
                    .await
                    .ok()
                    .flatten();
                let recv = now_nanos();
                answers.lock().unwrap().push(Answer { sent, recv, from });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        p
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Waits until a request sent after `after` is answered by a pod other than `not`;
    /// returns that answer.
    pub async fn answered_by_other(&self, after: u128, not: &str) -> Answer {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let found = self
                .answers()
                .into_iter()
                .find(|a| a.sent > after && a.from.as_ref().is_some_and(|(pod, _)| pod != not));
            if let Some(a) = found {
                return a;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no answer from a pod other than {not} through the Service"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `GET /` over HTTP/1.0; the body's first two words (pod name, fencing token).
async fn get(ip: &str, port: u16) -> Option<(String, i64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    let mut words = body.split_whitespace();
    Some((words.next()?.to_string(), words.next()?.parse().ok()?))
}

/// Every answer came from a worker that was running when its request was sent: a start line
/// of that pod with that fencing token before the answer, and no stop of it before the
/// request. (A worker runs only while its copy leads, and logs its stop once its web server
/// is gone.) Returns how many answers were checked.
pub fn assert_answers_from_running_workers(answers: &[Answer], lines: &[Line]) -> usize {
    let mut checked = 0;
    for a in answers {
        let Some((pod, token)) = &a.from else {
            continue;
        };
        let start = lines
            .iter()
            .find(|l| l.what == "start" && super::pod_of(&l.id) == pod && l.token == *token);
        let Some(start) = start else {
            panic!(
                "an answer from {pod} (token {token}) at {} with no worker of its: {lines:#?}",
                a.recv
            );
        };
        assert!(
            start.nanos <= a.recv,
            "{pod} answered before its worker started: {a:?} {start:?}"
        );
        let stopped_before = lines
            .iter()
            .any(|l| l.what == "stop" && l.id == start.id && l.nanos < a.sent);
        assert!(
            !stopped_before,
            "{pod} answered after its worker stopped: {a:?} {lines:#?}"
        );
        checked += 1;
    }
    checked
}

/// The longest time between answered requests (by send time) from `from` to `until`, the
/// send time of an answered request: how long clients went unanswered.
pub fn silence(answers: &[Answer], from: u128, until: u128) -> Duration {
    let mut last = from;
    let mut longest = 0;
    for a in answers
        .iter()
        .filter(|a| a.sent >= from && a.sent <= until && a.from.is_some())
    {
        longest = longest.max(a.sent - last);
        last = a.sent;
    }
    Duration::from_nanos(longest as u64)
}
