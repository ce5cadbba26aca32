package taps

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of the security surface: the callbacks, opportunistic security,
// session isolation, secure listeners and plain clients.

// tlsOnlyProps prohibits multistreaming, so that only TLS over TCP (and
// never QUIC) is selected for a secure preconnection.
func tlsOnlyProps(t *testing.T) *TransportProperties { return prohibit(t, Multistreaming) }

func TestTLSTrustVerificationCallbackPanicIsAnEstablishmentError(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
	sec := pki.clientSec().SetTrustVerificationCallback(func(tls.ConnectionState) error { panic("verifier bug") })
	_, err := securePre(sys, ln, sec, tlsOnlyProps(t)).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "verifier bug")
	ln.Stop()
}

func TestTLSIdentityChallengeCallbackPanicIsAnEstablishmentError(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	// a listener that asks for client certificates: trusted CAs on a listener
	srvSec := pki.serverSec().SetTrustedCAs(pki.pool)
	ln := secureListener(t, sys, srvSec, tlsOnlyProps(t))
	sec := pki.clientSec().SetIdentityChallengeCallback(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		panic("challenge bug")
	})
	_, err := securePre(sys, ln, sec, tlsOnlyProps(t)).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "challenge bug")
	ln.Stop()
}

func TestTLSListenerTrustVerificationCallbackPanicRefusesThePeer(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	srvSec := pki.serverSec().SetTrustVerificationCallback(func(tls.ConnectionState) error { panic("server verifier bug") })
	ln := secureListener(t, sys, srvSec, tlsOnlyProps(t))
	// TLS 1.3: the client is done before the server checks it, so the
	// client may be Ready; the server then closes the connection without
	// delivering it (and the process goes on)
	ctx := testCtx(t)
	c, err := securePre(sys, ln, pki.clientSec(), tlsOnlyProps(t)).Initiate(ctx)
	if err == nil {
		if err = c.Send(ctx, []byte("hello"), nil); err == nil {
			_, err = c.Receive(ctx)
		}
		require.Error(t, err, "nothing is echoed: the server refused the connection")
		c.Abort()
		<-c.Done()
	} else {
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
	}
	ln.Stop()
}

func TestTLSRequiredListenerRefusesAPlainClient(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
	ap := listenerAddr(t, ln)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(ap)))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err, "the TCP connection itself is made")
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("plain hello, not a ClientHello"), nil))
	// the TLS server answers bytes that are no ClientHello with an alert
	// record (content type 21) and closes; nothing is echoed
	var got []byte
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			break
		}
		got = append(got, m.Data...)
	}
	require.NotContains(t, string(got), "plain hello")
	if len(got) > 0 {
		require.Equal(t, byte(21), got[0], "a TLS alert, not the echo: %q", got)
	}
	c.Abort()
	<-c.Done()
	ln.Stop()
}

func TestTLSOpportunisticClientToPlainServerIsPlain(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	echoServer(t, ln)
	ap := listenerAddr(t, ln)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewOpportunisticSecurityParameters()),
		WithRemoteEndpoint(loopbackRemote(ap)))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tcp", c.GetProperties().Stack)
	c.Abort()
	<-c.Done()
	ln.Stop()
}

// TestTLSOpportunisticClientToSecureServerIsSecure: opportunistic security
// is unauthenticated, so TLS is used to a TLS server whether or not its
// certificate can be verified, rather than plain TCP to a TLS port (the
// first case failed before: the TCP attempt won). securePre's attempt
// delay is 20 ms, shorter than a TLS handshake under -race on a busy
// machine: the plain attempt waits for the TLS one (it won in CI before).
func TestTLSOpportunisticClientToSecureServerIsSecure(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trustedCA=%v", trusted), func(t *testing.T) {
			sys := newTestSystem(t)
			pki := newTestPKI(t)
			ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
			sec := NewOpportunisticSecurityParameters().SetALPN("gotaps-test")
			if trusted {
				sec.SetTrustedCAs(pki.pool)
			}
			stackEcho(t, securePre(sys, ln, sec, tlsOnlyProps(t)), "tls", "opportunistic")
			ln.Stop()
		})
	}
}

// rawServer accepts TCP on loopback until the test ends and runs serve on
// a goroutine per connection, which closes the connection when serve
// returns; done is closed when the test ends. accepted counts the
// connections.
func rawServer(t *testing.T, serve func(c net.Conn, done <-chan struct{})) (r *RemoteEndpoint, accepted *atomic.Int32) {
	t.Helper()
	ln, r := rawListener(t)
	done := make(chan struct{})
	accepted = new(atomic.Int32)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c, done)
			})
		}
	})
	return r, accepted
}

// opportunisticPre initiates to r with opportunistic security, TLS or
// plain TCP only, and a 20 ms attempt delay.
func opportunisticPre(t *testing.T, sys *System, r *RemoteEndpoint) *Preconnection {
	return NewPreconnection(WithSystem(sys), WithSecurityParameters(NewOpportunisticSecurityParameters()),
		WithTransportProperties(tlsOnlyProps(t)), WithAttemptDelay(20*time.Millisecond), WithRemoteEndpoint(r))
}

// TestTLSOpportunisticSlowTLSServerIsStillSecure: a TLS server that takes
// 300 ms to answer the ClientHello gets TLS, not plain TCP, although the
// attempt delay is 20 ms: under opportunistic security the plain attempt
// waits while the TLS attempt to the same address runs (it started at
// 20 ms and won before: two connections reached the server, the second
// one plain).
func TestTLSOpportunisticSlowTLSServerIsStillSecure(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	r, accepted := rawServer(t, func(c net.Conn, done <-chan struct{}) {
		select {
		case <-time.After(300 * time.Millisecond): // the slow server
		case <-done:
			return
		}
		if tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pki.server}}).Handshake() == nil {
			<-done
		}
	})
	c, err := opportunisticPre(t, sys, r).Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tls", c.GetProperties().Stack)
	require.Equal(t, int32(1), accepted.Load(), "only the TLS attempt connected")
	c.Abort()
	<-c.Done()
}

// TestTLSOpportunisticSilentServerFallsBackWithinTheCtx: a server that
// accepts TCP and never answers the ClientHello gets plain TCP before
// Initiate's ctx (1 s) ends: the plain attempt waits for the TLS attempt
// half of what the ctx leaves, not the full 2 s hold.
func TestTLSOpportunisticSilentServerFallsBackWithinTheCtx(t *testing.T) {
	sys := newTestSystem(t)
	r, _ := rawServer(t, func(_ net.Conn, done <-chan struct{}) { <-done }) // held open, never answered
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := opportunisticPre(t, sys, r).Initiate(ctx)
	require.NoError(t, err, "the plain attempt must start before the ctx ends")
	require.Equal(t, "tcp", c.GetProperties().Stack)
	rep := c.EstablishmentReport()
	require.NotNil(t, rep)
	require.Len(t, rep.Attempts, 2)
	require.GreaterOrEqual(t, rep.Attempts[1].Start, 400*time.Millisecond, "held about half of the ctx's second")
	c.Abort()
	<-c.Done()
}

func TestTLSIsolateSessionOverridesAnExplicitSessionCache(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
	tp := tlsOnlyProps(t)
	require.NoError(t, tp.Set(IsolateSession, true))
	sec := pki.clientSec().SetSessionCache(tls.NewLRUClientSessionCache(4))
	pre := securePre(sys, ln, sec, tp)
	var resumed []bool
	for i := 0; i < 2; i++ {
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err)
		roundTrip(t, c, "ticket")
		resumed = append(resumed, c.GetProperties().Socket.Resumed)
		c.Abort()
		<-c.Done()
	}
	require.Equal(t, []bool{false, false}, resumed, "isolateSession: no cached session is used")
	ln.Stop()
}

func TestSecurityParametersAreCopiedByNewPreconnection(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
	sec := pki.clientSec()
	pre := securePre(sys, ln, sec, tlsOnlyProps(t))
	sec.SetALPN("h9").SetTrustedCAs(nil) // after NewPreconnection: not seen by it
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	roundTrip(t, c, "copied")
	c.Abort()
	<-c.Done()
	ln.Stop()
}

func TestTLSOpportunisticListenerWithIdentityIsSecure(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	sec := NewOpportunisticSecurityParameters().SetIdentity(pki.server).SetALPN("gotaps-test")
	ln := secureListener(t, sys, sec, tlsOnlyProps(t))
	stackEcho(t, securePre(sys, ln, pki.clientSec(), tlsOnlyProps(t)), "tls", "secure")
	ln.Stop()
}

func TestTLSRequiredListenerOnAUnixPathFails(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(t.TempDir()+"/secure.sock")))
	ln, err := pre.Listen(testCtx(t))
	if err == nil {
		ln.Stop()
		t.Fatal("security is required but a plain Unix listener was made")
	}
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
}
