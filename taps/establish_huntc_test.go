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
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// countingListener is a raw TCP listener on 127.0.0.1 that counts the
// connections it accepts (and closes them). wrap, when set, turns each
// accepted connection into something else (a TLS server) run in a
// goroutine.
type countingListener struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	barriers int64
}

func newCountingListener(t *testing.T, serve func(net.Conn)) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{ln: ln}
	cl.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cl.accepted.Add(1)
			cl.mu.Lock()
			cl.conns = append(cl.conns, c)
			cl.mu.Unlock()
			if serve != nil {
				cl.wg.Go(func() { serve(c) })
			}
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		cl.mu.Lock()
		for _, c := range cl.conns {
			_ = c.Close()
		}
		cl.mu.Unlock()
		cl.wg.Wait()
	})
	return cl
}

func (cl *countingListener) addr() netip.AddrPort { return cl.ln.Addr().(*net.TCPAddr).AddrPort() }

// barrier dials the listener once itself and waits until that connection
// was accepted: any connection made before it has been counted by then
// (the kernel's accept queue is FIFO). It returns the count without the
// barrier's own connection.
func (cl *countingListener) barrier(t *testing.T) int64 {
	t.Helper()
	before := cl.accepted.Load()
	c, err := net.Dial("tcp", cl.addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return cl.accepted.Load() > before }, 5*time.Second, time.Millisecond)
	cl.barriers++
	return cl.accepted.Load() - cl.barriers
}

// leafCert makes a certificate signed by a fresh CA with the given names,
// addresses and validity; it returns the CA pool and the leaf.
func leafCert(t *testing.T, dns []string, ips []net.IP, notBefore, notAfter time.Time) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	ca := newHuntCA(t)
	return ca.pool, ca.issueWith(t, dns, ips, notBefore, notAfter)
}

// tlsServerOn makes cl's connections TLS servers with cert (ALPN
// "huntc"), answering nothing after the handshake but keeping the
// connection open until the peer closes it.
func tlsServe(cert tls.Certificate, alpn ...string) func(net.Conn) {
	if len(alpn) == 0 {
		alpn = []string{"huntc"}
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpn}
	return func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			_ = c.Close()
			return
		}
		buf := make([]byte, 1024)
		for {
			if _, err := tc.Read(buf); err != nil {
				_ = c.Close()
				return
			}
		}
	}
}

// --- validation before any packet ---------------------------------------

// Invalid or contradictory input fails with a typed error before any
// connection reaches the peer.
func TestHuntCInvalidFailsBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	cl := newCountingListener(t, nil)
	to := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(cl.addr().Port())
	keepAlive := NewTransportProperties()
	require.NoError(t, keepAlive.Require(KeepAlive))
	require.NoError(t, keepAlive.Set(KeepAliveTimeout, Disabled))
	rates := NewTransportProperties()
	require.NoError(t, rates.Set(MinSendRate, 1000))
	require.NoError(t, rates.Set(MaxSendRate, 10))
	reliable := NewTransportProperties()
	require.NoError(t, reliable.Prohibit(Reliability))
	require.NoError(t, reliable.Set(MsgReliable, true))
	noStack := NewTransportProperties()
	require.NoError(t, noStack.Require(Reliability))
	require.NoError(t, noStack.Prohibit(PreserveOrder))
	require.NoError(t, noStack.Prohibit(Multistreaming))
	require.NoError(t, noStack.Require(PreserveMsgBoundaries))
	cases := []struct {
		name string
		opts []PreconnectionOption
		is   error
	}{
		{"unknown protocol", []PreconnectionOption{WithProtocols("sctp")}, nil},
		{"protocol not selected by properties", []PreconnectionOption{WithProtocols("udp"), WithTransportProperties(mustRequire(t, Reliability))}, ErrUnfulfilled},
		{"keepAlive conflict", []PreconnectionOption{WithTransportProperties(keepAlive)}, ErrConflictingProperties},
		{"rates conflict", []PreconnectionOption{WithTransportProperties(rates)}, ErrConflictingProperties},
		{"msgReliable conflict", []PreconnectionOption{WithTransportProperties(reliable)}, ErrConflictingProperties},
		{"security required, tcp only", []PreconnectionOption{WithProtocols("tcp"), WithSecurityNeeded(true)}, ErrUnfulfilled},
		{"invalid remote endpoint", []PreconnectionOption{WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("::zz").WithPort(1))}, ErrInvalidEndpoint},
		{"nil remote endpoint", []PreconnectionOption{WithRemoteEndpoint(nil)}, ErrInvalidEndpoint},
		{"remote endpoint on unknown service", []PreconnectionOption{WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService("no-such-service-huntc"))}, ErrInvalidEndpoint},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(to)}, tc.opts...)
			for _, async := range []bool{false, true} {
				var err error
				if async {
					var c *Connection
					c, err = NewPreconnection(opts...).InitiateAsync(testCtx(t))
					require.Nil(t, c)
				} else {
					_, err = NewPreconnection(opts...).Initiate(testCtx(t))
				}
				require.Error(t, err)
				var ee *EstablishmentError
				require.ErrorAs(t, err, &ee, "%T %v", err, err)
				if tc.is != nil {
					require.ErrorIs(t, err, tc.is)
				}
				_, err = NewPreconnection(opts...).InitiateWithSend(testCtx(t), []byte("x"), nil)
				require.ErrorAs(t, err, &ee, "%T %v", err, err)
			}
			require.Zero(t, cl.barrier(t), "a connection reached the peer before the error")
		})
	}
}

// Property setters reject wrong types, unknown names and out-of-range
// values with a *PropertyError, changing nothing.
func TestHuntCPropertySetterErrorsAreTyped(t *testing.T) {
	tp := NewTransportProperties()
	cases := []struct {
		p    Property
		v    any
		want error
	}{
		{"noSuchProperty", true, ErrUnknownProperty},
		{Reliability, true, ErrInvalidPropertyType},
		{Reliability, Preference(42), ErrInvalidPropertyValue},
		{ConnTimeout, -time.Second, ErrInvalidPropertyValue},
		{ConnTimeout, 5, ErrInvalidPropertyType},
		{KeepAliveTimeout, time.Duration(0), ErrInvalidPropertyValue},
		{ConnPriority, "high", ErrInvalidPropertyType},
		{MsgChecksumLen, -3, ErrInvalidPropertyValue},
		{ConnScheduler, Scheduler(200), ErrInvalidPropertyValue},
		{ConnCapacityProfile, CapacityProfile(7), ErrInvalidPropertyValue},
		{Direction, CommunicationDirection(9), ErrInvalidPropertyValue},
		{Multipath, MultipathMode(9), ErrInvalidPropertyValue},
		{MinSendRate, -1, ErrInvalidPropertyValue},
		{GroupConnLimit, -2, ErrInvalidPropertyValue},
		{MsgLifetime, Disabled, ErrInvalidPropertyValue},
		{Interface, map[string]Preference{"": Require}, ErrInvalidPropertyValue},
	}
	for _, tc := range cases {
		before, _ := tp.Get(tc.p)
		err := tp.Set(tc.p, tc.v)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe, "%s=%v: %v", tc.p, tc.v, err)
		require.ErrorIs(t, err, tc.want, "%s=%v: %v", tc.p, tc.v, err)
		after, _ := tp.Get(tc.p)
		require.Equal(t, before, after, "%s changed on error", tc.p)
	}
	require.ErrorIs(t, tp.Require(ConnTimeout), ErrInvalidPropertyType)
	require.ErrorIs(t, tp.Default("noSuch"), ErrUnknownProperty)
}

// an invalid TLS version in the security parameters is a configuration
// error found before any packet: the TCP connection must not be made.
func TestHuntCInvalidMinTLSVersionFailsBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	pool, cert := leafCert(t, []string{"localhost"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cl := newCountingListener(t, tlsServe(cert))
	sec := NewSecurityParameters().SetTrustedCAs(pool).SetALPN("huntc").SetMinVersion(0x0400)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tls"), WithSecurityParameters(sec),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(cl.addr().Port())),
		WithResolver(loopbackOnly))
	_, err := pre.Initiate(testCtx(t))
	require.Error(t, err)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	t.Logf("error: %v (reason %v)", err, ee.Reason)
	require.Zero(t, cl.barrier(t), "a TCP connection was made for a configuration that can never work")
	require.Equal(t, ReasonInvalidConfiguration, ee.Reason, "an impossible TLS version is the application's configuration")
}

// a ctx that has already ended must make Initiate fail without
// connecting; it connects (and is sometimes returned Ready).
func TestHuntCInitiateWithEndedCtxSendsNothing(t *testing.T) {
	sys := newTestSystem(t)
	cl := newCountingListener(t, nil)
	returned := 0
	for i := range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(cl.addr().Port())))
		c, err := pre.Initiate(ctx)
		if c != nil {
			returned++ // Ready with an ended ctx
			c.Abort()
			<-c.Done()
			continue
		}
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, ReasonTimeout, ee.Reason, "round %d", i)
	}
	connected := cl.barrier(t)
	t.Logf("of 100 Initiates with an ended ctx: %d returned a Ready Connection, %d connected to the peer", returned, connected)
	require.Zero(t, returned, "Initiate with an ended ctx returned a Connection")
	require.Zero(t, connected, "Initiate with an ended ctx connected to the peer")
}

// --- TLS server name per remote endpoint ----------------------------------

// SetServerName's default is "the remote endpoint's host name": racing two
// remote endpoints, the one reached must be verified against its own name.
// Here the first remote is an IP address whose port is closed and the
// second is "localhost", whose certificate names only "localhost".
func TestHuntCTLSServerNameOfTheRemoteReached(t *testing.T) {
	sys := newTestSystem(t)
	pool, cert := leafCert(t, []string{"localhost"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cl := newCountingListener(t, tlsServe(cert))
	closed := refusedAddr(t)
	sec := NewSecurityParameters().SetTrustedCAs(pool).SetALPN("huntc")
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tls"), WithSecurityParameters(sec),
		WithAttemptDelay(10*time.Millisecond), WithResolver(loopbackOnly),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(closed.Port())),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(cl.addr().Port())))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err, "localhost presented a valid certificate for localhost")
	c.Abort()
	<-c.Done()
}

// The same with two host names: the first ("first.test") refused, the
// second ("localhost") reached. Verifying localhost's certificate against
// "first.test" rejects a valid server; worse, a certificate for
// "first.test" presented by localhost would be accepted.
func TestHuntCTLSServerNameOfTheSecondHostName(t *testing.T) {
	sys := newTestSystem(t)
	closed := refusedAddr(t)
	resolver := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if network == "ip4" && (host == "localhost" || host == "first.test") {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	// initiate races first.test (refused) and localhost, whose server
	// presents a certificate for names
	initiate := func(t *testing.T, names ...string) (*Connection, error) {
		pool, cert := leafCert(t, names, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		cl := newCountingListener(t, tlsServe(cert))
		pre := NewPreconnection(WithSystem(sys), WithProtocols("tls"),
			WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(pool).SetALPN("huntc")),
			WithAttemptDelay(10*time.Millisecond), WithResolver(resolver),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("first.test").WithPort(closed.Port())),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(cl.addr().Port())))
		c, err := pre.Initiate(testCtx(t))
		if err == nil {
			t.Cleanup(func() { c.Abort(); <-c.Done() })
		}
		return c, err
	}
	t.Run("valid certificate of the second accepted", func(t *testing.T) {
		_, err := initiate(t, "localhost")
		require.NoError(t, err)
	})
	t.Run("certificate of the first not accepted from the second", func(t *testing.T) {
		_, err := initiate(t, "first.test")
		var hn x509.HostnameError
		require.ErrorAs(t, err, &hn, "localhost authenticated itself with a certificate for first.test")
	})
}

// --- certificate failures are typed and say why ----------------------------

func TestHuntCCertificateFailuresUnwrap(t *testing.T) {
	sys := newTestSystem(t)
	now := time.Now()
	_, good := leafCert(t, []string{"localhost"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	otherPool, _ := leafCert(t, []string{"localhost"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	expPool, expired := leafCert(t, []string{"localhost"}, nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	wrongPool, wrongName := leafCert(t, []string{"elsewhere.test"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	cases := []struct {
		name  string
		cert  tls.Certificate
		roots *x509.CertPool
		check func(t *testing.T, err error)
	}{
		{"wrong CA", good, otherPool, func(t *testing.T, err error) {
			var ua x509.UnknownAuthorityError
			require.ErrorAs(t, err, &ua)
		}},
		{"expired", expired, expPool, func(t *testing.T, err error) {
			var ci x509.CertificateInvalidError
			require.ErrorAs(t, err, &ci)
			require.Equal(t, x509.Expired, ci.Reason)
		}},
		{"wrong name", wrongName, wrongPool, func(t *testing.T, err error) {
			var hn x509.HostnameError
			require.ErrorAs(t, err, &hn)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCountingListener(t, tlsServe(tc.cert))
			pre := NewPreconnection(WithSystem(sys), WithProtocols("tls"),
				WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(tc.roots).SetALPN("huntc")),
				WithResolver(loopbackOnly),
				WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(cl.addr().Port())))
			c, err := pre.Initiate(testCtx(t))
			require.Nil(t, c)
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.Len(t, ee.Attempts, 1)
			var cve *tls.CertificateVerificationError
			require.ErrorAs(t, err, &cve, "%v", err)
			tc.check(t, err)
		})
	}
}

// The trust verification callback's error fails the establishment and is
// in the error chain; the callback sees the peer's certificates.
func TestHuntCTrustVerificationCallbackError(t *testing.T) {
	sys := newTestSystem(t)
	pool, cert := leafCert(t, []string{"localhost"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cl := newCountingListener(t, tlsServe(cert))
	errNope := errors.New("huntc: not my server")
	var calls atomic.Int32
	var sawCerts atomic.Int32
	sec := NewSecurityParameters().SetTrustedCAs(pool).SetALPN("huntc").
		SetTrustVerificationCallback(func(st tls.ConnectionState) error {
			calls.Add(1)
			sawCerts.Store(int32(len(st.PeerCertificates)))
			return errNope
		})
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tls"), WithSecurityParameters(sec),
		WithResolver(loopbackOnly),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(cl.addr().Port())))
	_, err := pre.Initiate(testCtx(t))
	require.ErrorIs(t, err, errNope)
	require.EqualValues(t, 1, calls.Load())
	require.EqualValues(t, 1, sawCerts.Load())
}

// --- racing ----------------------------------------------------------------

// Racing a refused address, a silent one and a live one: exactly one
// Ready, one accepted connection at the live peer, and every attempt in
// the report.
func TestHuntCRacingThreeRemotesOneReady(t *testing.T) {
	sys := newTestSystem(t)
	refused := refusedAddr(t)
	silent := deadListener(t)
	cl := newCountingListener(t, nil)
	var ready atomic.Int32
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAttemptDelay(20*time.Millisecond),
		WithRemoteEndpoint(remote(refused), remote(silent), remote(cl.addr())))
	pre.OnReady(func(*Connection) { ready.Add(1) })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	r := c.EstablishmentReport()
	require.Len(t, r.Attempts, 3, "%+v", r.Attempts)
	won := 0
	for _, a := range r.Attempts {
		if a.Won {
			won++
			require.Equal(t, cl.addr().String(), a.Endpoint)
		}
	}
	require.Equal(t, 1, won)
	require.EqualValues(t, 1, cl.barrier(t))
	c.Abort()
	<-c.Done()
	require.EqualValues(t, 1, ready.Load())
}

// Every attempt refused: the EstablishmentError lists them all and
// unwraps to ECONNREFUSED; the error is the same for InitiateAsync's
// handler.
func TestHuntCAllRefusedListsEveryAttempt(t *testing.T) {
	sys := newTestSystem(t)
	a, b := refusedAddr(t), refusedAddr(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAttemptDelay(10*time.Millisecond),
		WithRemoteEndpoint(remote(a), remote(b)))
	got := make(chan error, 1)
	pre.OnEstablishmentError(func(_ *Connection, err error) { got <- err })
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Len(t, ee.Attempts, 2)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, ReasonEstablishmentFailed, ee.Reason)
	select {
	case herr := <-got:
		require.ErrorIs(t, herr, syscall.ECONNREFUSED)
	case <-time.After(5 * time.Second):
		t.Fatal("no EstablishmentError event")
	}
}

// Initiate's ctx ending during the race: ReasonTimeout, unwraps to
// context.DeadlineExceeded, lists the attempt, and leaves nothing.
func TestHuntCCtxDeadlineDuringRace(t *testing.T) {
	sys := newTestSystem(t)
	silent := deadListener(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(remote(silent)))
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	_, err := pre.Initiate(ctx)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, ee.Attempts, 1)
	require.Equal(t, silent.String(), ee.Attempts[0].Endpoint)
}

// ALPN mismatch over TLS: an EstablishmentError, and the server never
// delivers a connection.
func TestHuntCALPNMismatchTLS(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	srv := NewPreconnection(WithSystem(sys), WithProtocols("tls"),
		WithSecurityParameters(NewSecurityParameters().SetIdentity(pki.server).SetALPN("server-proto")),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	cli := NewPreconnection(WithSystem(sys), WithProtocols("tls"),
		WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(pki.pool).SetALPN("client-proto")),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	cli.AddFramer(framers.NewLengthPrefix())
	_, err = cli.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Len(t, ee.Attempts, 1)
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := ln.Accept(short)
	require.Nil(t, s, "the server delivered a connection whose ALPN did not match")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// huntCA is a test CA that issues leaf certificates.
type huntCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newHuntCA(t *testing.T) *huntCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "huntC CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &huntCA{cert: cert, key: key, pool: pool}
}

var huntSerial atomic.Int64

func (ca *huntCA) issue(t *testing.T, dns ...string) tls.Certificate {
	t.Helper()
	return ca.issueWith(t, dns, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// issueWith issues a leaf for dns and ips, valid from notBefore to
// notAfter, for server and client authentication.
func (ca *huntCA) issueWith(t *testing.T, dns []string, ips []net.IP, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cn := "leaf"
	if len(dns) > 0 {
		cn = dns[0]
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(100 + huntSerial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// InitiateWithSend with a ctx that has already ended: it must not send
// the first message (and never deliver it while reporting failure).
func TestHuntCInitiateWithSendEndedCtxSendsNothing(t *testing.T) {
	sys := newTestSystem(t)
	var delivered atomic.Int64
	cl := newCountingListener(t, func(c net.Conn) {
		b := make([]byte, 64)
		if n, _ := c.Read(b); n > 0 {
			delivered.Add(1)
		}
	})
	var failedButSent, succeeded int
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(remote(cl.addr())))
		before := delivered.Load()
		c, err := pre.InitiateWithSend(ctx, []byte("first"), nil)
		if c != nil {
			succeeded++
			c.Abort()
			<-c.Done()
		}
		conns := cl.barrier(t)
		_ = conns
		// the barrier's own connection sends nothing: wait for the reader
		// of any connection made before it to have read
		if err != nil && delivered.Load() > before {
			failedButSent++
		}
	}
	t.Logf("of 20: %d returned a Connection, %d failed after their first message reached the peer; %d connections", succeeded, failedButSent, cl.barrier(t))
	require.Zero(t, succeeded+failedButSent)
	require.Zero(t, cl.barrier(t), "InitiateWithSend with an ended ctx connected to the peer")
}
