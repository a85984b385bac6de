#!/usr/bin/env python3
"""Pack a folder as a one-layer OCI image archive, without Docker or a registry.

    deploy/oci-archive.py --rootfs DIR --name leaderrun:dev --out image.tar \
        [--entrypoint '["/usr/local/bin/leaderrun"]'] [--cmd '[...]'] [--env K=V ...]

The archive is an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/...), with a
docker-style manifest.json beside it, so `ctr -n k8s.io images import`, `podman load` and
`docker load` all take it. The layer is reproducible: entries sorted, owned by root, mtime 0.
"""

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def layer_tar(rootfs: str, out: str) -> None:
    """The layer: every file under rootfs, sorted, with fixed owners and times."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--name", required=True, help="repository:tag, e.g. leaderrun:dev")
    ap.add_argument("--out", required=True)
    ap.add_argument("--entrypoint", default="null", help="JSON list")
    ap.add_argument("--cmd", default="null", help="JSON list")
    ap.add_argument("--env", action="append", default=[], help="K=V (PATH is set by default)")
    args = ap.parse_args()
    if ":" not in args.name.rsplit("/", 1)[-1]:
        ap.error(f"--name {args.name!r} needs a tag, e.g. {args.name}:dev")

    with tempfile.TemporaryDirectory() as tmp:
        layer = os.path.join(tmp, "layer.tar")
        layer_tar(args.rootfs, layer)
        layer_digest = sha256_file(layer)
        env = [DEFAULT_PATH] + [e for e in args.env if not e.startswith("PATH=")]
        if any(e.startswith("PATH=") for e in args.env):
            env = args.env
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": env,
                "Entrypoint": json.loads(args.entrypoint),
                "Cmd": json.loads(args.cmd),
            },
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "deploy/oci-archive.py"}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_digest}",
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}",
                    "size": os.path.getsize(layer),
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
        repo, tag = args.name.rsplit(":", 1)
        full = args.name if "/" in repo else f"docker.io/library/{args.name}"
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{manifest_digest}",
                    "size": len(manifest_bytes),
                    "annotations": {
                        "io.containerd.image.name": full,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        docker_manifest = [
            {
                "Config": f"blobs/sha256/{config_digest}",
                "RepoTags": [args.name],
                "Layers": [f"blobs/sha256/{layer_digest}"],
            }
        ]
        tmp_out = f"{args.out}.tmp.{os.getpid()}"
        with tarfile.open(tmp_out, "w") as out:
            add_bytes(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add_bytes(out, "index.json", json.dumps(index).encode())
            add_bytes(out, "manifest.json", json.dumps(docker_manifest).encode())
            add_bytes(out, f"blobs/sha256/{config_digest}", config_bytes)
            add_bytes(out, f"blobs/sha256/{manifest_digest}", manifest_bytes)
            out.add(layer, arcname=f"blobs/sha256/{layer_digest}")
        os.replace(tmp_out, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
