"""A leader-election candidate using the Python kubernetes client's LeaderElection.

Usage: py_candidate.py KUBECONFIG lease|configmap NAME IDENTITY LOG LEASE RENEW RETRY [WORK]

While leading it logs "start IDENTITY 0 NANOS" to LOG; when it stops leading, or on
TERM, it logs "stop IDENTITY 0 NANOS" and exits (the job ends with the process).
With WORK > 0 the job ends by itself after WORK seconds, and the process exits:
the Python client has no release, so the lock then expires.
"""
import os
import signal
import sys
import threading
import time

from kubernetes import config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.configmaplock import ConfigMapLock
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

kubeconfig, kind, name, identity, log = sys.argv[1:6]
# Whole seconds: the client writes str(lease_duration) and reads it back with int().
lease, renew, retry = (int(x) for x in sys.argv[6:9])
work = float(sys.argv[9]) if len(sys.argv) > 9 else 0
leading = threading.Event()


def line(what):
    with open(log, "a") as f:
        f.write(f"{what} {identity} 0 {time.time_ns()}\n")


def started():
    leading.set()
    line("start")
    if work > 0:
        time.sleep(work)
        stopped()
    while True:
        time.sleep(0.2)


def stopped():
    if leading.is_set():
        line("stop")
    os._exit(0)


def on_term(signum, frame):
    stopped()


signal.signal(signal.SIGTERM, on_term)
config.load_kube_config(config_file=kubeconfig)
if kind == "lease":
    lock = LeaseLock(name, "default", identity)
else:
    lock = ConfigMapLock(name, "default", identity)
cfg = electionconfig.Config(lock, lease_duration=lease, renew_deadline=renew, retry_period=retry,
                            onstarted_leading=started, onstopped_leading=stopped)
leaderelection.LeaderElection(cfg).run()
