package taps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// rendezvousTrace collects the "rendezvous" trace records of a System.
type rendezvousTrace struct {
	mu        sync.Mutex
	how       map[uint64]string // connection id -> "connected" / "accepted"
	listening chan string       // local addresses, as the listeners start
}

func newRendezvousSystem(t *testing.T) (*System, *rendezvousTrace) {
	rt := &rendezvousTrace{how: map[uint64]string{}, listening: make(chan string, 64)}
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind != "rendezvous" {
			return
		}
		switch r.Event {
		case "RendezvousDone":
			rt.mu.Lock()
			rt.how[r.ConnectionID] = r.Candidate
			rt.mu.Unlock()
		case "Listening":
			select {
			case rt.listening <- r.Local:
			default:
			}
		}
	}))
	return sys, rt
}

func (rt *rendezvousTrace) howOf(c *Connection) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.how[c.ID()]
}

// freeTCPPorts returns n distinct TCP ports that were free on 127.0.0.1.
func freeTCPPorts(t *testing.T, n int) []uint16 {
	t.Helper()
	var out []uint16
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		out = append(out, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	return out
}

func rvLocal(port uint16) *LocalEndpoint {
	return NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(port)
}

func rvRemote(port uint16) *RemoteEndpoint {
	return NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)
}

// rendezvousPair runs a and b's Rendezvous concurrently (b after start
// is closed) and returns both connections.
func rendezvousPair(t *testing.T, ctx context.Context, a, b *Preconnection, start <-chan struct{}) (ca, cb *Connection) {
	t.Helper()
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { ca, errA = a.Rendezvous(ctx) })
	wg.Go(func() {
		if start != nil {
			<-start
		}
		cb, errB = b.Rendezvous(ctx)
	})
	wg.Wait()
	require.NoError(t, errA)
	require.NoError(t, errB)
	t.Cleanup(func() { ca.Abort(); cb.Abort(); <-ca.Done(); <-cb.Done() })
	return ca, cb
}

// exchange sends one message each way and checks both arrive.
func exchange(t *testing.T, ctx context.Context, a, b *Connection) {
	t.Helper()
	require.NoError(t, a.Send(ctx, []byte("ping from a"), nil))
	require.NoError(t, b.Send(ctx, []byte("pong from b"), nil))
	m, err := b.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping from a", string(m.Data))
	m, err = a.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "pong from b", string(m.Data))
}

// sameConnection checks that a and b are the two ends of one connection.
func sameConnection(t *testing.T, a, b *Connection, stack string) {
	t.Helper()
	pa, pb := a.GetProperties(), b.GetProperties()
	require.Equal(t, StateEstablished, pa.State)
	require.Equal(t, stack, pa.Stack)
	require.Equal(t, stack, pb.Stack)
	require.Equal(t, pa.Local.String(), pb.Remote.String())
	require.Equal(t, pa.Remote.String(), pb.Local.String())
}

func TestRendezvousTCPBothSides(t *testing.T) {
	sys, rt := newRendezvousSystem(t)
	ctx := testCtx(t)
	seen := map[[2]string]int{}
	for i := range 20 {
		ports := freeTCPPorts(t, 2)
		a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])),
			WithRemoteEndpoint(rvRemote(ports[1])))
		b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])))
		b.AddRemote(rvRemote(ports[0])) // a candidate learned by signalling
		a.AddFramer(framers.NewLengthPrefix())
		b.AddFramer(framers.NewLengthPrefix())
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		sameConnection(t, ca, cb, "tcp")
		la, ok := ca.GetProperties().Local.Addr()
		require.True(t, ok)
		require.Equal(t, ports[0], la.Port(), "a's connection uses its local endpoint's port")
		exchange(t, ctx, ca, cb)
		how := [2]string{rt.howOf(ca), rt.howOf(cb)}
		// one TCP connection: both connected (simultaneous open, or ...
		// never both accepted), or one side's listener accepted the other's
		// connect
		require.Contains(t, [][2]string{{"connected", "connected"}, {"accepted", "connected"}, {"connected", "accepted"}}, how, "iteration %d", i)
		seen[how]++
	}
	t.Logf("outcomes over 20 rendezvous: %v", seen)
}

// TestRendezvousStaggered starts b once a listens and retries its refused
// connects: b's connect reaches a's listener (or b's listener takes a's
// next retry), so one side accepted and the other connected.
func TestRendezvousStaggered(t *testing.T) {
	sys, rt := newRendezvousSystem(t)
	ctx := testCtx(t)
	ports := freeTCPPorts(t, 2)
	a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])), WithRemoteEndpoint(rvRemote(ports[0])))
	start := make(chan struct{})
	go func() {
		select {
		case <-rt.listening: // a listens
		case <-ctx.Done():
		}
		close(start)
	}()
	ca, cb := rendezvousPair(t, ctx, a, b, start)
	sameConnection(t, ca, cb, "tcp")
	how := []string{rt.howOf(ca), rt.howOf(cb)}
	require.ElementsMatch(t, []string{"accepted", "connected"}, how)
	exchange(t, ctx, ca, cb)
}

func TestRendezvousTLS(t *testing.T) {
	pki := newTestPKI(t)
	sys, _ := newRendezvousSystem(t)
	ctx := testCtx(t)
	for range 3 {
		ports := freeTCPPorts(t, 2)
		// the lower address:port is the TLS client: it needs the trusted
		// CA; the other side is the server and needs the identity
		lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
		client := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
			WithLocalEndpoint(rvLocal(lo)), WithRemoteEndpoint(rvRemote(hi)))
		server := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
			WithLocalEndpoint(rvLocal(hi)), WithRemoteEndpoint(rvRemote(lo)))
		client.AddFramer(framers.NewLengthPrefix())
		server.AddFramer(framers.NewLengthPrefix())
		cc, cs := rendezvousPair(t, ctx, client, server, nil)
		sameConnection(t, cc, cs, "tls")
		require.NotEmpty(t, cc.GetProperties().Socket.TLSVersion)
		exchange(t, ctx, cc, cs)
	}
}

// TestRendezvousTLSWrongRoles: the higher side has no identity, so it
// cannot be the server: both fail, with the handshake's reason.
func TestRendezvousTLSWrongRoles(t *testing.T) {
	pki := newTestPKI(t)
	sys, _ := newRendezvousSystem(t)
	ports := freeTCPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	a := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithEstablishmentTimeout(time.Second),
		WithLocalEndpoint(rvLocal(lo)), WithRemoteEndpoint(rvRemote(hi)))
	b := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithEstablishmentTimeout(time.Second),
		WithLocalEndpoint(rvLocal(hi)), WithRemoteEndpoint(rvRemote(lo)))
	ctx := testCtx(t)
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { _, errA = a.Rendezvous(ctx) })
	wg.Go(func() { _, errB = b.Rendezvous(ctx) })
	wg.Wait()
	for _, err := range []error{errA, errB} {
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonTimeout, ee.Reason)
		require.ErrorIs(t, err, ErrEstablishmentTimeout)
	}
	require.ErrorContains(t, errB, "needs a local identity")
}

// quietListener is a TCP listener that must see no connection.
func quietListener(t *testing.T) (*net.TCPListener, uint16) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// nothingArrived checks that no connection reached ln.
func nothingArrived(t *testing.T, ln *net.TCPListener) {
	t.Helper()
	require.NoError(t, ln.SetDeadline(time.Now()))
	c, err := ln.Accept()
	if c != nil {
		_ = c.Close()
	}
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a connection arrived: %v", err)
}

func TestRendezvousFailsBeforeSending(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := quietListener(t)
	local := freeTCPPorts(t, 1)[0]
	for _, tc := range []struct {
		name   string
		pre    *Preconnection
		reason ErrorReason
		is     error
	}{
		{name: "no local", pre: NewPreconnection(WithSystem(sys), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonInvalidConfiguration, is: ErrInvalidEndpoint},
		{name: "no remote", pre: NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(local))),
			reason: ReasonInvalidConfiguration, is: ErrInvalidEndpoint},
		{name: "remote without port", pre: NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(local)),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1"))),
			reason: ReasonInvalidConfiguration, is: ErrInvalidEndpoint},
		{name: "bad stun server", pre: NewPreconnection(WithSystem(sys),
			WithLocalEndpoint(rvLocal(local).WithStunServer("", 3478)), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonInvalidConfiguration, is: ErrInvalidEndpoint},
		{name: "unknown protocol", pre: NewPreconnection(WithSystem(sys), WithProtocols("carrier-pigeon"),
			WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonInvalidConfiguration, is: stacks.ErrUnknownStack},
		{name: "unfulfilled properties", pre: NewPreconnection(WithSystem(sys),
			WithTransportProperties(mustRequire(t, Multistreaming)),
			WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonNoCandidates, is: ErrUnfulfilled},
		{name: "conflicting properties", pre: NewPreconnection(WithSystem(sys), WithTransportProperties(conflicting(t)),
			WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonInvalidConfiguration, is: ErrConflictingProperties},
		{name: "unix only", pre: NewPreconnection(WithSystem(sys), WithProtocols("unix"),
			WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(port))),
			reason: ReasonNoCandidates, is: ErrRendezvousUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.pre.Rendezvous(testCtx(t))
			require.Nil(t, c)
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tc.reason, ee.Reason, "%v", err)
			require.ErrorIs(t, err, tc.is)
			nothingArrived(t, ln)
		})
	}
}

// localPortFree checks that nothing holds port on 127.0.0.1 any more: a
// socket without SO_REUSEPORT can bind it.
func localPortFree(t *testing.T, port uint16) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	require.NoError(t, err, "a rendezvous socket is still open")
	require.NoError(t, ln.Close())
}

func TestRendezvousDeadline(t *testing.T) {
	sys, _ := newRendezvousSystem(t)
	ports := []uint16{freeTCPPorts(t, 1)[0], deadTCPPort(t)} // nobody at ports[1]: every connect is refused
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := pre.Rendezvous(ctx)
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	localPortFree(t, ports[0])
}

func TestRendezvousEstablishmentTimeout(t *testing.T) {
	sys, _ := newRendezvousSystem(t)
	ports := []uint16{freeTCPPorts(t, 1)[0], deadTCPPort(t)}
	pre := NewPreconnection(WithSystem(sys), WithEstablishmentTimeout(200*time.Millisecond),
		WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	_, err := pre.Rendezvous(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	require.ErrorIs(t, err, ErrEstablishmentTimeout)
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "the refused connects are listed")
	require.NotEmpty(t, ee.Attempts)
	localPortFree(t, ports[0])
}

// TestRendezvousRejectsStranger: a connection from an address that is not
// a remote endpoint is reset; the rendezvous goes on.
func TestRendezvousRejectsStranger(t *testing.T) {
	sys, rt := newRendezvousSystem(t)
	ports := []uint16{freeTCPPorts(t, 1)[0], deadTCPPort(t)}
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { _, err := pre.Rendezvous(ctx); done <- err }()
	select {
	case <-rt.listening:
	case <-ctx.Done():
		t.Fatal("not listening")
	}
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0]))))
	if err == nil { // the kernel completed the handshake: the reset comes after
		defer c.Close()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Read(make([]byte, 1))
	}
	require.ErrorIs(t, err, syscall.ECONNRESET, "the rendezvous resets a stranger's connection")
	select {
	case err := <-done:
		t.Fatalf("rendezvous ended: %v", err)
	default:
	}
	cancel()
	err = <-done
	require.ErrorIs(t, err, context.Canceled)
	localPortFree(t, ports[0])
}

// --- Resolve

func TestResolveWildcardLocal(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithPort(4242)))
	locals, remotes, err := pre.Resolve(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, remotes)
	var addrs []netip.Addr
	for _, l := range locals {
		ap, ok := l.Addr()
		require.True(t, ok, "a concrete address: %s", l)
		require.Equal(t, uint16(4242), ap.Port())
		require.False(t, ap.Addr().IsUnspecified())
		require.False(t, l.IsServerReflexive())
		addrs = append(addrs, ap.Addr())
	}
	require.Contains(t, addrs, netip.MustParseAddr("127.0.0.1"))

	// only the loopback interface, only IPv4
	pre = NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithInterface("lo").WithIPAddress("0.0.0.0").WithPort(7)))
	locals, _, err = pre.Resolve(testCtx(t))
	require.NoError(t, err)
	require.NotEmpty(t, locals)
	for _, l := range locals {
		ap, _ := l.Addr()
		require.True(t, ap.Addr().Is4() && ap.Addr().IsLoopback(), "%s", l)
	}

	pre = NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithInterface("no-such-if0")))
	_, _, err = pre.Resolve(testCtx(t))
	require.ErrorIs(t, err, ErrUnknownInterface, "an interface that does not exist fails before anything else")
	require.ErrorContains(t, err, "no-such-if0")
}

func TestResolveRemotes(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(8080)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("192.0.2.1").WithPort(9)),
		WithLocalEndpoint(NewLocalEndpoint().WithHostName("localhost").WithPort(1234)))
	locals, remotes, err := pre.Resolve(testCtx(t))
	require.NoError(t, err)
	var got []string
	for _, r := range remotes {
		got = append(got, r.String())
	}
	require.Subset(t, []string{"127.0.0.1:8080", "[::1]:8080", "192.0.2.1:9"}, got)
	require.Contains(t, got, "192.0.2.1:9")
	require.GreaterOrEqual(t, len(got), 2, "localhost resolved: %v", got)
	require.NotEmpty(t, locals)
	for _, l := range locals {
		ap, ok := l.Addr()
		require.True(t, ok)
		require.True(t, ap.Addr().IsLoopback())
		require.Equal(t, uint16(1234), ap.Port())
	}

	// a resolver that fails: the error says which name
	pre = NewPreconnection(WithSystem(sys), WithResolver(func(context.Context, string, string) ([]netip.Addr, error) {
		return nil, errors.New("no such host")
	}), WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("nowhere.invalid").WithPort(1)))
	_, _, err = pre.Resolve(testCtx(t))
	var re *stacks.ResolveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "nowhere.invalid", re.Host)
}

// testSTUNServer answers Binding requests on 127.0.0.1 with
// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), or with error code errCode.
func testSTUNServer(t *testing.T, errCode int) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { _ = pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 20 || binary.BigEndian.Uint16(buf) != 0x0001 {
				continue
			}
			resp := make([]byte, 20, 32)
			binary.BigEndian.PutUint32(resp[4:], stacks.STUNMagicCookie)
			copy(resp[8:20], buf[8:20])
			if errCode != 0 {
				binary.BigEndian.PutUint16(resp[0:], 0x0111)
				resp = append(resp, 0x00, 0x09, 0, 4, 0, 0, byte(errCode/100), byte(errCode%100))
			} else {
				binary.BigEndian.PutUint16(resp[0:], 0x0101)
				a := from.Addr().Unmap().As4()
				cookie := binary.BigEndian.AppendUint32(nil, stacks.STUNMagicCookie)
				resp = append(resp, 0x00, 0x20, 0, 8, 0, 1)
				resp = binary.BigEndian.AppendUint16(resp, from.Port()^uint16(stacks.STUNMagicCookie>>16))
				for i := range a {
					resp = append(resp, a[i]^cookie[i])
				}
			}
			binary.BigEndian.PutUint16(resp[2:], uint16(len(resp)-20))
			_, _ = pc.WriteToUDPAddrPort(resp, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestResolveSTUN(t *testing.T) {
	sys := newTestSystem(t)
	srv := testSTUNServer(t, 0)
	port := freeTCPPorts(t, 1)[0] // a UDP port too, most likely; the bind says
	pre := NewPreconnection(WithSystem(sys),
		WithLocalEndpoint(rvLocal(port).WithStunServer(srv.Addr().String(), srv.Port())))
	locals, _, err := pre.Resolve(testCtx(t))
	require.NoError(t, err)
	require.Len(t, locals, 2)
	require.False(t, locals[0].IsServerReflexive())
	require.True(t, locals[1].IsServerReflexive())
	ap, ok := locals[1].Addr()
	require.True(t, ok)
	require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), ap, "what the server saw")

	// an error response
	bad := testSTUNServer(t, 401)
	pre = NewPreconnection(WithSystem(sys),
		WithLocalEndpoint(rvLocal(port).WithStunServer("127.0.0.1", bad.Port(), StunCredentials{Username: "u", Password: "p"})))
	_, _, err = pre.Resolve(testCtx(t))
	var se *stacks.STUNError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 401, se.Code)

	// port 0 has no meaningful reflexive port
	pre = NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(0).WithStunServer("127.0.0.1", srv.Port())))
	_, _, err = pre.Resolve(testCtx(t))
	require.ErrorContains(t, err, "fixed local port")
}

func TestResolveContext(t *testing.T) {
	sys := newTestSystem(t)
	block := make(chan struct{})
	defer close(block)
	pre := NewPreconnection(WithSystem(sys), WithResolver(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-block:
			return nil, errors.New("unblocked")
		}
	}), WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("slow.example").WithPort(1)))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	actors := countActors(sys)
	_, _, err := pre.Resolve(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// a ctx that has ended starts nothing; one that ends while the call
	// runs (before or after it learns of the resolve actor) leaves nothing
	// behind either: the actor stops with the caller's ctx, and the error
	// is the ctx's whichever way it went (it was once the actor's "use of
	// closed network connection", when the actor stopped before answering)
	for i := 0; i < 40; i++ {
		gone, cancel := context.WithCancel(context.Background())
		if i%2 == 0 {
			cancel()
		} else {
			go cancel()
		}
		_, _, err = pre.Resolve(gone)
		require.ErrorIs(t, err, context.Canceled, "round %d", i)
		cancel()
	}
	require.Eventually(t, func() bool { return countActors(sys) <= actors }, 5*time.Second, 10*time.Millisecond,
		"actors: %d before, %d after", actors, countActors(sys))
}

// TestRendezvousSimultaneousOpen makes the two SYNs cross, which loopback
// never does (a SYN is delivered at once). The peer is a plain socket in a
// network namespace the test creates (a veth pair); it never listens. The
// rendezvous's SYN to it is lost first (a bogus neighbour entry for the
// peer), so its connecting socket waits in SYN-SENT; then the peer
// connects from the rendezvous's remote endpoint, and its SYN reaches
// that socket, not the listener: a TCP simultaneous open (the socket goes
// to SYN-RECV). Once the neighbour entry is fixed, the retransmissions
// complete the handshake and the rendezvous's connect wins. Needs root
// (skipped otherwise).
func TestRendezvousSimultaneousOpen(t *testing.T) {
	lab := stacktest.NewNetns(t, "rv", 233)
	sys, rt := newRendezvousSystem(t)
	ctx := testCtx(t)
	local := netip.AddrPortFrom(lab.HostIP, freeTCPPorts(t, 1)[0])
	remote := netip.AddrPortFrom(lab.NSIP, 40000+uint16(os.Getpid()%20000))
	stacktest.IP(t, "neigh", "replace", lab.NSIP.String(), "lladdr", "02:00:5e:00:00:01", "dev", lab.HostIf, "nud", "permanent")
	pre := NewPreconnection(WithSystem(sys),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(local.Addr().String()).WithPort(local.Port())),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(remote.Addr().String()).WithPort(remote.Port())))
	type result struct {
		c   net.Conn
		tc  *Connection
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := pre.Rendezvous(ctx); done <- result{tc: c, err: err} }()
	awaitTCPState(t, ctx, local, remote, tcpSynSent) // its SYN is lost

	peerDone := make(chan result, 1)
	go func() { // the peer, in the namespace: connects, never listens
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		err := joinNetns(lab.NS)
		var c net.Conn
		if err == nil {
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(remote)}
			c, err = d.DialContext(ctx, "tcp4", local.String())
		}
		peerDone <- result{c: c, err: err}
	}()
	awaitTCPState(t, ctx, local, remote, tcpSynRecv) // the peer's SYN crossed ours
	stacktest.IP(t, "neigh", "del", lab.NSIP.String(), "dev", lab.HostIf)

	pr := <-peerDone
	require.NoError(t, pr.err)
	defer pr.c.Close()
	r := <-done
	require.NoError(t, r.err)
	defer func() { r.tc.Abort(); <-r.tc.Done() }()
	require.Equal(t, "connected", rt.howOf(r.tc), "a simultaneous open: this side's connect won")
	p := r.tc.GetProperties()
	require.Equal(t, pr.c.LocalAddr().String(), p.Remote.String())
	require.Equal(t, pr.c.RemoteAddr().String(), p.Local.String())
	_, err := pr.c.Write([]byte("crossed"))
	require.NoError(t, err)
	m, err := r.tc.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "crossed", string(m.Data))
}

// joinNetns moves the calling (locked) thread into the named namespace.
func joinNetns(ns string) error { return stacktest.JoinNetns(ns) }

// TCP states as /proc/net/tcp shows them.
const (
	tcpSynSent = 2
	tcpSynRecv = 3
)

// awaitTCPState waits (polling /proc/thread-self/net/tcp: the kernel has no event for
// it) until the IPv4 socket local -> remote is in state.
func awaitTCPState(t *testing.T, ctx context.Context, local, remote netip.AddrPort, state int) {
	t.Helper()
	hexAP := func(ap netip.AddrPort) string {
		a := ap.Addr().As4()
		return strings.ToUpper(hex.EncodeToString([]byte{a[3], a[2], a[1], a[0]})) + ":" + strings.ToUpper(strconv.FormatUint(uint64(ap.Port())|0x10000, 16)[1:])
	}
	want := hexAP(local) + " " + hexAP(remote) + " " + strings.ToUpper(strconv.FormatUint(uint64(state)|0x100, 16)[1:])
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile("/proc/thread-self/net/tcp") // this thread's namespace (the main thread may have joined the peer's)
		require.NoError(t, err)
		if strings.Contains(string(b), want) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no socket %s -> %s in state %d:\n%s", local, remote, state, b)
		}
	}
}

// --- Rendezvous over QUIC and UDP

// rvEvents records every "rendezvous" trace record of a System.
type rvEvents struct {
	mu      sync.Mutex
	recs    []TraceRecord
	changed chan struct{} // closed (and replaced) on every record
}

func newRVSystem(t *testing.T) (*System, *rvEvents) {
	ev := &rvEvents{changed: make(chan struct{})}
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind != "rendezvous" {
			return
		}
		ev.mu.Lock()
		ev.recs = append(ev.recs, *r)
		close(ev.changed)
		ev.changed = make(chan struct{})
		ev.mu.Unlock()
	}))
	return sys, ev
}

// await waits until n records match pred and returns them.
func (e *rvEvents) await(t *testing.T, ctx context.Context, n int, what string, pred func(TraceRecord) bool) []TraceRecord {
	t.Helper()
	for {
		e.mu.Lock()
		var got []TraceRecord
		for _, r := range e.recs {
			if pred(r) {
				got = append(got, r)
			}
		}
		ch := e.changed
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%d of %d %s records", len(got), n, what)
		}
	}
}

// how returns how c's rendezvous came about (its RendezvousDone record).
func (e *rvEvents) how(c *Connection) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.recs {
		if r.Event == "RendezvousDone" && r.ConnectionID == c.ID() {
			return r.Candidate
		}
	}
	return ""
}

func event(name string) func(TraceRecord) bool {
	return func(r TraceRecord) bool { return r.Event == name }
}

// freeUDPPorts returns n distinct UDP ports that were free on 127.0.0.1.
func freeUDPPorts(t *testing.T, n int) []uint16 {
	t.Helper()
	var out []uint16
	var cs []*net.UDPConn
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		cs = append(cs, c)
		out = append(out, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	}
	for _, c := range cs {
		require.NoError(t, c.Close())
	}
	return out
}

// localUDPPortFree checks that nothing holds the UDP port on 127.0.0.1.
func localUDPPortFree(t *testing.T, port uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	require.NoError(t, err, "a rendezvous socket is still open")
	require.NoError(t, c.Close())
}

// rvQUICSec: a rendezvous peer over QUIC may be either role, so it has an
// identity (the server role) and trusts the CA (the client role).
func rvQUICSec(pki *testPKI) *SecurityParameters {
	return NewSecurityParameters().SetIdentity(pki.server).SetTrustedCAs(pki.pool).SetALPN("gotaps-test")
}

func rvQUICPre(sys *System, pki *testPKI, local, remote uint16, opts ...PreconnectionOption) *Preconnection {
	opts = append([]PreconnectionOption{WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(rvQUICSec(pki)),
		WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(remote))}, opts...)
	p := NewPreconnection(opts...)
	p.AddFramer(framers.NewLengthPrefix())
	return p
}

// quicRendezvousPair runs the two rendezvous of a QUIC pair; the client
// (lower port) sends its first message as soon as its Rendezvous returns:
// the server side's rendezvous completes when the client's stream arrives.
func quicRendezvousPair(t *testing.T, ctx context.Context, client, server *Preconnection, start <-chan struct{}) (cc, cs *Connection) {
	t.Helper()
	var errC, errS error
	var wg sync.WaitGroup
	wg.Go(func() {
		cc, errC = client.Rendezvous(ctx)
		if errC == nil {
			errC = cc.Send(ctx, []byte("first from client"), nil)
		}
	})
	wg.Go(func() {
		if start != nil {
			<-start
		}
		cs, errS = server.Rendezvous(ctx)
	})
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range []*Connection{cc, cs} {
			if c != nil {
				c.Abort()
				<-c.Done()
			}
		}
	})
	require.NoError(t, errC)
	require.NoError(t, errS)
	m, err := cs.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "first from client", string(m.Data))
	return cc, cs
}

func TestRendezvousQUIC(t *testing.T) {
	pki := newPeerPKI(t)
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	for range 3 {
		ports := freeUDPPorts(t, 2)
		lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
		client := rvQUICPre(sys, pki, lo, hi)
		server := rvQUICPre(sys, pki, hi, lo)
		cc, cs := quicRendezvousPair(t, ctx, client, server, nil)
		sameConnection(t, cc, cs, "quic")
		require.Equal(t, "connected", ev.how(cc), "the lower address:port dials")
		require.Equal(t, "accepted", ev.how(cs), "the higher one accepts")
		require.NotZero(t, cs.GetProperties().Socket.TLSVersion)
		la, ok := cc.GetProperties().Local.Addr()
		require.True(t, ok)
		require.Equal(t, lo, la.Port(), "the client's connection uses its local endpoint's port")
		exchange(t, ctx, cc, cs)
		exchange(t, ctx, cs, cc)
	}
}

// TestRendezvousQUICStaggered: the server side starts only after the
// client's first dial attempts went unanswered.
func TestRendezvousQUICStaggered(t *testing.T) {
	pki := newPeerPKI(t)
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	ports := freeUDPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	client := rvQUICPre(sys, pki, lo, hi)
	server := rvQUICPre(sys, pki, hi, lo)
	start := make(chan struct{})
	go func() {
		defer close(start)
		ev.await(t, ctx, 2, "ConnectRetry", event("ConnectRetry"))
	}()
	cc, cs := quicRendezvousPair(t, ctx, client, server, start)
	sameConnection(t, cc, cs, "quic")
	exchange(t, ctx, cs, cc)
}

// TestRendezvousQUICDeadline: nobody at the remote, in either role: ctx
// ends the rendezvous and the local port is free again.
func TestRendezvousQUICDeadline(t *testing.T) {
	pki := newPeerPKI(t)
	sys, _ := newRVSystem(t)
	for _, role := range []string{"client", "server"} {
		t.Run(role, func(t *testing.T) {
			ports := freeUDPPorts(t, 2)
			lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
			local, remote := lo, hi
			if role == "server" {
				local, remote = hi, lo
			}
			pre := rvQUICPre(sys, pki, local, remote)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := pre.Rendezvous(ctx)
			require.Nil(t, c)
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ReasonTimeout, ee.Reason)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			localUDPPortFree(t, local)
		})
	}
}

// TestRendezvousQUICRejectsStranger: an Initial from an address that is
// not a remote endpoint is refused (CONNECTION_REFUSED) before any
// handshake; the rendezvous goes on.
func TestRendezvousQUICRejectsStranger(t *testing.T) {
	pki := newPeerPKI(t)
	sys, ev := newRVSystem(t)
	ports := freeUDPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	pre := rvQUICPre(sys, pki, hi, lo) // the server role: it listens
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { _, err := pre.Rendezvous(ctx); done <- err }()
	ev.await(t, ctx, 1, "Listening", event("Listening"))

	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: stranger}
	defer func() { _ = tr.Close(); _ = stranger.Close() }()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	_, err = tr.Dial(dctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), hi)),
		&tls.Config{RootCAs: pki.pool, ServerName: "localhost", NextProtos: []string{"gotaps-test"}}, nil)
	var te *quic.TransportError
	require.ErrorAs(t, err, &te, "%v", err)
	require.Equal(t, quic.ConnectionRefused, te.ErrorCode)
	recs := ev.await(t, ctx, 1, "Ignored", event("Ignored"))
	require.Equal(t, stranger.LocalAddr().String(), recs[0].Remote)
	select {
	case err := <-done:
		t.Fatalf("rendezvous ended: %v", err)
	default:
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	localUDPPortFree(t, hi)
}

// TestRendezvousCancelledWhileStarting: ctx ends while the request for a
// rendezvous actor (or its reply) is on its way, so Rendezvous gets no
// RendezvousStarted although the root may have started the actor; it
// returns only once that actor is cancelled and its socket closed, or
// once it is sure no actor will open one.
func TestRendezvousCancelledWhileStarting(t *testing.T) {
	pki := newPeerPKI(t)
	sys, _ := newRVSystem(t)
	ports := freeUDPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	for range 20 {
		_, err := rvQUICPre(sys, pki, hi, lo).Rendezvous(ctx)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, context.Canceled)
		localUDPPortFree(t, hi)
	}
}

func rvUDPPre(sys *System, local, remote uint16, opts ...PreconnectionOption) *Preconnection {
	opts = append([]PreconnectionOption{WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
		WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(remote))}, opts...)
	return NewPreconnection(opts...)
}

func TestRendezvousUDP(t *testing.T) {
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	for range 5 {
		ports := freeUDPPorts(t, 2)
		a := rvUDPPre(sys, ports[0], ports[1])
		b := rvUDPPre(sys, ports[1], ports[0])
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		sameConnection(t, ca, cb, "udp")
		require.Equal(t, "checked", ev.how(ca))
		require.Equal(t, "checked", ev.how(cb))
		la, ok := ca.GetProperties().Local.Addr()
		require.True(t, ok)
		require.Equal(t, ports[0], la.Port())
		exchange(t, ctx, ca, cb)
		exchange(t, ctx, cb, ca)
	}
}

// TestRendezvousUDPStaggered: b starts after a has sent three checks; a's
// next one (or b's own, triggered by a's) completes both.
func TestRendezvousUDPStaggered(t *testing.T) {
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	ports := freeUDPPorts(t, 2)
	a := rvUDPPre(sys, ports[0], ports[1])
	b := rvUDPPre(sys, ports[1], ports[0])
	start := make(chan struct{})
	go func() {
		defer close(start)
		ev.await(t, ctx, 3, "CheckSent", event("CheckSent"))
	}()
	ca, cb := rendezvousPair(t, ctx, a, b, start)
	sameConnection(t, ca, cb, "udp")
	exchange(t, ctx, ca, cb)
}

// udpPeer is a hand-driven rendezvous peer: a plain UDP socket speaking
// STUN.
type udpPeer struct {
	t *testing.T
	c *net.UDPConn
}

func newUDPPeer(t *testing.T, port uint16) *udpPeer {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &udpPeer{t: t, c: c}
}

func (p *udpPeer) send(b []byte, to uint16) {
	_, err := p.c.WriteToUDPAddrPort(b, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to))
	require.NoError(p.t, err)
}

// next returns the next datagram, or nil after wait.
func (p *udpPeer) next(wait time.Duration) []byte {
	require.NoError(p.t, p.c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 2048)
	n, err := p.c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	require.NoError(p.t, err)
	return buf[:n]
}

// TestRendezvousUDPEarlyDataAndLateChecks drives the peer by hand: a
// datagram it sends before the checks completed is the connection's first
// message; a Binding request after the rendezvous is answered by the
// connection and never delivered; only the peer's success response (not
// its request) completes the rendezvous.
func TestRendezvousUDPEarlyDataAndLateChecks(t *testing.T) {
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	ports := freeUDPPorts(t, 2)
	peer := newUDPPeer(t, ports[1])
	pre := rvUDPPre(sys, ports[0], ports[1])
	type result struct {
		c   *Connection
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := pre.Rendezvous(ctx); done <- result{c, err} }()

	// the rendezvous's own check arrives
	var req []byte
	for req == nil || !stacks.IsSTUN(req) {
		req = peer.next(5 * time.Second)
		require.NotNil(t, req, "no Binding request from the rendezvous")
	}
	tx, err := stacks.DecodeSTUNBindingRequest(req)
	require.NoError(t, err)

	peer.send([]byte("early bird"), ports[0])
	// the peer's request is answered (with the peer's address) and
	// triggers a check; it does not complete the rendezvous
	ptx := stacks.NewSTUNTransactionID()
	peer.send(stacks.EncodeSTUNBindingRequest(ptx, nil), ports[0])
	peerAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[1])
	gotAnswer := false
	for !gotAnswer {
		b := peer.next(5 * time.Second)
		require.NotNil(t, b, "the peer's request was not answered")
		if a, err := stacks.DecodeSTUNBindingResponse(b, ptx, nil); err == nil {
			require.Equal(t, peerAddr, a, "XOR-MAPPED-ADDRESS is the requester's address")
			gotAnswer = true
		}
	}
	select {
	case r := <-done:
		t.Fatalf("a request alone completed the rendezvous: %v", r.err)
	default:
	}

	// the success response to its check completes it
	peer.send(stacks.EncodeSTUNBindingSuccess(tx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0])), ports[0])
	r := <-done
	require.NoError(t, r.err)
	c := r.c
	defer func() { c.Abort(); <-c.Done() }()
	require.Equal(t, "checked", ev.how(c))
	p := c.GetProperties()
	require.Equal(t, "udp", p.Stack)
	require.Equal(t, peerAddr.String(), p.Remote.String())

	// a late request is answered by the connection, not delivered
	ltx := stacks.NewSTUNTransactionID()
	peer.send(stacks.EncodeSTUNBindingRequest(ltx, nil), ports[0])
	peer.send([]byte("after"), ports[0])
	for {
		b := peer.next(5 * time.Second)
		require.NotNil(t, b, "the late request was not answered")
		if a, err := stacks.DecodeSTUNBindingResponse(b, ltx, nil); err == nil {
			require.Equal(t, peerAddr, a)
			break
		}
	}
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "early bird", string(m.Data))
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "after", string(m.Data), "the STUN request between was not delivered")
	require.NoError(t, c.Send(ctx, []byte("to peer"), nil))
	for {
		b := peer.next(5 * time.Second)
		require.NotNil(t, b, "no message from the connection")
		if !stacks.IsSTUN(b) {
			require.Equal(t, "to peer", string(b))
			break
		}
	}
}

func TestRendezvousUDPDeadline(t *testing.T) {
	sys, _ := newRVSystem(t)
	ports := freeUDPPorts(t, 2)
	pre := rvUDPPre(sys, ports[0], ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := pre.Rendezvous(ctx)
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	localUDPPortFree(t, ports[0])

	pre = rvUDPPre(sys, ports[0], ports[1], WithEstablishmentTimeout(200*time.Millisecond))
	_, err = pre.Rendezvous(testCtx(t))
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrEstablishmentTimeout)
	require.ErrorIs(t, err, stacks.ErrSTUNTimeout, "the unanswered checks are listed")
	localUDPPortFree(t, ports[0])
}

// TestRendezvousUDPIgnoresStranger: a Binding request from an address that
// is not a remote endpoint gets no answer; the rendezvous goes on.
func TestRendezvousUDPIgnoresStranger(t *testing.T) {
	sys, ev := newRVSystem(t)
	ports := freeUDPPorts(t, 3)
	pre := rvUDPPre(sys, ports[0], ports[1])
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { _, err := pre.Rendezvous(ctx); done <- err }()
	ev.await(t, ctx, 1, "Listening", event("Listening"))

	stranger := newUDPPeer(t, ports[2])
	stranger.send(stacks.EncodeSTUNBindingRequest(stacks.NewSTUNTransactionID(), nil), ports[0])
	recs := ev.await(t, ctx, 1, "Ignored", event("Ignored"))
	require.Equal(t, stranger.c.LocalAddr().String(), recs[0].Remote)
	require.Nil(t, stranger.next(50*time.Millisecond), "the stranger got an answer")
	select {
	case err := <-done:
		t.Fatalf("rendezvous ended: %v", err)
	default:
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	localUDPPortFree(t, ports[0])
}

// newPeerPKI is newTestPKI with a leaf certificate for both TLS roles
// (server and client authentication): a QUIC rendezvous peer presents it
// as the server, and as the client to a server that verifies client
// certificates (its trusted CAs set).
func newPeerPKI(t *testing.T) *testPKI {
	t.Helper()
	return newPKIFor(t, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// TestRendezvousUDPLite: the UDP-Lite stack rendezvous as UDP does.
func TestRendezvousUDPLite(t *testing.T) {
	if c, err := stacks.BindRendezvousSocket(context.Background(), "udplite", stacks.Options{}); err != nil {
		t.Skip(err)
	} else {
		require.NoError(t, c.Close())
	}
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	ports := freeUDPPorts(t, 2)
	tp := NewTransportProperties(UnreliableDatagram)
	require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
	require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
	require.NoError(t, tp.Set(RecvChecksumLen, 8))
	a := rvUDPPre(sys, ports[0], ports[1], WithTransportProperties(tp))
	b := rvUDPPre(sys, ports[1], ports[0], WithTransportProperties(tp))
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	sameConnection(t, ca, cb, "udplite")
	require.Equal(t, "checked", ev.how(ca))
	require.Equal(t, 16, ca.GetProperties().Socket.RecvChecksumCoverage, "recvChecksumLen 8 + header, on the rendezvous socket")
	exchange(t, ctx, ca, cb)
}

// TestRendezvousQUICServerNeedsIdentity: the side whose address:port is
// the higher is the QUIC server; without an identity it fails at once,
// and its port is free again.
func TestRendezvousQUICServerNeedsIdentity(t *testing.T) {
	pki := newPeerPKI(t)
	sys, ev := newRVSystem(t)
	ports := freeUDPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	pre := NewPreconnection(WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(pki.clientSec()),
		WithLocalEndpoint(rvLocal(hi)), WithRemoteEndpoint(rvRemote(lo)))
	c, err := pre.Rendezvous(testCtx(t))
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "needs a local identity")
	localUDPPortFree(t, hi)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, r := range ev.recs {
		require.NotEqual(t, "Listening", r.Event, "it did not start")
	}
}

// A rendezvous connection's establishment is traced as RendezvousDone (it
// has no Ready, RFC 9622 §7.3), a listener's as ConnectionReceived.
func TestRendezvousConnectionStateTrace(t *testing.T) {
	var mu sync.Mutex
	events := map[uint64]string{} // connection id -> the event that made it Established
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "state" && r.ToState == "Established" {
			mu.Lock()
			events[r.ConnectionID] = r.Event
			mu.Unlock()
		}
	}))
	ctx := testCtx(t)
	ports := freeTCPPorts(t, 2)
	a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])), WithRemoteEndpoint(rvRemote(ports[0])))
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	mu.Lock()
	got := []string{events[ca.ID()], events[cb.ID()]}
	mu.Unlock()
	require.Equal(t, []string{"RendezvousDone", "RendezvousDone"}, got)
	ca.Abort()
	cb.Abort()
	<-ca.Done()
	<-cb.Done()
}

// rvRawPeer connects from the rendezvous's remote endpoint (the port at
// remote) to its local one (local) as a plain TCP socket, until the
// rendezvous listens (or a simultaneous open with its connect succeeds).
func rvRawPeer(t *testing.T, ctx context.Context, local, remote uint16) stacks.Transport {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	for {
		c, err := stacks.TCP().Dial(ctx, netip.AddrPortFrom(lo, local), stacks.Options{Local: netip.AddrPortFrom(lo, remote), ReusePort: true})
		if err == nil {
			t.Cleanup(func() { _ = c.Abort() })
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("the peer never connected: %v", err)
		}
	}
}

// TestRendezvousWinnerFailsBeforeReady: the first transport wins, but its
// connection never becomes Ready: a framer's handshake fails (the peer
// answers the wrong greeting), or the peer never answers and the
// establishment timeout ends the rendezvous. Rendezvous returns the
// EstablishmentError; the connection is gone and the local port free.
func TestRendezvousWinnerFailsBeforeReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string // "": the peer stays silent
		reason ErrorReason
		is     error
	}{
		{name: "framer fails", answer: "WRONG", reason: ReasonEstablishmentFailed, is: framers.ErrDeframingFailed},
		{name: "establishment timeout", reason: ReasonTimeout, is: ErrEstablishmentTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys, rt := newRendezvousSystem(t)
			ctx := testCtx(t)
			ports := freeTCPPorts(t, 2)
			pre := NewPreconnection(WithSystem(sys), WithEstablishmentTimeout(300*time.Millisecond),
				WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
			pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
			done := make(chan error, 1)
			go func() {
				c, err := pre.Rendezvous(ctx)
				if c != nil {
					c.Abort()
					<-c.Done()
				}
				done <- err
			}()
			select {
			case <-rt.listening:
			case <-ctx.Done():
				t.Fatal("not listening")
			}
			peer := rvRawPeer(t, ctx, ports[0], ports[1])
			hello := make([]byte, 5)
			_, err := io.ReadFull(peer, hello)
			require.NoError(t, err)
			require.Equal(t, "HELLO", string(hello), "the framer's handshake starts: the connection was made")
			if tc.answer != "" {
				_, err = peer.Write([]byte(tc.answer))
				require.NoError(t, err)
			}
			select {
			case err = <-done:
			case <-time.After(5 * time.Second): // the establishment timeout is 300 ms
				t.Fatal("Rendezvous did not return: its connection never became Ready")
			}
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tc.reason, ee.Reason, "%v", err)
			require.ErrorIs(t, err, tc.is)
			localPortFree(t, ports[0]) // the winner's socket too is closed (reset) by then
			_, err = io.ReadAll(peer)
			require.ErrorIs(t, err, syscall.ECONNRESET)
		})
	}
}
