//! The emulator through `kube::Api`, as leaderrun uses it: plain HTTP and TLS with a token.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use kube_emulator::{Config, Emulator};

async fn client(e: &Emulator, token: Option<&str>) -> Client {
    let kc = Kubeconfig::from_yaml(&e.kubeconfig(token, "default")).expect("kubeconfig parses");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client")
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    }
}

fn status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn get_opt_create_replace_conflict_delete() {
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&e, None).await, "default");
    assert!(
        api.get_opt("lock").await.unwrap().is_none(),
        "a missing lease is Ok(None): the NotFound reason is exact"
    );
    let created = api
        .create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    let err = status(
        api.create(&PostParams::default(), &lease("lock", "b"))
            .await
            .unwrap_err(),
    );
    assert!(err.is_already_exists());
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let replaced = api
        .replace("lock", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    let err = status(
        api.replace("lock", &PostParams::default(), &next)
            .await
            .unwrap_err(),
    );
    assert!(err.is_conflict(), "{err:?}");
    let mut no_rv = replaced.clone();
    no_rv.metadata.resource_version = None;
    let err = status(
        api.replace("lock", &PostParams::default(), &no_rv)
            .await
            .unwrap_err(),
    );
    assert!(err.is_invalid());
    let deleted = api.delete("lock", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "delete answers a Success Status");
    assert!(api.get_opt("lock").await.unwrap().is_none());
}

#[tokio::test]
async fn configmap_round_trip() {
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&e, None).await, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cm".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    api.create(&PostParams::default(), &cm).await.unwrap();
    let got = api.get("cm").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    let err = status(
        api.replace("none", &PostParams::default(), &{
            let mut c = cm.clone();
            c.metadata.name = Some("none".into());
            c
        })
        .await
        .unwrap_err(),
    );
    assert!(err.is_not_found(), "PUT to a missing ConfigMap is 404");
}

#[tokio::test]
async fn watch_sees_an_update_to_the_one_object() {
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&e, None).await, "default");
    let created = api
        .create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &lease("other", "a"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default()
                .fields("metadata.name=lock")
                .timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    api.replace("lock", &PostParams::default(), &next)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Modified(l) => {
            assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"))
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // Closing watches ends the stream cleanly.
    e.close_watches(None);
    let end = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn tls_with_a_bearer_token() {
    let mut cfg = Config {
        tls: true,
        ..Config::default()
    };
    cfg.tokens.insert("secret-token".into(), "admin".into());
    let e = Emulator::start(cfg).await.unwrap();
    assert!(e.url().starts_with("https://"));
    let api: Api<Lease> = Api::namespaced(client(&e, Some("secret-token")).await, "default");
    api.create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    assert_eq!(e.request_log()[0].client, "admin");
    let bad: Api<Lease> = Api::namespaced(client(&e, Some("wrong")).await, "default");
    let err = status(bad.get("lock").await.unwrap_err());
    assert_eq!(err.code, 401);
}

#[tokio::test]
async fn a_stalled_watch_stays_open_and_says_nothing_until_the_fault_ends() {
    use kube_emulator::{Action, Fault};
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&e, None).await, "default");
    let created = api
        .create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default().fields("metadata.name=lock"), &rv)
        .await
        .unwrap()
        .boxed();
    e.add_fault(Fault::new(Action::Stall).lasting(Duration::from_millis(800)));
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let next = api
        .replace("lock", &PostParams::default(), &next)
        .await
        .unwrap();
    let silent = tokio::time::timeout(Duration::from_millis(500), stream.try_next()).await;
    assert!(silent.is_err(), "nothing arrives while stalled: {silent:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut after = next.clone();
    after.spec.as_mut().unwrap().holder_identity = Some("c".into());
    api.replace("lock", &PostParams::default(), &after)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .expect("the same watch speaks again")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ev, WatchEvent::Modified(l) if l.spec.as_ref().unwrap().holder_identity.as_deref() == Some("c")),
        "the stalled event was lost, the next one arrives: {ev:?}"
    );
}

#[tokio::test]
async fn a_lost_or_late_answer_still_carries_out_the_write() {
    use kube_emulator::{Action, Fault};
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&e, None).await, "default");
    let created = api
        .create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    e.add_fault(Fault::new(Action::LoseAnswer).method("PUT").times(1));
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let lost = api.replace("lock", &PostParams::default(), &next).await;
    assert!(lost.is_err(), "no answer: {lost:?}");
    let now = api.get("lock").await.unwrap();
    assert_eq!(
        now.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("b")
    );
    e.add_fault(
        Fault::new(Action::LateAnswer { ms: 600 })
            .method("PUT")
            .times(1),
    );
    let mut late = now.clone();
    late.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        api.replace("lock", &PostParams::default(), &late),
    )
    .await;
    assert!(timed_out.is_err(), "the answer is late");
    let now = api.get("lock").await.unwrap();
    assert_eq!(
        now.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("c")
    );
}

#[tokio::test]
async fn a_late_request_lands_after_its_client_gave_up() {
    use kube_emulator::{Action, Fault};
    let e = Emulator::start(Config::default()).await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&e, None).await, "default");
    e.add_fault(
        Fault::new(Action::LateRequest { ms: 600 })
            .method("POST")
            .times(1),
    );
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        api.create(&PostParams::default(), &lease("late", "a")),
    )
    .await;
    assert!(gave_up.is_err(), "no answer within the client's timeout");
    // Not carried out yet: the request is still on its way to the store.
    assert!(api.get_opt("late").await.unwrap().is_none());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = api.get_opt("late").await.unwrap() {
            assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("a"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the create never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = e
        .request_log()
        .into_iter()
        .find(|l| l.method == "POST")
        .expect("the create is in the log");
    assert_eq!(logged.status, 201, "{logged:?}");
}
