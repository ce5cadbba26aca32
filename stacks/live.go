package stacks

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// ErrNotApplicable: a socket option that the transport's protocol does not
// have (a TCP option on UDP or QUIC, say).
var ErrNotApplicable = errors.New("option not applicable to this transport")

// LiveOptions are socket options that can change on an established
// transport (RFC 9622 SetProperty). A nil field is left alone.
type LiveOptions struct {
	// DSCP sets IP_TOS / IPV6_TCLASS (connCapacityProfile), with the ECN
	// bits Not-ECT. On a peer a UDP or UDP-Lite listener accepted, which
	// shares the listener's socket, it is set on each of the peer's later
	// datagrams instead (an IP_TOS / IPV6_TCLASS control message; a
	// TOSDatagrams.WriteMsg TOS still wins for its datagram): the socket
	// and the other peers are untouched, and TransportInfo.DSCP reads it
	// back. Where datagrams cannot carry their own TOS (Windows) that
	// fails with errors.ErrUnsupported. A QUIC stream (dialled or
	// accepted) has no socket of its own and quic-go no per-connection
	// TOS, and a Unix domain socket no IP header: ErrNotApplicable.
	DSCP *uint8
	// UserTimeout sets TCP_USER_TIMEOUT (connTimeout, tcp.userTimeoutValue);
	// 0 restores the system default.
	UserTimeout *time.Duration
	// KeepAliveIdle turns TCP keep-alives on with this idle time
	// (keepAliveTimeout); 0 turns them off.
	KeepAliveIdle *time.Duration
	// RecvChecksumLen sets UDPLITE_RECV_CSCOV (recvChecksumLen), as
	// Options.RecvChecksumLen, on UDP-Lite (ChecksumCoverage). Other
	// transports check whole datagrams, which meets any minimum: nothing
	// to do.
	RecvChecksumLen *int
	// Congestion selects the TCP congestion control (TCP_CONGESTION) of a
	// TCP or TLS socket: a name the kernel offers (Linux:
	// /proc/sys/net/ipv4/tcp_available_congestion_control) is set; one it
	// does not offer, or a system without the option, leaves the socket
	// alone (no error: callers fall back to what they have). "" restores
	// the system default (net.ipv4.tcp_congestion_control) on a socket
	// that was switched. Ignored on other transports.
	Congestion *string
}

// ApplyLive sets o on an established transport's socket (a DSCP on an
// accepted UDP or UDP-Lite peer: on its datagrams, see LiveOptions.DSCP).
// Options the transport's protocol does not have give ErrNotApplicable;
// the transport is never closed by a failure.
func ApplyLive(t Transport, o LiveOptions) error {
	if o.RecvChecksumLen != nil {
		if cc, ok := t.(ChecksumCoverage); ok {
			if err := cc.SetRecvChecksumLen(*o.RecvChecksumLen); err != nil {
				return err
			}
		}
		o.RecvChecksumLen = nil
	}
	if pd, ok := t.(perDatagramDSCP); ok && o.DSCP != nil {
		if o.UserTimeout != nil || o.KeepAliveIdle != nil {
			return fmt.Errorf("%w: TCP options on a UDP socket", ErrNotApplicable)
		}
		if *o.DSCP > 63 {
			return fmt.Errorf("DSCP %d above 63", *o.DSCP)
		}
		return pd.setOwnDSCP(*o.DSCP) // Congestion: TCP only, ignored here
	}
	if o == (LiveOptions{}) {
		return nil
	}
	rc, tcp, network, err := rawSocket(t)
	if err != nil {
		return err
	}
	if !tcp && (o.UserTimeout != nil || o.KeepAliveIdle != nil) {
		return fmt.Errorf("%w: TCP options on a %s socket", ErrNotApplicable, network)
	}
	if network == "unix" && o.DSCP != nil {
		return fmt.Errorf("%w: a Unix domain socket has no IP header to carry a DSCP", ErrNotApplicable)
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		if o.DSCP != nil {
			if *o.DSCP > 63 {
				serr = fmt.Errorf("DSCP %d above 63", *o.DSCP)
				return
			}
			if serr = setDSCP(int(fd), network, *o.DSCP); serr != nil {
				return
			}
		}
		if o.UserTimeout != nil {
			ms := int(o.UserTimeout.Milliseconds())
			if serr = setUserTimeout(int(fd), ms); serr != nil {
				serr = fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
				return
			}
		}
		if o.KeepAliveIdle != nil {
			// whole seconds, rounded up as the net package does at dial
			// (TCP_KEEPIDLE 0 is invalid)
			idle := (*o.KeepAliveIdle + time.Second - 1).Truncate(time.Second)
			if serr = setKeepAliveIdle(int(fd), idle); serr != nil {
				return
			}
		}
		if o.Congestion != nil && tcp {
			serr = setCongestion(int(fd), *o.Congestion)
		}
	})
	return errors.Join(cerr, serr)
}

// perDatagramDSCP is a transport on a socket it shares with others (a
// peer a UDP or UDP-Lite listener accepted): its DSCP goes on each of its
// datagrams, never on the socket.
type perDatagramDSCP interface{ setOwnDSCP(dscp uint8) error }

// rawSocket finds the socket under a transport: its raw connection,
// whether it is TCP, and its network ("tcp4", "udp6", ..., "unix" for a
// Unix domain socket).
func rawSocket(t Transport) (syscall.RawConn, bool, string, error) {
	var c net.Conn
	switch v := t.(type) {
	case *tcpTransport:
		c = v.TCPConn
	case *tlsTransport:
		c = v.tcp
	default:
		if sc, ok := t.(syscall.Conn); ok {
			rc, err := sc.SyscallConn()
			if err != nil {
				return nil, false, "", err
			}
			return rc, false, networkOf(t.LocalAddr()), nil
		}
		return nil, false, "", fmt.Errorf("%w: no socket of its own (a stream of a shared session?)", ErrNotApplicable)
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, false, "", err
	}
	return rc, true, networkOf(c.LocalAddr()), nil
}

func networkOf(a net.Addr) string {
	var ip net.IP
	proto := "udp"
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, proto = v.IP, "tcp"
	case *net.UDPAddr:
		ip = v.IP
	case *net.UnixAddr:
		return "unix" // no IP options
	}
	if ip != nil && ip.To4() == nil {
		return proto + "6"
	}
	return proto + "4"
}

// Congestion reads the congestion control of a TCP or TLS transport's
// socket (TCP_CONGESTION): what the kernel really uses. It fails with
// ErrNotApplicable on other transports and with errors.ErrUnsupported on
// systems without the option.
func Congestion(t Transport) (string, error) {
	rc, tcp, _, err := rawSocket(t)
	if err != nil {
		return "", err
	}
	if !tcp {
		return "", fmt.Errorf("%w: congestion control of a non-TCP socket", ErrNotApplicable)
	}
	var name string
	var serr error
	cerr := rc.Control(func(fd uintptr) { name, serr = getCongestion(int(fd)) })
	return name, errors.Join(cerr, serr)
}
