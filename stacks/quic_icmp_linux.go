package stacks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The ICMP errors of a QUIC handshake (Linux). A QUIC client's UDP socket
// is not connected, so the kernel drops the ICMP port unreachable (or host
// unreachable) its Initial meets, and quic-go would wait for its handshake
// timeout. During Dial the socket has IP_RECVERR / IPV6_RECVERR: the
// kernel queues such errors and reports a pending one (sk_err) at the next
// read or write, which quicICMPSocket takes off the socket before quic-go
// sees it (quic-go ends its Transport at any read error) and, when it is
// an ICMP error about the server's address, ends the dial with it, as the
// kernel ends a TCP connect in SYN-SENT. Once Dial returns the options are
// off again: an established connection never learns of ICMP errors (RFC
// 9000 §14.2.1: unauthenticated ICMP messages must not end a connection),
// it ends by its idle timeout as before. With 0-RTT (DialEarly), Dial
// returns before the handshake is complete: the watch goes on until it
// completes (follow), and an ICMP error meanwhile ends the connection,
// whose handshake then fails with that error (quicStream.WaitHandshake).

// quicICMPSocket is the socket a QUIC Dial gives its quic.Transport.
type quicICMPSocket struct {
	*quicSocket
	remote   netip.AddrPort // the server (unmapped, no zone)
	v6       bool           // an IPv6 socket: IPV6_RECVERR is on too
	watching atomic.Bool    // Dial (or an early connection's handshake) is under way: ICMP errors end it
	fail     context.CancelCauseFunc
	// late ends the connection of an early Dial that returned (follow)
	late atomic.Pointer[func(error)]
}

// watchQUICICMP sets IP_RECVERR on sock and returns what the Transport
// reads and writes, the context to dial with (ended, with the ICMP error
// as its cause, when one comes back from remote) and the watch, to stop
// once Dial returned (or to follow the handshake of an early connection).
// When the option cannot be set, sock and ctx are returned as they are.
func watchQUICICMP(ctx context.Context, sock *quicSocket, remote netip.AddrPort) (quicUDP, context.Context, icmpWatch) {
	var serr error
	var v6 bool
	if rc, err := sock.SyscallConn(); err != nil ||
		rc.Control(func(fd uintptr) { v6, serr = enableRecvErrOf(int(fd)) }) != nil || serr != nil {
		return sock, ctx, noICMPWatch{}
	}
	dctx, cancel := context.WithCancelCause(ctx)
	s := &quicICMPSocket{quicSocket: sock, fail: cancel, v6: v6,
		remote: netip.AddrPortFrom(remote.Addr().Unmap().WithZone(""), remote.Port())}
	s.watching.Store(true)
	return s, dctx, s
}

// follow keeps the watch on after an early Dial (0-RTT) returned, until
// conn's handshake completes or conn ends, in a goroutine that waits for
// either: an ICMP error from the server meanwhile goes to fail, which ends
// conn, as it would have ended Dial.
func (s *quicICMPSocket) follow(conn *quic.Conn, fail func(error)) {
	s.late.Store(&fail)
	go func() {
		select {
		case <-conn.HandshakeComplete():
		case <-conn.Context().Done():
		}
		s.stop()
	}()
}

// stop ends the watch: it turns IP_RECVERR / IPV6_RECVERR off (which
// empties the error queue) and clears a pending error. One that slips in
// before is still taken off the socket by the reads and writes.
func (s *quicICMPSocket) stop() {
	s.watching.Store(false)
	s.fail(nil)
	rc, err := s.UDPConn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 0)
		if s.v6 { // known since watchQUICICMP: no SO_DOMAIN read between the handshake and Dial's return
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 0)
		}
		_, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	})
}

// icmp takes the queued ICMP errors off the socket; while Dial is under
// way, one about the server ends it. It tells whether err was a pending
// ICMP error rather than a failure of the read or write. dropped: the
// write failed and quicSocket dropped its error (pathGone).
//
// While Dial is under way the error queue is read after a failed read or
// write, and after a dropped write, not after one that succeeded: the
// kernel sets the socket's pending error (sk_err) with every ICMP error
// it queues (IP_RECVERR), so that the next read fails with it (the reader,
// parked in the netpoller, is woken by it), and a write that takes it off
// the socket fails with it, or is dropped (a pathGone errno). A read or
// write that succeeded therefore leaves no ICMP error behind that the
// next read would not report (measured: the five reads of the error queue
// after the handshake's successful reads and writes cost about 1.4 µs
// each, on quic-go's goroutines, during the handshake).
func (s *quicICMPSocket) icmp(err error, onRead, dropped bool) bool {
	soft := err != nil && isSoftErrno(err, onRead)
	if !soft && (!s.watching.Load() || (err == nil && !dropped)) {
		return false
	}
	rc, rerr := s.UDPConn.SyscallConn()
	if rerr != nil {
		return soft
	}
	for _, se := range drainErrQueue(rc) {
		if s.watching.Load() && s.ends(se) {
			err := &net.OpError{Op: "dial", Net: "udp", Source: s.LocalAddr(),
				Addr: net.UDPAddrFromAddrPort(s.remote),
				Err:  fmt.Errorf("QUIC handshake: ICMP type %d code %d from %v: %w", se.Type, se.Code, se.Offender, se.Err)}
			s.fail(err)
			if late := s.late.Load(); late != nil {
				(*late)(err)
			}
		}
	}
	return soft
}

// ends tells whether an ICMP error ends the handshake: it came from the
// network (not the local stack) about a datagram to the server, and is
// not "packet too big" (path MTU discovery's business).
func (s *quicICMPSocket) ends(se *SoftError) bool {
	const originICMP, originICMP6 = 2, 3 // SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6
	return (se.Origin == originICMP || se.Origin == originICMP6) && se.Err != syscall.EMSGSIZE &&
		se.Dest.Addr().WithZone("") == s.remote.Addr() && se.Dest.Port() == s.remote.Port()
}

// ReadBatch, ReadFrom and ReadMsgUDP read again after a pending ICMP
// error: quic-go would end its Transport at the error.
func (s *quicICMPSocket) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		n, err := s.quicSocket.ReadBatch(ms, flags)
		if !s.icmp(err, true, false) {
			return n, err
		}
	}
}

func (s *quicICMPSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := s.quicSocket.ReadFrom(b)
		if !s.icmp(err, true, false) {
			return n, a, err
		}
	}
}

func (s *quicICMPSocket) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	for {
		n, oobn, flags, addr, err = s.quicSocket.ReadMsgUDP(b, oob)
		if !s.icmp(err, true, false) {
			return n, oobn, flags, addr, err
		}
	}
}

// WriteMsgUDP and WriteTo send again after a pending ICMP error (the
// failed call took it off the socket). While Dial is under way they also
// look at the error queue after a write that quicSocket dropped: it drops
// a write that met a pending EHOSTUNREACH (pathGone) without an error.
func (s *quicICMPSocket) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	for i := 0; ; i++ {
		var dropped bool
		n, oobn, dropped, err = s.quicSocket.writeMsg(b, oob, addr)
		if !s.icmp(err, false, dropped) || err == nil || i == 3 {
			return n, oobn, err
		}
	}
}

func (s *quicICMPSocket) WriteTo(b []byte, addr net.Addr) (int, error) {
	for i := 0; ; i++ {
		n, dropped, err := s.quicSocket.writeTo(b, addr)
		if !s.icmp(err, false, dropped) || err == nil || i == 3 {
			return n, err
		}
	}
}
