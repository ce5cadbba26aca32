package taps

import (
	"crypto/tls"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Tests of a panicking security callback on every secure stack: over QUIC
// crypto/tls runs the handshake, and so the application's callbacks, on
// its own goroutine, where a panic ended the process. tlsConfig makes such
// a panic a handshake error carrying a *stacks.TLSCallbackPanicError.

// secureStacks are the properties selecting each secure stack.
var secureStacks = []struct {
	stack string
	props func(*testing.T) *TransportProperties
}{
	{"tls", tlsOnlyProps},
	{"quic", quicOnly},
}

func TestSecurityCallbackPanicIsAnEstablishmentErrorOnEveryStack(t *testing.T) {
	callbacks := []struct {
		name   string
		server func(*testPKI) *SecurityParameters
		client func(*testPKI) *SecurityParameters
	}{
		{"trustVerification", (*testPKI).serverSec, func(p *testPKI) *SecurityParameters {
			return p.clientSec().SetTrustVerificationCallback(func(tls.ConnectionState) error { panic("verifier bug") })
		}},
		{"identityChallenge", func(p *testPKI) *SecurityParameters {
			return p.serverSec().SetTrustedCAs(p.pool) // a listener that asks for client certificates
		}, func(p *testPKI) *SecurityParameters {
			return p.clientSec().SetIdentityChallengeCallback(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				panic("challenge bug")
			})
		}},
	}
	for _, st := range secureStacks {
		for _, cb := range callbacks {
			t.Run(st.stack+"/"+cb.name, func(t *testing.T) {
				sys := newTestSystem(t)
				pki := newTestPKI(t)
				ln := secureListener(t, sys, cb.server(pki), st.props(t))
				t.Cleanup(ln.Stop)
				_, err := securePre(sys, ln, cb.client(pki), st.props(t)).Initiate(testCtx(t))
				var ee *EstablishmentError
				require.ErrorAs(t, err, &ee)
				require.ErrorContains(t, err, "bug")
				var pe *stacks.TLSCallbackPanicError
				require.ErrorAs(t, err, &pe)
				require.NotEmpty(t, pe.Stack)
				// the listener goes on serving
				stackEcho(t, securePre(sys, ln, pki.clientSec(), st.props(t)), st.stack, "after the panic")
			})
		}
	}
}

// TestQUICListenerTrustVerificationCallbackPanicRefusesThePeer: the
// listener's callback panics for every client; each connection is
// refused, the process and the listener go on.
func TestQUICListenerTrustVerificationCallbackPanicRefusesThePeer(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	srvSec := pki.serverSec().SetTrustVerificationCallback(func(tls.ConnectionState) error { panic("quic server verifier bug") })
	ln := secureListener(t, sys, srvSec, quicOnly(t))
	t.Cleanup(ln.Stop)
	for range 2 {
		ctx := testCtx(t)
		c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
		if err != nil {
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			continue
		}
		// TLS 1.3: the client may be done before the server checks it
		if err = c.Send(ctx, []byte("hello"), nil); err == nil {
			_, err = c.Receive(ctx)
		}
		require.Error(t, err, "nothing is echoed: the server refused the connection")
		c.Abort()
		<-c.Done()
	}
}
