// A leader-election candidate using client-go's leaderelection (Kubernetes 1.20's, from
// Debian's source tree), for tests/interop.rs.
//
// Usage: leaderrun-interop-client-go KUBECONFIG lease|configmap NAME IDENTITY LOG LEASE RENEW RETRY [keep]
//
// While leading it logs "start IDENTITY 0 NANOS" to LOG; when it stops leading, or on TERM,
// it logs "stop IDENTITY 0 NANOS". On TERM it releases the lock (ReleaseOnCancel) and exits;
// with "keep" it leaves the lock to expire (ReleaseOnCancel false).
//
// The "stop" line is written before anything can release the lock and before the process
// exits: client-go itself runs OnStartedLeading in a goroutine and releases without waiting
// for it, so a line written from that goroutine alone can come after the release, or never.
//
// On stderr, for the test's timing bounds: "renew SENT ACKED" (nanoseconds) for every write of
// our own record that the server accepted and that changed it, and "released ACKED" for an
// accepted release.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// job is the guarded work: started once while leading, stopped once, never started after a
// stop was asked for (a TERM can come between winning and the callback's goroutine running).
type job struct {
	mu      sync.Mutex
	state   int // 0 idle, 1 running, 2 over
	logPath string
	id      string
}

func (j *job) line(what string) {
	f, err := os.OpenFile(j.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Fprintf(f, "%s %s 0 %d\n", what, j.id, time.Now().UnixNano())
	f.Close()
}

func (j *job) start() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == 0 {
		j.state = 1
		j.line("start")
	}
}

// stop ends the job if it runs, and forbids a later start; idempotent.
func (j *job) stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == 1 {
		j.line("stop")
	}
	j.state = 2
}

// guardedLock stops the job before any release is sent, and reports accepted writes.
type guardedLock struct {
	resourcelock.Interface
	job *job
	// A ConfigMap record has whole-second times: a renew within the second of the last one
	// writes the same bytes, which the server takes as no change (no event for a follower).
	seconds bool
	last    []byte
}

// accepted reports a write of our record that the server took, unless it changed nothing.
func (g *guardedLock) accepted(r resourcelock.LeaderElectionRecord, sent int64) {
	acked := time.Now().UnixNano()
	if g.seconds {
		b, _ := json.Marshal(r)
		if bytes.Equal(b, g.last) {
			return
		}
		g.last = b
	}
	fmt.Fprintf(os.Stderr, "renew %d %d\n", sent, acked)
}

func (g *guardedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	sent := time.Now().UnixNano()
	err := g.Interface.Create(ctx, r)
	if err == nil {
		g.accepted(r, sent)
	}
	return err
}

func (g *guardedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	release := r.HolderIdentity != g.Identity()
	if release {
		g.job.stop()
	}
	sent := time.Now().UnixNano()
	err := g.Interface.Update(ctx, r)
	if err == nil {
		if release {
			fmt.Fprintf(os.Stderr, "released %d\n", time.Now().UnixNano())
		} else {
			g.accepted(r, sent)
		}
	}
	return err
}

func main() {
	usage := "usage: KUBECONFIG lease|configmap NAME IDENTITY LOG LEASE RENEW RETRY [keep]"
	if len(os.Args) != 9 && !(len(os.Args) == 10 && os.Args[9] == "keep") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(64)
	}
	releaseOnCancel := len(os.Args) == 9
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
	inner, err := resourcelock.New(lockType, "default", name, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(64)
	}
	j := &job{logPath: logPath, id: id}
	ctx, cancel := context.WithCancel(context.Background())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		// The job ends first; only then may client-go release.
		j.stop()
		cancel()
	}()
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            &guardedLock{Interface: inner, job: j, seconds: kind == "configmap"},
		LeaseDuration:   secs(a[5]),
		RenewDeadline:   secs(a[6]),
		RetryPeriod:     secs(a[7]),
		ReleaseOnCancel: releaseOnCancel,
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				j.start()
				<-ctx.Done()
				j.stop()
			},
			OnStoppedLeading: j.stop,
		},
	})
	// RunOrDie may return before the callback's goroutine has run on.
	j.stop()
}
