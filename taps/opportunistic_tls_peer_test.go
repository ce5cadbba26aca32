package taps

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOpportunisticTLSPeerNeverGetsPlainText: opportunistic security is
// "TLS when the peer speaks it, plain TCP otherwise" (README, tapscat). A
// peer that speaks TLS but whose TLS handshake fails for a reason other
// than its certificate (its ALPN, the trust verification callback's
// verdict) is a TLS peer: the establishment fails, and no plain TCP
// attempt sends the application's data in clear text to its TLS port (it
// did before the plain fallback knew why its secure sibling failed).
func TestOpportunisticTLSPeerNeverGetsPlainText(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name string
		sec  func() *SecurityParameters
	}{
		{"ALPN mismatch", func() *SecurityParameters {
			return NewOpportunisticSecurityParameters().SetALPN("client-proto")
		}},
		{"trust callback refuses", func() *SecurityParameters {
			return NewOpportunisticSecurityParameters().SetALPN("server-proto").
				SetTrustVerificationCallback(func(tls.ConnectionState) error { return errors.New("huntc: not this server") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			plainBytes := make(chan []byte, 4)
			r, accepted := rawServer(t, func(c net.Conn, done <-chan struct{}) {
				// a TLS server: a ClientHello is answered, anything else
				// is what a plain client wrote
				b := make([]byte, 5)
				n, _ := c.Read(b)
				if n > 0 && b[0] != 0x16 {
					plainBytes <- b[:n]
					return
				}
				tc := tls.Server(&prefixConn{Conn: c, prefix: b[:n]},
					&tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"server-proto"}})
				if tc.Handshake() == nil {
					<-done
				}
			})
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(tc.sec()),
				WithTransportProperties(tlsOnlyProps(t)), WithAttemptDelay(20*time.Millisecond), WithRemoteEndpoint(r))
			c, err := pre.Initiate(testCtx(t))
			if err == nil {
				stack := c.GetProperties().Stack
				_ = c.Send(testCtx(t), []byte("secret"), nil)
				c.Abort()
				<-c.Done()
				require.NotEqual(t, "tcp", stack, "plain TCP to a TLS server (%d connections)", accepted.Load())
			}
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee, "the TLS handshake failed: so does the establishment")
			require.Len(t, ee.Attempts, 1, "the plain attempt never started: %v", ee)
			select {
			case b := <-plainBytes:
				t.Fatalf("the TLS server received clear text %q", b)
			default:
			}
		})
	}
}

type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
