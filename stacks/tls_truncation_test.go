package stacks

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// rawTLSEnd is how a crypto/tls peer ends its stream.
type rawTLSEnd uint8

const (
	rawEndCloseNotify rawTLSEnd = iota // close_notify, then a TCP FIN
	rawEndAtRecord                     // a TCP FIN after a whole record, no close_notify
	rawEndInRecord                     // a TCP FIN inside a record
)

func (e rawTLSEnd) String() string { return [...]string{"CloseNotify", "AtRecord", "InRecord"}[e] }

// recordCutter is the TCP connection under a crypto/tls peer; with cut
// set, it writes all but the last bytes of the next write.
type recordCutter struct {
	*net.TCPConn
	cut bool
}

func (c *recordCutter) Write(b []byte) (int, error) {
	if c.cut && len(b) > 5 {
		if _, err := c.TCPConn.Write(b[:len(b)-5]); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.TCPConn.Write(b)
}

// endRawTLS runs the handshake of c over rc, writes data, and ends the
// stream as end says; it then reads the TCP connection until the other
// side closes it.
func endRawTLS(c *tls.Conn, rc *recordCutter, data string, end rawTLSEnd) error {
	if err := c.Handshake(); err != nil {
		return err
	}
	rc.cut = end == rawEndInRecord
	if _, err := c.Write([]byte(data)); err != nil {
		return err
	}
	if end == rawEndCloseNotify {
		if err := c.CloseWrite(); err != nil {
			return err
		}
	}
	if err := rc.CloseWrite(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, rc.TCPConn)
	return nil
}

// rawTLSPeer serves one crypto/tls connection on loopback that ends as
// end says; done gets the outcome.
func rawTLSPeer(t *testing.T, pki testPKI, data string, end rawTLSEnd) (net.Addr, <-chan error) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(loopback4))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		tc, err := ln.AcceptTCP()
		if err != nil {
			done <- err
			return
		}
		defer tc.Close()
		rc := &recordCutter{TCPConn: tc}
		done <- endRawTLS(tls.Server(rc, pki.serverConfig()), rc, data, end)
	}()
	return ln.Addr(), done
}

// TestTLSReadTellsTruncation: the TLS transport's stream ends with io.EOF
// only after the peer's close_notify; a TCP FIN without it, after a whole
// record (which crypto/tls itself takes for a clean end) or inside one,
// is ErrTLSTruncated, whichever way the transport was made. With
// TLSAllowTruncation, the FIN after a whole record is a clean end; a FIN
// inside a record stays ErrTLSTruncated.
func TestTLSReadTellsTruncation(t *testing.T) {
	const data = "every byte of it"
	ways := []struct {
		name string
		open func(t *testing.T, pki testPKI, end rawTLSEnd, allow bool) (Transport, <-chan error)
	}{
		{"Dial", func(t *testing.T, pki testPKI, end rawTLSEnd, allow bool) (Transport, <-chan error) {
			addr, done := rawTLSPeer(t, pki, data, end)
			c, err := TLS().Dial(testCtx(t), addrPort(t, addr), Options{TLS: pki.clientConfig(), TLSAllowTruncation: allow})
			require.NoError(t, err)
			return c, done
		}},
		{"SecureTransport", func(t *testing.T, pki testPKI, end rawTLSEnd, allow bool) (Transport, <-chan error) {
			addr, done := rawTLSPeer(t, pki, data, end)
			tc, err := TCP().Dial(testCtx(t), addrPort(t, addr), Options{})
			require.NoError(t, err)
			c, err := SecureTransport(testCtx(t), tc, Options{TLS: pki.clientConfig(), TLSAllowTruncation: allow}, true)
			require.NoError(t, err)
			return c, done
		}},
		{"Listen", func(t *testing.T, pki testPKI, end rawTLSEnd, allow bool) (Transport, <-chan error) {
			ln, err := TLS().Listen(testCtx(t), Options{Local: loopback4, TLS: pki.serverConfig(), TLSAllowTruncation: allow})
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			tc, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(addrPort(t, ln.Addr())))
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() {
				defer tc.Close()
				rc := &recordCutter{TCPConn: tc}
				cfg := pki.clientConfig()
				cfg.ServerName = "localhost"
				done <- endRawTLS(tls.Client(rc, cfg), rc, data, end)
			}()
			c, err := ln.Accept()
			require.NoError(t, err)
			return c, done
		}},
	}
	for _, w := range ways {
		for _, end := range []rawTLSEnd{rawEndCloseNotify, rawEndAtRecord, rawEndInRecord} {
			for _, allow := range []bool{false, true} {
				name := w.name + "/" + end.String()
				if allow {
					name += "/AllowTruncation"
				}
				t.Run(name, func(t *testing.T) {
					c, done := w.open(t, newTestPKI(t), end, allow)
					readEnd(t, c, data, end, allow)
					require.NoError(t, c.Close())
					require.NoError(t, <-done)
				})
			}
		}
	}
}

// readEnd reads c to its end and checks the end is what end and allow
// (Options.TLSAllowTruncation) make it.
func readEnd(t *testing.T, c Transport, data string, end rawTLSEnd, allow bool) {
	t.Helper()
	got, err := io.ReadAll(c)
	switch {
	case end == rawEndCloseNotify, end == rawEndAtRecord && allow:
		require.NoError(t, err, "io.EOF after close_notify, or after a whole record when truncation is allowed")
		require.Equal(t, data, string(got))
	case end == rawEndAtRecord:
		require.ErrorIs(t, err, ErrTLSTruncated)
		require.Equal(t, data, string(got), "the whole records are read")
	case end == rawEndInRecord:
		require.ErrorIs(t, err, ErrTLSTruncated, "a record cut short is truncation, allowed or not")
		require.Empty(t, got, "a record cut short is not read")
	}
	if err != nil {
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.False(t, errors.Is(err, io.EOF))
		_, again := c.Read(make([]byte, 1))
		require.ErrorIs(t, again, ErrTLSTruncated, "the end stays what it was")
	}
}
