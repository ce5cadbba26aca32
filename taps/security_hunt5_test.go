package taps

import (
	"crypto/tls"
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
