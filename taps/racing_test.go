package taps

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// deadListener returns the address of a loopback TCP listener that never
// accepts and whose accept queue is full: a SYN to it is dropped, so a
// dial to it hangs like one to a silent host. It listens with backlog 0
// (one queued connection on Linux) and fills the queue with dials until
// one of them hangs.
func deadListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	syscall.CloseOnExec(fd) // (SOCK_CLOEXEC is Linux only)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	f := os.NewFile(uintptr(fd), "dead-listener")
	ln, err := net.FileListener(f) // dups fd
	require.NoError(t, f.Close())
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	for i := 0; ; i++ {
		require.Less(t, i, 16, "the accept queue of a backlog-0 listener never filled")
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			require.True(t, errors.As(err, &ne) && ne.Timeout(), "filling dial: %v", err)
			return addr
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

// drainListener returns the address of a loopback listener that reads
// every connection it accepts until the peer closes it, then closes it;
// it stops with the test.
func drainListener(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	require.NoError(t, ln.Close())
	return addr
}

func remote(a netip.AddrPort) *RemoteEndpoint {
	return NewRemoteEndpoint().WithIPAddress(a.Addr().String()).WithPort(a.Port())
}

// raceTo initiates a connection to the remotes (raced in order) and
// returns it with the time Initiate took.
func raceTo(t *testing.T, sys *System, delay time.Duration, remotes ...netip.AddrPort) (*Connection, time.Duration) {
	t.Helper()
	opts := []PreconnectionOption{WithSystem(sys), WithAttemptDelay(delay)}
	for _, r := range remotes {
		opts = append(opts, WithRemoteEndpoint(remote(r)))
	}
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(IsolateSession, true)) // every race starts from scratch
	opts = append(opts, WithTransportProperties(tp))
	start := time.Now()
	c, err := NewPreconnection(opts...).Initiate(testCtx(t))
	require.NoError(t, err)
	return c, time.Since(start)
}

// checkDeadFirstReport checks the report of a race where the first
// candidate never answered and the second won.
func checkDeadFirstReport(t *testing.T, c *Connection, delay time.Duration, live netip.AddrPort) {
	t.Helper()
	r := c.EstablishmentReport()
	require.NotNil(t, r)
	require.Len(t, r.Attempts, 2)
	require.False(t, r.Attempts[0].Won)
	require.Negative(t, r.Attempts[0].End, "the dead attempt was stopped unfinished")
	require.True(t, r.Attempts[1].Won)
	require.Equal(t, live.String(), r.Attempts[1].Endpoint)
	require.Equal(t, "tcp", r.Attempts[1].Stack)
	require.GreaterOrEqual(t, r.Attempts[1].Start, delay)
	require.GreaterOrEqual(t, r.Attempts[1].End, r.Attempts[1].Start)
	require.Equal(t, r.Attempts[1].End, r.Duration)
	require.False(t, r.FromCache)
}

// TestRacingDeadCandidate races a loopback listener whose accept queue is
// full (SYNs dropped) against a live one: Ready comes one attempt delay
// after Initiate.
func TestRacingDeadCandidate(t *testing.T) {
	sys := newTestSystem(t)
	dead, live := deadListener(t), drainListener(t)
	const delay = 100 * time.Millisecond
	c, took := raceTo(t, sys, delay, dead, live)
	defer c.Abort()
	t.Logf("Ready after %v (attempt delay %v)", took, delay)
	require.GreaterOrEqual(t, took, delay)
	require.Less(t, took, delay+400*time.Millisecond)
	checkDeadFirstReport(t, c, delay, live)
}

// TestRacingSilentAddress races an address that silently drops SYNs — a
// host behind a veth pair whose peer lives in a network namespace the
// test creates, reached through a permanent fake neighbour entry — against
// a live loopback listener. It needs root.
func TestRacingSilentAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace, a veth pair and a neighbour entry")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	pid := os.Getpid()
	ns := fmt.Sprintf("gotaps-race-%d", pid)
	host, peer := fmt.Sprintf("gtr%da", pid%100000), fmt.Sprintf("gtr%db", pid%100000)
	subnet := fmt.Sprintf("198.18.%d", pid%250+1) // RFC 2544 benchmarking range
	silent := netip.MustParseAddrPort(subnet + ".2:80")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run("addr", "add", subnet+".1/24", "dev", host)
	run("link", "set", host, "up")
	run("-n", ns, "link", "set", peer, "up")
	run("neigh", "add", silent.Addr().String(), "lladdr", "02:00:5e:00:53:01", "dev", host, "nud", "permanent")

	sys := newTestSystem(t)
	live := drainListener(t)
	const delay = 100 * time.Millisecond
	c, took := raceTo(t, sys, delay, silent, live)
	defer c.Abort()
	t.Logf("Ready after %v (attempt delay %v)", took, delay)
	require.GreaterOrEqual(t, took, delay)
	require.Less(t, took, delay+400*time.Millisecond)
	checkDeadFirstReport(t, c, delay, live)
}

// TestRacingLeavesNothingBehind runs many races whose first candidate is
// refused and checks that no goroutine, file descriptor or actor is left.
func TestRacingLeavesNothingBehind(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	sys := newTestSystem(t)
	refused, live := refusedAddr(t), drainListener(t)
	once := func() {
		c, _ := raceTo(t, sys, 10*time.Millisecond, refused, live)
		r := c.EstablishmentReport()
		require.Len(t, r.Attempts, 2)
		// refused, or (on a loaded machine) overtaken after 10 ms and cancelled
		require.True(t, r.Attempts[0].Err != "" || r.Attempts[0].End < 0, "%+v", r.Attempts[0])
		require.True(t, r.Attempts[1].Won)
		c.Abort()
		<-c.Done()
	}
	once() // warm up: lazily created goroutines and fds (epoll, ...)
	ignore := goleak.IgnoreCurrent()
	fds, actors := countFDs(t), countActors(sys)
	goroutines := runtime.NumGoroutine()
	start := time.Now()
	for range n {
		once()
	}
	t.Logf("%d races in %v; goroutines %d -> %d", n, time.Since(start), goroutines, runtime.NumGoroutine())
	// A leak would grow with n; "<=" because the baseline may still hold
	// the warm-up's peer socket or a reply process.
	require.Eventually(t, func() bool { return countActors(sys) <= actors }, 5*time.Second, 10*time.Millisecond,
		"actors: %d before, %d after", actors, countActors(sys))
	require.Eventually(t, func() bool { return countFDs(t) <= fds }, 5*time.Second, 10*time.Millisecond,
		"fds: %d before, %d after", fds, countFDs(t))
	goleak.VerifyNone(t, ignore)
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd to count file descriptors")
	}
	return len(ents)
}

func countActors(sys *System) int {
	n := 0
	for _, m := range sys.s.AS.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
