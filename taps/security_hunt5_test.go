package taps

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hunt5Server is a secure Listener (stack selected by tp) for "localhost"
// that asks for client certificates signed by cliCA and notes the common
// name of the last client certificate it saw ("none" without one).
func hunt5Server(t *testing.T, sys *System, srvCA, cliCA *huntCA, tp *TransportProperties) (*Listener, *atomic.Value) {
	t.Helper()
	var peer atomic.Value
	peer.Store("")
	srvSec := NewSecurityParameters().SetIdentity(srvCA.issue(t, "localhost")).SetTrustedCAs(cliCA.pool).SetALPN("h5").
		SetTrustVerificationCallback(func(st tls.ConnectionState) error {
			name := "none"
			if len(st.PeerCertificates) > 0 {
				name = st.PeerCertificates[0].Subject.CommonName
			}
			peer.Store(name)
			return nil
		})
	ln := secureListener(t, sys, srvSec, tp)
	t.Cleanup(ln.Stop)
	return ln, &peer
}

// An identity challenge callback that returns no certificate and no error
// (nil, nil) is no answer: the client identity (SetClientCertificates,
// which the callback is "asked first" before) is offered, and without one
// no certificate. It crashed the process over QUIC (crypto/tls
// dereferenced the nil certificate on its handshake goroutine) and failed
// the handshake over TCP with a *TLSCallbackPanicError.
func TestHunt5IdentityChallengeCallbackNilFallsBackToClientCertificate(t *testing.T) {
	for _, ss := range secureStacks {
		for _, withIdentity := range []bool{true, false} {
			name := ss.stack + "/no identity"
			if withIdentity {
				name = ss.stack + "/client certificate"
			}
			t.Run(name, func(t *testing.T) {
				tp := ss.props(t)
				sys := newTestSystem(t)
				srvCA, cliCA := newHuntCA(t), newHuntCA(t)
				ln, peer := hunt5Server(t, sys, srvCA, cliCA, tp)
				var asked atomic.Int32
				sec := NewSecurityParameters().SetTrustedCAs(srvCA.pool).SetALPN("h5").
					SetIdentityChallengeCallback(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
						asked.Add(1)
						return nil, nil
					})
				want := "none"
				if withIdentity {
					sec.SetClientCertificates(cliCA.issue(t, "alice"))
					want = "alice"
				}
				c, err := securePre(sys, ln, sec, tp).Initiate(testCtx(t))
				require.NoError(t, err)
				roundTrip(t, c, "hello")
				c.Abort()
				<-c.Done()
				require.EqualValues(t, 1, asked.Load())
				require.Equal(t, want, peer.Load())
			})
		}
	}
}

// An identity that cannot be used (no chain, a leaf that does not parse,
// no private key, a key of another certificate) and an ALPN protocol name
// that cannot be sent (empty, longer than 255 bytes, RFC 7301) fail
// Initiate and Listen before any packet, with a *SecurityParameterError
// naming the parameter; Set returns it at once. A Listener with such an
// identity used to start and fail every client's handshake ("remote
// error: tls: handshake failure"), and an Initiate with such a name
// connected over TCP and failed with crypto/tls' untyped "invalid
// NextProtos value".
func TestHunt5UnusableIdentityAndALPNFailBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	pki, other := newTestPKI(t), newTestPKI(t)
	good := pki.server
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer tcp.Close()
	remote := loopbackRemote(unmapped(tcp.Addr()))
	bad := map[string]tls.Certificate{
		"no chain":     {PrivateKey: good.PrivateKey},
		"garbage leaf": {Certificate: [][]byte{{1, 2, 3}}, PrivateKey: good.PrivateKey},
		"no key":       {Certificate: good.Certificate},
		"other key":    {Certificate: good.Certificate, PrivateKey: other.server.PrivateKey},
	}
	type setter struct {
		param string
		set   func(*SecurityParameters) *SecurityParameters
		set2  func(*SecurityParameters) error // the same through Set
	}
	var cases []setter
	for _, cert := range bad {
		cases = append(cases,
			setter{"serverCertificate", func(s *SecurityParameters) *SecurityParameters {
				return s.SetServerCertificates(cert)
			}, func(s *SecurityParameters) error { return s.Set("serverCertificate", cert) }},
			setter{"clientCertificate", func(s *SecurityParameters) *SecurityParameters {
				return s.SetClientCertificates(cert)
			}, func(s *SecurityParameters) error { return s.Set("clientCertificate", cert) }},
			// SetIdentity is both roles' identity: the server's comes first
			setter{"serverCertificate", func(s *SecurityParameters) *SecurityParameters {
				return s.SetServerCertificates().SetIdentity(good, cert)
			}, nil})
	}
	for _, p := range []string{"", strings.Repeat("p", 256)} {
		cases = append(cases, setter{"alpn", func(s *SecurityParameters) *SecurityParameters {
			return s.SetALPN("ok", p)
		}, func(s *SecurityParameters) error { return s.Set("alpn", []string{"ok", p}) }})
	}
	for _, tt := range cases {
		for _, stack := range []string{"tls", "quic"} {
			// a listener's identity is good unless the case spoils it
			srv := tt.set(NewSecurityParameters().SetServerCertificates(good))
			if tt.param == "clientCertificate" || tt.param == "alpn" {
				srv = tt.set(NewSecurityParameters().SetIdentity(good))
			}
			_, err := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithSecurityParameters(srv),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
			spe := requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, tt.param)
			require.ErrorIs(t, err, ErrInvalidSecurityParameter)
			require.Equal(t, "set", spe.Op)

			_, err = NewPreconnection(WithSystem(sys), WithProtocols(stack), WithSecurityParameters(tt.set(pki.clientSec())),
				WithRemoteEndpoint(remote)).Initiate(testCtx(t))
			requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, tt.param)
			require.ErrorIs(t, err, ErrInvalidSecurityParameter)
		}
		if tt.set2 != nil {
			err := tt.set2(pki.clientSec())
			var spe *SecurityParameterError
			require.ErrorAs(t, err, &spe)
			require.Equal(t, tt.param, spe.Param)
			require.ErrorIs(t, err, ErrInvalidSecurityParameter)
		}
	}
	requireNothingArrived(t, tcp)

	// the good identity and names are accepted
	_, err = tlsConfig(pki.serverSec().SetALPN("h2", strings.Repeat("p", 255)), true, false, sys)
	require.NoError(t, err)
	_, err = tlsConfig(pki.clientSec().SetClientCertificates(good), false, false, sys)
	require.NoError(t, err)
}

// TestHunt5OpportunisticQUICPeerNeverGetsPlainText is
// TestOpportunisticTLSPeerNeverGetsPlainText over QUIC: a peer whose QUIC
// handshake failed after it answered (no common ALPN protocol, the trust
// verification callback's no) is a TLS peer, and gets no plain TCP
// attempt on its port. The QUIC stack's handshake error did not say that
// the peer had answered, so plain TCP to the same port started once the
// QUIC attempt had failed, and won.
func TestHunt5OpportunisticQUICPeerNeverGetsPlainText(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name string
		sec  func() *SecurityParameters
	}{
		{"ALPN mismatch", func() *SecurityParameters {
			return NewOpportunisticSecurityParameters().SetALPN("client-proto")
		}},
		{"trust callback refuses", func() *SecurityParameters {
			return NewOpportunisticSecurityParameters().SetALPN("gotaps-test").
				SetTrustVerificationCallback(func(tls.ConnectionState) error { return errors.New("hunt5: not this server") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			// a QUIC server and a plain TCP server on the same port number
			var ln *Listener
			var tcp net.Listener
			for range 20 {
				ln = quicListen(t, testCtx(t), sys, pki, quicOnly(t))
				ap, _ := ln.LocalEndpoints()[0].Addr()
				var err error
				if tcp, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ap.Port())))); err == nil {
					break
				}
				ln.Stop()
			}
			require.NotNil(t, tcp, "no port free for both")
			defer tcp.Close()
			plain := make(chan []byte, 4)
			var wg sync.WaitGroup
			defer wg.Wait()
			defer tcp.Close()
			wg.Go(func() {
				for {
					c, err := tcp.Accept()
					if err != nil {
						return
					}
					wg.Go(func() {
						defer c.Close()
						b := make([]byte, 64)
						n, _ := c.Read(b)
						plain <- b[:n]
					})
				}
			})
			ap, _ := ln.LocalEndpoints()[0].Addr()
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(tc.sec()), WithProtocols("quic", "tcp"),
				WithAttemptDelay(20*time.Millisecond),
				WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
			c, err := pre.Initiate(testCtx(t))
			if err == nil {
				stack := c.GetProperties().Stack
				_ = c.Send(testCtx(t), []byte("secret"), nil)
				c.Abort()
				<-c.Done()
				t.Fatalf("the establishment succeeded over %s to a QUIC server that failed the handshake", stack)
			}
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee, "the QUIC handshake failed: so does the establishment")
			require.Len(t, ee.Attempts, 1, "the plain attempt never started: %v", ee)
			select {
			case b := <-plain:
				t.Fatalf("the port's TCP server received %q", b)
			default:
			}
		})
	}
}

// A TLS 1.2 session is resumed without a key exchange: a Preconnection
// whose supportedGroup list leaves out the group the session's keys came
// from does not resume it (from the System's cache, shared with a
// Preconnection that allowed that group) but makes a full handshake with
// a group of its own list. It resumed it, and connected with keys from
// X25519 (its Info said so) although it allowed P-384 only. Within one
// list, sessions are still resumed (TLS 1.2, TLS 1.3, QUIC).
func TestHunt5ResumptionKeepsTheSupportedGroups(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	defer ln.Stop()
	tls12 := func(groups ...tls.CurveID) *Preconnection {
		return securePre(sys, ln, pki.clientSec().SetAllowedSecurityProtocols("tls1.2").SetSupportedGroups(groups...), tlsOnlyProps(t))
	}
	_, info := secureInfo(t, tls12(tls.X25519))
	require.Equal(t, "X25519", info.TLSGroup)
	require.False(t, info.Resumed)
	_, info = secureInfo(t, tls12(tls.CurveP384))
	require.False(t, info.Resumed, "an X25519 session resumed by a Preconnection that allows P-384 only")
	require.Equal(t, "CurveP384", info.TLSGroup)
	_, info = secureInfo(t, tls12(tls.CurveP384))
	require.True(t, info.Resumed, "the same groups resume")
	_, info = secureInfo(t, tls12())
	require.False(t, info.Resumed, "default groups: not the P-384 list's session")
	for _, ss := range secureStacks {
		pre := func() *Preconnection {
			return securePre(sys, ln, pki.clientSec().SetSupportedGroups(tls.CurveP256), ss.props(t))
		}
		secureInfo(t, pre())
		_, info = secureInfo(t, pre())
		require.True(t, info.Resumed, "%s: the same groups resume", ss.stack)
		require.Equal(t, "CurveP256", info.TLSGroup)
	}
}

// A Listener with a trust verification callback and no trusted CAs asks
// for the client's certificate and hands it to the callback, unverified
// (the callback judges it: here it refuses all but "alice"); the request
// was only made with trusted CAs, so the callback never saw a client
// certificate and could not judge one.
func TestListenerTrustCallbackWithoutCAsSeesClientCertificate(t *testing.T) {
	for _, ss := range secureStacks {
		t.Run(ss.stack, func(t *testing.T) {
			tp := ss.props(t)
			sys := newTestSystem(t)
			srvCA, cliCA := newHuntCA(t), newHuntCA(t)
			var peer atomic.Value
			srvSec := NewSecurityParameters().SetIdentity(srvCA.issue(t, "localhost")).SetALPN("h5").
				SetTrustVerificationCallback(func(st tls.ConnectionState) error {
					name := "none"
					if len(st.PeerCertificates) > 0 {
						name = st.PeerCertificates[0].Subject.CommonName
					}
					peer.Store(name)
					if name != "alice" {
						return errors.New("only alice")
					}
					return nil
				})
			ln := secureListener(t, sys, srvSec, tp)
			t.Cleanup(ln.Stop)
			for _, who := range []string{"alice", "bob", ""} {
				sec := NewSecurityParameters().SetTrustedCAs(srvCA.pool).SetALPN("h5")
				if who != "" {
					sec.SetClientCertificates(cliCA.issue(t, who))
				}
				c, err := securePre(sys, ln, sec, tp).Initiate(testCtx(t))
				if who == "alice" {
					require.NoError(t, err)
					roundTrip(t, c, "hello")
					c.Abort()
					<-c.Done()
					require.Equal(t, "alice", peer.Load())
					continue
				}
				if err == nil { // TLS 1.3: the client may learn of the refusal only when it reads
					_, err = c.Receive(testCtx(t))
					c.Abort()
					<-c.Done()
				}
				require.Error(t, err, "client %q", who)
				want := who
				if who == "" {
					want = "none"
				}
				require.Equal(t, want, peer.Load())
			}
		})
	}
}
