package taps

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// migRelay is a UDP relay between QUIC clients and a server that stands in
// the way of migrations from one address. A client address and port whose
// first datagram is a short-header (1-RTT) packet is a new path of an
// existing connection (a new connection starts with an Initial, a long
// header): the datagrams of such a path from the address block are held
// until release (or, with drop, dropped), so its probe gets no answer.
// Everything else passes both ways, new connections from block included.
type migRelay struct {
	pc     *net.UDPConn
	server *net.UDPAddr
	block  netip.Addr
	drop   bool
	probed chan struct{} // closed at the first datagram of a blocked path

	mu       sync.Mutex
	released bool
	peers    map[netip.AddrPort]*migPeer
	once     sync.Once
	wg       sync.WaitGroup
}

type migPeer struct {
	client  netip.AddrPort
	up      *net.UDPConn
	blocked bool
	held    [][]byte
}

// newMigRelay relays what pc receives to server. It stops with the
// test, after sys has shut down: what the connections send as they end
// (an abort's CONNECTION_CLOSE, a FIN) still reaches their peers.
func newMigRelay(t *testing.T, sys *System, pc *net.UDPConn, server netip.AddrPort, block netip.Addr, drop bool) *migRelay {
	t.Helper()
	r := &migRelay{pc: pc, server: net.UDPAddrFromAddrPort(server), block: block, drop: drop,
		probed: make(chan struct{}), peers: map[netip.AddrPort]*migPeer{}}
	r.wg.Go(r.fromClients)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, sys.Shutdown(ctx))
		r.close()
	})
	return r
}

// relayTo is a relay on 127.0.0.1 to the QUIC Listener ln of sys.
func relayTo(t *testing.T, sys *System, ln *Listener, block netip.Addr, drop bool) *migRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	return newMigRelay(t, sys, pc, ap, block, drop)
}

func (r *migRelay) addr() netip.AddrPort { return r.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// release forwards what was held and stops holding.
func (r *migRelay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.released = true
	for _, p := range r.peers {
		for _, b := range p.held {
			_, _ = p.up.Write(b)
		}
		p.held = nil
	}
}

func (r *migRelay) fromClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		r.mu.Lock()
		p := r.peers[from]
		if p == nil {
			up, err := net.DialUDP("udp", nil, r.server)
			if err != nil {
				r.mu.Unlock()
				return
			}
			p = &migPeer{client: from, up: up, blocked: from.Addr() == r.block && n > 0 && buf[0]&0x80 == 0}
			r.peers[from] = p
			if p.blocked {
				r.once.Do(func() { close(r.probed) })
			}
			r.wg.Go(func() { r.fromServer(p) })
		}
		if p.blocked && !r.released {
			if !r.drop {
				p.held = append(p.held, append([]byte(nil), buf[:n]...))
			}
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		_, _ = p.up.Write(buf[:n])
	}
}

func (r *migRelay) fromServer(p *migPeer) {
	buf := make([]byte, 64<<10)
	for {
		n, err := p.up.Read(buf)
		if err != nil {
			return
		}
		_, _ = r.pc.WriteToUDPAddrPort(buf[:n], p.client)
	}
}

func (r *migRelay) close() {
	_ = r.pc.Close()
	r.mu.Lock()
	for _, p := range r.peers {
		_ = p.up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// awaitProbe waits for the first datagram of a blocked path: the
// migration is probing it.
func (r *migRelay) awaitProbe(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-r.probed:
	case <-ctx.Done():
		t.Fatal("no probe on the new path reached the relay")
	}
}

// quicVia initiates a QUIC connection through the relay r, from the local
// endpoints locals (IP addresses; the first is bound).
func quicVia(t *testing.T, sys *System, r *migRelay, pki *testPKI, locals []string, opts ...PreconnectionOption) *Connection {
	t.Helper()
	var les []*LocalEndpoint
	for _, l := range locals {
		les = append(les, NewLocalEndpoint().WithIPAddress(l))
	}
	return initiateFramed(t, append([]PreconnectionOption{WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithTransportProperties(quicOnly(t)), WithRemoteEndpoint(loopbackRemote(r.addr())),
		WithLocalEndpoint(les...)}, opts...)...)
}

// migLab is the setup of the migration tests: a System with migTraces
// (its goroutines checked for leaks once it has shut down), a QUIC echo
// server, a relay to it that blocks new paths from 127.0.0.2 (drop:
// dropping their datagrams rather than holding them), and a connection c
// through the relay from the local endpoints locals.
type migLab struct {
	sys      *System
	ctx      context.Context
	traces   <-chan string
	accepted <-chan *Connection
	r        *migRelay
	c        *Connection
}

func newMigLab(t *testing.T, drop bool, locals []string, opts ...PreconnectionOption) migLab {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	tracer, traces := migTraces()
	sys := newTestSystem(t, tracer)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, accepted := quicEchoServer(t, sys, pki, quicOnly(t))
	r := relayTo(t, sys, ln, netip.MustParseAddr("127.0.0.2"), drop)
	c := quicVia(t, sys, r, pki, locals, opts...)
	return migLab{sys: sys, ctx: ctx, traces: traces, accepted: accepted, r: r, c: c}
}

// removeInUse removes 127.0.0.1, the local endpoint in use, and waits
// until the migration that starts probes the new path.
func (l migLab) removeInUse(t *testing.T) {
	t.Helper()
	require.NoError(t, l.c.RemoveLocal(l.ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	awaitTrace(t, l.ctx, l.traces, "Migrating")
	l.r.awaitProbe(t, l.ctx)
}

// migTraces records the migration trace records ("Migrating",
// "Migrated", "MigrationFailed") of a System made with the option.
func migTraces() (SystemOption, <-chan string) {
	ch := make(chan string, 64)
	return WithTracer(func(r *TraceRecord) {
		if r.Kind == "path" && strings.HasPrefix(r.Event, "Migrat") {
			select {
			case ch <- r.Event:
			default:
			}
		}
	}), ch
}

// awaitTrace waits for the trace record event, failing on any other.
func awaitTrace(t *testing.T, ctx context.Context, traces <-chan string, event string) {
	t.Helper()
	select {
	case got := <-traces:
		require.Equal(t, event, got)
	case <-ctx.Done():
		t.Fatalf("no %s", event)
	}
}

// TestQUICMigrationFailedProbeFallsBack: a QUIC connection bound to
// 127.0.0.1 whose endpoint in use is removed tries to migrate to
// 127.0.0.2, but the relay drops everything on that new path: the probe
// fails, and the connection does what it did before migration existed.
// Without a re-establishment policy it is aborted with an
// *EndpointRemovedError; with one it is re-established over 127.0.0.2
// (a new connection from there passes the relay). Either way the error's
// Reason says the migration failed, and no PathChange came from the
// failed migration.
func TestQUICMigrationFailedProbeFallsBack(t *testing.T) {
	for _, policy := range []bool{false, true} {
		name := "no-policy"
		if policy {
			name = "policy"
		}
		t.Run(name, func(t *testing.T) {
			var opts []PreconnectionOption
			if policy {
				opts = append(opts, WithReestablishment(ReestablishPolicy{Initial: time.Hour}))
			}
			lab := newMigLab(t, true, []string{"127.0.0.1", "127.0.0.2"}, opts...)
			ctx, traces, accepted, c := lab.ctx, lab.traces, lab.accepted, lab.c
			reestablishing, reestablished := epReestablishEvents(c)
			pathChange := make(chan netip.AddrPort, 4)
			c.OnPathChange(func(c *Connection) { pathChange <- epAddr(t, ctx, c, true) })
			roundTrip(t, c, "before")
			first := <-accepted

			lab.removeInUse(t)
			awaitTrace(t, ctx, traces, "MigrationFailed")

			var er *EndpointRemovedError
			if !policy {
				epAwait(t, ctx, c.Done(), "the end of the connection")
				require.ErrorIs(t, c.Err(), ErrAborted)
				require.ErrorAs(t, c.Err(), &er)
				epAwait(t, ctx, first.Done(), "the end of the server's connection (the abort on the old path)")
			} else {
				err := epAwait(t, ctx, reestablishing, "Reestablishing")
				require.ErrorAs(t, err, &er)
				require.Contains(t, er.Reason, "switching to the other endpoints")
				epAwait(t, ctx, reestablished, "Reestablished")
				roundTrip(t, c, "after")
				require.Equal(t, "127.0.0.2", epAddr(t, ctx, c, true).Addr().String(), "re-established from 127.0.0.2")
				<-accepted // a new connection at the server
				require.Equal(t, "127.0.0.2", epAwait(t, ctx, pathChange, "PathChange of the new transport").Addr().String())
			}
			require.Equal(t, "127.0.0.1:0", er.Endpoint)
			require.True(t, er.Local)
			require.Contains(t, er.Reason, "migration to 127.0.0.2:0 failed")
			select {
			case a := <-pathChange:
				t.Fatalf("PathChange to %v", a)
			default:
			}
		})
	}
}

// TestQUICEndDuringMigration: a connection closed or aborted while its
// migration probes a path that never answers (the relay holds it; it is
// released after the Close, so the probe may still succeed while the
// connection is Closing) ends at once rather than after the probe's
// bound, its last event is its terminal one (no PathChange), and it
// leaves no goroutine and no socket: its two UDP sockets, the old one and
// the migration's, are closed.
func TestQUICEndDuringMigration(t *testing.T) {
	for _, abort := range []bool{false, true} {
		name := "close"
		if abort {
			name = "abort"
		}
		t.Run(name, func(t *testing.T) {
			lab := newMigLab(t, false, []string{"127.0.0.1", "127.0.0.2"})
			sys, ctx, traces, r, c := lab.sys, lab.ctx, lab.traces, lab.r, lab.c
			events := make(chan string, 16)
			c.OnPathChange(func(*Connection) { events <- "PathChange" })
			c.OnClosed(func(*Connection) { events <- "Closed" })
			c.OnConnectionError(func(*Connection, error) { events <- "ConnectionError" })
			roundTrip(t, c, "before")
			first := <-lab.accepted

			lab.removeInUse(t) // the migration's socket is open, its probe held
			fds := countFDs(t) // both of the connection's sockets among them
			if pathMonitorRunning(sys) {
				fds-- // its netlink socket goes with the connection's watch too
			}
			start := time.Now()
			if abort {
				c.Abort()
			} else {
				require.NoError(t, c.Close())
				require.NoError(t, first.Close()) // the peer's end of stream: Close need not linger
			}
			r.release()
			epAwait(t, ctx, c.Done(), "the end of the connection")
			took := time.Since(start)
			require.Less(t, took, stacks.QUICMinProbe/2, "the end waited for the probe")
			want := "Closed"
			if abort {
				want = "ConnectionError"
			}
			require.Equal(t, want, epAwait(t, ctx, events, "the terminal event"), "no PathChange before it")
			require.Eventually(t, func() bool { return countFDs(t) <= fds-2 }, 5*time.Second, 10*time.Millisecond,
				"fds: %d during the migration, %d after", fds, countFDs(t))
			require.NoError(t, sys.Shutdown(ctx)) // every actor stopped: the migration goroutine has ended
			select {
			case e := <-events:
				t.Fatalf("%s after the terminal event", e)
			default:
			}
			require.NotContains(t, drain(traces), "Migrated", "a migration that ended with the connection is not finished")
		})
	}
}

// drain returns what ch holds now.
func drain(ch <-chan string) []string {
	var out []string
	for {
		select {
		case s := <-ch:
			out = append(out, s)
		default:
			return out
		}
	}
}

// TestQUICMigrationTargetRemovedMidFlight: while the migration to
// 127.0.0.2 probes (the relay holds the path), the application removes
// 127.0.0.2 from the local set too. The migration finishes there (the
// relay lets the probe through), and the connection then decides again:
// its endpoint in use is gone, so it migrates once more, to 127.0.0.3.
// It stays Established throughout (no Reestablishing), and PathChange
// fires for each move.
func TestQUICMigrationTargetRemovedMidFlight(t *testing.T) {
	targetRemovedMidFlight(t)
}

// TestQUICBackToBackMigrationsCarryOn is the data half of
// TestQUICMigrationTargetRemovedMidFlight: after the two migrations in a
// row, a message round-trips. The server may switch to the first new path
// after it began validating the second, which retires the connection ID
// it gave the second: it gets a new one only if the client still reads
// the first new path's socket (stacks.quicDrainTime).
func TestQUICBackToBackMigrationsCarryOn(t *testing.T) {
	roundTrip(t, targetRemovedMidFlight(t), "after")
}

// targetRemovedMidFlight runs the two migrations of
// TestQUICMigrationTargetRemovedMidFlight and checks where the connection
// ends up; it returns the connection.
func targetRemovedMidFlight(t *testing.T) *Connection {
	lab := newMigLab(t, false, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
	ctx, traces, c := lab.ctx, lab.traces, lab.c
	reestablishing, _ := epReestablishEvents(c)
	pathChange := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { pathChange <- struct{}{} })
	roundTrip(t, c, "before")
	<-lab.accepted

	lab.removeInUse(t)
	require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	lab.r.release()
	awaitTrace(t, ctx, traces, "Migrated")
	awaitTrace(t, ctx, traces, "Migrating") // the target was removed: again
	awaitTrace(t, ctx, traces, "Migrated")
	epAwait(t, ctx, pathChange, "PathChange to 127.0.0.2")
	epAwait(t, ctx, pathChange, "PathChange to 127.0.0.3")
	require.Equal(t, StateEstablished, c.State())
	require.Equal(t, "127.0.0.3", epAddr(t, ctx, c, true).Addr().String())
	_, locals, err := c.Endpoints(ctx)
	require.NoError(t, err)
	require.Len(t, locals, 1)
	require.Equal(t, "127.0.0.3:0", locals[0].String())
	select {
	case err := <-reestablishing:
		t.Fatalf("Reestablishing: %v", err)
	default:
	}
	return c
}

// TestQUICMigrationFailsAfterOldLocalAddedBack: while the migration to
// 127.0.0.2 probes a path that never answers, the application adds the
// removed endpoint in use (127.0.0.1) back. The probe fails; the endpoint
// in use is in the set again, so the connection stays on it: not aborted
// (there is no re-establishment policy), no PathChange, its stream
// carries on.
func TestQUICMigrationFailsAfterOldLocalAddedBack(t *testing.T) {
	lab := newMigLab(t, true, []string{"127.0.0.1", "127.0.0.2"})
	ctx, c := lab.ctx, lab.c
	pathChange := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { pathChange <- struct{}{} })
	roundTrip(t, c, "before")
	<-lab.accepted
	before := epAddr(t, ctx, c, true)

	lab.removeInUse(t)
	require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	awaitTrace(t, ctx, lab.traces, "MigrationFailed")
	_, err := c.GetPropertiesContext(ctx) // the actor has handled the failure
	require.NoError(t, err)
	select {
	case <-c.Done():
		t.Fatalf("ended: %v", c.Err())
	default:
	}
	require.Equal(t, StateEstablished, c.State())
	require.Equal(t, before, epAddr(t, ctx, c, true))
	roundTrip(t, c, "after")
	require.Empty(t, pathChange)
}
