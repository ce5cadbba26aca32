package stacks

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of the TLS stack's handshake failures: a panicking callback is a
// handshake error and leaks no socket, on either side.

// noPanic runs fn and fails the test if it panics.
func noPanic(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("panicked: %v", p)
		}
	}()
	fn()
}

func TestTLSDialCallbackPanicIsAHandshakeErrorAndClosesTheSocket(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer raw.Close()
	for _, name := range []string{"VerifyConnection", "VerifyPeerCertificate"} {
		cfg := pki.clientConfig()
		switch name {
		case "VerifyConnection":
			cfg.VerifyConnection = func(tls.ConnectionState) error { panic("verify bug") }
		default:
			cfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error { panic(fmt.Errorf("wrapped %w", net.ErrClosed)) }
		}
		// the server handshakes, then reads until the client's socket is
		// closed
		served := make(chan error, 1)
		go func() {
			c, err := raw.Accept()
			if err != nil {
				served <- err
				return
			}
			defer c.Close()
			_ = tls.Server(c, pki.serverConfig()).HandshakeContext(ctx)
			_, err = io.Copy(io.Discard, c)
			served <- err
		}()
		noPanic(t, func() {
			_, err = TLS().Dial(ctx, addrPort(t, raw.Addr()), Options{TLS: cfg})
		})
		var he *TLSHandshakeError
		require.ErrorAs(t, err, &he, name)
		var pe *TLSCallbackPanicError
		require.ErrorAs(t, err, &pe, name)
		select {
		case <-served:
		case <-ctx.Done():
			t.Fatalf("%s: the client's TCP socket was left open", name)
		}
	}
	require.True(t, errors.Is(err, net.ErrClosed), "a panic value that is an error is unwrapped: %v", err)
}

func TestTLSListenerCallbackPanicRefusesThePeer(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	scfg := pki.serverConfig()
	scfg.VerifyConnection = func(tls.ConnectionState) error { panic("server verify bug") }
	ln, err := TLS().Listen(ctx, Options{Local: loopback4, TLS: scfg})
	require.NoError(t, err)
	// TLS 1.3: the client is done before the server checks it; the
	// server then closes the connection
	c, err := TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	if err == nil {
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "the server closed the connection")
		require.NoError(t, c.Close())
	}
	require.NoError(t, ln.Close())
	_, err = ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "nothing was accepted")
}
