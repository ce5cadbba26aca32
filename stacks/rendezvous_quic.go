package stacks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/quic-go/quic-go"
)

// ErrRendezvousRefused is what a QUICRendezvous's listener answers (QUIC
// CONNECTION_REFUSED) to an Initial from an address it does not accept.
var ErrRendezvousRefused = errors.New("not a rendezvous peer")

// QUICRendezvous is one QUIC endpoint (a quic.Transport) on one bound UDP
// socket that both dials (Dial, the QUIC client role) and, when made with
// a server TLS configuration, listens (AcceptConn, the server role), for
// Rendezvous (RFC 9622 §7.3): both peers' packets use the same local port.
// Its Transports are streams as the QUIC stack's (MultiStream, Datagrams
// with Options.QUICDatagrams, SocketInfo); the socket is closed once Close
// was called and every Transport it returned has ended. Its methods are
// safe for concurrent use.
type QUICRendezvous struct {
	quicEndpoint // Close not called yet + every live connection
	opts         Options
	ln           *quic.Listener // nil: no server role
	closed       bool           // guarded by mu
	nonQUIC      bool           // ListenNonQUIC was called; guarded by mu
}

// ListenQUICRendezvous binds opts.Local (Interface and DSCP applied) and
// starts a QUIC endpoint on it. With serverTLS (the server role's
// configuration, NextProtos defaulting to DefaultQUICALPN) it also
// listens, refusing (CONNECTION_REFUSED) every Initial whose source
// address accept rejects, before any handshake work; the others are
// handshaken and returned by AcceptConn.
func ListenQUICRendezvous(ctx context.Context, opts Options, serverTLS *tls.Config, accept func(netip.AddrPort) bool) (*QUICRendezvous, error) {
	udp, err := listenUDPFor(ctx, opts, opts.Local)
	if err != nil {
		return nil, err
	}
	q := &QUICRendezvous{quicEndpoint: quicEndpoint{udp: udp, tr: &quic.Transport{Conn: quicPacketConn(udp, opts)}, refs: 1}, opts: opts}
	if serverTLS != nil {
		cfg := serverTLS.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{DefaultQUICALPN}
		}
		qcfg := quicConfig(opts)
		base := qcfg.Clone()
		qcfg.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
			ua, ok := info.RemoteAddr.(*net.UDPAddr)
			if !ok {
				return nil, ErrRendezvousRefused
			}
			a := ua.AddrPort()
			if !accept(netip.AddrPortFrom(a.Addr().Unmap(), a.Port())) {
				return nil, ErrRendezvousRefused
			}
			return base, nil
		}
		q.ln, err = q.tr.Listen(cfg, qcfg)
		if err != nil {
			_ = q.tr.Close()
			_ = udp.Close()
			return nil, err
		}
	}
	return q, nil
}

// Addr is the bound local address.
func (q *QUICRendezvous) Addr() net.Addr { return q.udp.LocalAddr() }

// Dial is the client role: a QUIC handshake with remote from the endpoint's
// socket (opts.TLS is the client configuration, as for the QUIC stack's
// Dial), then a new stream, returned as the Transport. quic-go retransmits
// the Initial while the peer does not answer, until ctx ends.
func (q *QUICRendezvous) Dial(ctx context.Context, remote netip.AddrPort) (Transport, error) {
	cfg, err := clientTLSConfig(q.opts, remote, DefaultQUICALPN)
	if err != nil {
		return nil, err
	}
	ra := net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
	conn, err := q.tr.Dial(ctx, ra, cfg, quicConfig(q.opts))
	if err != nil {
		return nil, wrapQUICHandshake(remote.String(), err)
	}
	if !q.ref() {
		_ = conn.CloseWithError(quicCodeAbort, "")
		return nil, net.ErrClosed
	}
	qc := newQUICConn(conn, q.udp, q.opts, q.unref, nil)
	if err := requiredDatagrams(conn, q.opts); err != nil {
		<-qc.done
		return nil, err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(quicCodeAbort, "")
		<-qc.done
		return nil, err
	}
	return qc.stream(str), nil
}

// AcceptConn is the server role: it waits for the next connection from an
// accepted address whose handshake completed. Its FirstStream is the
// Transport (see QUIC: the peer's first stream is seen once the peer
// writes on it); either that Transport or Abort releases the connection.
// Without a server role it fails at once. With Options.RequireDatagrams
// a connection whose peer did not enable datagrams is closed, and the
// wait goes on.
func (q *QUICRendezvous) AcceptConn(ctx context.Context) (*QUICRendezvousConn, error) {
	if q.ln == nil {
		return nil, errors.New("quic rendezvous: no server role")
	}
	conn, err := q.ln.Accept(ctx)
	for err == nil && requiredDatagrams(conn, q.opts) != nil {
		conn, err = q.ln.Accept(ctx) // that one was closed
	}
	if err != nil {
		return nil, err
	}
	if !q.ref() {
		_ = conn.CloseWithError(quicCodeAbort, "")
		return nil, net.ErrClosed
	}
	return &QUICRendezvousConn{qc: newQUICConn(conn, q.udp, q.opts, q.unref, &q.quicEndpoint)}, nil
}

// WriteTo sends b, a datagram that is not QUIC (a STUN Binding request),
// from the endpoint's socket to addr, through its quic.Transport.
func (q *QUICRendezvous) WriteTo(b []byte, addr netip.AddrPort) error {
	_, err := q.tr.WriteTo(b, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())))
	return err
}

// ListenNonQUIC makes the endpoint keep, for ReadNonQUIC, the datagrams
// its socket receives that are not QUIC (the first two bits zero, as
// STUN's: RFC 9443 demultiplexing, done by quic-go): at most 32 wait to be
// read, later ones are dropped, and so is every one that came before the
// first call. Call it before sending what they answer; it keeps them for
// as long as the socket is open. Calling it again does nothing.
func (q *QUICRendezvous) ListenNonQUIC() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.nonQUIC {
		return
	}
	q.nonQUIC = true
	// quic-go keeps non-QUIC datagrams from its first ReadNonQUICPacket
	// on: one with a ctx that has ended starts that and reads nothing
	// (whatever it might take was received before)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _ = q.tr.ReadNonQUICPacket(ctx, nil)
}

// ReadNonQUIC waits for the next datagram that is not QUIC (see
// ListenNonQUIC, which it calls) and copies it into b (the rest of a
// longer one is lost). It fails with ctx's error, or with net.ErrClosed
// once the endpoint's socket is closed. Concurrent calls each get a
// different datagram.
func (q *QUICRendezvous) ReadNonQUIC(ctx context.Context, b []byte) (int, netip.AddrPort, error) {
	q.ListenNonQUIC()
	n, from, err := q.tr.ReadNonQUICPacket(ctx, b)
	if err != nil {
		if ctx.Err() != nil {
			return 0, netip.AddrPort{}, ctx.Err()
		}
		return 0, netip.AddrPort{}, fmt.Errorf("quic rendezvous: %w (%w)", net.ErrClosed, err)
	}
	ap, _ := AddrPortOf(from)
	return n, ap, nil
}

// QUICRendezvousConn is an accepted connection waiting for its first
// stream.
type QUICRendezvousConn struct{ qc *quicConn }

// RemoteAddr is the peer's address.
func (c *QUICRendezvousConn) RemoteAddr() net.Addr { return c.qc.conn.RemoteAddr() }

// FirstStream waits for the peer's first stream and returns it; on error
// the connection is closed.
func (c *QUICRendezvousConn) FirstStream(ctx context.Context) (Transport, error) {
	str, err := c.qc.conn.AcceptStream(ctx)
	if err != nil {
		c.Abort()
		return nil, err
	}
	return c.qc.stream(str), nil
}

// Abort closes the connection and waits until it is released.
func (c *QUICRendezvousConn) Abort() {
	_ = c.qc.conn.CloseWithError(quicCodeAbort, "")
	<-c.qc.done
}

// Close stops listening (handshakes in flight are refused) and releases
// the endpoint: the socket is closed now if no Transport it returned is
// alive, else when the last one ends. Dial and AcceptConn calls in progress
// should be ended (their ctx) first.
func (q *QUICRendezvous) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	if q.ln != nil {
		_ = q.ln.Close()
	}
	q.stopKeeping()
	q.unref()
	return nil
}
