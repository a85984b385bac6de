#!/bin/sh
# The job deploy/cronjob.yaml runs (/app/report.sh in leaderrun:dev): a report that takes
# REPORT_SECONDS (default 90, longer than a once-a-minute schedule), logging its start and stop
# with this host's clock, as /app/worker does.
# now: the wall clock in nanoseconds.
. "$(dirname "$0")/clock.sh"
say() { echo "$1 ${LEADERRUN_IDENTITY:-?} ${LEADERRUN_FENCING_TOKEN:-?} $(now)"; }
say start
trap 'say stop; exit 143' TERM INT
sleep "${REPORT_SECONDS:-90}" &
wait $!
say stop
