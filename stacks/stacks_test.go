package stacks

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// streamCase is one byte-stream stack with the options its dial and listen
// need.
type streamCase struct {
	name         string
	stack        Stack
	listen, dial Options
	// resets is true when Abort makes the peer see ECONNRESET (TCP).
	resets bool
}

func streamCases(t *testing.T) []streamCase {
	pki := newTestPKI(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	return []streamCase{
		{name: "tcp", stack: TCP(), listen: Options{Local: loopback4}, resets: true},
		{name: "tls", stack: TLS(), listen: Options{Local: loopback4, TLS: pki.serverConfig()},
			dial: Options{TLS: pki.clientConfig()}, resets: true},
		{name: "quic", stack: QUIC(), listen: Options{Local: loopback4, TLS: pki.serverConfig()},
			dial: Options{TLS: pki.clientConfig()}},
		{name: "unix", stack: Unix(), listen: Options{Path: sock}, dial: Options{Path: sock}},
	}
}

func (c streamCase) remote(t *testing.T, ln Listener) netip.AddrPort {
	if c.name == "unix" {
		return netip.AddrPort{}
	}
	return addrPort(t, ln.Addr())
}

type acceptResult struct {
	t   Transport
	err error
}

func acceptAsync(ln Listener) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		t, err := ln.Accept()
		ch <- acceptResult{t, err}
	}()
	return ch
}

func TestStackEcho(t *testing.T) {
	for _, tc := range streamCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := tc.stack.Listen(ctx, tc.listen)
			require.NoError(t, err)
			defer ln.Close()
			srvDone := make(chan error, 1)
			var srv Transport
			accepted := acceptAsync(ln)
			go func() {
				r := <-accepted
				if r.err != nil {
					srvDone <- r.err
					return
				}
				srv = r.t
				b, err := io.ReadAll(r.t) // until the client's CloseWrite
				if err == nil {
					_, err = r.t.Write(append([]byte("echo:"), b...))
				}
				srvDone <- errors.Join(err, r.t.Close())
			}()
			cli, err := tc.stack.Dial(ctx, tc.remote(t, ln), tc.dial)
			require.NoError(t, err)
			_, err = cli.Write([]byte("hello"))
			require.NoError(t, err)
			require.NoError(t, cli.CloseWrite())
			got, err := io.ReadAll(cli) // EOF after the server's close
			require.NoError(t, err)
			require.Equal(t, "echo:hello", string(got))
			require.NoError(t, <-srvDone)
			require.NoError(t, cli.Close())
			info, err := cli.(SocketInfo).Info()
			if tc.name != "quic" { // QUIC connection may still linger
				require.Error(t, err, "Info after Close")
			}
			require.Equal(t, tc.name, info.Stack)
			waitQUICDone(t, cli)
			waitQUICDone(t, srv)
		})
	}
}

func TestStackAbortResetsPeer(t *testing.T) {
	for _, tc := range streamCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := tc.stack.Listen(ctx, tc.listen)
			require.NoError(t, err)
			defer ln.Close()
			accepted := acceptAsync(ln)
			cli, err := tc.stack.Dial(ctx, tc.remote(t, ln), tc.dial)
			require.NoError(t, err)
			_, err = cli.Write([]byte("x")) // QUIC: makes the stream known
			require.NoError(t, err)
			r := <-accepted
			require.NoError(t, r.err)
			srv := r.t
			defer srv.Close()
			_, err = io.ReadFull(srv, make([]byte, 1))
			require.NoError(t, err)
			require.NoError(t, cli.Abort())
			_, err = srv.Read(make([]byte, 10))
			require.Error(t, err)
			switch {
			case tc.resets:
				require.ErrorIs(t, err, syscall.ECONNRESET)
			case tc.name == "quic":
				var se *quic.StreamError
				var ae *quic.ApplicationError
				require.True(t, errors.As(err, &se) || errors.As(err, &ae), "got %v", err)
			default: // unix: no reset, the peer sees the end
				require.ErrorIs(t, err, io.EOF)
			}
			if qs, ok := srv.(*quicStream); ok {
				// the peer's Abort has ended this side's sending (its
				// STOP_SENDING, or its connection close when that comes
				// first): Close still succeeds. It failed with "close
				// called for canceled stream" when STOP_SENDING came first.
				<-qs.Stream.Context().Done()
			}
			require.NoError(t, srv.Close())
			waitQUICDone(t, cli)
			waitQUICDone(t, srv)
		})
	}
}

func TestStackListenerCloseUnblocksAccept(t *testing.T) {
	cases := streamCases(t)
	cases = append(cases, streamCase{name: "udp", stack: UDP(), listen: Options{Local: loopback4}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.stack.Listen(testCtx(t), tc.listen)
			require.NoError(t, err)
			accepted := acceptAsync(ln)
			require.NoError(t, ln.Close())
			r := <-accepted
			require.ErrorIs(t, r.err, net.ErrClosed)
		})
	}
}

func TestStacksNeedTLSConfig(t *testing.T) {
	for _, s := range []Stack{TLS(), QUIC()} {
		_, err := s.Dial(testCtx(t), netip.MustParseAddrPort("127.0.0.1:9"), Options{})
		require.ErrorIs(t, err, ErrNoTLSConfig, s.Name())
		_, err = s.Listen(testCtx(t), Options{Local: loopback4})
		require.ErrorIs(t, err, ErrNoTLSConfig, s.Name())
	}
}

func TestAllAndByName(t *testing.T) {
	var names []string
	for _, s := range All() {
		names = append(names, s.Name())
	}
	require.Equal(t, []string{"tcp", "tls", "quic", "udp", "udplite"}, names)
	s, err := ByName("quic")
	require.NoError(t, err)
	require.Equal(t, "quic", s.Name())
	_, err = ByName("unix")
	require.ErrorIs(t, err, ErrUnknownStack)
}

// TestSendMsgMaxLenMatchesInfo: SendMsgMaxLen tells without a system call
// what Info reads, on both ends of every stack.
func TestSendMsgMaxLenMatchesInfo(t *testing.T) {
	check := func(t *testing.T, tr Transport) {
		t.Helper()
		info, err := tr.(SocketInfo).Info()
		require.NoError(t, err)
		got, ok := SendMsgMaxLen(tr)
		require.True(t, ok)
		require.Equal(t, info.SendMsgMaxLen, got)
	}
	for _, c := range streamCases(t) {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := c.stack.Listen(ctx, c.listen)
			require.NoError(t, err)
			defer ln.Close()
			acc := acceptAsync(ln)
			d, err := c.stack.Dial(ctx, c.remote(t, ln), c.dial)
			require.NoError(t, err)
			defer d.Close()
			if c.name == "quic" { // the peer learns of a stream from its data
				_, err = d.Write([]byte("x"))
				require.NoError(t, err)
			}
			r := <-acc
			require.NoError(t, r.err)
			defer r.t.Close()
			check(t, d)
			check(t, r.t)
		})
	}
	for _, st := range []Stack{UDP(), UDPLite()} {
		t.Run(st.Name(), func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := st.Listen(ctx, Options{Local: loopback4})
			if errors.Is(err, ErrUDPLiteUnsupported) {
				t.Skip("no UDP-Lite here:", err)
			}
			require.NoError(t, err)
			defer ln.Close()
			d, err := st.Dial(ctx, addrPort(t, ln.Addr()), Options{})
			require.NoError(t, err)
			defer d.Close()
			_, err = d.Write([]byte("x"))
			require.NoError(t, err)
			p, err := ln.Accept()
			require.NoError(t, err)
			defer p.Close()
			check(t, d)
			check(t, p)
		})
	}
}
