#!/usr/bin/env bash
# Writes .cargo/hot-code.txt: the functions a leader runs while it leads, which build.rs has the
# linker place together (see there for why).
#
#   examples/hot-code.sh [KUBECONFIG...]     default: a kube-emulator of its own
#
# Each kubeconfig is one profile (the emulator speaks HTTP/1.1, a real API server HTTP/2 over
# TLS: give both for both paths). leaderrun and its guard run under valgrind's callgrind with
# fast renews; the counts are zeroed once the job runs and dumped 20 s later, so what is listed
# is what leading runs, not what starting runs. The release build is the one shipped (same
# profile, so the same symbol names), from a scratch copy of the working tree where one line
# lets the guard be started through valgrind too: valgrind cannot run /proc/self/exe. Needs
# valgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "hot-code: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
work=$(mktemp -d)
# At the same place each run: the build script's output, which names the list by its path, is
# kept from one run to the next.
scratch="$root/target/hot-code/tree"
cleanup() {
  pkill -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The working tree as it is, committed or not.
rm -rf "$scratch" && mkdir -p "$scratch"
(cd "$root" && git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- . "$scratch")
spawn='std::process::Command::new("/proc/self/exe")'
grep -q "$spawn" "$scratch/src/standby.rs" || { echo "hot-code: src/standby.rs no longer starts the guard as $spawn" >&2; exit 1; }
sed -i "s|$spawn|std::process::Command::new(std::env::var_os(\"HOT_CODE_GUARD\").unwrap_or(\"/proc/self/exe\".into()))|" \
  "$scratch/src/standby.rs"
# leaderrun alone, as `cargo build --release` builds it: built beside the emulator or an
# example, its dependencies get other features and LLVM numbers its local copies differently.
(cd "$scratch" && export CARGO_TARGET_DIR="$root/target/hot-code" &&
  cargo build --release --bin leaderrun >&2 && cargo build --release -p kube-emulator >&2)
bin="$root/target/hot-code/release/leaderrun"

configs=("$@")
if [ ${#configs[@]} = 0 ]; then
  "$root/target/hot-code/release/kube-emulator" --kubeconfig-out "$work/emulator.kubeconfig" >"$work/emulator.log" 2>&1 &
  for _ in $(seq 100); do [ -s "$work/emulator.kubeconfig" ] && break; sleep 0.1; done
  configs=("$work/emulator.kubeconfig")
fi

# The guard under callgrind too, each in a file of its own.
cat >"$work/guard" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/guard.%p.out "$bin" "\$@"
EOF
chmod +x "$work/guard"

n=0
for kc in "${configs[@]}"; do
  n=$((n + 1))
  log="$work/leader.$n.log"
  HOT_CODE_GUARD="$work/guard" valgrind --tool=callgrind --demangle=no \
    --callgrind-out-file="$work/leader.$n.out" "$bin" --kubeconfig "$kc" --lock lease \
    --name "hot-code-$$-$n" --identity hot-code --lease-duration 8s --renew-deadline 4s \
    --kill-grace 3s --retry-period 300ms -- sh -c "touch $work/job.$n; exec sleep 600" 2>"$log" &
  leader=$!
  for _ in $(seq 600); do [ -e "$work/job.$n" ] && break; sleep 0.1; done
  [ -e "$work/job.$n" ] || { echo "hot-code: the job did not start:" >&2; cat "$log" >&2; exit 1; }
  sleep 2
  callgrind_control -z >/dev/null
  sleep 20
  callgrind_control -d >/dev/null
  sleep 1
  kill -TERM "$leader"
  wait "$leader" || true
done

# Every function named in a dump (called or calling) that the binary defines as code, in the
# binary's own order.
python3 - "$bin" "$work" >"$root/.cargo/hot-code.txt" <<'EOF'
import glob, re, subprocess, sys
binary, work = sys.argv[1], sys.argv[2]
names = set()
for path in glob.glob(f"{work}/*.out*"):
    for line in open(path, errors="replace"):
        m = re.match(r"c?fn=\(\d+\) (\S+)", line)
        if m:
            names.add(m.group(1))
code = {}
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tT":
        code[f[2]] = int(f[0], 16)
hot = sorted((n for n in names if n in code), key=code.get)
if len(hot) < 100:
    sys.exit(f"hot-code: only {len(hot)} functions seen; did the profile run?")
print("\n".join(hot))
print(f"hot-code: {len(hot)} functions", file=sys.stderr)
EOF
