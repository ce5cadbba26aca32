package taps

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// udpBound reports whether a UDP socket is bound to ap: binding it fails
// (the client's socket sets no SO_REUSEADDR).
func udpBound(t *testing.T, ap netip.AddrPort) bool {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		return true
	}
	require.NoError(t, c.Close())
	return false
}

// quicFrom initiates a QUIC connection from the local endpoint 127.0.0.1
// to ln, with opts.
func quicFrom(t *testing.T, sys *System, ln *Listener, pki *testPKI, opts ...PreconnectionOption) *Connection {
	t.Helper()
	ap, _ := ln.LocalEndpoints()[0].Addr()
	return initiateFramed(t, append([]PreconnectionOption{WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithTransportProperties(quicOnly(t)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))}, opts...)...)
}

// TestQUICRemoveLocalInUseMigratesTheSession: a QUIC connection bound to
// 127.0.0.1, given 127.0.0.2, migrates its session there when 127.0.0.1
// is removed: it stays Established (no Reestablishing), its stream and
// its clone's carry on, both raise PathChange with the new local address,
// the server's connections see the peer's new address, and the old
// socket, which reads until quic-go has switched (the round trip on the
// new path shows it has) and drains 5 s (stacks' quicDrainTime) after, is
// then closed.
func TestQUICRemoveLocalInUseMigratesTheSession(t *testing.T) {
	for _, policy := range []bool{false, true} {
		t.Run(fmt.Sprintf("reestablishment=%v", policy), func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the system's shutdown
			sys := newTestSystem(t)
			ctx := testCtx(t)
			pki := newTestPKI(t)
			ln, accepted := quicEchoServer(t, sys, pki, quicOnly(t))
			var opts []PreconnectionOption
			if policy {
				opts = append(opts, WithReestablishment(ReestablishPolicy{Initial: time.Hour}))
			}
			c := quicFrom(t, sys, ln, pki, opts...)
			reestablishing, _ := epReestablishEvents(c)
			pathChange := make(chan struct{}, 4)
			c.OnPathChange(func(*Connection) { pathChange <- struct{}{} })
			roundTrip(t, c, "before")
			first := <-accepted
			cl, err := c.Clone(ctx)
			require.NoError(t, err)
			clPathChange := make(chan struct{}, 4)
			cl.OnPathChange(func(*Connection) { clPathChange <- struct{}{} })
			roundTrip(t, cl, "clone before")
			second := <-accepted
			old := epAddr(t, ctx, c, true)
			require.Equal(t, "127.0.0.1", old.Addr().String())
			require.Equal(t, "127.0.0.1", epAddr(t, ctx, first, false).Addr().String())
			require.True(t, udpBound(t, old))

			require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
			require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
			epAwait(t, ctx, pathChange, "PathChange")
			if c.State() != StateEstablished {
				<-c.Done()
				t.Fatalf("ended: %v", c.Err())
			}
			now := epAddr(t, ctx, c, true)
			require.Equal(t, "127.0.0.2", now.Addr().String())
			roundTrip(t, c, "after")
			roundTrip(t, cl, "clone after")
			epAwait(t, ctx, clPathChange, "the clone's PathChange")
			require.Equal(t, now, epAddr(t, ctx, cl, true), "the clone shares the session")
			require.Equal(t, StateEstablished, cl.State())
			select {
			case err := <-reestablishing:
				t.Fatalf("Reestablishing: %v", err)
			default:
			}
			require.Equal(t, now, epAddr(t, ctx, first, false), "the server sees the peer's new address")
			require.Equal(t, now, epAddr(t, ctx, second, false))
			remotes, _, err := first.Endpoints(ctx)
			require.NoError(t, err)
			require.Equal(t, []string{now.String()}, []string{remotes[0].String()})
			_, locals, err := c.Endpoints(ctx)
			require.NoError(t, err)
			require.Len(t, locals, 1)
			require.Equal(t, "127.0.0.2:0", locals[0].String())
			require.True(t, udpBound(t, old), "the old socket drains")
			require.Eventually(t, func() bool { return !udpBound(t, old) }, 8*time.Second, 20*time.Millisecond,
				"the old socket is closed once drained")
			roundTrip(t, c, "after the drain")
			select {
			case err := <-reestablishing:
				t.Fatalf("Reestablishing after the migration: %v", err)
			default:
			}
		})
	}
}

// TestQUICMigratedToLoopbackAliasKeepsItsPathInNetns: a QUIC connection
// with a re-establishment policy migrated from 127.0.0.1 to 127.0.0.2
// (local: 127.0.0.1/8 is on lo, though only 127.0.0.1 is an address of
// it) keeps its session across the route monitor's bursts: the path
// guard does not take 127.0.0.2 for gone, as it did at any burst of
// changes on the machine (the connection then waited its policy's backoff,
// an hour here, to be re-established from a path that works; the flake of
// TestQUICRemoveLocalInUseMigratesTheSession/reestablishment=true). A
// namespace joined to the test's by a veth pair makes the bursts, and a
// TCP connection with a policy from its host-side address, which is then
// removed, tells (its Reestablishing, ErrPathLost) that the route monitor
// has checked every guarded connection after a burst that followed the
// migration. It needs root.
func TestQUICMigratedToLoopbackAliasKeepsItsPathInNetns(t *testing.T) {
	stacktest.SkipUnlessNetns(t)
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, _ := quicEchoServer(t, sys, pki, quicOnly(t))
	c := quicFrom(t, sys, ln, pki, WithReestablishment(ReestablishPolicy{Initial: time.Hour}))
	reestablishing, _ := epReestablishEvents(c)
	pathChange := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { pathChange <- struct{}{} })
	roundTrip(t, c, "before")
	require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	epAwait(t, ctx, pathChange, "PathChange")
	require.Equal(t, "127.0.0.2", epAddr(t, ctx, c, true).Addr().String())

	// bursts after the migration: the namespace's veth pair, its address
	n := stacktest.NewNetns(t, "ml", 239)
	var tln net.Listener
	n.Run(t, func() error { // a TCP echo server in the namespace
		var err error
		tln, err = net.Listen("tcp4", netip.AddrPortFrom(n.NSIP, 0).String())
		return err
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() { // the witness's peer never hears of its end: its address is gone
		_ = tln.Close()
		mu.Lock()
		for _, s := range conns {
			_ = s.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := tln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, s)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(s, s) }()
		}
	}()
	w := initiateFramed(t, WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(loopbackRemote(tln.Addr().(*net.TCPAddr).AddrPort())),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(n.HostIP.String())),
		WithReestablishment(ReestablishPolicy{Initial: time.Hour}))
	wReestablishing, _ := epReestablishEvents(w)
	roundTrip(t, w, "witness")
	stacktest.IP(t, "addr", "del", n.HostIP.String()+"/30", "dev", n.HostIf)
	require.ErrorIs(t, epAwait(t, ctx, wReestablishing, "the witness's Reestablishing"), ErrPathLost)

	require.Equal(t, "127.0.0.2", epAddr(t, ctx, c, true).Addr().String()) // after its pathChecks
	require.Equal(t, StateEstablished, c.State())
	select {
	case err := <-reestablishing:
		t.Fatalf("Reestablishing: %v", err)
	default:
	}
	roundTrip(t, c, "after the bursts")
}
