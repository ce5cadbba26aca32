package taps

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

var stacksErrNotApplicable = stacks.ErrNotApplicable

// testPKI is a CA made in the test and a server certificate it signed for
// "localhost" and 127.0.0.1.
type testPKI struct {
	pool   *x509.CertPool
	ca     *x509.Certificate
	server tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	return newPKIFor(t, x509.ExtKeyUsageServerAuth)
}

// newPKIFor is newTestPKI with a leaf certificate for the given uses.
func newPKIFor(t testing.TB, uses ...x509.ExtKeyUsage) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gotaps test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: uses}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testPKI{pool: pool, ca: caCert, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func (p *testPKI) serverSec() *SecurityParameters {
	return NewSecurityParameters().SetIdentity(p.server).SetALPN("gotaps-test")
}

func (p *testPKI) clientSec() *SecurityParameters {
	return NewSecurityParameters().SetTrustedCAs(p.pool).SetALPN("gotaps-test")
}

// secureListener listens with security on 127.0.0.1 and echoes framed
// messages.
func secureListener(t *testing.T, sys *System, sec *SecurityParameters, tp *TransportProperties) *Listener {
	t.Helper()
	if tp == nil {
		tp = NewTransportProperties()
	}
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(sec), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	echoServer(t, ln)
	return ln
}

func securePre(sys *System, ln *Listener, sec *SecurityParameters, tp *TransportProperties) *Preconnection {
	ap, _ := ln.LocalEndpoints()[0].Addr()
	return securePreTo(sys, ap.Port(), sec, tp)
}

// securePreTo is securePre to a server (not necessarily a gotaps
// Listener) on localhost's port.
func securePreTo(sys *System, port uint16, sec *SecurityParameters, tp *TransportProperties) *Preconnection {
	if tp == nil {
		tp = NewTransportProperties()
	}
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(sec), WithTransportProperties(tp),
		WithAttemptDelay(20*time.Millisecond),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(port)),
		WithResolver(loopbackOnly))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// quicEchoServer is a QUIC Listener on 127.0.0.1 with tp, whose
// connections (first streams and peer-opened streams alike) echo each
// message (after the onMessage hooks, on the connection's receiving
// goroutine); accepted gets each of them. It stops with the test.
func quicEchoServer(t *testing.T, sys *System, pki *testPKI, tp *TransportProperties, onMessage ...func(*Message)) (*Listener, <-chan *Connection) {
	t.Helper()
	// longer than testCtx: a migration test drains its old path for 5 s
	// before its last round trip, and the server must still echo then
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ln := quicListen(t, ctx, sys, pki, tp)
	accepted := make(chan *Connection, 16)
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			select {
			case accepted <- s:
			case <-ctx.Done(): // the test ended with the buffer full
				s.Abort()
				return
			}
			go func() {
				for {
					m, err := s.Receive(ctx)
					if err != nil {
						return
					}
					for _, fn := range onMessage {
						fn(m)
					}
					if s.Send(ctx, m.Data, nil) != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, accepted
}

// quicListen is a length-prefix framed QUIC Listener on 127.0.0.1 with
// tp (TLS over TCP if tp prohibits Multistreaming), stopped with the test.
func quicListen(t *testing.T, ctx context.Context, sys *System, pki *testPKI, tp *TransportProperties) *Listener {
	t.Helper()
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln
}

func roundTrip(t *testing.T, c *Connection, text string) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte(text), nil))
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, text, string(m.Data))
}

// stackEcho initiates pre, requires stack to be the one selected,
// round-trips text and aborts the connection.
func stackEcho(t *testing.T, pre *Preconnection, stack, text string) {
	t.Helper()
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, stack, c.GetProperties().Stack)
	roundTrip(t, c, text)
	c.Abort()
	<-c.Done()
}

func prohibit(t *testing.T, p Property) *TransportProperties {
	tp := NewTransportProperties()
	require.NoError(t, tp.Prohibit(p))
	return tp
}

func TestSecureDefaultPrefersQUICAndFallsBackToTLS(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	require.Len(t, ln.LocalEndpoints(), 2, "a secure listener accepts on QUIC and TLS, same port")

	c, err := securePre(sys, ln, pki.clientSec(), nil).Initiate(testCtx(t))
	require.NoError(t, err)
	props := c.GetProperties()
	require.Equal(t, "quic", props.Stack, "multistreaming is Prefer by default: QUIC ranks first")
	require.Equal(t, "TLS 1.3", props.Socket.TLSVersion)
	require.Equal(t, "gotaps-test", props.Socket.ALPN)
	require.True(t, props.Selected[Multistreaming])
	roundTrip(t, c, "over quic")
	c.Abort()
	<-c.Done()

	// avoiding multistreaming ranks TLS over TCP first
	tp := NewTransportProperties()
	require.NoError(t, tp.Avoid(Multistreaming))
	stackEcho(t, securePre(sys, ln, pki.clientSec(), tp), "tls", "over tls")
}

func TestSecureRaceFallsBackWhenQUICIsDead(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	// only TLS listens: the QUIC candidate to the same port gets no answer
	ln := secureListener(t, sys, pki.serverSec(), prohibit(t, Multistreaming))
	require.Len(t, ln.LocalEndpoints(), 1)
	c, err := securePre(sys, ln, pki.clientSec(), nil).Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tls", c.GetProperties().Stack)
	rep := c.EstablishmentReport()
	require.NotNil(t, rep)
	require.GreaterOrEqual(t, len(rep.Attempts), 2)
	require.Equal(t, "quic", rep.Attempts[0].Stack)
	require.True(t, rep.Attempts[len(rep.Attempts)-1].Won)
	roundTrip(t, c, "fallback")
	c.Abort()
	<-c.Done()
}

func TestSecureFailuresSayWhy(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), prohibit(t, Multistreaming))
	tlsOnly := func() *TransportProperties { return prohibit(t, Multistreaming) }
	ctx := testCtx(t)

	// a certificate from an unknown CA
	_, err := securePre(sys, ln, NewSecurityParameters().SetALPN("gotaps-test"), tlsOnly()).Initiate(ctx)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "certificate")
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, err, &ua)

	// a trust verification callback that rejects
	reject := errors.New("pinned certificate does not match")
	sec := pki.clientSec().SetTrustVerificationCallback(func(tls.ConnectionState) error { return reject })
	_, err = securePre(sys, ln, sec, tlsOnly()).Initiate(ctx)
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, reject)

	// an ALPN the server does not speak
	_, err = securePre(sys, ln, NewSecurityParameters().SetTrustedCAs(pki.pool).SetALPN("h9"), tlsOnly()).Initiate(ctx)
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "protocol")

	// security required but the listener has no identity: invalid before any packet
	_, err = NewPreconnection(WithSystem(sys), WithSecurityParameters(NewSecurityParameters()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(ctx)
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonInvalidConfiguration, ee.Reason)
}

func TestTLSInteropWithOrdinaryPeers(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ctx := testCtx(t)

	// a gotaps TLS client against a crypto/tls server that is not gotaps
	raw, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.server}})
	require.NoError(t, err)
	defer raw.Close()
	go func() {
		c, err := raw.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until EOF
	}()
	port := raw.Addr().(*net.TCPAddr).Port
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(pki.pool)),
		WithTransportProperties(prohibit(t, Multistreaming)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(uint16(port))))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "tls", c.GetProperties().Stack)
	roundTrip(t, c, "to an ordinary TLS server")
	c.Abort()
	<-c.Done()

	// an ordinary crypto/tls client against a gotaps TLS listener
	ln := secureListener(t, sys, NewSecurityParameters().SetIdentity(pki.server), prohibit(t, Multistreaming))
	ap, _ := ln.LocalEndpoints()[0].Addr()
	conn, err := tls.Dial("tcp", ap.String(), &tls.Config{RootCAs: pki.pool, ServerName: "localhost"})
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(frame("from an ordinary TLS client"))
	require.NoError(t, err)
	m, err := readFrame(conn)
	require.NoError(t, err)
	require.Equal(t, "from an ordinary TLS client", m)
}

func TestUDPDatagramsAndOneConnectionPerPeer(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	tp := NewTransportProperties(UnreliableDatagram)
	srv := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := srv.Listen(ctx)
	require.NoError(t, err)
	echoServer(t, ln)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	dialUDP := func() *Connection {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()))).Initiate(ctx)
		require.NoError(t, err)
		require.Equal(t, "udp", c.GetProperties().Stack)
		return c
	}
	a, b := dialUDP(), dialUDP()
	for i := 0; i < 3; i++ {
		roundTrip(t, a, "datagram from a")
		roundTrip(t, b, "datagram from b") // another peer: another Connection on the server
	}
	// a message is a datagram: boundaries without any framer
	require.NoError(t, a.Send(ctx, []byte("one"), nil))
	require.NoError(t, a.Send(ctx, []byte("two"), nil))
	for _, want := range []string{"one", "two"} {
		m, err := a.Receive(ctx)
		require.NoError(t, err)
		require.True(t, m.EndOfMessage)
		require.Equal(t, want, string(m.Data))
	}
	max, ok := a.GetProperties().Get(SendMsgMaxLen)
	require.True(t, ok)
	err = a.Send(ctx, make([]byte, int(max.(int64))+1), nil)
	require.ErrorIs(t, err, ErrMessageTooLarge)
	err = a.Send(ctx, []byte("x"), NewMessageContext().SafelyReplayable(false))
	var se *SendError
	require.ErrorAs(t, err, &se, "UDP may duplicate: unmarked messages are refused")
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	<-a.Done()
	<-b.Done()
	ln.Stop()
}

func TestUnixDomainSocket(t *testing.T) {
	sys := newTestSystem(t)
	path := filepath.Join(t.TempDir(), "taps.sock")
	srv := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	echoServer(t, ln)
	require.Equal(t, path, ln.LocalEndpoints()[0].UnixPath())
	cli := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	cli.AddFramer(framers.NewLengthPrefix())
	c, err := cli.Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "unix", c.GetProperties().Stack)
	roundTrip(t, c, "over a unix socket")
	require.NoError(t, c.Close())
	<-c.Done()
	ln.Stop()
}

func TestSocketOptionsReadBack(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(ConnCapacityProfile, LowLatencyInteractive))
	require.NoError(t, tp.Set(ConnTimeout, 3*time.Second))
	require.NoError(t, tp.Prefer(KeepAlive))
	require.NoError(t, tp.Set(KeepAliveTimeout, 2*time.Second))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()))).Initiate(testCtx(t))
	require.NoError(t, err)
	so := c.GetProperties().Socket
	require.NotNil(t, so)
	require.Equal(t, uint8(46), so.DSCP, "Low Latency/Interactive is EF (RFC 9622 §8.1.6)")
	require.Equal(t, 3*time.Second, so.UserTimeout, "connTimeout is TCP_USER_TIMEOUT")
	require.True(t, so.KeepAlive)
	require.Equal(t, 2*time.Second, so.KeepAliveIdle)
	require.False(t, so.MPTCP, "multipath is Disabled by default for Initiate")
	c.Abort()
	<-c.Done()

	// multipath Active: MPTCP really in use (this kernel has net.mptcp.enabled=1;
	// it refuses TCP-level options such as TCP_USER_TIMEOUT on MPTCP sockets)
	tp = NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, MultipathActive))
	c, err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()))).Initiate(testCtx(t))
	require.NoError(t, err)
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Log("MPTCP is not enabled in this kernel: the connection falls back to TCP")
		require.False(t, c.GetProperties().Socket.MPTCP)
	} else {
		require.True(t, c.GetProperties().Socket.MPTCP, "multipath Active: MPTCP really in use")
	}
	c.Abort()
	<-c.Done()
}

// loopbackOnly resolves every name to 127.0.0.1: tests never leave loopback.
func loopbackOnly(_ context.Context, network, _ string) ([]netip.Addr, error) {
	if network == "ip6" {
		return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func TestSetPropertyReappliesSocketOptions(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	c := dial(t, sys, ln)
	require.NoError(t, c.SetProperty(ConnCapacityProfile, Scavenger))
	require.NoError(t, c.SetProperty(ConnTimeout, 7*time.Second))
	require.NoError(t, c.SetProperty(KeepAliveTimeout, 3*time.Second))
	so := c.GetProperties().Socket
	require.Equal(t, uint8(1), so.DSCP, "Scavenger is LE (RFC 8622), read back with getsockopt")
	require.Equal(t, 7*time.Second, so.UserTimeout)
	require.True(t, so.KeepAlive)
	require.Equal(t, 3*time.Second, so.KeepAliveIdle)
	c.Abort()
	<-c.Done()
}

func TestSetPropertyNotApplicableAndEntangledDSCP(t *testing.T) {
	sys := newTestSystem(t)
	tp := NewTransportProperties(UnreliableDatagram)
	srv := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	udp, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()))).Initiate(testCtx(t))
	require.NoError(t, err)
	clone, err := udp.Clone(testCtx(t))
	require.NoError(t, err)
	cloneErrs := make(chan error, 1)
	clone.OnCloneError(func(_ *Connection, err error) { cloneErrs <- err })
	// a TCP user timeout cannot apply to UDP: an error on the member it is
	// set on, never a termination
	err = udp.SetProperty(ConnTimeout, 5*time.Second)
	require.ErrorIs(t, err, stacksErrNotApplicable)
	require.Equal(t, StateEstablished, udp.State())
	// DSCP applies to UDP: it is entangled to the clone
	require.NoError(t, udp.SetProperty(ConnCapacityProfile, CapacitySeeking))
	require.Eventually(t, func() bool {
		so := clone.GetProperties().Socket
		return so != nil && so.DSCP == 10
	}, 5*time.Second, 5*time.Millisecond)
	select {
	case err := <-cloneErrs:
		t.Fatalf("unexpected CloneError: %v", err)
	default:
	}
	udp.AbortGroup()
	<-udp.Done()
	<-clone.Done()
	ln.Stop()
}

// zeroRTTExchange initiates a Connection of pre with first as its first
// Message (safely replayable or not), checks that the echo server
// (accepted: its Connections) sends it back, makes one more round trip
// (the session ticket has arrived by then, for the next Initiate) and
// returns both ends' SocketInfo and Selected zeroRttMsg; the Connection
// is aborted.
func zeroRTTExchange(t *testing.T, pre *Preconnection, accepted <-chan *Connection, first string, replayable bool) (client, server *SocketInfo, clientSel, serverSel bool) {
	t.Helper()
	ctx := testCtx(t)
	c, err := pre.InitiateWithSend(ctx, []byte(first), NewMessageContext().SafelyReplayable(replayable))
	require.NoError(t, err)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, first, string(m.Data))
	roundTrip(t, c, "after the handshake") // the ticket has arrived by now
	s := <-accepted
	cp, sp := c.GetProperties(), s.GetProperties()
	require.NotNil(t, cp.Socket)
	require.NotNil(t, sp.Socket)
	c.Abort()
	<-c.Done()
	return cp.Socket, sp.Socket, cp.Selected[ZeroRTTMsg], sp.Selected[ZeroRTTMsg]
}

func TestZeroRTTOnlyForSafelyReplayableFirstMessages(t *testing.T) {
	skip0RTTUnderRace(t)
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming)) // QUIC: crypto/tls has no client early data
	ln, accepted := quicEchoServer(t, sys, pki, tp)
	pre := securePre(sys, ln, pki.clientSec(), tp) // one Preconnection: its System caches the session
	cl, sv, _, _ := zeroRTTExchange(t, pre, accepted, "first ever", true)
	require.False(t, cl.Used0RTT || sv.Used0RTT, "no ticket yet: a full handshake")

	cl, sv, _, _ = zeroRTTExchange(t, pre, accepted, "replayable", true)
	require.True(t, cl.Used0RTT, "a cached ticket and a safely replayable first message: 0-RTT")
	require.True(t, sv.Used0RTT, "the server accepted the 0-RTT data")

	cl, sv, _, _ = zeroRTTExchange(t, pre, accepted, "not replayable", false)
	require.False(t, cl.Used0RTT || sv.Used0RTT, "never early data for a message that is not safely replayable")
	require.True(t, cl.Resumed, "the session is still resumed (1-RTT)")
	ln.Stop()
}

func TestTLSResumptionAcrossInitiatesUnlessIsolated(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), prohibit(t, Multistreaming))
	resumed := func(tp *TransportProperties) []bool {
		pre := securePre(sys, ln, pki.clientSec(), tp)
		var out []bool
		for i := 0; i < 2; i++ {
			c, err := pre.Initiate(testCtx(t))
			require.NoError(t, err)
			require.Equal(t, "tls", c.GetProperties().Stack)
			roundTrip(t, c, "ticket") // the session ticket arrives with the first reads
			out = append(out, c.GetProperties().Socket.Resumed)
			c.Abort()
			<-c.Done()
		}
		return out
	}
	isolated := prohibit(t, Multistreaming)
	require.NoError(t, isolated.Set(IsolateSession, true))
	require.Equal(t, []bool{false, false}, resumed(isolated), "isolateSession: no cached state is used")
	require.Equal(t, []bool{false, true}, resumed(prohibit(t, Multistreaming)), "the second Initiate to the same host resumes")
}
