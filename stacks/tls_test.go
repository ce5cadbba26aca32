package stacks

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTLSWrongCAFailsWithCertificateError(t *testing.T) {
	ctx := testCtx(t)
	pki, other := newTestPKI(t), newTestPKI(t)
	ln, err := TLS().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	defer ln.Close()
	_, err = TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: other.clientConfig()})
	require.Error(t, err)
	require.Contains(t, err.Error(), "certificate")
	var he *TLSHandshakeError
	require.ErrorAs(t, err, &he)
	require.True(t, he.PeerAnswered, "the server presented its certificate")
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, err, &ua)
}

func TestTLSServerNameChecked(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := TLS().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	defer ln.Close()
	_, err = TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig(), ServerName: "example.org"})
	var he x509.HostnameError
	require.ErrorAs(t, err, &he)
	accepted := acceptAsync(ln)
	c, err := TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig(), ServerName: "localhost"})
	require.NoError(t, err)
	defer c.Close()
	r := <-accepted
	require.NoError(t, r.err)
	require.NoError(t, r.t.Close())
}

func TestTLSALPNMismatchFails(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	scfg := pki.serverConfig()
	scfg.NextProtos = []string{"a"}
	ln, err := TLS().Listen(ctx, Options{Local: loopback4, TLS: scfg})
	require.NoError(t, err)
	defer ln.Close()
	ccfg := pki.clientConfig()
	ccfg.NextProtos = []string{"b"}
	_, err = TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: ccfg})
	require.Error(t, err)
	require.Contains(t, err.Error(), "protocol")
	var he *TLSHandshakeError
	require.ErrorAs(t, err, &he)
	require.True(t, he.PeerAnswered, "the server's no_application_protocol alert")

	ccfg.NextProtos = []string{"b", "a"}
	accepted := acceptAsync(ln)
	c, err := TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: ccfg})
	require.NoError(t, err)
	defer c.Close()
	info, err := c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, "a", info.ALPN)
	require.Equal(t, uint16(tls.VersionTLS13), info.TLSVersion)
	r := <-accepted
	require.NoError(t, r.err)
	require.NoError(t, r.t.Close())
}

// TestTLSHandshakeWithPlainServerPeerDidNotAnswer: a plain TCP server
// that answers a ClientHello with plain bytes (or closes) did not answer
// in TLS: PeerAnswered is false, so opportunistic security may fall back.
func TestTLSHandshakeWithPlainServerPeerDidNotAnswer(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	for _, answer := range []string{"HTTP/1.1 400 Bad Request\r\n\r\n", ""} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 512))
			_, _ = io.WriteString(c, answer)
			_ = c.Close()
		}()
		_, err = TLS().Dial(ctx, addrPort(t, l.Addr()), Options{TLS: pki.clientConfig()})
		var he *TLSHandshakeError
		require.ErrorAs(t, err, &he, "%q", answer)
		require.False(t, he.PeerAnswered, "%q: %v", answer, err)
		require.NoError(t, l.Close())
	}
}

// TestTLSInteropPlainServer dials a crypto/tls server that knows nothing of
// the stack.
func TestTLSInteropPlainServer(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverConfig())
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err == nil {
			_, err = c.Write(b)
		}
		done <- err
	}()
	c, err := TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("plain server"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "plain server", string(got))
	require.NoError(t, <-done)
}

// TestTLSInteropPlainClient has a tls.Dial client talk to the stack's
// Listener; a stalled client does not hold up Accept.
func TestTLSInteropPlainClient(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := TLS().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	defer ln.Close()
	stalled, err := net.Dial("tcp", ln.Addr().String()) // never handshakes
	require.NoError(t, err)
	defer stalled.Close()
	accepted := acceptAsync(ln)
	c, err := tls.Dial("tcp", ln.Addr().String(), pki.clientConfig())
	require.NoError(t, err)
	defer c.Close()
	r := <-accepted
	require.NoError(t, r.err)
	defer r.t.Close()
	_, err = c.Write([]byte("plain client"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(r.t)
	require.NoError(t, err)
	require.Equal(t, "plain client", string(got))
	require.NoError(t, r.t.CloseWrite())
	_, err = c.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF), "got %v", err)
}
