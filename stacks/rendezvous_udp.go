package stacks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Rendezvous over UDP and UDP-Lite (RFC 9622 §7.3): the rendezvous binds
// one unconnected socket (BindRendezvousSocket), runs STUN connectivity
// checks on it with each remote endpoint, and turns it, in place, into the
// connected Transport of the remote whose check succeeded
// (ConnectRendezvousSocket). The Transport keeps answering the peer's
// Binding requests (it may still be checking), so that STUN never reaches
// the application.

// BindRendezvousSocket binds an unconnected socket of stack ("udp" or
// "udplite") to opts.Local, applying Interface, DSCP and, for UDP-Lite,
// the checksum coverage. "udplite" fails with ErrUDPLiteUnsupported
// outside Linux (on Windows too).
func BindRendezvousSocket(ctx context.Context, stack string, opts Options) (*net.UDPConn, error) {
	switch stack {
	case "udp":
		lc := net.ListenConfig{Control: socketControl(opts, sockUDP)}
		network, addr := listenAddr("udp", opts.Local)
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	case "udplite":
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fd, err := udpLiteSocket(opts.Local.Addr(), opts.Local, opts)
		if err != nil {
			return nil, err
		}
		return fdToUDPConn(fd)
	}
	return nil, fmt.Errorf("rendezvous socket for stack %q: %w", stack, ErrUnknownStack)
}

// ConnectRendezvousSocket connects c (from BindRendezvousSocket) to remote
// in place and returns it as a connected Transport of stack, as the
// stack's Dial would (TOS/ECN, soft errors with opts.SoftErrors, checksum
// coverage on UDP-Lite), with two differences: early datagrams (payloads
// received from remote before, in order) are read first, and STUN
// messages from remote (IsSTUN) never reach its reader: a Binding request
// is answered with a Binding success response (XOR-MAPPED-ADDRESS remote),
// anything else STUN is dropped. Datagrams already queued on the socket
// from other addresses are dropped too. c itself is closed (whatever
// happens), which ends a read blocked on it; the socket lives on in the
// Transport. Early datagrams carry TOS 0. On Windows it fails with
// errors.ErrUnsupported (c is closed all the same): the socket cannot be
// connected in place there.
func ConnectRendezvousSocket(c *net.UDPConn, stack string, remote netip.AddrPort, opts Options, early [][]byte) (Transport, error) {
	defer c.Close()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	var cerr error
	if err := controlFD(c, func(fd int) error {
		cerr = connectFD(fd, remote)
		return nil
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, &net.OpError{Op: "connect", Net: stack, Addr: net.UDPAddrFromAddrPort(remote), Err: cerr}
	}
	f, err := c.File() // a duplicate descriptor of the same socket
	if err != nil {
		return nil, err
	}
	fc, err := net.FileConn(f) // records the peer (getpeername)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	uc, ok := fc.(*net.UDPConn)
	if !ok {
		_ = fc.Close()
		return nil, fmt.Errorf("rendezvous socket is a %T", fc)
	}
	t, err := newUDPTransport(uc, stack, opts)
	if err != nil {
		return nil, err
	}
	t.peer, _ = uc.RemoteAddr().(*net.UDPAddr)
	rv := &stunResponder{remote: remote, early: early}
	if stack == "udplite" {
		return &rendezvousUDPLite{udpLiteTransport: &udpLiteTransport{t}, rv: rv}, nil
	}
	return &rendezvousUDP{udpTransport: t, rv: rv}, nil
}

// stunResponder is the STUN side of a rendezvous Transport: the datagrams
// received before, and the answers to the peer's Binding requests.
type stunResponder struct {
	remote netip.AddrPort
	mu     sync.Mutex
	early  [][]byte
}

func (r *stunResponder) popEarly() ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.early) == 0 {
		return nil, false
	}
	d := r.early[0]
	r.early[0] = nil
	r.early = r.early[1:]
	return d, true
}

// read returns the next datagram for the application: an early one, or
// the next non-STUN datagram from remote on t's socket.
func (r *stunResponder) read(t *udpTransport, b []byte) (int, uint8, error) {
	if d, ok := r.popEarly(); ok {
		n := copy(b, d)
		if n < len(d) {
			return n, 0, ErrMessageTruncated
		}
		return n, 0, nil
	}
	oob := make([]byte, tosOOBSpace)
	for {
		n, oobn, flags, from, err := t.ReadMsgUDPAddrPort(b, oob)
		if err != nil {
			if isSoftErrno(err, true) {
				t.softError()
				continue
			}
			return 0, 0, err
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != r.remote {
			continue // queued before the socket was connected
		}
		if flags&msgTrunc == 0 && IsSTUN(b[:n]) {
			if tx, err := DecodeSTUNBindingRequest(b[:n]); err == nil {
				_, _ = t.write(EncodeSTUNBindingSuccess(tx, r.remote), nil)
			}
			continue
		}
		tos := parseTOS(oob[:oobn])
		if flags&msgTrunc != 0 {
			return n, tos, ErrMessageTruncated
		}
		return n, tos, nil
	}
}

// rendezvousUDP is a connected UDP Transport from a rendezvous.
type rendezvousUDP struct {
	*udpTransport
	rv *stunResponder
}

// Read returns one datagram from the peer, never a STUN message.
func (t *rendezvousUDP) Read(b []byte) (int, error) {
	n, _, err := t.rv.read(t.udpTransport, b)
	return n, err
}

// ReadMsg is Read with the datagram's TOS byte; see TOSDatagrams.
func (t *rendezvousUDP) ReadMsg(b []byte) (int, uint8, error) { return t.rv.read(t.udpTransport, b) }

// rendezvousUDPLite is a connected UDP-Lite Transport from a rendezvous.
type rendezvousUDPLite struct {
	*udpLiteTransport
	rv *stunResponder
}

// Read returns one datagram from the peer, never a STUN message.
func (t *rendezvousUDPLite) Read(b []byte) (int, error) {
	n, _, err := t.rv.read(t.udpTransport, b)
	return n, err
}

// ReadMsg is Read with the datagram's TOS byte; see TOSDatagrams.
func (t *rendezvousUDPLite) ReadMsg(b []byte) (int, uint8, error) {
	return t.rv.read(t.udpTransport, b)
}
