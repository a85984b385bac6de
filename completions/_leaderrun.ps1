
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'leaderrun' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'leaderrun'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'leaderrun' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Acquire the lock, run the command while leader, release when it ends (the default)')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Show who holds a lock, since when, and whether it has expired')
            [CompletionResult]::new('force-release', 'force-release', [CompletionResultType]::ParameterValue, 'Clear the holder of a lock (for a holder that is gone), with an optimistic write')
            [CompletionResult]::new('step-down', 'step-down', [CompletionResultType]::ParameterValue, 'Ask the holder to let go: it stops its child, then releases; waits for that')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'leaderrun;run' {
            [CompletionResult]::new('--lock', '--lock', [CompletionResultType]::ParameterName, 'Kind of lock object')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use [default: the current context]')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity written as holder [default: $POD_NAME, else the host name, plus a random suffix]')
            [CompletionResult]::new('--lease-duration', '--lease-duration', [CompletionResultType]::ParameterName, 'How long others wait after last seeing the record change before taking over')
            [CompletionResult]::new('--renew-deadline', '--renew-deadline', [CompletionResultType]::ParameterName, 'How long the leader may go without a successful renew before it stops the child')
            [CompletionResult]::new('--retry-period', '--retry-period', [CompletionResultType]::ParameterName, 'Interval between renews and between tries to acquire')
            [CompletionResult]::new('--kill-grace', '--kill-grace', [CompletionResultType]::ParameterName, 'Time between the stop signal and KILL when the child must stop')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit code for --no-wait when the lock is held')
            [CompletionResult]::new('--wait-timeout', '--wait-timeout', [CompletionResultType]::ParameterName, 'Give up waiting for the lock after this long (exit 124)')
            [CompletionResult]::new('--keep-after-exit', '--keep-after-exit', [CompletionResultType]::ParameterName, 'When the child ends, keep holding (and renewing) the lock for this long, then release and exit (for cron: a copy that fires a little late on another host does not run the job again)')
            [CompletionResult]::new('--once-per', '--once-per', [CompletionResultType]::ParameterName, 'Run the job at most once per period D: a copy that becomes leader reads the lock''s last run, and if a run succeeded (exit 0) and ended less than D ago, releases at once and exits 0 without running the job (a failed run does not count). Per slot with --slots. Needs the release''s record of the run, so not with --no-release')
            [CompletionResult]::new('--stop-signal', '--stop-signal', [CompletionResultType]::ParameterName, 'The signal that starts a stop of the child (lost leadership, step-down, leftovers): a name with or without SIG (TERM, SIGINT, QUIT) or a number. KILL follows after --kill-grace. Signals leaderrun receives are forwarded as they are')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'At most N copies run the command at once: N locks NAME-0 to NAME-(N-1), of which a copy holds one (the child gets LEADERRUN_SLOT). With 1, the lock is NAME itself')
            [CompletionResult]::new('--health-addr', '--health-addr', [CompletionResultType]::ParameterName, 'Serve /healthz (503 once a leader is past its renew deadline), /readyz (200 while taking part: a leader renewing on time, or a standby the API server answered within a lease duration), /leaderz (200 only while leader) and /metrics on this address')
            [CompletionResult]::new('--service', '--service', [CompletionResultType]::ParameterName, 'While leading, make the Endpoints of this Service (one without a selector, in the lock''s namespace) this pod''s address alone, with the Service''s target ports; take it out again when leadership ends. Needs --pod-ip')
            [CompletionResult]::new('--pod-ip', '--pod-ip', [CompletionResultType]::ParameterName, 'This pod''s IP address, for --service (in a pod: env POD_IP from fieldRef status.podIP)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Exit at once if another holds the lock, instead of waiting. A lock whose own timestamps show it lapsed over a minute ago is watched for one lease duration and taken if it does not change')
            [CompletionResult]::new('--no-release', '--no-release', [CompletionResultType]::ParameterName, 'Do not release the lock when the child ends; it expires after the lease duration')
            [CompletionResult]::new('--rejoin', '--rejoin', [CompletionResultType]::ParameterName, 'After lost leadership, stop the child and wait for the lock again (a standby once more) instead of exiting 121. When the child exits on its own, leaderrun still exits with its status')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Record Kubernetes Events on the lock object ("became leader", "lost leadership", "stopped leading"); needs RBAC create on events')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'leaderrun;inspect' {
            [CompletionResult]::new('--lock', '--lock', [CompletionResultType]::ParameterName, 'Kind of lock object')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use [default: the current context]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Show every slot of a lock run with --slots N (NAME-0 to NAME-(N-1))')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Print a line each time the holder or renew time changes, until interrupted')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Print a line each time the holder or renew time changes, until interrupted')
            [CompletionResult]::new('-A', '-A ', [CompletionResultType]::ParameterName, 'Without --name: the locks leaderrun manages in every namespace (where RBAC allows listing them), not only in --namespace')
            [CompletionResult]::new('--all-namespaces', '--all-namespaces', [CompletionResultType]::ParameterName, 'Without --name: the locks leaderrun manages in every namespace (where RBAC allows listing them), not only in --namespace')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'leaderrun;force-release' {
            [CompletionResult]::new('--lock', '--lock', [CompletionResultType]::ParameterName, 'Kind of lock object')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use [default: the current context]')
            [CompletionResult]::new('--slot', '--slot', [CompletionResultType]::ParameterName, 'The slot of a lock run with --slots (the object NAME-K)')
            [CompletionResult]::new('--holder', '--holder', [CompletionResultType]::ParameterName, 'Release only if this identity holds the lock')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Release whoever holds it (needed without --holder)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'leaderrun;step-down' {
            [CompletionResult]::new('--lock', '--lock', [CompletionResultType]::ParameterName, 'Kind of lock object')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`, which without it lists the locks leaderrun manages')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Namespace [default: with a kubeconfig, its context''s ("default" when it names none); without one, in a pod, the service account''s]')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster]')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use [default: the current context]')
            [CompletionResult]::new('--slot', '--slot', [CompletionResultType]::ParameterName, 'The slot of a lock run with --slots (the object NAME-K)')
            [CompletionResult]::new('--holder', '--holder', [CompletionResultType]::ParameterName, 'Ask only if this identity holds the lock')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the holder to let go (exit 7 after)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (repeat for less)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'leaderrun;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Acquire the lock, run the command while leader, release when it ends (the default)')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Show who holds a lock, since when, and whether it has expired')
            [CompletionResult]::new('force-release', 'force-release', [CompletionResultType]::ParameterValue, 'Clear the holder of a lock (for a holder that is gone), with an optimistic write')
            [CompletionResult]::new('step-down', 'step-down', [CompletionResultType]::ParameterValue, 'Ask the holder to let go: it stops its child, then releases; waits for that')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'leaderrun;help;run' {
            break
        }
        'leaderrun;help;inspect' {
            break
        }
        'leaderrun;help;force-release' {
            break
        }
        'leaderrun;help;step-down' {
            break
        }
        'leaderrun;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
