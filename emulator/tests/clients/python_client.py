"""The Python kubernetes client against kube-emulator or a real API server.

Usage: python_client.py KUBECONFIG [NAMESPACE]. Exits non-zero, naming the failed check.
"""
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def expect_status(code, fn, what):
    try:
        fn()
    except ApiException as e:
        if e.status != code:
            sys.exit(f"{what}: expected {code}, got {e.status}: {e.body}")
        return e
    sys.exit(f"{what}: expected ApiException {code}, got success")


def main():
    config.load_kube_config(config_file=sys.argv[1])
    coord = client.CoordinationV1Api()
    core = client.CoreV1Api()
    ns = sys.argv[2] if len(sys.argv) > 2 else "default"

    expect_status(404, lambda: coord.read_namespaced_lease("py-lock", ns), "read of a missing lease")

    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="py-lock"),
        spec=client.V1LeaseSpec(holder_identity="py", lease_duration_seconds=15),
    )
    created = coord.create_namespaced_lease(ns, body)
    assert created.metadata.resource_version, "create sets resourceVersion"
    assert created.spec.holder_identity == "py"

    e = expect_status(409, lambda: coord.create_namespaced_lease(ns, body), "create of an existing name")
    assert '"reason":"AlreadyExists"' in e.body, e.body

    got = coord.read_namespaced_lease("py-lock", ns)
    assert got.spec.lease_duration_seconds == 15
    got.spec.holder_identity = "py-2"
    replaced = coord.replace_namespaced_lease("py-lock", ns, got)
    assert replaced.metadata.resource_version != got.metadata.resource_version

    # `got` still carries the version before the replace: stale.
    got.spec.holder_identity = "py-3"
    e = expect_status(409, lambda: coord.replace_namespaced_lease("py-lock", ns, got), "replace with a stale resourceVersion")
    assert '"reason":"Conflict"' in e.body, e.body

    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"k": "v"})
    core.create_namespaced_config_map(ns, cm)
    assert core.read_namespaced_config_map("py-cm", ns).data == {"k": "v"}
    expect_status(409, lambda: core.create_namespaced_config_map(ns, cm), "create of an existing configmap")
    coord.delete_namespaced_lease("py-lock", ns)
    expect_status(404, lambda: coord.read_namespaced_lease("py-lock", ns), "read after delete")
    print("python client: all checks passed")


if __name__ == "__main__":
    main()
