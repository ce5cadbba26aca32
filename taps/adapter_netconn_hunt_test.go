package taps

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// TestNetConnHuntConformanceFramed runs the x/net/nettest net.Conn suite
// over a framed (length-prefix) gotaps connection pair.
func TestNetConnHuntConformanceFramed(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	nettest.TestConn(t, makeNetPipe(func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix()} }))
}

// net.Listener.Close returns once the listening socket is closed: the
// address can be bound again at once (servers restarted on the same
// port, tests that probe a port).
func TestNetConnHuntListenerCloseFreesTheAddress(t *testing.T) {
	sys := newTestSystem(t)
	for i := 0; i < 20; i++ {
		ln := listenLoopback(t, sys)
		nl := ln.NetListener()
		addr := nl.Addr().String()
		require.NoError(t, nl.Close())
		probe, err := net.Listen("tcp", addr)
		require.NoError(t, err, "the address is still bound after Close")
		require.NoError(t, probe.Close())
	}
}

// Write's n is what was written: the bytes of a Write that timed out are
// not sent later. It returned 0 with the deadline error while the message,
// already handed to the connection, went out once the peer read: a caller
// that retried (after refreshing the deadline, as net.Conn allows) sent
// them twice, and the count of bytes written was wrong.
func TestNetConnHuntWriteTimeoutCountsWhatIsSent(t *testing.T) {
	c1, c2, stop, err := makeNetPipe(func() []framers.Framer { return nil })()
	require.NoError(t, err)
	defer stop()
	chunk := make([]byte, 16<<10)
	var written int
	require.NoError(t, c1.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
	for {
		n, err := c1.Write(chunk) // the peer does not read: the buffers fill
		written += n
		if err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			break
		}
		require.Equal(t, len(chunk), n)
	}
	type result struct {
		n   int
		err error
	}
	read := make(chan result, 1)
	go func() {
		got, err := io.ReadAll(c2)
		read <- result{len(got), err}
	}()
	require.NoError(t, c1.SetWriteDeadline(time.Time{}))
	require.NoError(t, c1.(interface{ CloseWrite() error }).CloseWrite())
	r := <-read
	require.NoError(t, r.err)
	require.Equal(t, written, r.n, "Write reported %d bytes written, the peer received %d", written, r.n)
}

// A peer's reset is not a clean end of stream: Read returns an error, not
// io.EOF (as a *net.TCPConn reports ECONNRESET).
func TestNetConnHuntPeerResetIsNotEOF(t *testing.T) {
	sys := newTestSystem(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer raw.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := raw.Accept()
		accepted <- c
	}()
	c, err := Dialer(NewPreconnection(WithSystem(sys)))(testCtx(t), "tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	peer := <-accepted
	require.NotNil(t, peer)
	_, err = peer.Write([]byte("data"))
	require.NoError(t, err)
	require.NoError(t, peer.(*net.TCPConn).SetLinger(0))
	require.NoError(t, peer.Close()) // a reset

	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	var got []byte
	buf := make([]byte, 16)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			require.False(t, errors.Is(err, io.EOF), "a reset read as a clean end of stream (got %q)", got)
			require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "no error after the reset")
			return
		}
	}
}

// Reads interrupted by their deadline lose nothing: every byte the peer
// wrote is read, in order, across many timeouts.
func TestNetConnHuntReadTimeoutsLoseNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   func() []framers.Framer
	}{
		{"stream", func() []framers.Framer { return nil }},
		{"framed", func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2, stop, err := makeNetPipe(tc.fs)()
			require.NoError(t, err)
			defer stop()
			const total = 1 << 20
			want := make([]byte, total)
			for i := range want {
				want[i] = byte(i * 7)
			}
			werr := make(chan error, 1)
			go func() {
				for off := 0; off < total; off += 1000 {
					end := min(off+1000, total)
					if _, err := c1.Write(want[off:end]); err != nil {
						werr <- err
						return
					}
				}
				werr <- c1.(interface{ CloseWrite() error }).CloseWrite()
			}()
			got := make([]byte, 0, total)
			buf := make([]byte, 333)
			timeouts := 0
			for {
				require.NoError(t, c2.SetReadDeadline(time.Now().Add(50*time.Microsecond)))
				n, err := c2.Read(buf)
				got = append(got, buf[:n]...)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					timeouts++
					continue
				}
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
			}
			require.NoError(t, <-werr)
			require.Equal(t, len(want), len(got))
			require.True(t, bytes.Equal(want, got), "the bytes read differ from those written")
			t.Logf("%d timeouts", timeouts)
		})
	}
}
