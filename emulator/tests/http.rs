//! The emulator's answers on the wire: exact status codes, reasons and bodies.

use crate::common;

use std::time::Duration;

use common::{send, CONFIGMAPS, JSON, LEASES};
use kube_emulator::{Action, Config, Emulator, Fault};
use serde_json::{json, Value};

async fn emu() -> Emulator {
    Emulator::start(Config::default())
        .await
        .expect("start emulator")
}

fn lease(name: &str, spec: Value) -> String {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec}).to_string()
}

async fn create_lease(e: &Emulator, name: &str) -> Value {
    let r = send(
        e.addr(),
        "POST",
        &format!("{LEASES}?"),
        &[JSON],
        &lease(
            name,
            json!({"holderIdentity": "a", "leaseDurationSeconds": 15}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn create_sets_server_fields_and_answers_in_api_key_order() {
    let e = emu().await;
    let r = send(
        e.addr(),
        "POST",
        &format!("{LEASES}?"),
        &[JSON],
        &lease(
            "lock",
            json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.body.starts_with(
            "{\"kind\":\"Lease\",\"apiVersion\":\"coordination.k8s.io/v1\",\"metadata\":"
        ),
        "{}",
        r.body
    );
    let v = r.json();
    let meta = &v["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    let rv: u64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > 0);
    let ts = meta["creationTimestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    assert_eq!(
        v["spec"],
        json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0})
    );
}

#[tokio::test]
async fn create_of_an_existing_name_is_409_already_exists() {
    let e = emu().await;
    create_lease(&e, "lock").await;
    let r = send(
        e.addr(),
        "POST",
        &format!("{LEASES}?"),
        &[JSON],
        &lease("lock", json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"leases.coordination.k8s.io \"lock\" already exists","reason":"AlreadyExists","details":{"name":"lock","group":"coordination.k8s.io","kind":"leases"},"code":409}"#
    );
}

#[tokio::test]
async fn missing_objects_are_404_not_found_for_both_kinds() {
    let e = emu().await;
    let r = send(e.addr(), "GET", &format!("{LEASES}/lock"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"leases.coordination.k8s.io \"lock\" not found","reason":"NotFound","details":{"name":"lock","group":"coordination.k8s.io","kind":"leases"},"code":404}"#
    );
    let r = send(e.addr(), "GET", &format!("{CONFIGMAPS}/lock"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        r.body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"lock\" not found","reason":"NotFound","details":{"name":"lock","kind":"configmaps"},"code":404}"#
    );
}

#[tokio::test]
async fn lease_put_without_resource_version_is_422() {
    let e = emu().await;
    create_lease(&e, "lock").await;
    for rv in [None, Some("0")] {
        let mut body: Value =
            serde_json::from_str(&lease("lock", json!({"holderIdentity": "b"}))).unwrap();
        if let Some(rv) = rv {
            body["metadata"]["resourceVersion"] = json!(rv);
        }
        let r = send(
            e.addr(),
            "PUT",
            &format!("{LEASES}/lock?"),
            &[JSON],
            &body.to_string(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 422);
        assert_eq!(
            r.body.trim_end(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"leases.coordination.k8s.io \"lock\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update","reason":"Invalid","details":{"name":"lock","group":"coordination.k8s.io","kind":"leases","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 0: must be specified for an update","field":"metadata.resourceVersion"}]},"code":422}"#
        );
    }
}

#[tokio::test]
async fn stale_resource_version_is_409_conflict_and_fresh_one_bumps_version() {
    let e = emu().await;
    let created = create_lease(&e, "lock").await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = created.clone();
    body["spec"]["holderIdentity"] = json!("b");
    let r = send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/lock?"),
        &[JSON],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let new_rv = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(new_rv > rv.parse::<u64>().unwrap());
    // The same body again carries the old version now.
    body["spec"]["holderIdentity"] = json!("c");
    let r = send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/lock?"),
        &[JSON],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on leases.coordination.k8s.io \"lock\": the object has been modified; please apply your changes to the latest version and try again","reason":"Conflict","details":{"name":"lock","group":"coordination.k8s.io","kind":"leases"},"code":409}"#
    );
}

#[tokio::test]
async fn put_to_a_missing_lease_creates_it_but_a_missing_configmap_is_404() {
    let e = emu().await;
    let mut body: Value =
        serde_json::from_str(&lease("fresh", json!({"holderIdentity": "a"}))).unwrap();
    body["metadata"]["resourceVersion"] = json!("12345");
    let r = send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/fresh?"),
        &[JSON],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_ne!(r.json()["metadata"]["resourceVersion"], "12345");
    let cm = json!({"metadata": {"name": "fresh"}, "data": {"a": "1"}}).to_string();
    let r = send(
        e.addr(),
        "PUT",
        &format!("{CONFIGMAPS}/fresh?"),
        &[JSON],
        &cm,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["reason"], "NotFound");
}

#[tokio::test]
async fn configmap_put_without_resource_version_overwrites() {
    let e = emu().await;
    let cm = json!({"metadata": {"name": "cm"}, "data": {"a": "1"}}).to_string();
    let r = send(e.addr(), "POST", CONFIGMAPS, &[], &cm).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let cm2 = json!({"metadata": {"name": "cm"}, "data": {"a": "2"}}).to_string();
    let r = send(e.addr(), "PUT", &format!("{CONFIGMAPS}/cm"), &[], &cm2)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["a"], "2");
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let e = emu().await;
    let created = create_lease(&e, "lock").await;
    let r = send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/lock"),
        &[JSON],
        &created.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let rv_before = e.with_store(|s| s.current_rv());
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{LEASES}/lock"),
        &[("Content-Type", "application/merge-patch+json")],
        r#"{"spec":{"holderIdentity":"a"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(e.with_store(|s| s.current_rv()), rv_before);
    // The log shows the no-op: both writes answered the version they were sent with.
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    let writes: Vec<String> = e
        .request_log()
        .into_iter()
        .filter(|l| l.verb == "update" || l.verb == "patch")
        .map(|l| l.resource_version)
        .collect();
    assert_eq!(writes, [rv, rv]);
    let create = e.request_log().into_iter().find(|l| l.verb == "create");
    assert_eq!(create.map(|l| l.resource_version).as_deref(), Some(rv));
}

#[tokio::test]
async fn micro_time_is_strict_and_round_trips_exactly() {
    let e = emu().await;
    for bad in [
        "2026-11-25T02:50:36.526Z",
        "2026-11-25T02:50:36Z",
        "2026-11-25 02:40:00.123456",
    ] {
        let r = send(
            e.addr(),
            "POST",
            LEASES,
            &[JSON],
            &lease("t", json!({"renewTime": bad})),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let v = r.json();
        assert_eq!(v["reason"], "BadRequest");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("Lease in version \"v1\" cannot be handled as a Lease: parsing time"),
            "{}",
            v["message"]
        );
    }
    let r = send(e.addr(), "POST", LEASES, &[JSON], &lease("t", json!({"renewTime": "2026-11-25T02:50:36.000100Z", "acquireTime": "2026-11-25T03:50:36.123456+01:00"}))).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["spec"]["renewTime"], "2026-11-25T02:50:36.000100Z");
    assert_eq!(v["spec"]["acquireTime"], "2026-11-25T02:50:36.123456Z");
}

#[tokio::test]
async fn wrong_types_are_decode_errors() {
    let e = emu().await;
    // The Python ConfigMap lock writes the duration as a string; in a Lease spec that is a 400.
    let r = send(
        e.addr(),
        "POST",
        LEASES,
        &[JSON],
        &lease("t", json!({"leaseDurationSeconds": "15"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32"));
    let r = send(e.addr(), "POST", LEASES, &[JSON], "{not json")
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");
}

#[tokio::test]
async fn validation_names_the_field() {
    let e = emu().await;
    let r = send(
        e.addr(),
        "POST",
        LEASES,
        &[JSON],
        &lease("test_", json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422);
    let v = r.json();
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(v["details"]["kind"], "Lease");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    assert!(v["message"].as_str().unwrap().starts_with("Lease.coordination.k8s.io \"test_\" is invalid: metadata.name: Invalid value: \"test_\": a lowercase RFC 1123 subdomain"));

    let r = send(
        e.addr(),
        "POST",
        LEASES,
        &[JSON],
        &lease(
            "ok",
            json!({"leaseDurationSeconds": 0, "leaseTransitions": -1}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Lease.coordination.k8s.io \"ok\" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"
    );
    let fields: Vec<Value> = r.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].clone())
        .collect();
    assert_eq!(
        fields,
        [
            json!("spec.leaseDurationSeconds"),
            json!("spec.leaseTransitions")
        ]
    );

    let cm = json!({"metadata": {"name": "cm"}, "data": {"bad key": "1"}}).to_string();
    let r = send(e.addr(), "POST", CONFIGMAPS, &[JSON], &cm)
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "data[bad key]");
    assert_eq!(r.json()["details"]["kind"], "ConfigMap");
}

#[tokio::test]
async fn namespace_and_name_mismatches_are_400() {
    let e = emu().await;
    let body = json!({"metadata": {"name": "x", "namespace": "other"}, "spec": {}}).to_string();
    let r = send(e.addr(), "POST", LEASES, &[JSON], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    create_lease(&e, "x").await;
    let body = json!({"metadata": {"name": "y", "resourceVersion": "1"}, "spec": {}}).to_string();
    let r = send(e.addr(), "PUT", &format!("{LEASES}/x"), &[JSON], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "the name of the object (y) does not match the name on the URL (x)"
    );
    let body = json!({"apiVersion": "v1", "kind": "Lease", "metadata": {"name": "z"}}).to_string();
    let r = send(e.addr(), "POST", LEASES, &[JSON], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "the API version in the data (v1) does not match the expected API version (coordination.k8s.io/v1)");
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_404_namespaces() {
    let e = emu().await;
    let r = send(
        e.addr(),
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/nope/leases",
        &[JSON],
        &lease("x", json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
    assert_eq!(
        r.json()["details"],
        json!({"name": "nope", "kind": "namespaces"})
    );
}

#[tokio::test]
async fn what_real_clients_send_is_accepted() {
    let e = emu().await;
    // No Content-Type, no Accept, no User-Agent; `?&` in the query.
    let r = send(
        e.addr(),
        "POST",
        &format!("{LEASES}?&fieldManager=x"),
        &[],
        &lease("a", json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(e.addr(), "GET", &format!("{LEASES}/a?"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let log = e.request_log();
    assert_eq!(log[0].client, "anonymous");
    assert_eq!(log[0].verb, "create");
}

#[tokio::test]
async fn unknown_paths_are_plain_text_404() {
    let e = emu().await;
    let r = send(e.addr(), "GET", "/apis/apps/v1/deployments", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "404 page not found\n");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
}

#[tokio::test]
async fn delete_checks_preconditions_then_answers_success_status() {
    let e = emu().await;
    let created = create_lease(&e, "lock").await;
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    let r = send(
        e.addr(),
        "DELETE",
        &format!("{LEASES}/lock?"),
        &[JSON],
        r#"{"preconditions":{"resourceVersion":"1"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    // The registry's Delete words this itself and names the Kind (as kube-apiserver 1.20
    // answers in tests/differential.rs), unlike an update's storage-layer precondition.
    assert_eq!(
        r.json()["message"],
        format!("Operation cannot be fulfilled on Lease.coordination.k8s.io \"lock\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified")
    );
    assert_eq!(r.json()["details"]["kind"], "Lease");
    let r = send(
        e.addr(),
        "DELETE",
        &format!("{LEASES}/lock?"),
        &[JSON],
        &json!({"preconditions": {"uid": uid, "resourceVersion": rv}}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": "lock", "group": "coordination.k8s.io", "kind": "leases", "uid": uid}})
    );
    let r = send(
        e.addr(),
        "DELETE",
        &format!("{LEASES}/lock?"),
        &[JSON],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn patches_merge_strategic_and_json() {
    let e = emu().await;
    let cm = json!({"metadata": {"name": "cm", "annotations": {"keep": "me"}}, "data": {"a": "1"}})
        .to_string();
    send(e.addr(), "POST", CONFIGMAPS, &[JSON], &cm)
        .await
        .unwrap();
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm?"),
        &[("Content-Type", "application/merge-patch+json")],
        r#"{"data":{"b":"2"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"], json!({"a": "1", "b": "2"}));
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "application/strategic-merge-patch+json")],
        r#"{"data":{"a":null}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.json()["data"], json!({"b": "2"}));
    assert_eq!(r.json()["metadata"]["annotations"], json!({"keep": "me"}));
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "application/json-patch+json")],
        r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["c"], "3");
    // A failing test op is the generic 422.
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "application/json-patch+json")],
        r#"[{"op":"test","path":"/data/c","value":"9"}]"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "the server rejected our request due to an error in our request"
    );
    // A resourceVersion in a patch is a precondition.
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "application/merge-patch+json")],
        r#"{"metadata":{"resourceVersion":"1"},"data":{"d":"4"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "text/plain")],
        "x",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");
    // Patching a missing Lease is 404, not a create.
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{LEASES}/none"),
        &[("Content-Type", "application/merge-patch+json")],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_one_410_error_event() {
    let e = emu().await;
    let created = create_lease(&e, "lock").await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    e.compact();
    let r = send(
        e.addr(),
        "GET",
        &format!(
            "{LEASES}?watch=true&resourceVersion={}",
            rv.parse::<u64>().unwrap() - 1
        ),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let ev: Value = serde_json::from_str(r.body.trim()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(ev["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version: "));
}

#[tokio::test]
async fn watch_ends_at_timeout_seconds_after_sending_history() {
    let e = emu().await;
    let created = create_lease(&e, "lock").await;
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    create_lease(&e, "other").await;
    let mut body = created.clone();
    body["spec"]["holderIdentity"] = json!("b");
    send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/lock"),
        &[JSON],
        &body.to_string(),
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        send(e.addr(), "GET", &format!("{LEASES}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dlock&timeoutSeconds=1"), &[], ""),
    )
    .await
    .expect("the watch ends at its timeout")
    .unwrap();
    let events: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["kind"], "Lease");
    assert_eq!(events[0]["object"]["spec"]["holderIdentity"], "b");
}

#[tokio::test]
async fn list_filters_by_field_selector_and_items_have_no_kind() {
    let e = emu().await;
    create_lease(&e, "a").await;
    create_lease(&e, "b").await;
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}?fieldSelector=metadata.name%3Db"),
        &[],
        "",
    )
    .await
    .unwrap();
    let v = r.json();
    assert_eq!(v["kind"], "LeaseList");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["metadata"]["name"], "b");
    assert!(v["items"][0].get("kind").is_none());
    assert_eq!(
        v["metadata"]["resourceVersion"],
        e.with_store(|s| s.current_rv()).to_string()
    );
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}?fieldSelector=spec.holderIdentity%3Da"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn injected_errors_have_the_real_bodies() {
    let e = emu().await;
    let id = e.add_fault(
        Fault::new(Action::Error {
            code: 429,
            retry_after: Some(3),
        })
        .times(1),
    );
    let r = send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "Too many requests, please try again later.\n");
    assert_eq!(r.header("retry-after"), Some("3"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(e.fault_hits(id), 1);
    // The fault was for one request only.
    assert_eq!(
        send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
            .await
            .unwrap()
            .status,
        404
    );

    for (code, reason) in [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (504, "Timeout"),
    ] {
        e.add_fault(
            Fault::new(Action::Error {
                code,
                retry_after: None,
            })
            .times(1),
        );
        let r = send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, code);
        assert_eq!(r.json()["reason"], reason);
        assert_eq!(r.json()["code"], code);
    }
    e.add_fault(
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .for_client("sa-token")
        .times(1),
    );
    let r = send(
        e.addr(),
        "PUT",
        &format!("{LEASES}/lock"),
        &[("Authorization", "Bearer sa-token")],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "leases.coordination.k8s.io \"lock\" is forbidden: User \"sa-token\" cannot update resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
    );
}

#[tokio::test]
async fn faults_are_scoped_to_one_client() {
    let e = emu().await;
    e.add_fault(Fault::new(Action::Drop).for_client("cut-off"));
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}/x"),
        &[("Authorization", "Bearer cut-off")],
        "",
    )
    .await;
    assert!(r.is_none(), "the connection is dropped without an answer");
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}/x"),
        &[("Authorization", "Bearer fine")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}/x"),
        &[("User-Agent", "cut-off/1.0")],
        "",
    )
    .await;
    assert!(r.is_none(), "a user-agent substring scopes too");
    let log = e.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (
            log[0].client.as_str(),
            log[0].status,
            log[0].fault.is_some()
        ),
        ("cut-off", 0, true)
    );
    assert_eq!(
        (
            log[1].client.as_str(),
            log[1].status,
            log[1].fault.is_some()
        ),
        ("fine", 404, false)
    );
}

#[tokio::test]
async fn latency_and_hang_delay_answers() {
    let e = emu().await;
    e.add_fault(Fault::new(Action::Latency { ms: 300 }).times(1));
    let t = std::time::Instant::now();
    send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    e.add_fault(Fault::new(Action::Hang).lasting(Duration::from_millis(400)));
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        send(e.addr(), "GET", &format!("{LEASES}/x"), &[], ""),
    )
    .await;
    assert!(hung.is_err(), "a hung request gets no answer");
}

#[tokio::test]
async fn authentication_is_enforced_when_tokens_are_configured() {
    let mut cfg = Config::default();
    cfg.tokens.insert("good".into(), "alice".into());
    let e = Emulator::start(cfg).await.unwrap();
    let r = send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
    );
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}/x"),
        &[("Authorization", "Bearer bad")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    let r = send(
        e.addr(),
        "GET",
        &format!("{LEASES}/x"),
        &[("Authorization", "Bearer good")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(e.request_log().last().unwrap().client, "alice");
}

#[tokio::test]
async fn admin_endpoint_adds_faults_and_reads_the_log() {
    let e = emu().await;
    let r = send(
        e.addr(),
        "POST",
        "/_emu/faults",
        &[JSON],
        r#"{"action":{"type":"error","code":503},"count":1,"method":"GET"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        send(e.addr(), "GET", &format!("{LEASES}/x"), &[], "")
            .await
            .unwrap()
            .status,
        503
    );
    let r = send(e.addr(), "GET", "/_emu/log", &[], "").await.unwrap();
    let log = r.json();
    assert_eq!(
        log.as_array().unwrap().len(),
        1,
        "admin requests are not logged"
    );
    assert_eq!(log[0]["status"], 503);
    assert_eq!(log[0]["verb"], "get");
    let r = send(
        e.addr(),
        "POST",
        "/_emu/faults",
        &[JSON],
        r#"{"action":{"type":"explode"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn discovery_documents_are_served() {
    let e = emu().await;
    let r = send(e.addr(), "GET", "/apis/coordination.k8s.io/v1", &[], "")
        .await
        .unwrap();
    assert_eq!(r.json()["resources"][0]["name"], "leases");
    let r = send(e.addr(), "GET", "/api/v1", &[], "").await.unwrap();
    assert_eq!(r.json()["resources"][0]["name"], "configmaps");
    let r = send(e.addr(), "GET", "/version", &[], "").await.unwrap();
    assert_eq!(r.json()["major"], "1");
}

#[tokio::test]
async fn immutable_configmaps_refuse_data_changes() {
    let e = emu().await;
    let cm = json!({"metadata": {"name": "cm"}, "data": {"a": "1"}, "immutable": true}).to_string();
    send(e.addr(), "POST", CONFIGMAPS, &[JSON], &cm)
        .await
        .unwrap();
    let r = send(
        e.addr(),
        "PATCH",
        &format!("{CONFIGMAPS}/cm"),
        &[("Content-Type", "application/merge-patch+json")],
        r#"{"data":{"a":"2"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "data");
}

#[tokio::test]
async fn events_are_created_listed_and_validated() {
    let e = emu().await;
    let ev = json!({"metadata": {"name": "lock.1"}, "involvedObject": {"kind": "Lease", "name": "lock", "namespace": "default"}, "reason": "LeaderElection", "message": "a became leader", "type": "Normal", "count": 1, "firstTimestamp": "2026-11-25T02:50:36Z"});
    let r = send(
        e.addr(),
        "POST",
        "/api/v1/namespaces/default/events",
        &[JSON],
        &ev.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["involvedObject"]["name"], "lock");
    let r = send(
        e.addr(),
        "GET",
        "/api/v1/namespaces/default/events",
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.json()["kind"], "EventList");
    assert_eq!(r.json()["items"][0]["reason"], "LeaderElection");
    let mut bad = ev.clone();
    bad["metadata"]["name"] = json!("lock.2");
    bad["involvedObject"]["namespace"] = json!("other");
    let r = send(
        e.addr(),
        "POST",
        "/api/v1/namespaces/default/events",
        &[JSON],
        &bad.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "involvedObject.namespace"
    );
}

#[tokio::test]
async fn a_put_carrying_the_uid_of_a_deleted_object_is_409_for_both_kinds() {
    // As kube-apiserver answers a leader renewing a deleted lock (tests/differential.rs).
    let e = emu().await;
    for (coll, body) in [
        (LEASES, lease("gone", json!({"holderIdentity": "a"}))),
        (
            CONFIGMAPS,
            json!({"metadata": {"name": "gone"}, "data": {"a": "1"}}).to_string(),
        ),
    ] {
        let created = send(e.addr(), "POST", coll, &[JSON], &body).await.unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
        let mut renew = created.json();
        let uid = renew["metadata"]["uid"].as_str().unwrap().to_string();
        let r = send(e.addr(), "DELETE", &format!("{coll}/gone"), &[JSON], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        renew["metadata"]["labels"] = json!({"renewed": "yes"});
        let r = send(
            e.addr(),
            "PUT",
            &format!("{coll}/gone"),
            &[JSON],
            &renew.to_string(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 409, "{coll}: {}", r.body);
        assert_eq!(r.json()["reason"], "Conflict");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .ends_with(&format!("UID in precondition: {uid}, UID in object meta: ")),
            "{}",
            r.body
        );
        let r = send(e.addr(), "GET", &format!("{coll}/gone"), &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404, "nothing was created");
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let e = emu().await;
    for name in ["c", "a", "b"] {
        let cm = json!({"metadata": {"name": name}}).to_string();
        assert_eq!(
            send(e.addr(), "POST", CONFIGMAPS, &[JSON], &cm)
                .await
                .unwrap()
                .status,
            201
        );
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let first = send(e.addr(), "GET", &format!("{CONFIGMAPS}?limit=2"), &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let second = send(
        e.addr(),
        "GET",
        &format!("{CONFIGMAPS}?limit=2&continue={token}"),
        &[],
        "",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(names(&second), ["c"]);
    assert_eq!(second["metadata"].get("continue"), None);
    assert_eq!(
        second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "later pages are at the first page's version"
    );
    let all = send(e.addr(), "GET", &format!("{CONFIGMAPS}?limit=0"), &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(names(&all), ["a", "b", "c"], "limit 0 is no limit");
    let bad = send(
        e.addr(),
        "GET",
        &format!("{CONFIGMAPS}?continue=garbage"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400);
    // Compacted past the first page's version: its token cannot be honoured any more.
    let cm = json!({"metadata": {"name": "d"}}).to_string();
    assert_eq!(
        send(e.addr(), "POST", CONFIGMAPS, &[JSON], &cm)
            .await
            .unwrap()
            .status,
        201
    );
    e.compact();
    let old = send(
        e.addr(),
        "GET",
        &format!("{CONFIGMAPS}?limit=2&continue={token}"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        old.status, 410,
        "a token from before a compaction: {}",
        old.body
    );
}
