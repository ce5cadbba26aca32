package taps

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A bug hunt on Rendezvous (RFC 9622 §7.3) over real loopback sockets:
// two Preconnections in one test, candidates exchanged through
// AddRemote, on every stack that can rendezvous.

// rvHuntStack builds the rendezvous Preconnections of one stack.
type rvHuntStack struct {
	name  string
	udp   bool // UDP ports (udp, quic), else TCP ports
	build func(sys *System, pki *testPKI, local uint16, opts ...PreconnectionOption) *Preconnection
}

func rvHuntStacks() []rvHuntStack {
	framed := func(p *Preconnection) *Preconnection { p.AddFramer(framers.NewLengthPrefix()); return p }
	return []rvHuntStack{
		{name: "tcp", build: func(sys *System, _ *testPKI, local uint16, opts ...PreconnectionOption) *Preconnection {
			return framed(NewPreconnection(append([]PreconnectionOption{WithSystem(sys), WithLocalEndpoint(rvLocal(local))}, opts...)...))
		}},
		{name: "tls", build: func(sys *System, pki *testPKI, local uint16, opts ...PreconnectionOption) *Preconnection {
			return framed(NewPreconnection(append([]PreconnectionOption{WithSystem(sys), WithSecurityParameters(rvQUICSec(pki)),
				WithLocalEndpoint(rvLocal(local))}, opts...)...))
		}},
		{name: "quic", udp: true, build: func(sys *System, pki *testPKI, local uint16, opts ...PreconnectionOption) *Preconnection {
			return framed(NewPreconnection(append([]PreconnectionOption{WithSystem(sys), WithProtocols("quic"),
				WithSecurityParameters(rvQUICSec(pki)), WithLocalEndpoint(rvLocal(local))}, opts...)...))
		}},
		{name: "udp", udp: true, build: func(sys *System, _ *testPKI, local uint16, opts ...PreconnectionOption) *Preconnection {
			return NewPreconnection(append([]PreconnectionOption{WithSystem(sys),
				WithTransportProperties(NewTransportProperties(UnreliableDatagram)), WithLocalEndpoint(rvLocal(local))}, opts...)...)
		}},
	}
}

// ports returns n free ports of the stack's transport.
func (s rvHuntStack) ports(t *testing.T, n int) []uint16 {
	if s.udp {
		return freeUDPPorts(t, n)
	}
	return freeTCPPorts(t, n)
}

// dead returns a port where nobody answers.
func (s rvHuntStack) dead(t *testing.T) uint16 {
	if s.udp {
		return freeUDPPorts(t, 1)[0]
	}
	return deadTCPPort(t)
}

// portFree checks that no rendezvous socket holds port any more.
func (s rvHuntStack) portFree(t *testing.T, port uint16) {
	t.Helper()
	if s.udp {
		localUDPPortFree(t, port)
	} else {
		localPortFree(t, port)
	}
}

// rendezvousListening runs pre.Rendezvous(ctx) in the background until
// it is Listening (ev's first "Listening" event); done gets its error.
func rendezvousListening(t *testing.T, ctx context.Context, pre *Preconnection, ev *rvEvents) (done <-chan error) {
	t.Helper()
	ch := make(chan error, 1)
	go func() { _, err := pre.Rendezvous(ctx); ch <- err }()
	ev.await(t, testCtx(t), 1, "Listening", event("Listening"))
	return ch
}

// rvHuntPair runs the rendezvous of a and b, b once start is closed (nil:
// at once). The side on the lower port (its Connection's local port is
// below its remote's) sends "hello" as soon as its Rendezvous returns (a
// QUIC server side completes only once the client's first stream
// arrives); the other receives it.
func rvHuntPair(t *testing.T, ctx context.Context, a, b *Preconnection, start <-chan struct{}) (ca, cb *Connection) {
	t.Helper()
	var errA, errB error
	var wg sync.WaitGroup
	run := func(p *Preconnection, c **Connection, err *error) {
		*c, *err = p.Rendezvous(ctx)
		if *err == nil && rvLowerSide(*c) {
			*err = (*c).Send(ctx, []byte("hello"), nil)
		}
	}
	wg.Go(func() { run(a, &ca, &errA) })
	wg.Go(func() {
		if start != nil {
			select {
			case <-start:
			case <-ctx.Done():
			}
		}
		run(b, &cb, &errB)
	})
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range []*Connection{ca, cb} {
			if c != nil {
				c.Abort()
				<-c.Done()
			}
		}
	})
	require.NoError(t, errA)
	require.NoError(t, errB)
	hi := cb
	if rvLowerSide(cb) {
		hi = ca
	}
	m, err := hi.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	return ca, cb
}

// rvLowerSide reports whether c's local port is below its remote's (both
// peers on 127.0.0.1: the QUIC client, RFC 9622 §7.3 roles).
func rvLowerSide(c *Connection) bool {
	p := c.GetProperties()
	remote, err := netip.ParseAddrPort(p.Remote.String())
	return err == nil && p.Local.Port() < remote.Port()
}

// count returns how many records of event ev e has.
func (e *rvEvents) count(ev string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.recs {
		if r.Event == ev {
			n++
		}
	}
	return n
}

// TestRendezvousHuntSimultaneous: both sides start together (released by
// one channel), on every stack, many times: each side gets exactly one
// Connection, the two are the ends of one transport connection, and
// RendezvousDone is traced exactly once per side.
func TestRendezvousHuntSimultaneous(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			sys, ev := newRVSystem(t)
			ctx := testCtx(t)
			for i := range 8 {
				p := st.ports(t, 2)
				a := st.build(sys, pki, p[0], WithEstablishmentTimeout(3*time.Second))
				b := st.build(sys, pki, p[1], WithEstablishmentTimeout(3*time.Second))
				a.AddRemote(rvRemote(p[1]))
				b.AddRemote(rvRemote(p[0]))
				before := ev.count("RendezvousDone")
				ca, cb := rvHuntPair(t, ctx, a, b, nil)
				sameConnection(t, ca, cb, st.name)
				require.Equal(t, before+2, ev.count("RendezvousDone"), "iteration %d", i)
				require.NotEmpty(t, ev.how(ca))
				require.NotEmpty(t, ev.how(cb))
				exchange(t, ctx, ca, cb)
				exchange(t, ctx, cb, ca)
			}
		})
	}
}

// TestRendezvousHuntLateSide: b starts only once a has tried several
// times (refused connects, unanswered checks, QUIC dial attempts, or, on
// the QUIC server side, a while later), well within the establishment
// timeout.
func TestRendezvousHuntLateSide(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			sys, ev := newRVSystem(t)
			ctx := testCtx(t)
			for _, first := range []string{"lower", "higher"} {
				t.Run(first, func(t *testing.T) {
					p := st.ports(t, 2)
					pa, pb := min(p[0], p[1]), max(p[0], p[1])
					if first == "higher" {
						pa, pb = pb, pa
					}
					a := st.build(sys, pki, pa, WithEstablishmentTimeout(3*time.Second), WithRemoteEndpoint(rvRemote(pb)))
					b := st.build(sys, pki, pb, WithEstablishmentTimeout(3*time.Second), WithRemoteEndpoint(rvRemote(pa)))
					start := make(chan struct{})
					go func() {
						defer close(start)
						// a listens; then a's own retries (a QUIC server
						// side has none: its listening is enough)
						ev.await(t, ctx, 1, "Listening", func(r TraceRecord) bool { return r.Event == "Listening" && r.Local == fmt.Sprintf("127.0.0.1:%d", pa) })
						if st.name == "quic" && pa > pb {
							return
						}
						n := ev.count("ConnectRefused") + ev.count("CheckSent") + ev.count("ConnectRetry")
						ev.await(t, ctx, n+3, "retry", func(r TraceRecord) bool {
							return r.Event == "ConnectRefused" || r.Event == "CheckSent" || r.Event == "ConnectRetry"
						})
					}()
					ca, cb := rvHuntPair(t, ctx, a, b, start)
					sameConnection(t, ca, cb, st.name)
					exchange(t, ctx, ca, cb)
				})
			}
		})
	}
}

// TestRendezvousHuntNoPeer: nobody at the remote: after the establishment
// timeout Rendezvous returns an *EstablishmentError (Reason Timeout)
// whose Attempts name the pair tried, and the local port is free again
// (goleak, in TestMain, checks the goroutines).
func TestRendezvousHuntNoPeer(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		for _, role := range []string{"lower", "higher"} {
			t.Run(st.name+"/"+role, func(t *testing.T) {
				sys, _ := newRVSystem(t)
				p := st.ports(t, 2)
				local, remote := min(p[0], p[1]), max(p[0], p[1])
				if role == "higher" {
					local, remote = remote, local
				}
				pre := st.build(sys, pki, local, WithEstablishmentTimeout(600*time.Millisecond), WithRemoteEndpoint(rvRemote(remote)))
				t0 := time.Now()
				c, err := pre.Rendezvous(testCtx(t))
				require.Nil(t, c)
				require.Less(t, time.Since(t0), 4*time.Second, "the 600 ms establishment timeout ends it")
				var ee *EstablishmentError
				require.ErrorAs(t, err, &ee)
				require.Equal(t, ReasonTimeout, ee.Reason, "%v", err)
				require.ErrorIs(t, err, ErrEstablishmentTimeout)
				require.Len(t, ee.Attempts, 1, "%v", err)
				require.Equal(t, fmt.Sprintf("127.0.0.1:%d->127.0.0.1:%d", local, remote), ee.Attempts[0].Endpoint)
				require.Equal(t, st.name, ee.Attempts[0].Stack)
				require.Error(t, ee.Attempts[0].Err)
				st.portFree(t, local)
			})
		}
	}
}

// TestRendezvousHuntUnreachableMixed: each side's remotes hold the peer
// among dead candidates, some of them twice, added before Rendezvous:
// the peer's pair still wins promptly.
func TestRendezvousHuntUnreachableMixed(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			sys, _ := newRVSystem(t)
			ctx := testCtx(t)
			p := st.ports(t, 2)
			d1, d2 := st.dead(t), st.dead(t)
			a := st.build(sys, pki, p[0], WithEstablishmentTimeout(10*time.Second))
			b := st.build(sys, pki, p[1], WithEstablishmentTimeout(10*time.Second))
			a.AddRemote(rvRemote(d1), rvRemote(d2), rvRemote(p[1]), rvRemote(d1))
			a.AddRemote(rvRemote(p[1]))
			b.AddRemote(rvRemote(d2), rvRemote(p[0]), rvRemote(p[0]), rvRemote(d1))
			t0 := time.Now()
			ca, cb := rvHuntPair(t, ctx, a, b, nil)
			// promptly: the dead candidates' refusals and unanswered checks
			// do not hold it up until the 10 s timeout (5 s leaves room for
			// a lost SYN, which the kernel retransmits after 1 s, on a
			// loaded machine)
			require.Less(t, time.Since(t0), 5*time.Second, "the reachable pair wins before the timeout")
			sameConnection(t, ca, cb, st.name)
			exchange(t, ctx, ca, cb)
		})
	}
}

// TestRendezvousHuntInvalidRemote: an invalid remote endpoint added by
// AddRemote fails Rendezvous with a typed error before anything is sent
// or bound.
func TestRendezvousHuntInvalidRemote(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := quietListener(t)
	local := freeTCPPorts(t, 1)[0]
	for _, tc := range []struct {
		name string
		bad  *RemoteEndpoint
	}{
		{"nil", nil},
		{"no port", NewRemoteEndpoint().WithIPAddress("127.0.0.1")},
		{"bad address", NewRemoteEndpoint().WithIPAddress("127.0.0.300").WithPort(port)},
		{"two addresses", NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithIPAddress("127.0.0.2").WithPort(port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(local)), WithRemoteEndpoint(rvRemote(port)))
			pre.AddRemote(tc.bad)
			c, err := pre.Rendezvous(testCtx(t))
			require.Nil(t, c)
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ReasonInvalidConfiguration, ee.Reason, "%v", err)
			require.ErrorIs(t, err, ErrInvalidEndpoint)
			var epe *EndpointError
			require.ErrorAs(t, err, &epe)
			nothingArrived(t, ln)
			localPortFree(t, local)
		})
	}
}

// TestRendezvousHuntCancel: ctx ends during the rendezvous (listening,
// retrying): Rendezvous returns ctx's error promptly, its Attempts name
// the pair tried, and every socket is closed.
func TestRendezvousHuntCancel(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			sys, ev := newRVSystem(t)
			p := st.ports(t, 2)
			pre := st.build(sys, pki, p[0], WithRemoteEndpoint(rvRemote(p[1])))
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			done := rendezvousListening(t, ctx, pre, ev)
			t0 := time.Now()
			cancel()
			err := <-done
			require.Less(t, time.Since(t0), 3*time.Second, "the cancel ends it, not the timeout")
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ReasonTimeout, ee.Reason)
			require.ErrorIs(t, err, context.Canceled)
			require.Len(t, ee.Attempts, 1, "the pair tried is listed: %v", err)
			require.Equal(t, fmt.Sprintf("127.0.0.1:%d->127.0.0.1:%d", p[0], p[1]), ee.Attempts[0].Endpoint)
			st.portFree(t, p[0])
		})
	}
}

// TestRendezvousHuntShutdown: System.Shutdown during a rendezvous ends it
// with ErrSystemShutdown and closes its socket; a Rendezvous after the
// shutdown fails at once.
func TestRendezvousHuntShutdown(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			ev := &rvEvents{changed: make(chan struct{})}
			sys := NewSystem(WithTracer(func(r *TraceRecord) {
				if r.Kind == "rendezvous" {
					ev.mu.Lock()
					ev.recs = append(ev.recs, *r)
					close(ev.changed)
					ev.changed = make(chan struct{})
					ev.mu.Unlock()
				}
			}))
			ctx := testCtx(t)
			p := st.ports(t, 2)
			pre := st.build(sys, pki, p[0], WithRemoteEndpoint(rvRemote(p[1])))
			done := rendezvousListening(t, ctx, pre, ev)
			require.NoError(t, sys.Shutdown(ctx))
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Rendezvous still running after Shutdown")
			}
			require.ErrorIs(t, err, ErrSystemShutdown)
			st.portFree(t, p[0])
			_, err = pre.Rendezvous(ctx)
			require.Error(t, err)
		})
	}
}

// TestRendezvousHuntTwice: a Preconnection is a template: a remote added
// while its Rendezvous runs is for later calls (the running one lists
// only what it had); its second Rendezvous, on the same local port after
// the first failed, meets the peer.
func TestRendezvousHuntTwice(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name, func(t *testing.T) {
			sys, ev := newRVSystem(t)
			ctx := testCtx(t)
			p := st.ports(t, 2)
			dead := st.dead(t)
			a := st.build(sys, pki, p[0], WithEstablishmentTimeout(300*time.Millisecond), WithRemoteEndpoint(rvRemote(dead)))
			done := rendezvousListening(t, ctx, a, ev)
			a.AddRemote(rvRemote(p[1]))
			err := <-done
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ReasonTimeout, ee.Reason, "%v", err)
			for _, at := range ee.Attempts {
				require.NotContains(t, at.Endpoint, fmt.Sprint(p[1]), "a remote added later is not in the running rendezvous")
			}
			b := st.build(sys, pki, p[1], WithEstablishmentTimeout(3*time.Second), WithRemoteEndpoint(rvRemote(p[0])))
			ca, cb := rvHuntPair(t, ctx, a, b, nil)
			sameConnection(t, ca, cb, st.name)
			exchange(t, ctx, cb, ca)
		})
	}
}

// TestRendezvousHuntCloseSeenByPeer: after the rendezvous, Close on one
// side (connection-oriented stacks) is the peer's end of stream: what was
// sent before arrives, then the peer's Receive fails with ErrClosed (a
// half-close, RFC 9622 §10); once the peer closes too, each side gets its
// Preconnection's Closed handler, and no ConnectionError.
func TestRendezvousHuntCloseSeenByPeer(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		if st.name == "udp" {
			continue // connectionless: the peer learns nothing
		}
		t.Run(st.name, func(t *testing.T) {
			sys, _ := newRVSystem(t)
			ctx := testCtx(t)
			p := st.ports(t, 2)
			a := st.build(sys, pki, p[0], WithRemoteEndpoint(rvRemote(p[1])))
			b := st.build(sys, pki, p[1], WithRemoteEndpoint(rvRemote(p[0])))
			closed := make(chan string, 2)
			failed := make(chan error, 2)
			for name, pre := range map[string]*Preconnection{"a": a, "b": b} {
				pre.OnClosed(func(*Connection) { closed <- name })
				pre.OnConnectionError(func(_ *Connection, err error) { failed <- err })
			}
			ca, cb := rvHuntPair(t, ctx, a, b, nil)
			exchange(t, ctx, ca, cb)
			require.NoError(t, ca.Send(ctx, []byte("last words"), nil))
			require.NoError(t, ca.Close())
			m, err := cb.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "last words", string(m.Data))
			_, err = cb.Receive(ctx)
			var re *ReceiveError
			require.ErrorAs(t, err, &re)
			require.ErrorIs(t, err, ErrClosed)
			require.NoError(t, cb.Close())
			got := map[string]bool{}
			for len(got) < 2 {
				select {
				case n := <-closed:
					got[n] = true
				case err := <-failed:
					t.Fatalf("ConnectionError: %v", err)
				case <-ctx.Done():
					t.Fatalf("Closed on %v only", got)
				}
			}
			<-ca.Done()
			<-cb.Done()
			require.NoError(t, ca.Err())
			require.NoError(t, cb.Err())
		})
	}
}

// TestRendezvousHuntOwnAddressAmongRemotes: a side whose remotes hold its
// own local address (a candidate list shared by both peers) does not
// rendezvous with itself: alone, it times out, the pair to itself given
// up as "connection to itself"; with the peer holding the same list, the
// two sides get one connection between them. A TCP connect to its own
// address:port is a simultaneous open with itself, and a UDP check sent
// to its own socket was answered by that socket: both won.
func TestRendezvousHuntOwnAddressAmongRemotes(t *testing.T) {
	pki := newPeerPKI(t)
	for _, st := range rvHuntStacks() {
		t.Run(st.name+"/alone", func(t *testing.T) {
			sys, _ := newRVSystem(t)
			p := st.ports(t, 2)
			pre := st.build(sys, pki, p[0], WithEstablishmentTimeout(600*time.Millisecond),
				WithRemoteEndpoint(rvRemote(p[0])), WithRemoteEndpoint(rvRemote(p[1])))
			c, err := pre.Rendezvous(testCtx(t))
			if c != nil {
				c.Abort()
				<-c.Done()
			}
			require.Nil(t, c, "no rendezvous with itself")
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ReasonTimeout, ee.Reason, "%v", err)
			self := fmt.Sprintf("127.0.0.1:%d->127.0.0.1:%d", p[0], p[0])
			found := false
			for _, a := range ee.Attempts {
				if a.Endpoint == self {
					found = true
					require.ErrorContains(t, a.Err, "connection to itself")
				}
			}
			require.True(t, found, "the pair to itself is listed: %v", err)
			st.portFree(t, p[0])
		})
		t.Run(st.name+"/shared", func(t *testing.T) {
			sys, _ := newRVSystem(t)
			ctx := testCtx(t)
			p := st.ports(t, 2)
			a := st.build(sys, pki, p[0], WithEstablishmentTimeout(10*time.Second))
			b := st.build(sys, pki, p[1], WithEstablishmentTimeout(10*time.Second))
			a.AddRemote(rvRemote(p[0]), rvRemote(p[1]))
			b.AddRemote(rvRemote(p[0]), rvRemote(p[1]))
			ca, cb := rvHuntPair(t, ctx, a, b, nil)
			sameConnection(t, ca, cb, st.name)
			pa := ca.GetProperties()
			require.NotEqual(t, pa.Local.String(), pa.Remote.String(), "a's connection goes to b, not to itself")
			exchange(t, ctx, ca, cb)
		})
	}
}

// TestResolveSTUNUnspecifiedLocalUsesItsFamily: a LocalEndpoint with the
// unspecified IPv4 address (0.0.0.0: IPv4 only) and a STUN server whose
// host name has an IPv6 and an IPv4 address asks the server's IPv4
// address, from a socket bound to 0.0.0.0. It asked the first address
// (IPv6, in Happy Eyeballs order) and Resolve failed binding a udp6
// socket to 0.0.0.0 ("no suitable address found").
func TestResolveSTUNUnspecifiedLocalUsesItsFamily(t *testing.T) {
	sys := newTestSystem(t)
	srv := testSTUNServer(t, 0) // on 127.0.0.1 only
	dual := WithResolver(func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if host != "stun.example" {
			return nil, fmt.Errorf("unknown host %s", host)
		}
		if network == "ip6" {
			return []netip.Addr{netip.MustParseAddr("::1")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	port := freeUDPPorts(t, 1)[0]
	pre := NewPreconnection(WithSystem(sys), dual,
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("0.0.0.0").WithPort(port).WithStunServer("stun.example", srv.Port())))
	locals, _, err := pre.Resolve(testCtx(t))
	require.NoError(t, err)
	var reflexive []netip.AddrPort
	for _, l := range locals {
		ap, ok := l.Addr()
		require.True(t, ok, "%s", l)
		require.True(t, ap.Addr().Is4(), "IPv4 only: %s", l)
		if l.IsServerReflexive() {
			reflexive = append(reflexive, ap)
		}
	}
	require.Equal(t, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}, reflexive,
		"what the IPv4 server saw")
}

// TestRendezvousHuntServerReflexive: the first local endpoint's STUN
// server is asked for the server-reflexive address of the rendezvous
// socket itself (RFC 8445 §5.1.1.2), on every stack, on a fixed local port
// and on port 0: the ServerReflexive record is what the STUN server saw,
// the address and port of the socket the rendezvous listens on (its
// Listening record), and a peer given that candidate as its remote (as
// signalling would) rendezvous with it. Over UDP and QUIC the Binding
// request goes from the rendezvous socket; over TCP and TLS from a UDP
// socket on the listener's port. Before: over UDP a second socket on the
// rendezvous port failed with EADDRINUSE (fixed already), and so it did
// over QUIC; on port 0 the second socket got a port of its own over QUIC,
// TCP and TLS, which the candidate advertised though nothing listened
// there (the peer's rendezvous then failed).
func TestRendezvousHuntServerReflexive(t *testing.T) {
	pki := newPeerPKI(t)
	srv := testSTUNServer(t, 0)
	for _, st := range rvHuntStacks() {
		for _, fixed := range []bool{true, false} {
			name := st.name + "/port0"
			if fixed {
				name = st.name + "/fixed"
			}
			t.Run(name, func(t *testing.T) {
				sys, ev := newRVSystem(t)
				ctx := testCtx(t)
				p := st.ports(t, 2)
				pa := p[0]
				if !fixed {
					pa = 0
				}
				a := st.build(sys, pki, pa, WithEstablishmentTimeout(5*time.Second), WithRemoteEndpoint(rvRemote(p[1])))
				a.locals[0].WithStunServer("127.0.0.1", srv.Port())
				b := st.build(sys, pki, p[1], WithEstablishmentTimeout(5*time.Second))
				start := make(chan struct{})
				var listening TraceRecord
				go func() {
					defer close(start) // b starts once a has its server-reflexive candidate, its remote
					listening = ev.await(t, ctx, 1, "Listening", event("Listening"))[0]
					reflexive := ev.await(t, ctx, 1, "ServerReflexive", event("ServerReflexive"))[0]
					assert.Empty(t, reflexive.Error)
					assert.Equal(t, listening.Local, reflexive.Local, "what the STUN server saw: the rendezvous socket")
					if fixed {
						assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", pa), reflexive.Local)
					}
					if ap, err := netip.ParseAddrPort(reflexive.Local); err == nil {
						b.AddRemote(rvRemote(ap.Port()))
					}
				}()
				ca, cb := rvHuntPair(t, ctx, a, b, start)
				sameConnection(t, ca, cb, st.name)
				require.Equal(t, listening.Local, ca.GetProperties().Local.String())
			})
		}
	}
}
