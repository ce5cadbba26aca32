package taps

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// resumingPre is a Preconnection to ln ("localhost") over stack with sec.
func resumingPre(sys *System, ln *Listener, stack string, sec *SecurityParameters) *Preconnection {
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithSecurityParameters(sec),
		WithResolver(loopbackOnly),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(ap.Port())))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// Untested before, holds (crypto/tls re-checks the roots on resumption):
// a Preconnection whose trusted CAs do not include the server's CA does
// not reach that server after another Preconnection of the same System
// left a session ticket for it.
func TestHuntCSessionResumptionKeepsTrustedCAs(t *testing.T) {
	for _, stack := range []string{"tls", "quic"} {
		t.Run(stack, func(t *testing.T) {
			sys := newTestSystem(t)
			pki := newTestPKI(t)
			srv := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithSecurityParameters(pki.serverSec()),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
			srv.AddFramer(framers.NewLengthPrefix())
			ln, err := srv.Listen(testCtx(t))
			require.NoError(t, err)
			defer ln.Stop()
			echoServer(t, ln)

			otherPool := newTestPKI(t).pool // a CA that did not sign the server's certificate
			strict := func() *Preconnection {
				return resumingPre(sys, ln, stack, NewSecurityParameters().SetTrustedCAs(otherPool).SetALPN("gotaps-test"))
			}
			_, err = strict().Initiate(testCtx(t))
			var ua x509.UnknownAuthorityError
			require.ErrorAs(t, err, &ua)
			stackEcho(t, resumingPre(sys, ln, stack, pki.clientSec()), stack, "leaves a ticket")
			c, err := strict().Initiate(testCtx(t))
			if err == nil {
				c.Abort()
				<-c.Done()
				t.Fatal("a Preconnection that does not trust the server's CA reached it")
			}
			require.ErrorAs(t, err, &ua)
		})
	}
}

// The System's session cache is shared by every Preconnection, and
// crypto/tls keys it by server name only: a Preconnection with another
// client identity (or none, or an identity challenge callback that
// refuses) must not resume the session of one that authenticated with
// its certificate, which would show the server the first one's client
// certificate (it did, before the cache's keys carried the identity).
func TestHuntCSessionResumptionLendsClientIdentity(t *testing.T) {
	for _, stack := range []string{"tls", "quic"} {
		for _, second := range []string{"other identity", "no identity", "refusing callback"} {
			t.Run(stack+"/"+second, func(t *testing.T) {
				sys := newTestSystem(t)
				srvCA, cliCA := newHuntCA(t), newHuntCA(t)
				var peer atomic.Value
				peer.Store("")
				srv := NewPreconnection(WithSystem(sys), WithProtocols(stack),
					WithSecurityParameters(NewSecurityParameters().SetIdentity(srvCA.issue(t, "localhost")).
						SetTrustedCAs(cliCA.pool).SetALPN("huntc").
						SetTrustVerificationCallback(func(st tls.ConnectionState) error {
							name := "none"
							if len(st.PeerCertificates) > 0 {
								name = st.PeerCertificates[0].Subject.CommonName
							}
							peer.Store(name)
							return nil
						})),
					WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
				srv.AddFramer(framers.NewLengthPrefix())
				ln, err := srv.Listen(testCtx(t))
				require.NoError(t, err)
				defer ln.Stop()
				echoServer(t, ln)

				alice := NewSecurityParameters().SetTrustedCAs(srvCA.pool).SetALPN("huntc").SetIdentity(cliCA.issue(t, "alice"))
				stackEcho(t, resumingPre(sys, ln, stack, alice), stack, "alice")
				require.Equal(t, "alice", peer.Load())

				sec := NewSecurityParameters().SetTrustedCAs(srvCA.pool).SetALPN("huntc")
				want := "none"
				switch second {
				case "other identity":
					sec.SetIdentity(cliCA.issue(t, "bob"))
					want = "bob"
				case "refusing callback":
					sec.SetIdentityChallengeCallback(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
						return &tls.Certificate{}, nil // no certificate
					})
				}
				peer.Store("")
				c, err := resumingPre(sys, ln, stack, sec).Initiate(testCtx(t))
				require.NoError(t, err)
				roundTrip(t, c, "second")
				resumed := c.GetProperties().Socket.Resumed
				c.Abort()
				<-c.Done()
				require.Equal(t, want, peer.Load(), "the server authenticated the second Preconnection as %q (resumed %v)", peer.Load(), resumed)
			})
		}
	}
}
