package taps

import (
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"

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
