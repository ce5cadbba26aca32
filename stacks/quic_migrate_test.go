package stacks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// dropFrom is a server socket that drops every datagram from one address
// (a path that cannot reach the server).
type dropFrom struct {
	net.PacketConn
	drop    netip.Addr
	dropped atomic.Int32
}

func (d *dropFrom) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.PacketConn.ReadFrom(b)
		if ap, ok := AddrPortOf(a); err == nil && ok && ap.Addr().Unmap() == d.drop {
			d.dropped.Add(1)
			continue
		}
		return n, a, err
	}
}

// migrationPeer is a raw quic-go server on 127.0.0.1 (dropping what comes
// from drop) and a stream Transport dialed to it from 127.0.0.1, with the
// server's connection and stream.
func migrationPeer(t *testing.T, ctx context.Context, drop netip.Addr) (*dropFrom, *quicStream, *quic.Conn, *quic.Stream) {
	t.Helper()
	pki := newTestPKI(t)
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4))
	require.NoError(t, err)
	pc := &dropFrom{PacketConn: udp, drop: drop}
	tr := &quic.Transport{Conn: pc}
	scfg := pki.serverConfig()
	scfg.NextProtos = []string{DefaultQUICALPN}
	ln, err := tr.Listen(scfg, &quic.Config{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = ln.Close()
		_ = tr.Close()
		_ = udp.Close()
	})
	cli, err := QUIC().Dial(ctx, addrPort(t, udp.LocalAddr()), Options{TLS: pki.clientConfig(), Local: loopback4})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cli.Abort()
		waitQUICDone(t, cli)
	})
	_, err = cli.Write([]byte("hello"))
	require.NoError(t, err)
	sc, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.CloseWithError(0, "") })
	ss, err := sc.AcceptStream(ctx)
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(ss, buf)
	require.NoError(t, err)
	return pc, cli.(*quicStream), sc, ss
}

// echoOnce sends text from cli, reads it on the server's stream and sends
// it back.
func echoOnce(t *testing.T, cli *quicStream, ss *quic.Stream, text string) {
	t.Helper()
	_, err := cli.Write([]byte(text))
	require.NoError(t, err)
	buf := make([]byte, len(text))
	_, err = io.ReadFull(ss, buf)
	require.NoError(t, err)
	_, err = ss.Write(buf)
	require.NoError(t, err)
	_, err = io.ReadFull(cli, buf)
	require.NoError(t, err)
	require.Equal(t, text, string(buf))
}

// TestQUICMigrateMovesTheConnection: Migrate moves a dialed connection to a
// socket on 127.0.0.2; its stream carries on, the server sees the new
// address, and the old socket, which reads until quic-go has switched,
// is closed quicDrainTime after that.
func TestQUICMigrateMovesTheConnection(t *testing.T) {
	ctx := testCtx(t)
	_, cli, sc, ss := migrationPeer(t, ctx, netip.Addr{})
	echoOnce(t, cli, ss, "before")
	require.True(t, cli.CanMigrate())
	old := cli.udpSocket()

	local, err := cli.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.NoError(t, err)
	ap := addrPort(t, local)
	require.Equal(t, "127.0.0.2", ap.Addr().String())
	require.Equal(t, local.String(), cli.LocalAddr().String())
	require.NotSame(t, old, cli.udpSocket())
	require.NoError(t, old.SetDeadline(time.Time{}), "the old socket still reads")

	echoOnce(t, cli, ss, "after")
	// the echo came back on the new socket alone: the server had switched
	require.Equal(t, local.String(), sc.RemoteAddr().String())
	_, err = cli.Info()
	require.NoError(t, err, "Info reads the new socket")
	// the echo was written on the new socket: quic-go had switched
	require.Eventually(t, func() bool { return errors.Is(old.SetDeadline(time.Time{}), net.ErrClosed) },
		quicDrainTime+3*time.Second, 20*time.Millisecond, "the old socket is closed once drained")
}

// TestQUICMigrateFailedProbeKeepsThePath: a new path the server never
// answers fails the probe (bounded); the connection stays on its path.
func TestQUICMigrateFailedProbeKeepsThePath(t *testing.T) {
	ctx := testCtx(t)
	pc, cli, sc, ss := migrationPeer(t, ctx, netip.MustParseAddr("127.0.0.2"))
	before := cli.LocalAddr().String()
	start := time.Now()
	_, err := cli.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.Error(t, err)
	require.Less(t, time.Since(start), QUICMaxProbe+2*time.Second)
	require.Positive(t, pc.dropped.Load(), "the probe was sent")
	require.Equal(t, before, cli.LocalAddr().String())
	echoOnce(t, cli, ss, "still here")
	require.Equal(t, before, sc.RemoteAddr().String())
}

// TestQUICAcceptedConnectionCannotMigrate: the accepting side cannot
// initiate a migration (quic-go).
func TestQUICAcceptedConnectionCannotMigrate(t *testing.T) {
	ctx := testCtx(t)
	ln, accepted, cli := quicDial(t, ctx, Options{})
	_ = ln
	_, err := cli.Write([]byte("x"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the stream")
	m, ok := srv.(Migrator)
	require.True(t, ok)
	require.False(t, m.CanMigrate())
	_, err = m.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.True(t, errors.Is(err, ErrMigrationNotPossible))
	abortQUICPair(t, cli, srv)
}

// TestPathGone: the write errors a dialed QUIC socket takes as a loss (its
// path is gone) rather than as the end of the connection.
func TestPathGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.ENETDOWN)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.ENETUNREACH)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.EHOSTUNREACH)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.EADDRNOTAVAIL)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.EMSGSIZE)}, false},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", syscall.EBADF)}, false},
		{net.ErrClosed, false},
	} {
		if got := pathGone(tc.err); got != tc.gone {
			t.Errorf("pathGone(%v) = %v; want %v", tc.err, got, tc.gone)
		}
	}
}
