package stacks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// skipUnlessLinux skips a test of a kernel feature only Linux has (on
// other systems the stack reports it unavailable instead).
func skipUnlessLinux(t *testing.T, feature string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("%s is Linux only (GOOS=%s)", feature, runtime.GOOS)
	}
}

var loopback4 = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)

// testPKI is a CA and a server certificate for 127.0.0.1, ::1 and
// localhost, made fresh per call (ECDSA P-256).
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gotaps test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{pool: pool, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func (p testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
}

func (p testPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
}

// addrPort is the listener's address as a netip.AddrPort.
func addrPort(t testing.TB, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	require.NoError(t, err)
	return ap
}

// waitQUICDone waits until the QUIC connection under t (if any) has ended
// and released its socket, so goleak sees no quic-go goroutines.
// quicDial listens with QUIC on loopback (the listener is closed with the
// test) and dials it: the listener, its pending Accept and the client's
// stream. with is added to both ends' options (datagrams, an interface).
func quicDial(t *testing.T, ctx context.Context, with Options) (Listener, <-chan acceptResult, Transport) {
	t.Helper()
	pki := newTestPKI(t)
	lo, do := with, with
	lo.Local, lo.TLS = loopback4, pki.serverConfig()
	do.TLS = pki.clientConfig()
	ln, err := QUIC().Listen(ctx, lo)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := acceptAsync(ln)
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), do)
	require.NoError(t, err)
	return ln, accepted, cli
}

// awaitAccepted returns the next accepted Transport, failing the test when
// the accept failed or ctx ended first (what names the awaited stream).
func awaitAccepted(t *testing.T, ctx context.Context, accepted <-chan acceptResult, what string) Transport {
	t.Helper()
	select {
	case r := <-accepted:
		require.NoError(t, r.err)
		return r.t
	case <-ctx.Done():
		t.Fatalf("the listener did not accept %s", what)
		return nil
	}
}

// abortQUICPair aborts both ends of a QUIC stream pair and waits until
// both connections are done.
func abortQUICPair(t *testing.T, cli, srv Transport) {
	t.Helper()
	require.NoError(t, cli.Abort())
	require.NoError(t, srv.Abort())
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}

func waitQUICDone(t testing.TB, tr Transport) {
	t.Helper()
	var s *quicStream
	switch v := tr.(type) {
	case *quicStream:
		s = v
	case *quicDatagramStream:
		s = v.quicStream
	default:
		return
	}
	select {
	case <-s.c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("QUIC connection did not end")
	}
}
