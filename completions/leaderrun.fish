# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_leaderrun_global_optspecs
    string join \n h/help V/version
end

function __fish_leaderrun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_leaderrun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_leaderrun_using_subcommand
    set -l cmd (__fish_leaderrun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c leaderrun -n "__fish_leaderrun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -s V -l version -d 'Print version'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -f -a "run" -d 'Acquire the lock, run the command while leader, release when it ends (the default)'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -f -a "inspect" -d 'Show who holds a lock, since when, and whether it has expired'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -f -a "force-release" -d 'Clear the holder of a lock (for a holder that is gone), with an optimistic write'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -f -a "step-down" -d 'Ask the holder to let go: it stops its child, then releases; waits for that'
complete -c leaderrun -n "__fish_leaderrun_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l lock -d 'Kind of lock object' -r -f -a "lease\t'A coordination.k8s.io/v1 Lease'
configmap\t'A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation'"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l name -d 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -s n -l namespace -d 'Namespace [default: with a kubeconfig, its context\'s ("default" when it names none); without one, in a pod, the service account\'s]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l kubeconfig -d 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]' -r -F
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l context -d 'Kubeconfig context to use [default: the current context]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l identity -d 'Identity written as holder [default: $POD_NAME, else the host name, plus a random suffix]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l lease-duration -d 'How long others wait after last seeing the record change before taking over' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l renew-deadline -d 'How long the leader may go without a successful renew before it stops the child' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l retry-period -d 'Interval between renews and between tries to acquire' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l kill-grace -d 'Time between the stop signal and KILL when the child must stop' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l conflict-exit-code -d 'Exit code for --no-wait when the lock is held' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l wait-timeout -d 'Give up waiting for the lock after this long (exit 124)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l keep-after-exit -d 'When the child ends, keep holding (and renewing) the lock for this long, then release and exit (for cron: a copy that fires a little late on another host does not run the job again)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l once-per -d 'Run the job at most once per period D: a copy that becomes leader reads the lock\'s last run, and if a run succeeded (exit 0) and ended less than D ago, releases at once and exits 0 without running the job (a failed run does not count). Per slot with --slots. Needs the release\'s record of the run, so not with --no-release' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l stop-signal -d 'The signal that starts a stop of the child (lost leadership, step-down, leftovers): a name with or without SIG (TERM, SIGINT, QUIT) or a number. KILL follows after --kill-grace. Signals leaderrun receives are forwarded as they are' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l slots -d 'At most N copies run the command at once: N locks NAME-0 to NAME-(N-1), of which a copy holds one (the child gets LEADERRUN_SLOT). With 1, the lock is NAME itself' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l health-addr -d 'Serve /healthz (503 once a leader is past its renew deadline), /readyz (200 while taking part: a leader renewing on time, or a standby the API server answered within a lease duration), /leaderz (200 only while leader) and /metrics on this address' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l service -d 'While leading, make the Endpoints of this Service (one without a selector, in the lock\'s namespace) this pod\'s address alone, with the Service\'s target ports; take it out again when leadership ends. Needs --pod-ip' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l pod-ip -d 'This pod\'s IP address, for --service (in a pod: env POD_IP from fieldRef status.podIP)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l no-wait -d 'Exit at once if another holds the lock, instead of waiting. A lock whose own timestamps show it lapsed over a minute ago is watched for one lease duration and taken if it does not change'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l no-release -d 'Do not release the lock when the child ends; it expires after the lease duration'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l rejoin -d 'After lost leadership, stop the child and wait for the lock again (a standby once more) instead of exiting 121. When the child exits on its own, leaderrun still exits with its status'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -l events -d 'Record Kubernetes Events on the lock object ("became leader", "lost leadership", "stopped leading"); needs RBAC create on events'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -s v -l verbose -d 'More log output (repeat for more)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -s q -l quiet -d 'Less log output (repeat for less)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l lock -d 'Kind of lock object' -r -f -a "lease\t'A coordination.k8s.io/v1 Lease'
configmap\t'A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation'"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l name -d 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s n -l namespace -d 'Namespace [default: with a kubeconfig, its context\'s ("default" when it names none); without one, in a pod, the service account\'s]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l kubeconfig -d 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]' -r -F
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l context -d 'Kubeconfig context to use [default: the current context]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l slots -d 'Show every slot of a lock run with --slots N (NAME-0 to NAME-(N-1))' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s w -l watch -d 'Print a line each time the holder or renew time changes, until interrupted'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s A -l all-namespaces -d 'Without --name: the locks leaderrun manages in every namespace (where RBAC allows listing them), not only in --namespace'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s v -l verbose -d 'More log output (repeat for more)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s q -l quiet -d 'Less log output (repeat for less)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l lock -d 'Kind of lock object' -r -f -a "lease\t'A coordination.k8s.io/v1 Lease'
configmap\t'A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation'"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l name -d 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -s n -l namespace -d 'Namespace [default: with a kubeconfig, its context\'s ("default" when it names none); without one, in a pod, the service account\'s]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l kubeconfig -d 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]' -r -F
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l context -d 'Kubeconfig context to use [default: the current context]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l slot -d 'The slot of a lock run with --slots (the object NAME-K)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l holder -d 'Release only if this identity holds the lock' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -l yes -d 'Release whoever holds it (needed without --holder)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -s v -l verbose -d 'More log output (repeat for more)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -s q -l quiet -d 'Less log output (repeat for less)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand force-release" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l lock -d 'Kind of lock object' -r -f -a "lease\t'A coordination.k8s.io/v1 Lease'
configmap\t'A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation'"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l name -d 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -s n -l namespace -d 'Namespace [default: with a kubeconfig, its context\'s ("default" when it names none); without one, in a pod, the service account\'s]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l kubeconfig -d 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]' -r -F
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l context -d 'Kubeconfig context to use [default: the current context]' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l slot -d 'The slot of a lock run with --slots (the object NAME-K)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l holder -d 'Ask only if this identity holds the lock' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l timeout -d 'How long to wait for the holder to let go (exit 7 after)' -r
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -s v -l verbose -d 'More log output (repeat for more)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -s q -l quiet -d 'Less log output (repeat for less)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand step-down" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand help; and not __fish_seen_subcommand_from run inspect force-release step-down help" -f -a "run" -d 'Acquire the lock, run the command while leader, release when it ends (the default)'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand help; and not __fish_seen_subcommand_from run inspect force-release step-down help" -f -a "inspect" -d 'Show who holds a lock, since when, and whether it has expired'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand help; and not __fish_seen_subcommand_from run inspect force-release step-down help" -f -a "force-release" -d 'Clear the holder of a lock (for a holder that is gone), with an optimistic write'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand help; and not __fish_seen_subcommand_from run inspect force-release step-down help" -f -a "step-down" -d 'Ask the holder to let go: it stops its child, then releases; waits for that'
complete -c leaderrun -n "__fish_leaderrun_using_subcommand help; and not __fish_seen_subcommand_from run inspect force-release step-down help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
