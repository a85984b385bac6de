// A leader-election candidate using client-go's leaderelection (Kubernetes 1.20's, from
// Debian's source tree), for tests/interop.rs.
//
// Usage: leaderrun-interop-client-go KUBECONFIG lease|configmap NAME IDENTITY LOG LEASE RENEW RETRY
//
// While leading it logs "start IDENTITY 0 NANOS" to LOG; when it stops leading, or on TERM,
// it logs "stop IDENTITY 0 NANOS". On TERM it releases the lock (ReleaseOnCancel) and exits.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	if len(os.Args) != 9 {
		fmt.Fprintln(os.Stderr, "usage: KUBECONFIG lease|configmap NAME IDENTITY LOG LEASE RENEW RETRY")
		os.Exit(64)
	}
	a := os.Args[1:]
	kubeconfig, kind, name, id, logPath := a[0], a[1], a[2], a[3], a[4]
	secs := func(s string) time.Duration {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%q is not whole seconds\n", s)
			os.Exit(64)
		}
		return time.Duration(n) * time.Second
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(78)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	lockType := resourcelock.LeasesResourceLock
	if kind == "configmap" {
		lockType = resourcelock.ConfigMapsResourceLock
	}
	lock, err := resourcelock.New(lockType, "default", name, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(64)
	}
	line := func(what string) {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Fprintf(f, "%s %s 0 %d\n", what, id, time.Now().UnixNano())
		f.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		cancel()
	}()
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   secs(a[5]),
		RenewDeadline:   secs(a[6]),
		RetryPeriod:     secs(a[7]),
		ReleaseOnCancel: true,
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			// The "job" runs while leading and stops when the context ends (lost or TERM),
			// before the release.
			OnStartedLeading: func(ctx context.Context) {
				line("start")
				<-ctx.Done()
				line("stop")
			},
			OnStoppedLeading: func() {},
		},
	})
}
