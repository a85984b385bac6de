
use builtin;
use str;

set edit:completion:arg-completer[leaderrun] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'leaderrun'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'leaderrun'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Acquire the lock, run the command while leader, release when it ends (the default)'
            cand inspect 'Show who holds a lock, since when, and whether it has expired'
            cand force-release 'Clear the holder of a lock (for a holder that is gone), with an optimistic write'
            cand step-down 'Ask the holder to let go: it stops its child, then releases; waits for that'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'leaderrun;run'= {
            cand --lock 'Kind of lock object'
            cand --name 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages'
            cand -n 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --namespace 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --kubeconfig 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]'
            cand --context 'Kubeconfig context to use [default: the current context]'
            cand --identity 'Identity written as holder [default: $POD_NAME, else the host name, plus a random suffix]'
            cand --lease-duration 'How long others wait after last seeing the record change before taking over'
            cand --renew-deadline 'How long the leader may go without a successful renew before it stops the child'
            cand --retry-period 'Interval between renews and between tries to acquire'
            cand --kill-grace 'Time between the stop signal and KILL when the child must stop'
            cand --conflict-exit-code 'Exit code for --no-wait when the lock is held'
            cand --wait-timeout 'Give up waiting for the lock after this long (exit 124)'
            cand --keep-after-exit 'When the child ends, keep holding (and renewing) the lock for this long, then release and exit (for cron: a copy that fires a little late on another host does not run the job again)'
            cand --once-per 'Run the job at most once per period D: a copy that becomes leader reads the lock''s last run, and if a run succeeded (exit 0) and ended less than D ago, releases at once and exits 0 without running the job (a failed run does not count). Per slot with --slots. Needs the release''s record of the run, so not with --no-release'
            cand --stop-signal 'The signal that starts a stop of the child (lost leadership, step-down, leftovers): a name with or without SIG (TERM, SIGINT, QUIT) or a number. KILL follows after --kill-grace. Signals leaderrun receives are forwarded as they are'
            cand --slots 'At most N copies run the command at once: N locks NAME-0 to NAME-(N-1), of which a copy holds one (the child gets LEADERRUN_SLOT). With 1, the lock is NAME itself'
            cand --health-addr 'Serve /healthz (503 once a leader is past its renew deadline), /readyz (200 while taking part: a leader renewing on time, or a standby the API server answered within a lease duration), /leaderz (200 only while leader) and /metrics on this address'
            cand --service 'While leading, make the Endpoints of this Service (one without a selector, in the lock''s namespace) this pod''s address alone, with the Service''s target ports; take it out again when leadership ends. Needs --pod-ip'
            cand --pod-ip 'This pod''s IP address, for --service (in a pod: env POD_IP from fieldRef status.podIP)'
            cand --log-format 'Log format on stderr'
            cand --no-wait 'Exit at once if another holds the lock, instead of waiting. A lock whose own timestamps show it lapsed over a minute ago is watched for one lease duration and taken if it does not change'
            cand --no-release 'Do not release the lock when the child ends; it expires after the lease duration'
            cand --rejoin 'After lost leadership, stop the child and wait for the lock again (a standby once more) instead of exiting 121. When the child exits on its own, leaderrun still exits with its status'
            cand --events 'Record Kubernetes Events on the lock object ("became leader", "lost leadership", "stopped leading"); needs RBAC create on events'
            cand -v 'More log output (repeat for more)'
            cand --verbose 'More log output (repeat for more)'
            cand -q 'Less log output (repeat for less)'
            cand --quiet 'Less log output (repeat for less)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'leaderrun;inspect'= {
            cand --lock 'Kind of lock object'
            cand --name 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages'
            cand -n 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --namespace 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --kubeconfig 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]'
            cand --context 'Kubeconfig context to use [default: the current context]'
            cand -o 'Output format'
            cand --output 'Output format'
            cand --slots 'Show every slot of a lock run with --slots N (NAME-0 to NAME-(N-1))'
            cand --log-format 'Log format on stderr'
            cand -w 'Print a line each time the holder or renew time changes, until interrupted'
            cand --watch 'Print a line each time the holder or renew time changes, until interrupted'
            cand -A 'Without --name: the locks leaderrun manages in every namespace (where RBAC allows listing them), not only in --namespace'
            cand --all-namespaces 'Without --name: the locks leaderrun manages in every namespace (where RBAC allows listing them), not only in --namespace'
            cand -v 'More log output (repeat for more)'
            cand --verbose 'More log output (repeat for more)'
            cand -q 'Less log output (repeat for less)'
            cand --quiet 'Less log output (repeat for less)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'leaderrun;force-release'= {
            cand --lock 'Kind of lock object'
            cand --name 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages'
            cand -n 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --namespace 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --kubeconfig 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]'
            cand --context 'Kubeconfig context to use [default: the current context]'
            cand --slot 'The slot of a lock run with --slots (the object NAME-K)'
            cand --holder 'Release only if this identity holds the lock'
            cand --log-format 'Log format on stderr'
            cand --yes 'Release whoever holds it (needed without --holder)'
            cand -v 'More log output (repeat for more)'
            cand --verbose 'More log output (repeat for more)'
            cand -q 'Less log output (repeat for less)'
            cand --quiet 'Less log output (repeat for less)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'leaderrun;step-down'= {
            cand --lock 'Kind of lock object'
            cand --name 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages'
            cand -n 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --namespace 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]'
            cand --kubeconfig 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]'
            cand --context 'Kubeconfig context to use [default: the current context]'
            cand --slot 'The slot of a lock run with --slots (the object NAME-K)'
            cand --holder 'Ask only if this identity holds the lock'
            cand --timeout 'How long to wait for the holder to let go (exit 7 after)'
            cand --log-format 'Log format on stderr'
            cand -v 'More log output (repeat for more)'
            cand --verbose 'More log output (repeat for more)'
            cand -q 'Less log output (repeat for less)'
            cand --quiet 'Less log output (repeat for less)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'leaderrun;help'= {
            cand run 'Acquire the lock, run the command while leader, release when it ends (the default)'
            cand inspect 'Show who holds a lock, since when, and whether it has expired'
            cand force-release 'Clear the holder of a lock (for a holder that is gone), with an optimistic write'
            cand step-down 'Ask the holder to let go: it stops its child, then releases; waits for that'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'leaderrun;help;run'= {
        }
        &'leaderrun;help;inspect'= {
        }
        &'leaderrun;help;force-release'= {
        }
        &'leaderrun;help;step-down'= {
        }
        &'leaderrun;help;help'= {
        }
    ]
    $completions[$command]
}
