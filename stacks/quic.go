package stacks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// DefaultQUICALPN is the ALPN the QUIC stack offers when Options.TLS has no
// NextProtos (QUIC requires one, RFC 9001 §8.1).
const DefaultQUICALPN = "gotaps"

// Application error codes the QUIC stack sends.
const (
	quicCodeNoError quic.ApplicationErrorCode = 0
	quicCodeAbort   quic.ApplicationErrorCode = 1
	quicStreamAbort quic.StreamErrorCode      = 1
)

// QUIC linger bounds: after the last stream Transport of a connection was
// closed gracefully, the connection stays open for a few probe timeouts so
// the peer can acknowledge the last data and FIN (quic-go drops unsent data
// on CONNECTION_CLOSE), unless the peer closes it first.
const (
	quicMinLinger = 100 * time.Millisecond
	quicMaxLinger = 2 * time.Second
)

type quicStack struct{}

// QUIC returns the QUIC stack (quic-go). A Transport is one bidirectional
// stream of a QUIC connection; further streams of the same connection are
// reached through MultiStream (OpenStream / AcceptStream), and, with
// Options.QUICDatagrams, datagrams through Datagrams. The connection is
// closed when its last stream Transport is closed.
//
// Options.TLS is required (ErrNoTLSConfig otherwise); NextProtos defaults to
// DefaultQUICALPN. Dial uses 0-RTT (DialEarly) when TLS.ClientSessionCache
// is set. Options.KeepAlive is the PING period, ConnTimeout the idle
// timeout, DSCP and Interface apply to the UDP socket.
//
// Dial returns after the handshake and opening of the stream. The peer's
// Listener sees the stream, and so returns it from Accept, only once the
// first stream data arrive (QUIC creates streams implicitly, RFC 9000
// §2.1): the dialing side must write first. CloseWrite sends FIN; Close sends
// FIN and stops reading (STOP_SENDING); Abort resets both directions and
// closes the connection if no other stream Transport uses it.
func QUIC() Stack { return quicStack{} }

func (quicStack) Name() string { return "quic" }

func (quicStack) Capabilities() Capabilities {
	return Capabilities{
		Reliability:       true,
		PreserveOrder:     true,
		CongestionControl: true,
		FullChecksumSend:  true,
		FullChecksumRecv:  true,
		KeepAlive:         true,
		Multistreaming:    true,
		Secure:            true,
		ZeroRTTMsg:        true,
	}
}

func quicConfig(opts Options) *quic.Config {
	return &quic.Config{
		EnableDatagrams:      opts.QUICDatagrams,
		KeepAlivePeriod:      max(opts.KeepAlive, 0),
		MaxIdleTimeout:       max(opts.ConnTimeout, 0),
		HandshakeIdleTimeout: opts.HandshakeTimeout / 2,
		Allow0RTT:            true,
	}
}

// quicPacketConn hides the socket's message (OOB) methods from quic-go when
// a DSCP is set: quic-go writes the ECN bits per packet through IP_TOS /
// IPV6_TCLASS control messages, which would clear the DSCP. Such
// connections therefore run without ECN, GSO and path MTU discovery.
func quicPacketConn(udp *net.UDPConn, opts Options) net.PacketConn {
	if opts.DSCP == 0 {
		return udp
	}
	return plainPacketConn{udp}
}

type plainPacketConn struct{ udp *net.UDPConn }

// plainPacketConn exposes only these methods of the socket to quic-go.
func (c plainPacketConn) ReadFrom(b []byte) (int, net.Addr, error)  { return c.udp.ReadFrom(b) }
func (c plainPacketConn) WriteTo(b []byte, a net.Addr) (int, error) { return c.udp.WriteTo(b, a) }
func (c plainPacketConn) Close() error                              { return c.udp.Close() }
func (c plainPacketConn) LocalAddr() net.Addr                       { return c.udp.LocalAddr() }
func (c plainPacketConn) SetDeadline(t time.Time) error             { return c.udp.SetDeadline(t) }
func (c plainPacketConn) SetReadDeadline(t time.Time) error         { return c.udp.SetReadDeadline(t) }
func (c plainPacketConn) SetWriteDeadline(t time.Time) error        { return c.udp.SetWriteDeadline(t) }
func (c plainPacketConn) SetReadBuffer(n int) error                 { return c.udp.SetReadBuffer(n) }
func (c plainPacketConn) SetWriteBuffer(n int) error                { return c.udp.SetWriteBuffer(n) }

func listenUDPFor(ctx context.Context, opts Options, local netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: socketControl(opts, sockUDP)}
	network, addr := listenAddr("udp", local)
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

func (quicStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	cfg, err := clientTLSConfig(opts, remote, DefaultQUICALPN)
	if err != nil {
		return nil, err
	}
	local := opts.Local
	if !local.IsValid() {
		// Bind the remote's family so DSCP lands in the right option.
		any := netip.IPv6Unspecified()
		if remote.Addr().Unmap().Is4() {
			any = netip.IPv4Unspecified()
		}
		local = netip.AddrPortFrom(any, opts.Local.Port())
	}
	udp, err := listenUDPFor(ctx, opts, local)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: quicPacketConn(udp, opts)}
	release := func() {
		_ = tr.Close()
		_ = udp.Close()
	}
	ra := net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
	var conn *quic.Conn
	if cfg.ClientSessionCache != nil && opts.EarlyData {
		conn, err = tr.DialEarly(ctx, ra, cfg, quicConfig(opts))
	} else {
		conn, err = tr.Dial(ctx, ra, cfg, quicConfig(opts))
	}
	if err != nil {
		release()
		return nil, wrapQUICHandshake(remote.String(), err)
	}
	qc := newQUICConn(conn, udp, opts, release)
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(quicCodeAbort, "")
		<-qc.done
		return nil, err
	}
	return qc.stream(str), nil
}

// wrapQUICHandshake wraps TLS failures (certificate, ALPN) in a
// *TLSHandshakeError so they read like the TLS stack's.
func wrapQUICHandshake(remote string, err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		return &TLSHandshakeError{Remote: remote, Err: err}
	}
	return err
}

// quicConn is the state shared by the stream Transports of one QUIC
// connection. A supervisor goroutine waits for the connection to end and
// then releases the UDP socket (dial side) or the listener reference.
type quicConn struct {
	conn    *quic.Conn
	udp     *net.UDPConn // for Info
	opts    Options
	release func()
	idle    chan struct{} // closed when the last stream was closed gracefully
	done    chan struct{} // closed when the connection ended and was released

	mu      sync.Mutex
	streams int
	ended   bool // no stream may be added any more
}

func newQUICConn(conn *quic.Conn, udp *net.UDPConn, opts Options, release func()) *quicConn {
	c := &quicConn{conn: conn, udp: udp, opts: opts, release: release, idle: make(chan struct{}), done: make(chan struct{})}
	go c.supervise()
	return c
}

func (c *quicConn) supervise() {
	defer close(c.done)
	defer c.release()
	ctx := c.conn.Context()
	select {
	case <-ctx.Done():
		return
	case <-c.idle:
	}
	t := time.NewTimer(c.linger())
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		_ = c.conn.CloseWithError(quicCodeNoError, "")
	}
}

// linger is three probe timeouts (RFC 9002 §6.2.1, with 25 ms max ACK
// delay), within quicMinLinger and quicMaxLinger.
func (c *quicConn) linger() time.Duration {
	s := c.conn.ConnectionStats()
	pto := s.SmoothedRTT + 4*s.MeanDeviation + 25*time.Millisecond
	return min(max(3*pto, quicMinLinger), quicMaxLinger)
}

// stream wraps str in a Transport counted on c.
func (c *quicConn) stream(str *quic.Stream) Transport {
	c.mu.Lock()
	c.streams++
	c.mu.Unlock()
	s := &quicStream{Stream: str, c: c}
	if c.opts.QUICDatagrams {
		return &quicDatagramStream{quicStream: s}
	}
	return s
}

// addStream wraps a stream obtained after the connection is up; it fails
// once the connection is ending.
func (c *quicConn) addStream(str *quic.Stream) (Transport, error) {
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		str.CancelRead(quicStreamAbort)
		str.CancelWrite(quicStreamAbort)
		return nil, net.ErrClosed
	}
	return c.stream(str), nil
}

// streamClosed drops one stream; the last one (gracefully) starts the
// linger, (aborted) closes the connection at once.
func (c *quicConn) streamClosed(abort bool) {
	c.mu.Lock()
	c.streams--
	last := c.streams == 0 && !c.ended
	if last {
		c.ended = true
	}
	c.mu.Unlock()
	if !last {
		return
	}
	if abort {
		_ = c.conn.CloseWithError(quicCodeAbort, "aborted")
		return
	}
	close(c.idle)
}

// quicStream is one bidirectional stream as a Transport.
type quicStream struct {
	*quic.Stream
	c    *quicConn
	once sync.Once
}

func (s *quicStream) LocalAddr() net.Addr  { return s.c.conn.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.c.conn.RemoteAddr() }

// CloseWrite sends FIN on the stream; reads go on.
func (s *quicStream) CloseWrite() error { return s.Stream.Close() }

// Close sends FIN, stops reading and releases the stream.
func (s *quicStream) Close() error {
	var err error
	s.once.Do(func() {
		err = s.Stream.Close()
		s.Stream.CancelRead(quicStreamAbort)
		s.c.streamClosed(false)
	})
	return err
}

// Abort resets both directions of the stream (RESET_STREAM and
// STOP_SENDING) and closes the connection if it was the last stream.
func (s *quicStream) Abort() error {
	s.once.Do(func() {
		s.Stream.CancelWrite(quicStreamAbort)
		s.Stream.CancelRead(quicStreamAbort)
		s.c.streamClosed(true)
	})
	return nil
}

// OpenStream opens a new stream on the same connection.
func (s *quicStream) OpenStream(ctx context.Context) (Transport, error) {
	str, err := s.c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return s.c.addStream(str)
}

// AcceptStream waits for the next stream the peer opens.
func (s *quicStream) AcceptStream(ctx context.Context) (Transport, error) {
	str, err := s.c.conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return s.c.addStream(str)
}

// Conn returns the QUIC connection the stream belongs to.
func (s *quicStream) Conn() *quic.Conn { return s.c.conn }

// HandshakeComplete is closed when the handshake has completed: before, a
// connection from DialEarly carries 0-RTT data.
func (s *quicStream) HandshakeComplete() <-chan struct{} { return s.c.conn.HandshakeComplete() }

// Info reads the UDP socket's DSCP and the connection's TLS state.
func (s *quicStream) Info() (TransportInfo, error) {
	st := s.c.conn.ConnectionState()
	info := TransportInfo{
		Stack:         "quic",
		SendMsgMaxLen: MaxLen{Unlimited: true},
		RecvMsgMaxLen: MaxLen{Unlimited: true},
		KeepAlive:     s.c.opts.KeepAlive > 0,
		KeepAliveIdle: max(s.c.opts.KeepAlive, 0),
		TLSVersion:    st.TLS.Version,
		CipherSuite:   st.TLS.CipherSuite,
		ALPN:          st.TLS.NegotiatedProtocol,
		Datagrams:     st.SupportsDatagrams.Local && st.SupportsDatagrams.Remote,
		Used0RTT:      st.Used0RTT,
		Resumed:       st.TLS.DidResume,
	}
	if s.c.conn.Context().Err() != nil {
		return info, net.ErrClosed
	}
	rc, err := s.c.udp.SyscallConn()
	if err != nil {
		return info, err
	}
	return info, readSockInfo(rc, sockUDP, &info)
}

// quicDatagramStream adds Datagrams to a stream of a connection that
// negotiated them.
type quicDatagramStream struct{ *quicStream }

// SendDatagram sends p as one QUIC datagram (RFC 9221); a too large p fails
// with *quic.DatagramTooLargeError.
func (s *quicDatagramStream) SendDatagram(p []byte) error { return s.c.conn.SendDatagram(p) }

// ReceiveDatagram waits for the next QUIC datagram.
func (s *quicDatagramStream) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return s.c.conn.ReceiveDatagram(ctx)
}

func (quicStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	if opts.TLS == nil {
		return nil, ErrNoTLSConfig
	}
	cfg := opts.TLS.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{DefaultQUICALPN}
	}
	udp, err := listenUDPFor(ctx, opts, opts.Local)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: quicPacketConn(udp, opts)}
	qln, err := tr.ListenEarly(cfg, quicConfig(opts)) // early: 0-RTT data is accepted
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &quicListener{
		ln: qln, tr: tr, udp: udp, opts: opts,
		refs:  1,
		ready: make(chan Transport),
		ctx:   lctx, cancel: cancel,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// quicListener accepts QUIC connections in acceptLoop; a goroutine per
// connection waits for its first stream and hands it to Accept. The UDP
// socket is shared by every accepted connection and closed when the
// listener and all of them are closed.
type quicListener struct {
	ln     *quic.EarlyListener
	tr     *quic.Transport
	udp    *net.UDPConn
	opts   Options
	ready  chan Transport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu   sync.Mutex
	refs int // the listener + every live connection
	err  error
}

func (l *quicListener) acceptLoop() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept(l.ctx)
		if err != nil {
			if l.ctx.Err() == nil && !errors.Is(err, quic.ErrServerClosed) {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
			}
			l.cancel()
			return
		}
		l.mu.Lock()
		l.refs++
		l.mu.Unlock()
		qc := newQUICConn(conn, l.udp, l.opts, l.unref)
		l.wg.Add(1)
		go l.firstStream(qc)
	}
}

// firstStream waits for the first stream of a new connection.
func (l *quicListener) firstStream(qc *quicConn) {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	go func() { // stop waiting when the connection ends
		select {
		case <-qc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	str, err := qc.conn.AcceptStream(ctx)
	if err != nil {
		_ = qc.conn.CloseWithError(quicCodeAbort, "")
		return
	}
	t := qc.stream(str)
	select {
	case l.ready <- t:
	case <-l.ctx.Done():
		_ = t.Abort()
	}
}

func (l *quicListener) unref() {
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	l.mu.Unlock()
	if last {
		_ = l.tr.Close()
		_ = l.udp.Close()
	}
}

// Accept returns the first stream of the next connection.
func (l *quicListener) Accept() (Transport, error) {
	select {
	case t := <-l.ready:
		return t, nil
	case <-l.ctx.Done():
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections whose first stream was not yet
// accepted are closed, accepted ones stay open.
func (l *quicListener) Close() error {
	l.once.Do(func() {
		l.cancel()
		_ = l.ln.Close()
		l.wg.Wait()
		l.unref()
	})
	return nil
}

func (l *quicListener) Addr() net.Addr { return l.udp.LocalAddr() }
