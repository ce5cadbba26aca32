//go:build linux

package taps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The real-EMFILE tests of the TLS Listener and of the TCP Rendezvous, as
// TestListenerEMFILE for the TCP Listener: the accepting side runs in a
// child process (this test binary) that fills its file descriptor table,
// so that its accepts fail with EMFILE for real; at the first AcceptRetry
// trace record it frees them, and must then accept what the parent
// dialed.

// emfileRun is what runEMFILEChild saw of the child.
type emfileRun struct {
	addr   string // the child's "emfile-addr " line ("" if none)
	result string // its "emfile-result " line ("" if none)
	stdout []string
	stderr string
	err    error // the child's exit
}

// runEMFILEChild runs test (a ...Child test of this binary) in a child
// process with env set, waits for its "emfile-addr <addr>" line, calls
// act(addr) (not when the child wrote none), then returns the child's
// "emfile-result ..." line once it has exited.
func runEMFILEChild(t *testing.T, ctx context.Context, test, env string, act func(addr string)) emfileRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	var run emfileRun
	next := func(prefix string) string {
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return ""
				}
				run.stdout = append(run.stdout, l)
				if v, found := strings.CutPrefix(l, prefix); found {
					return v
				}
			case <-ctx.Done():
				return ""
			}
		}
	}
	run.addr = next("emfile-addr ")
	if run.addr != "" {
		act(run.addr)
	}
	run.result = next("emfile-result ")
	for range lines { // the rest, up to the end of the child's output
	}
	run.err = cmd.Wait()
	run.stderr = stderr.String()
	return run
}

// fillFDTable lowers the file descriptor limit of this process to a few
// more than it has open and takes the rest (/dev/null), so that the next
// socket or accept fails with EMFILE. release closes them and restores the
// limit; it is idempotent.
func fillFDTable(t *testing.T) (release func()) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	orig := lim
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	lim.Cur = uint64(len(fds) + 8)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	var held []int
	for {
		fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			if err != syscall.EMFILE {
				_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
				require.NoError(t, err)
			}
			break
		}
		held = append(held, fd)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, fd := range held {
				_ = syscall.Close(fd)
			}
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig))
		})
	}
}

// emfileTLSChildEnv tells the listening process of TestListenerEMFILETLS
// how many connections to expect.
const emfileTLSChildEnv = "GOTAPS_EMFILE_TLS_CHILD"

// TestListenerEMFILETLS: a TLS Listener (TLS over TCP, not QUIC) whose TCP
// accept fails with EMFILE waits and accepts again: the connections dialed
// meanwhile complete their handshakes once descriptors are free, and each
// wait is traced (Kind "listener", Event "AcceptRetry", Stack "tls").
func TestListenerEMFILETLS(t *testing.T) {
	const n = 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var dialErrs []error
	var dialed []net.Conn
	defer func() {
		for _, c := range dialed {
			_ = c.Close()
		}
	}()
	run := runEMFILEChild(t, ctx, "TestListenerEMFILETLSChild", emfileTLSChildEnv+"="+strconv.Itoa(n), func(addr string) {
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"gotaps-test"}}}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				c, err := d.DialContext(ctx, "tcp", addr) // the handshake waits for the child's accept
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					dialErrs = append(dialErrs, err)
					return
				}
				dialed = append(dialed, c)
			})
		}
		wg.Wait()
	})
	require.NotEmpty(t, run.addr, "the child did not listen; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.NoError(t, run.err, "the child failed; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.Equal(t, fmt.Sprintf("got=%d tls=%d retry=true stopped=false", n, n), run.result,
		"the TLS listener must wait out EMFILE, trace it and receive every connection (dial errors: %v); stderr:\n%s", dialErrs, run.stderr)
	require.Empty(t, dialErrs)
}

// TestListenerEMFILETLSChild is the listening process of
// TestListenerEMFILETLS; it does nothing in an ordinary test run. It
// writes "emfile-addr <addr>" once it listens with its descriptor table
// full, then "emfile-result got=<connections received> tls=<of them over
// TLS> retry=<AcceptRetry of the tls stack seen> stopped=<the Listener
// stopped>".
func TestListenerEMFILETLSChild(t *testing.T) {
	spec := os.Getenv(emfileTLSChildEnv)
	if spec == "" {
		t.Skip("the listening process of TestListenerEMFILETLS")
	}
	n, err := strconv.Atoi(spec)
	require.NoError(t, err)
	retry := make(chan struct{}, 1)
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "listener" && r.Event == "AcceptRetry" && r.Stack == "tls" {
			select {
			case retry <- struct{}{}:
			default:
			}
		}
	}))
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithProtocols("tls"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	conns := make(chan *Connection, n)
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
		select {
		case conns <- c:
		default:
			c.Abort() // more than expected
		}
	})

	release := fillFDTable(t)
	defer release()
	fmt.Printf("emfile-addr %s\n", ln.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var held []*Connection
	defer func() {
		for _, c := range held {
			c.Abort()
		}
	}()
	got, overTLS, sawRetry, stopped := 0, 0, false, false
loop:
	for got < n {
		select {
		case c := <-conns:
			got++
			if c.GetProperties().Stack == "tls" {
				overTLS++
			}
			held = append(held, c)
		case <-retry:
			if !sawRetry {
				sawRetry = true
				release()
			}
		case <-ln.Done():
			stopped = true
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	release()
	fmt.Printf("emfile-result got=%d tls=%d retry=%t stopped=%t\n", got, overTLS, sawRetry, stopped)
}

// emfileRVChildEnv gives the rendezvous process of
// TestRendezvousEMFILE its remote endpoint's port.
const emfileRVChildEnv = "GOTAPS_EMFILE_RV_CHILD"

// TestRendezvousEMFILE: a TCP Rendezvous whose accept fails with EMFILE
// (the peer's connect reached its listener while the process was out of
// file descriptors) waits and accepts again (traced: Kind "rendezvous",
// Event "AcceptRetry"), and the accepted connection wins the rendezvous.
// This process is the peer: its socket, bound to the child's remote
// endpoint, refuses the child's connects until it connects to the child's
// listener itself; the child's message then comes over that connection.
func TestRendezvousEMFILE(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "rendezvous peer")
	defer f.Close()
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	port := sa.(*unix.SockaddrInet4).Port
	var got string
	var peerErr error
	run := runEMFILEChild(t, ctx, "TestRendezvousEMFILEChild", emfileRVChildEnv+"="+strconv.Itoa(port), func(addr string) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			peerErr = err
			return
		}
		// the kernel completes the handshake on the child's listener, whose
		// accept fails
		if peerErr = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); peerErr != nil {
			return
		}
		c, err := net.FileConn(f) // a dup: f's close leaves c alone
		_ = f.Close()
		if err != nil {
			peerErr = err
			return
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetReadDeadline(dl)
		}
		b := make([]byte, len("hello from the rendezvous"))
		_, peerErr = io.ReadFull(c, b)
		got = string(b)
	})
	require.NotEmpty(t, run.addr, "the child did not listen; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.NoError(t, run.err, "the child failed; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.Equal(t, "how=accepted retry=true err=<nil>", run.result,
		"the rendezvous must wait out EMFILE and win with the accepted connection; stderr:\n%s", run.stderr)
	require.NoError(t, peerErr)
	require.Equal(t, "hello from the rendezvous", got, "the rendezvous connection is the peer's")
}

// TestRendezvousEMFILEChild is the rendezvous process of
// TestRendezvousEMFILE; it does nothing in an ordinary test run. It writes
// "emfile-addr <addr>" once its rendezvous listens with its descriptor
// table full, then "emfile-result how=<how the rendezvous came about>
// retry=<its AcceptRetry seen> err=<its error>".
func TestRendezvousEMFILEChild(t *testing.T) {
	spec := os.Getenv(emfileRVChildEnv)
	if spec == "" {
		t.Skip("the rendezvous process of TestRendezvousEMFILE")
	}
	port, err := strconv.ParseUint(spec, 10, 16)
	require.NoError(t, err)
	listening, retry := make(chan string, 1), make(chan struct{}, 1)
	var mu sync.Mutex
	how := map[uint64]string{}
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind != "rendezvous" {
			return
		}
		switch r.Event {
		case "Listening":
			select {
			case listening <- r.Local:
			default:
			}
		case "AcceptRetry":
			select {
			case retry <- struct{}{}:
			default:
			}
		case "RendezvousDone":
			mu.Lock()
			how[r.ConnectionID] = r.Candidate
			mu.Unlock()
		}
	}))
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(freeTCPPorts(t, 1)[0])),
		WithRemoteEndpoint(rvRemote(uint16(port))))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type outcome struct {
		c   *Connection
		err error
	}
	done := make(chan outcome, 1)
	go func() { c, err := pre.Rendezvous(ctx); done <- outcome{c, err} }()
	var addr string
	select {
	case addr = <-listening:
	case o := <-done:
		if o.c != nil {
			o.c.Abort()
		}
		require.NoError(t, o.err, "the rendezvous ended before listening")
		t.Fatal("the rendezvous ended before listening")
	}
	release := fillFDTable(t)
	defer release()
	fmt.Printf("emfile-addr %s\n", addr)

	sawRetry := false
	var o outcome
wait:
	for {
		select {
		case <-retry:
			if !sawRetry {
				sawRetry = true
				release()
			}
		case o = <-done:
			break wait
		}
	}
	select {
	case <-retry: // traced before the end, both ready: select took the end first
		sawRetry = true
	default:
	}
	release()
	result := ""
	if o.c != nil {
		defer func() { o.c.Abort(); <-o.c.Done() }()
		mu.Lock()
		result = how[o.c.ID()]
		mu.Unlock()
		require.NoError(t, o.c.Send(ctx, []byte("hello from the rendezvous"), nil))
		_, _ = o.c.Receive(ctx) // the peer's close, once it has read the message
	}
	fmt.Printf("emfile-result how=%s retry=%t err=%v\n", result, sawRetry, o.err)
}
