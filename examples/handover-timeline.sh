#!/usr/bin/env bash
# Where one graceful handover's time goes, from leaderrun's own debug log:
#
#   cargo build --release && examples/handover-timeline.sh KUBECONFIG [RUNS]
#
# Leader a runs a 1 s job; standby b waits, takes over, and runs a job that notes its start.
# Times are microseconds from the moment a's job ended (its last command's clock).
set -euo pipefail
kc=${1:?usage: $0 KUBECONFIG [RUNS]}
runs=${2:-3}
bin=$(dirname "$0")/../target/release/leaderrun
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
timing=(--lease-duration 10s --renew-deadline 5s --retry-period 1s)
export RUST_LOG=leaderrun=debug
for _ in $(seq "$runs"); do
  d=$(mktemp -d)
  name=timeline-$RANDOM
  "$bin" --kubeconfig "$kc" --lock lease --name "$name" --identity a "${timing[@]}" \
    -- sh -c "sleep 1; date +%s%N > $d/a-end" 2>"$d/a.log" &
  # b starts once a holds the lock, and waits for it.
  until grep -q "became leader" "$d/a.log" 2>/dev/null; do sleep 0.01; done
  "$bin" --kubeconfig "$kc" --lock lease --name "$name" --identity b "${timing[@]}" \
    -- sh -c "date +%s%N > $d/b-start" 2>"$d/b.log" &
  wait
  end=$(cat "$d/a-end")
  echo "handover, a's job end to b's job start: $(( ($(cat "$d/b-start") - end) / 1000 )) us"
  for who in a b; do
    grep -E "child exited|leadership ends|became leader|child started" "$d/$who.log" |
      while read -r at _ rest; do
        t=$(date -d "$at" +%s%N)
        [ "$t" -ge "$end" ] && printf '  %s +%6d us  %s\n' "$who" $(( (t - end) / 1000 )) "${rest%% lock=*}"
      done
  done
  rm -rf "$d"
done
