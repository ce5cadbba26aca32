package stacks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
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
	// quicStreamRefused resets a peer's stream this side declines
	// (Refuse): nobody takes the peer's new streams
	quicStreamRefused quic.StreamErrorCode = 2
	// quicStreamStopped is the STOP_SENDING of a graceful end: this side
	// reads no more (Close before the peer's FIN, CloseRead), which is no
	// abort (quicStreamAbort): the peer's half-closed stream is not reset
	// (WaitPeerReset)
	quicStreamStopped quic.StreamErrorCode = 3
)

// QUIC linger bounds: after the last stream Transport of a connection was
// closed gracefully, the connection stays open for a few probe timeouts so
// the peer can acknowledge and read the last data and FIN (quic-go drops
// unsent data on CONNECTION_CLOSE, and the peer's unread data with it),
// unless the peer closes it first. The side that closed its sending side
// first and then read the peer's FIN (the active closer) closes the
// connection at once instead: the peer sent its FIN after ours, as a
// peer does that reads to the end before it closes (a gotaps peer does), so
// nothing is left to wait for, and the passive closer's linger ends with
// the CONNECTION_CLOSE rather than its timer (no connection lingers on both
// sides).
//
// That is the initiating side's rule (Dial's connections). The side that
// accepted the connection (a Listener's, a QUICRendezvous's AcceptConn)
// keeps it open when its last stream Transport closes gracefully, for as
// long as it accepts: the peer may have opened streams this side has not
// seen yet (QUIC announces a stream with its first data, RFC 9000 §2.1),
// and closing the connection would reset them. The initiating side knows
// all of its streams and closes the connection with its last one; the
// accepting side's connection without streams ends then, or when no
// stream came for quicStreamless (keep-alives, of either side, do not
// count), or with the linger once its listener is closed (quicEndpoint.
// stopKeeping). An Abort of the last stream closes the connection on
// either side.
const (
	quicMinLinger = 100 * time.Millisecond
	quicMaxLinger = 2 * time.Second
)

// quicDefaultIdleTimeout is quic-go's MaxIdleTimeout when Options.ConnTimeout
// is 0.
const quicDefaultIdleTimeout = 30 * time.Second

// quicStreamless is how long an accepted connection is kept without a
// stream Transport: the idle timeout (Options.ConnTimeout, or quic-go's
// default), which keep-alive PINGs would otherwise restart forever.
func quicStreamless(opts Options) time.Duration {
	if opts.ConnTimeout > 0 {
		return opts.ConnTimeout
	}
	return quicDefaultIdleTimeout
}

type quicStack struct{}

// QUIC returns the QUIC stack (quic-go). A Transport is one stream of a
// QUIC connection; further streams of the same connection are reached
// through MultiStream (OpenStream / AcceptStream) and UniStreams
// (OpenSendStream), and, with Options.QUICDatagrams, datagrams through
// Datagrams. Dial's connection is closed when its last stream Transport is
// closed; an accepted one (Listener, QUICRendezvous.AcceptConn) outlives
// its last gracefully closed stream Transport while its listener is open,
// for the peer's streams it has not seen yet, up to the idle timeout (see
// quicMinLinger).
//
// Dial's stream is bidirectional, or unidirectional with Options.SendOnly;
// UniStreams.MakeSendOnly exchanges a bidirectional one for a
// unidirectional one while nothing was written on it. The Listener, and
// AcceptStream, return the peer's bidirectional and unidirectional streams
// alike: a peer's unidirectional stream is a Transport that only receives
// (see Directional).
//
// Options.TLS is required (ErrNoTLSConfig otherwise); NextProtos defaults to
// DefaultQUICALPN. Dial uses 0-RTT (DialEarly) when TLS.ClientSessionCache
// is set and Options.EarlyData (and not NoEarlyData, with which the
// Listener also refuses 0-RTT data): with a ticket cached for the server it
// returns before the handshake completes (what is written then goes as
// 0-RTT data), and its Transport, a HandshakeWaiter, tells how the
// handshake ends. Options.KeepAlive is the PING period, ConnTimeout the
// idle timeout, DSCP and Interface apply to the UDP socket.
//
// On Linux, an ICMP error from the server during Dial's handshake (port or
// host unreachable) fails Dial at once with an error that unwraps to its
// errno (syscall.ECONNREFUSED, ...), as TCP's refused connect does (after
// a 0-RTT Dial, which returns before any packet came back, it fails the
// handshake: WaitHandshake returns that error); elsewhere, and once
// established, ICMP errors are ignored (quic_icmp_linux.go).
//
// Dial returns after the handshake (before it, with 0-RTT) and the opening
// of the stream. The peer's Listener sees the stream, and so returns it
// from Accept, only once the first stream data arrive (QUIC creates
// streams implicitly, RFC 9000 §2.1): the dialing side must write first.
// CloseWrite sends FIN; Close sends FIN and stops reading (STOP_SENDING);
// Abort resets both directions and closes the connection if no other
// stream Transport uses it.
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
		// with Options.QUICDatagrams: unreliable messages as RFC 9221
		// datagrams (selected by perMsgReliability)
		PerMsgReliability: true,
	}
}

func quicConfig(opts Options) *quic.Config {
	return &quic.Config{
		EnableDatagrams:      opts.QUICDatagrams,
		KeepAlivePeriod:      max(opts.KeepAlive, 0),
		MaxIdleTimeout:       max(opts.ConnTimeout, 0),
		HandshakeIdleTimeout: opts.HandshakeTimeout / 2,
		Allow0RTT:            !opts.NoEarlyData,
	}
}

// quicPacketConn hides the socket's message (OOB) methods from quic-go when
// a DSCP is set: quic-go writes the ECN bits per packet through IP_TOS /
// IPV6_TCLASS control messages, which would clear the DSCP. Such
// connections therefore run without ECN, GSO and path MTU discovery.
func quicPacketConn(udp quicUDP, opts Options) net.PacketConn {
	if opts.DSCP == 0 {
		return udp
	}
	return plainPacketConn{udp}
}

type plainPacketConn struct{ udp quicUDP }

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
	lc := net.ListenConfig{Control: withPathControl(socketControl(opts, sockUDP), opts)}
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
	// the socket and its Transport are the connection's first path; a
	// migration replaces them (quic_migrate.go)
	sock := newQUICSocket(udp)
	// an ICMP error from remote ends the handshake (quic_icmp_linux.go)
	pc, dctx, watch := watchQUICICMP(ctx, sock, remote)
	sock.tr = &quic.Transport{Conn: quicPacketConn(pc, opts)}
	tr := sock.tr
	ra := net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
	dp := &quicDialPath{remote: ra}
	dp.cur.Store(sock)
	release := dp.release
	var conn *quic.Conn
	if cfg.ClientSessionCache != nil && opts.EarlyData && !opts.NoEarlyData {
		conn, err = tr.DialEarly(dctx, ra, cfg, quicConfig(opts))
	} else {
		conn, err = tr.Dial(dctx, ra, cfg, quicConfig(opts))
	}
	if err != nil {
		watch.stop()
		release()
		return nil, wrapQUICHandshake(remote.String(), err)
	}
	qc := newQUICConn(conn, udp, opts, release, nil)
	qc.dial = dp
	select {
	case <-conn.HandshakeComplete():
		watch.stop()
		if err := requiredDatagrams(conn, opts); err != nil {
			<-qc.done
			return nil, err
		}
	default:
		// DialEarly returned with 0-RTT keys (see WaitHandshake): an
		// ICMP error before the handshake completes ends the connection,
		// as it would have ended Dial
		qc.early = true
		watch.follow(conn, qc.failHandshake)
	}
	s, err := openDialStream(ctx, conn, opts.SendOnly)
	if errors.Is(err, quic.Err0RTTRejected) {
		// the server rejected the 0-RTT data as the handshake completed,
		// before the stream was opened: quic-go refuses new streams until
		// NextConnection, and the stream is then opened on the connection
		// that goes on, with nothing to replace (WaitHandshake)
		if _, err = conn.NextConnection(ctx); err == nil {
			qc.early = false
			s, err = openDialStream(ctx, conn, opts.SendOnly)
		}
	}
	if err != nil {
		_ = conn.CloseWithError(quicCodeAbort, "")
		<-qc.done
		return nil, err
	}
	return qc.add(s), nil
}

// openDialStream opens Dial's stream: unidirectional when sendOnly, else
// bidirectional.
func openDialStream(ctx context.Context, conn *quic.Conn, sendOnly bool) (*quicStream, error) {
	if sendOnly {
		str, err := conn.OpenUniStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		return sendStream(str), nil
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	s := bidiStream(str)
	s.swappable = true
	return s, nil
}

// wrapQUICHandshake wraps TLS failures (certificate, ALPN) in a
// *TLSHandshakeError so they read like the TLS stack's. A TLS failure of
// a QUIC handshake comes after the peer answered in TLS: the peer's alert
// (a remote CRYPTO_ERROR), or ours on what it sent (its certificate, its
// ALPN, a callback's verdict on them), so PeerAnswered is set (an
// opportunistic plain fallback to its port would be a downgrade).
func wrapQUICHandshake(remote string, err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		return &TLSHandshakeError{Remote: remote, Err: err, PeerAnswered: true}
	}
	return err
}

// quicConn is the state shared by the stream Transports of one QUIC
// connection. When the connection ends (its context is done) the UDP socket
// (dial side) or the listener reference is released; no goroutine waits for
// it meanwhile (context.AfterFunc, and time.AfterFunc for the linger).
type quicConn struct {
	conn    *quic.Conn
	udp     *net.UDPConn  // for Info (a dialed connection's: dial.cur, see socket)
	dial    *quicDialPath // this side dialed the connection: it may migrate (quic_migrate.go)
	opts    Options
	release func()
	done    chan struct{} // closed when the connection ended and was released

	// early: DialEarly returned before the handshake completed (0-RTT);
	// set before the first stream Transport is handed out. handshakeErr
	// is what ended its handshake, when not the connection's own cause
	// (an ICMP error: failHandshake)
	early        bool
	handshakeErr atomic.Pointer[error]

	mu       sync.Mutex
	streams  int
	used     bool        // a stream Transport was added (the first one)
	ended    bool        // no stream may be added any more
	finished bool        // the connection is over (finish ran)
	linger   *time.Timer // closes the connection after the last graceful close
	// keep: the connection was accepted and its endpoint still accepts; it
	// outlives its last stream Transport's graceful close (quicMinLinger)
	keep bool
	// streamless closes a kept connection that has had no stream
	// Transport for quicStreamless; idleGen tells its firing from a
	// stopped one's
	streamless *time.Timer
	idleGen    uint64

	dgram quicDatagramReaders // which stream Transport reads the peer's datagrams

	// the watchers of the peer's address (accepted connections) and the
	// address they last learnt of: quic_migrate.go, notePeer
	movesMu  sync.Mutex
	moves    atomic.Pointer[quicMoves]
	seenPeer atomic.Pointer[net.Addr]

	// acceptTurn is held by the one accept running; it guards backlog,
	// the peer's streams accepted but not returned yet
	acceptTurn chan struct{}
	backlog    []*quicStream
}

// newQUICConn makes the state of conn. acceptedBy is the endpoint that
// accepted conn (nil: this side dialed it): the connection is kept
// without streams while it accepts (see quicMinLinger).
func newQUICConn(conn *quic.Conn, udp *net.UDPConn, opts Options, release func(), acceptedBy *quicEndpoint) *quicConn {
	c := &quicConn{conn: conn, udp: udp, opts: opts, release: release, done: make(chan struct{}),
		acceptTurn: make(chan struct{}, 1)}
	if acceptedBy != nil {
		c.mu.Lock() // a concurrent stopKeeping waits for keep to be set
		c.keep = acceptedBy.track(c)
		c.mu.Unlock()
		c.release = func() {
			release() // first: Quiet (forget) follows the socket's close
			acceptedBy.forget(c)
		}
	}
	context.AfterFunc(conn.Context(), c.finish)
	return c
}

// finish runs once the connection has ended: it stops the timers and
// releases the socket.
func (c *quicConn) finish() {
	c.mu.Lock()
	c.finished = true
	if c.linger != nil {
		c.linger.Stop()
	}
	c.stopStreamless()
	c.mu.Unlock()
	c.release()
	close(c.done)
}

// stopStreamless stops the streamless timer (with c.mu).
func (c *quicConn) stopStreamless() {
	c.idleGen++
	if c.streamless != nil {
		c.streamless.Stop()
		c.streamless = nil
	}
}

// startStreamless starts the streamless timer of a kept connection whose
// last stream Transport closed (with c.mu).
func (c *quicConn) startStreamless() {
	c.stopStreamless()
	gen := c.idleGen
	c.streamless = time.AfterFunc(quicStreamless(c.opts), func() {
		c.mu.Lock()
		expired := gen == c.idleGen && c.streams == 0 && !c.ended && !c.finished
		if expired {
			c.ended = true
		}
		c.mu.Unlock()
		if expired {
			_ = c.conn.CloseWithError(quicCodeNoError, "")
		}
	})
}

// stopKeeping: the endpoint that accepted the connection stopped
// accepting. The connection closes with its last stream Transport from
// now on, as a dialed one; if it has none left, it closes after the
// linger (the last stream's data may still be in flight). A connection
// whose first stream was not taken yet is left to whoever waits for it.
func (c *quicConn) stopKeeping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keep = false
	if c.streams > 0 || !c.used || c.ended || c.finished {
		return
	}
	c.ended = true
	c.stopStreamless()
	c.linger = time.AfterFunc(c.lingerFor(), func() { _ = c.conn.CloseWithError(quicCodeNoError, "") })
}

// lingerFor is three probe timeouts (RFC 9002 §6.2.1, with 25 ms max ACK
// delay), within quicMinLinger and quicMaxLinger.
func (c *quicConn) lingerFor() time.Duration {
	s := c.conn.ConnectionStats()
	pto := s.SmoothedRTT + 4*s.MeanDeviation + 25*time.Millisecond
	return min(max(3*pto, quicMinLinger), quicMaxLinger)
}

// stream wraps the bidirectional stream str in a Transport counted on c.
func (c *quicConn) stream(str *quic.Stream) Transport { return c.add(bidiStream(str)) }

// add makes s a Transport counted on c.
func (c *quicConn) add(s *quicStream) Transport {
	c.mu.Lock()
	c.streams++
	c.used = true
	c.stopStreamless()
	c.mu.Unlock()
	s.c = c
	if c.opts.QUICDatagrams {
		// datagrams belong to the connection, not a stream: every stream
		// Transport sends them, the oldest live one reads them
		// (quicDatagramReaders)
		c.dgram.add(s)
		return &quicDatagramStream{quicStream: s}
	}
	return s
}

// addStream adds a stream obtained after the connection is up; it fails
// (and resets the stream) once the connection is ending.
func (c *quicConn) addStream(s *quicStream) (Transport, error) {
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		if s.rcv != nil {
			s.rcv.CancelRead(quicStreamAbort)
		}
		if s.snd != nil {
			s.snd.CancelWrite(quicStreamAbort)
		}
		return nil, net.ErrClosed
	}
	return c.add(s), nil
}

// accept waits for the next stream the peer opens, bidirectional or
// unidirectional (RFC 9000 §2.1): a goroutine waits for each kind, both
// end before accept returns, and a stream of the other kind accepted
// meanwhile waits in the backlog for the next accept.
func (c *quicConn) accept(ctx context.Context) (*quicStream, error) {
	select {
	case c.acceptTurn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.acceptTurn }()
	if len(c.backlog) == 0 {
		if err := c.acceptEither(ctx); err != nil {
			return nil, err
		}
	}
	s := c.backlog[0]
	c.backlog[0] = nil
	c.backlog = c.backlog[1:]
	return s, nil
}

// acceptEither adds to the backlog the next stream the peer opens, and any
// stream of the other kind that came at the same time (called with the
// accept turn).
func (c *quicConn) acceptEither(ctx context.Context) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type accepted struct {
		s   *quicStream
		err error
	}
	got := make(chan accepted, 2)
	go func() {
		str, err := c.conn.AcceptStream(actx)
		if err != nil {
			got <- accepted{err: err}
			return
		}
		cancel()
		got <- accepted{s: bidiStream(str)}
	}()
	go func() {
		str, err := c.conn.AcceptUniStream(actx)
		if err != nil {
			got <- accepted{err: err}
			return
		}
		cancel()
		got <- accepted{s: receiveStream(str)}
	}()
	var first error
	for range 2 {
		switch a := <-got; {
		case a.s != nil:
			c.backlog = append(c.backlog, a.s)
		case first == nil:
			first = a.err
		}
	}
	if len(c.backlog) > 0 {
		return nil
	}
	return first
}

// How a stream Transport ended (streamClosed).
const (
	quicClosed       = iota // gracefully: the last one starts the linger
	quicClosedActive        // gracefully, as the active closer: the last one closes the connection
	quicAborted             // reset: the last one closes the connection
)

// streamClosed drops one stream; the last one closes the connection at once
// or after the linger, as how says, unless it closed gracefully on a kept
// connection: that one waits for the peer's next stream (quicMinLinger).
func (c *quicConn) streamClosed(how int) {
	c.mu.Lock()
	c.streams--
	last := c.streams == 0 && !c.ended
	if last && c.keep && how != quicAborted {
		if !c.finished {
			c.startStreamless()
		}
		c.mu.Unlock()
		return
	}
	if last {
		c.ended = true
		if how == quicClosed && !c.finished {
			c.linger = time.AfterFunc(c.lingerFor(), func() { _ = c.conn.CloseWithError(quicCodeNoError, "") })
		}
	}
	c.mu.Unlock()
	switch {
	case !last || how == quicClosed:
		return
	case how == quicAborted:
		_ = c.conn.CloseWithError(quicCodeAbort, "aborted")
	default:
		_ = c.conn.CloseWithError(quicCodeNoError, "")
	}
	// the connection ended with this stream: its release (finish, on a
	// goroutine of its own) closes the UDP socket if it was the socket's
	// last user; the stream's Close or Abort returns after it, so that
	// whatever waits for the stream's end (a Connection's Closed event)
	// finds the port free. A lingering connection, or one the peer ended
	// (finish may not have run yet), is not waited for here: Released
	// tells when it is released (a Connection's Done waits for it)
	<-c.done
}

// quicStream is one stream of a QUIC connection as a Transport:
// bidirectional, or unidirectional (RFC 9000 §2.1), with only the half
// this side has: a stream it opened only sends (snd; reads return io.EOF
// at once, CloseRead does nothing), a stream the peer opened only receives
// (rcv; writes fail with ErrReceiveOnlyStream, CloseWrite does nothing).
type quicStream struct {
	// Stream is the bidirectional stream; nil for a unidirectional one.
	*quic.Stream
	snd quicSendHalf // nil: the stream only receives
	rcv quicRecvHalf // nil: the stream only sends

	c    *quicConn
	once sync.Once
	join []byte // joins the pieces of a batch (TryWriteBuffers), at most quicTryWriteMax
	// leadBuf is WriteBuffers' lead write (writer goroutine; never at the
	// same time as TryWriteBuffers: the connection writes one batch at a time)
	leadBuf []byte

	mu     sync.Mutex
	finned bool // CloseWrite sent FIN
	eof    bool // Read returned the peer's FIN (or CloseRead ended reading)
	active bool // FIN was sent before the peer's FIN was read
	// readClosed: CloseRead stopped reading; Read returns io.EOF
	readClosed bool

	handshaken atomic.Bool // ReadEarly saw the handshake complete

	// swappable: Dial's stream, which MakeSendOnly may exchange for a
	// unidirectional one while nothing was written on it (wrote)
	swappable bool
	wrote     atomic.Bool
	// swapped: MakeSendOnly did; Stream stays unused (the peer never
	// learns of it) and snd is the unidirectional stream
	swapped atomic.Bool
}

// The halves of a stream a quicStream uses: *quic.Stream has both,
// *quic.SendStream and *quic.ReceiveStream one each.
type (
	quicSendHalf interface {
		io.Writer
		TryWriteAll(p []byte) error
		Close() error
		CancelWrite(quic.StreamErrorCode)
		SetWriteDeadline(t time.Time) error
		Context() context.Context
	}
	quicRecvHalf interface {
		io.Reader
		CancelRead(quic.StreamErrorCode)
		SetReadDeadline(t time.Time) error
	}
)

func bidiStream(str *quic.Stream) *quicStream {
	return &quicStream{Stream: str, snd: str, rcv: str}
}

// sendStream: nothing is read, the peer's end of stream is as good as read.
func sendStream(str *quic.SendStream) *quicStream {
	return &quicStream{snd: str, eof: true}
}

// receiveStream: there is no sending side, as good as ended (so that the
// stream is the active closer once it read the peer's FIN).
func receiveStream(str *quic.ReceiveStream) *quicStream {
	return &quicStream{rcv: str, finned: true}
}

// ErrReceiveOnlyStream: a write on a QUIC unidirectional stream the peer
// opened (only the side that opens a unidirectional stream sends on it).
var ErrReceiveOnlyStream = errors.New("quic: the stream is unidirectional, opened by the peer: it only receives")

// UniStreams is implemented by the stream Transports of a QUIC connection:
// unidirectional streams (RFC 9000 §2.1), which the direction Selection
// Property (RFC 9622 §6.2.16) uses. Only the side that opens a
// unidirectional stream sends on it.
type UniStreams interface {
	// OpenSendStream opens a unidirectional stream on the same connection:
	// a Transport that only sends. It blocks while the peer's limit of
	// unidirectional streams is reached, until ctx ends. The peer learns
	// of the stream when the first data arrive.
	OpenSendStream(ctx context.Context) (Transport, error)
	// MakeSendOnly turns Dial's stream into a Transport that only sends,
	// on a unidirectional stream, and reports whether it did: only while
	// nothing was written on the stream (so the peer never learned of it)
	// and the peer's limit of unidirectional streams leaves room. The
	// bidirectional stream stays unused: the connection does not offer it
	// to OpenStream, so a later bidirectional stream of the connection
	// would reach the peer's AcceptStream after an empty one. A Read in
	// progress returns io.EOF. A stream Dial opened unidirectional
	// (Options.SendOnly, which avoids all that) reports true at once.
	MakeSendOnly() bool
}

// Directional is implemented by Transports that may carry one direction
// only: a QUIC unidirectional stream only sends (this side opened it) or
// only receives (the peer did).
type Directional interface {
	Sends() bool
	Receives() bool
}

// Sends and Receives tell the directions of the stream.
func (s *quicStream) Sends() bool    { return s.snd != nil }
func (s *quicStream) Receives() bool { return s.recv() != nil }

// recv is the receiving half, nil once MakeSendOnly swapped the stream.
func (s *quicStream) recv() quicRecvHalf {
	if s.swapped.Load() {
		return nil
	}
	return s.rcv
}

// noteWrite records, on Dial's stream, that it was written on (announced
// to the peer): MakeSendOnly can no longer swap it.
func (s *quicStream) noteWrite() {
	if s.swappable && !s.wrote.Load() {
		s.wrote.Store(true)
	}
}

// MakeSendOnly exchanges Dial's stream for a unidirectional one (see
// UniStreams). It runs before anything is written: no write is in
// progress, and a later write (in any goroutine) happens after it.
func (s *quicStream) MakeSendOnly() bool {
	if s.swapped.Load() || (s.rcv == nil && s.snd != nil) {
		return true // swapped, or a unidirectional stream from the start
	}
	if !s.swappable || s.wrote.Load() {
		return false
	}
	s.mu.Lock()
	if s.finned || s.readClosed {
		s.mu.Unlock()
		return false
	}
	uni, err := s.c.conn.OpenUniStream()
	if err != nil { // the peer's limit: the caller closes the bidirectional stream's reading instead
		s.mu.Unlock()
		return false
	}
	s.snd = uni
	s.readClosed = true
	s.eof, s.active = true, false
	s.swapped.Store(true)
	s.mu.Unlock()
	// a Read in progress (the reader reads ahead) returns: Read sees
	// swapped and returns io.EOF; nothing is sent to the peer
	_ = s.Stream.SetReadDeadline(time.Unix(1, 0))
	return true
}

// Write writes p to the stream's sending half.
func (s *quicStream) Write(p []byte) (int, error) {
	if s.snd == nil {
		return 0, ErrReceiveOnlyStream
	}
	s.noteWrite()
	s.c.notePeer()
	n, err := s.snd.Write(p)
	return n, s.c.cause(err)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline apply to the halves
// the stream has.
func (s *quicStream) SetDeadline(t time.Time) error {
	return errors.Join(s.SetReadDeadline(t), s.SetWriteDeadline(t))
}

func (s *quicStream) SetReadDeadline(t time.Time) error {
	if rcv := s.recv(); rcv != nil {
		return rcv.SetReadDeadline(t)
	}
	return nil
}

func (s *quicStream) SetWriteDeadline(t time.Time) error {
	if s.snd != nil {
		return s.snd.SetWriteDeadline(t)
	}
	return nil
}

// Writes to a stream. quic-go copies a write of at most one packet into the
// stream's next frame and returns at once; a larger write blocks until all
// but its last packet's worth have been packed, so the connection actor
// hands those to a writer goroutine (WriteBuffers: a framer's header leaves
// with the start of its message, the rest of a large message is written in
// place). TryWriteBuffers lets the actor write a batch
// of at most quicTryWriteMax bytes itself, without blocking (quic-go's
// TryWriteAll, within the flow-control credit): no writer goroutine, Sent at
// once, as on a TCP socket. Its pieces are joined into one write, so that
// the connection's goroutine is woken once and never packs a header alone.
const quicTryWriteMax = 16 << 10

// TryWriteBuffers writes all of b (and empties it) if the stream queues it
// without blocking; otherwise it writes nothing and reports blocked (b is
// larger than quicTryWriteMax, or it exceeds the flow-control credit).
func (s *quicStream) TryWriteBuffers(b *net.Buffers) (blocked bool, err error) {
	if s.snd == nil {
		return false, ErrReceiveOnlyStream
	}
	s.noteWrite() // even when blocked: a writer goroutine writes it next
	s.c.notePeer()
	var p []byte
	switch len(*b) {
	case 0:
		return false, nil
	case 1:
		p = (*b)[0]
	default:
		total := 0
		for _, q := range *b {
			total += len(q)
		}
		if total > quicTryWriteMax {
			return true, nil
		}
		p = s.joined(*b, total)
	}
	if len(p) > quicTryWriteMax {
		return true, nil
	}
	switch err := s.snd.TryWriteAll(p); {
	case err == nil:
		clear(*b)
		*b = (*b)[:0]
		return false, nil
	case errors.Is(err, quic.ErrWouldBlock):
		return true, nil
	default:
		return false, s.c.cause(err)
	}
}

// quicLeadMax bounds the lead write of WriteBuffers: a framer's header and
// the start of the message behind it, copied into one STREAM frame.
const quicLeadMax = 1 << 10

// WriteBuffers writes b (consumed as it is written), blocking until quic-go
// has taken it, as a writer goroutine does with what TryWriteBuffers did not
// take. quic-go sends each queued write that fits a packet as a STREAM frame
// of its own, in a packet of its own (one frame per stream and packet), so a
// framer's header written alone would cost a packet per message. A small
// piece is therefore joined with the start of the pieces behind it (at most
// quicLeadMax bytes, copied) into one write; a large piece is written in
// place, as one write (quic-go packs it straight from the slice).
func (s *quicStream) WriteBuffers(b *net.Buffers) (int64, error) {
	if s.snd == nil {
		return 0, ErrReceiveOnlyStream
	}
	s.noteWrite()
	s.c.notePeer()
	var n int64
	for len(*b) > 0 {
		p := (*b)[0]
		if len(*b) > 1 && len(p) < quicLeadMax {
			p = s.lead(*b)
		}
		w, err := s.snd.Write(p)
		n += int64(w)
		ConsumeBuffers(b, w)
		if err != nil {
			return n, s.c.cause(err)
		}
	}
	return n, nil
}

// lead copies the first quicLeadMax bytes of b (or all of it) into the
// stream's lead buffer.
func (s *quicStream) lead(b net.Buffers) []byte {
	if s.leadBuf == nil {
		s.leadBuf = make([]byte, 0, quicLeadMax)
	}
	return gather(s.leadBuf, b, quicLeadMax)
}

// ConsumeBuffers drops the first n bytes of b (written by a write that
// took part of it), and the empty pieces that then lead it.
func ConsumeBuffers(b *net.Buffers, n int) {
	for len(*b) > 0 && n > 0 {
		if n < len((*b)[0]) {
			(*b)[0] = (*b)[0][n:]
			return
		}
		n -= len((*b)[0])
		(*b)[0] = nil
		*b = (*b)[1:]
	}
	for len(*b) > 0 && len((*b)[0]) == 0 {
		*b = (*b)[1:]
	}
}

// joined copies the first n bytes of b into the stream's join buffer.
func (s *quicStream) joined(b net.Buffers, n int) []byte {
	if cap(s.join) < n {
		s.join = make([]byte, 0, max(n, 2*cap(s.join)))
	}
	return gather(s.join, b, n)
}

// gather copies the first n bytes of b (or all of it) into dst's array,
// from its start.
func gather(dst []byte, b net.Buffers, n int) []byte {
	j := dst[:0]
	for _, q := range b {
		k := min(len(q), n-len(j))
		j = append(j, q[:k]...)
		if len(j) == n {
			break
		}
	}
	return j
}

func (s *quicStream) LocalAddr() net.Addr  { return s.c.localAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.c.remoteAddr() }

// Read reads the stream and notes when it reaches the peer's FIN; a stream
// that only sends reads io.EOF at once.
func (s *quicStream) Read(p []byte) (int, error) {
	if s.rcv == nil || s.swapped.Load() {
		return 0, io.EOF // eof is set already
	}
	n, err := s.rcv.Read(p)
	s.c.notePeer()
	if err != nil && err != io.EOF {
		s.mu.Lock()
		if s.readClosed { // CloseRead's STOP_SENDING ended reading
			err = io.EOF
		}
		s.mu.Unlock()
		if err != io.EOF {
			err = s.c.cause(refusedByPeer(err))
		}
	}
	if err == io.EOF {
		s.mu.Lock()
		if !s.eof {
			s.eof, s.active = true, s.finned
		}
		s.mu.Unlock()
	}
	return n, err
}

// ReadEarly is Read that also reports whether the bytes read came as
// early data (0-RTT, RFC 9001 §4.6.1): the handshake had not completed
// when the read returned. Only 0-RTT packets can be read before the
// handshake completes (1-RTT keys come with it), so a true is always
// right; data read after the handshake completed is reported false even
// when it arrived as 0-RTT (it may not be told apart then). See
// EarlyReader.
func (s *quicStream) ReadEarly(p []byte) (int, bool, error) {
	n, err := s.Read(p)
	if n == 0 || s.handshaken.Load() {
		return n, false, err
	}
	select {
	case <-s.c.conn.HandshakeComplete():
		s.handshaken.Store(true)
		return n, false, err
	default:
		return n, true, err
	}
}

// CloseRead stops reading (STOP_SENDING, as shutdown(SHUT_RD) of a socket
// of a unidirectional send connection): Read returns io.EOF from now on,
// and the peer's writes fail. The stream is not the active closer then
// (see quicMinLinger): the peer may have ended its side long before it
// read the last of this side's data, so closing lingers. A stream that
// only sends has nothing to stop.
func (s *quicStream) CloseRead() error {
	rcv := s.recv()
	if rcv == nil {
		return nil
	}
	s.mu.Lock()
	s.readClosed = true
	if !s.eof {
		s.eof, s.active = true, false
	}
	s.mu.Unlock()
	rcv.CancelRead(quicStreamStopped)
	return nil
}

// CloseWrite sends FIN on the stream; reads go on. A stream that only
// receives has nothing to end.
func (s *quicStream) CloseWrite() error {
	s.mu.Lock()
	s.finned = true
	s.mu.Unlock()
	if s.snd == nil {
		return nil
	}
	s.noteWrite()
	return s.snd.Close()
}

// Close sends FIN, stops reading and releases the stream. See quicMinLinger
// for when the connection closes after its last stream.
func (s *quicStream) Close() error {
	var err error
	s.once.Do(func() {
		if s.snd != nil {
			err = s.snd.Close()
			var se *quic.StreamError
			if err != nil && errors.As(context.Cause(s.snd.Context()), &se) && se.Remote {
				// the peer stopped reading (STOP_SENDING, e.g. its Abort): the
				// sending side is over already, nothing is left to close
				err = nil
			}
		}
		if rcv := s.recv(); rcv != nil {
			rcv.CancelRead(quicStreamStopped)
		}
		how := quicClosed
		s.mu.Lock()
		if s.active {
			how = quicClosedActive
		}
		s.mu.Unlock()
		s.c.dgram.remove(s) // the next stream Transport reads the datagrams
		s.c.streamClosed(how)
	})
	return err
}

// closedSignal is a closed channel: nothing to wait for.
var closedSignal = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// Released implements ReleaseWatcher: once the stream is closed or
// aborted, the connection's done when the connection has ended or ends
// without waiting for anything but its linger (its last stream Transport
// is closed and nothing keeps it), else a closed channel (its other
// stream Transports, or the endpoint keeping it for the peer's next
// stream, hold it).
func (s *quicStream) Released() <-chan struct{} {
	c := s.c
	c.mu.Lock()
	ending := c.ended || c.finished
	c.mu.Unlock()
	if ending || c.conn.Context().Err() != nil {
		return c.done
	}
	return closedSignal
}

// Abort resets both directions of the stream (RESET_STREAM and
// STOP_SENDING) and closes the connection if it was the last stream.
func (s *quicStream) Abort() error {
	s.once.Do(func() {
		if s.snd != nil {
			s.snd.CancelWrite(quicStreamAbort)
		}
		if rcv := s.recv(); rcv != nil {
			rcv.CancelRead(quicStreamAbort)
		}
		s.c.dgram.remove(s) // the next stream Transport reads the datagrams
		s.c.streamClosed(quicAborted)
	})
	return nil
}

// Refuse resets a stream the peer opened (STOP_SENDING and RESET_STREAM
// with quicStreamRefused; the peer's reads fail with ErrStreamRefused).
// Unlike Abort it does not end the connection abruptly when it was the
// last stream: the connection ends as after a graceful close (quicClosed),
// so the last data of a stream closed meanwhile still reach the peer.
func (s *quicStream) Refuse() error {
	s.once.Do(func() {
		if s.snd != nil {
			s.snd.CancelWrite(quicStreamRefused)
		}
		if rcv := s.recv(); rcv != nil {
			rcv.CancelRead(quicStreamRefused)
		}
		s.c.dgram.remove(s)
		s.c.streamClosed(quicClosed)
	})
	return nil
}

// WaitPeerReset implements ResetWatcher: the stream's sending side ends
// when the peer resets it (its Abort's STOP_SENDING, a Refuse) or the
// connection fails (the peer's CONNECTION_CLOSE with an error code, the
// idle timeout), which is returned. It returns nil when this side closes
// or resets the stream, or the peer ends gracefully (the STOP_SENDING of
// its Close, quicStreamStopped; its CONNECTION_CLOSE without error). A
// stream that only receives is not watched.
func (s *quicStream) WaitPeerReset() error {
	if s.snd == nil {
		return nil
	}
	ctx := s.snd.Context()
	<-ctx.Done()
	err := context.Cause(ctx)
	var se *quic.StreamError
	var ae *quic.ApplicationError
	switch {
	case errors.Is(err, quic.ErrStreamClosed):
		return nil // this side's Close or CloseWrite
	case errors.As(err, &se):
		if !se.Remote || se.ErrorCode == quicStreamStopped {
			return nil // this side's Abort; the peer's graceful end
		}
		return refusedByPeer(err)
	case errors.As(err, &ae):
		if !ae.Remote || ae.ErrorCode == quicCodeNoError {
			return nil // this side closed the connection; the peer did, gracefully
		}
	}
	return quicTimedOut(err)
}

// refusedByPeer wraps a read error that is the peer's Refuse of this
// stream in ErrStreamRefused.
func refusedByPeer(err error) error {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == quicStreamRefused {
		return fmt.Errorf("%w: %w", ErrStreamRefused, err)
	}
	return err
}

// OpenStream opens a new bidirectional stream on the same connection.
func (s *quicStream) OpenStream(ctx context.Context) (Transport, error) {
	str, err := s.c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return s.c.addStream(bidiStream(str))
}

// TryOpenStream opens a new stream on the same connection without waiting
// (StreamOpener): ErrStreamLimit while the peer's limit is reached.
func (s *quicStream) TryOpenStream(sendOnly bool) (Transport, error) {
	var (
		str *quicStream
		err error
	)
	if sendOnly {
		var u *quic.SendStream
		if u, err = s.c.conn.OpenUniStream(); err == nil {
			str = sendStream(u)
		}
	} else {
		var b *quic.Stream
		if b, err = s.c.conn.OpenStream(); err == nil {
			str = bidiStream(b)
		}
	}
	if err != nil {
		var limit *quic.StreamLimitReachedError // quic-go returns a pointer
		if errors.As(err, &limit) || errors.As(err, new(quic.StreamLimitReachedError)) {
			return nil, ErrStreamLimit
		}
		return nil, err
	}
	return s.c.addStream(str)
}

// OpenSendStream opens a new unidirectional stream on the same connection.
func (s *quicStream) OpenSendStream(ctx context.Context) (Transport, error) {
	str, err := s.c.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return s.c.addStream(sendStream(str))
}

// AcceptStream waits for the next stream the peer opens, bidirectional or
// unidirectional (a Transport that only receives).
func (s *quicStream) AcceptStream(ctx context.Context) (Transport, error) {
	str, err := s.c.accept(ctx)
	if err != nil {
		return nil, err
	}
	return s.c.addStream(str)
}

// udpSocket is the UDP socket of the stream's connection (shared with
// the other connections of a listener).
func (s *quicStream) udpSocket() *net.UDPConn { return s.c.socket() }

// Conn returns the QUIC connection the stream belongs to.
func (s *quicStream) Conn() *quic.Conn { return s.c.conn }

// HandshakeComplete is closed when the handshake has completed: before, a
// connection from DialEarly carries 0-RTT data.
func (s *quicStream) HandshakeComplete() <-chan struct{} { return s.c.conn.HandshakeComplete() }

// failHandshake ends an early connection whose handshake met err (an ICMP
// error from the server, quic_icmp_linux.go): WaitHandshake returns err.
// It does not wait for the connection's end (it runs on the socket's
// reading goroutine).
func (c *quicConn) failHandshake(err error) {
	if !c.handshakeErr.CompareAndSwap(nil, &err) {
		return
	}
	go func() { _ = c.conn.CloseWithError(quicCodeAbort, "handshake failed") }()
}

// cause is err, a stream's read or write error, or, when the connection
// was ended by failHandshake, the error that failed the handshake (an ICMP
// port unreachable: ECONNREFUSED), which err (the local CONNECTION_CLOSE's)
// only follows from. An idle timeout's error unwraps to syscall.ETIMEDOUT
// too (quicTimedOut).
func (c *quicConn) cause(err error) error {
	if err == nil {
		return nil
	}
	if h := c.handshakeErr.Load(); h != nil {
		return fmt.Errorf("%w (%v)", *h, err)
	}
	return quicTimedOut(err)
}

// quicTimedOut makes the error of a connection its idle timeout ended
// (*quic.IdleTimeoutError: nothing came from the peer for the idle
// timeout, Options.ConnTimeout) unwrap to syscall.ETIMEDOUT as well, the
// error a TCP connection's ConnTimeout (TCP_USER_TIMEOUT) ends it with,
// so that both stacks report the timeout alike; it still unwraps to the
// IdleTimeoutError (a net.Error whose Timeout is true) and net.ErrClosed.
// Other errors are returned as they are.
func quicTimedOut(err error) error {
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) && !errors.Is(err, syscall.ETIMEDOUT) {
		return fmt.Errorf("%w (%w)", err, syscall.ETIMEDOUT)
	}
	return err
}

// icmpWatch is a QUIC Dial's watch of the ICMP errors that end its
// handshake (quic_icmp_linux.go): stopped once Dial returned, or, after an
// early Dial, once the handshake completed (follow).
type icmpWatch interface {
	stop()
	follow(conn *quic.Conn, fail func(error))
}

// noICMPWatch watches nothing (the socket has no error queue).
type noICMPWatch struct{}

func (noICMPWatch) stop()                          {}
func (noICMPWatch) follow(*quic.Conn, func(error)) {}

// WaitHandshake implements HandshakeWaiter. A server that rejects the 0-RTT
// data (it cannot resume the session: it lost the ticket's keys, say)
// completes a full handshake: quic-go then drops what was sent as 0-RTT
// and resets every stream opened before (their reads and writes fail with
// quic.Err0RTTRejected), and the connection goes on with the streams
// opened after (NextConnection). A new stream of the kind Dial opened is
// returned for it.
func (s *quicStream) WaitHandshake(ctx context.Context) (Transport, error) {
	conn := s.c.conn
	select {
	case <-conn.HandshakeComplete():
	case <-conn.Context().Done():
		select {
		case <-conn.HandshakeComplete(): // completed, and ended since
		default:
			if err := s.c.handshakeErr.Load(); err != nil {
				return nil, *err
			}
			return nil, wrapQUICHandshake(s.c.remoteAddr().String(), context.Cause(conn.Context()))
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := requiredDatagrams(conn, s.c.opts); err != nil {
		return nil, err
	}
	if !s.c.early || conn.ConnectionState().Used0RTT {
		return nil, nil
	}
	if _, err := conn.NextConnection(ctx); err != nil {
		return nil, err
	}
	// a unidirectional stream (Options.SendOnly, MakeSendOnly), or not
	ns, err := openDialStream(ctx, conn, s.rcv == nil || s.swapped.Load())
	if err != nil {
		return nil, err
	}
	return s.c.addStream(ns)
}

// Info reads the UDP socket's DSCP and the connection's TLS state.
func (s *quicStream) Info() (TransportInfo, error) {
	st := s.c.connectionState() // quic_migrate.go
	info := TransportInfo{
		Stack:         "quic",
		SendMsgMaxLen: MaxLen{Unlimited: true},
		RecvMsgMaxLen: MaxLen{Unlimited: true},
		KeepAlive:     s.c.opts.KeepAlive > 0,
		KeepAliveIdle: max(s.c.opts.KeepAlive, 0),
		TLSVersion:    st.TLS.Version,
		CipherSuite:   st.TLS.CipherSuite,
		Group:         st.TLS.CurveID,
		ALPN:          st.TLS.NegotiatedProtocol,
		Datagrams:     st.SupportsDatagrams.Local && st.SupportsDatagrams.Remote,
		Used0RTT:      st.Used0RTT,
		Resumed:       st.TLS.DidResume,
		// a stream's message is carried in as many packets as it needs
		SingularMsgMaxLen: -1,
	}
	if s.c.conn.Context().Err() != nil {
		return info, net.ErrClosed
	}
	rc, err := s.c.socket().SyscallConn()
	if err != nil {
		return info, err
	}
	return info, readSockInfo(rc, sockUDP, &info)
}

// quicDatagramStream adds Datagrams to a stream of a connection that
// negotiated them.
type quicDatagramStream struct{ *quicStream }

// SendDatagram sends p as one QUIC datagram (RFC 9221); a too large p fails
// with ErrDatagramTooLarge, a peer without datagrams with
// ErrDatagramsNotNegotiated.
func (s *quicDatagramStream) SendDatagram(p []byte) error {
	s.c.notePeer()
	return s.sendDatagram(p)
}

// ReceiveDatagram waits for the next QUIC datagram of the connection, and
// meanwhile for this stream Transport's turn to read them: the oldest live
// one reads (quicDatagramReaders). Once the Transport is closed it fails
// with net.ErrClosed.
func (s *quicDatagramStream) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	p, err := s.c.dgram.receive(ctx, s.c.conn, s.quicStream)
	s.c.notePeer()
	return p, err
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
	qcfg := quicConfig(opts)
	if from := opts.AcceptFrom; from != nil {
		qcfg.GetConfigForClient = func(ci *quic.ClientInfo) (*quic.Config, error) {
			if !from(ci.RemoteAddr) {
				return nil, errRefusedPeer // quic-go answers CONNECTION_REFUSED
			}
			return qcfg, nil
		}
	}
	qln, err := tr.ListenEarly(cfg, qcfg) // early: 0-RTT data is accepted
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &quicListener{
		quicEndpoint: quicEndpoint{tr: tr, udp: udp, refs: 1},
		ln:           qln, opts: opts,
		ready: make(chan Transport),
		ctx:   lctx, cancel: cancel,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// errRefusedPeer: Options.AcceptFrom refused the peer.
var errRefusedPeer = errors.New("peer refused")

// quicListener accepts QUIC connections in acceptLoop; a goroutine per
// connection waits for its first stream and hands it to Accept. The UDP
// socket is shared by every accepted connection and closed when the
// listener and all of them are closed.
type quicListener struct {
	quicEndpoint // the listener's reference + every live connection's
	ln           *quic.EarlyListener
	opts         Options
	ready        chan Transport
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	once         sync.Once
	err          error // guarded by mu
}

// quicEndpoint is a UDP socket and its quic.Transport, shared by whatever
// made it (a listener, a rendezvous endpoint) and the connections made on
// it: both are closed when the last of them lets go (unref).
type quicEndpoint struct {
	tr  *quic.Transport
	udp *net.UDPConn

	mu   sync.Mutex
	refs int
	// kept: the connections it accepted and keeps without streams while
	// it accepts (quicMinLinger); stopped: it no longer accepts
	kept    map[*quicConn]struct{}
	stopped bool
	// accepted: every connection it accepted that has not been released
	// yet, true for those quiet waits for (waiting counts them)
	accepted map[*quicConn]bool
	waiting  int
	// quiet: closed once the endpoint was closed (quieten) and the
	// connections it accepted that had no stream Transport left then
	// have ended; closed: closed once the socket is (the last unref)
	quiet, closed       chan struct{}
	quietSet, closedSet bool
}

// signal returns *ch, closed if set (made on first use, with e.mu).
func signal(ch *chan struct{}, set bool) <-chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
		if set {
			close(*ch)
		}
	}
	return *ch
}

// fire closes *ch if it was made, and notes it set (with e.mu).
func fire(ch *chan struct{}, set *bool) {
	if *set {
		return
	}
	*set = true
	if *ch != nil {
		close(*ch)
	}
}

// Closed is closed once the endpoint's UDP socket is closed: the endpoint
// was closed and every connection made on it has ended.
func (e *quicEndpoint) Closed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return signal(&e.closed, e.closedSet)
}

// Quiet is closed once the endpoint was closed and the connections it
// accepted that had no stream Transport left by then (lingering, ending,
// or never handed out) have ended: the socket is closed by then unless a
// connection with stream Transports still open uses it (then Closed is
// closed once the last such connection has ended).
func (e *quicEndpoint) Quiet() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return signal(&e.quiet, e.quietSet)
}

// quieten arms Quiet: called once the endpoint no longer accepts and its
// own reference was let go. The lock order is c.mu, then e.mu: the
// accepted connections are looked at without e.mu.
func (e *quicEndpoint) quieten() {
	e.mu.Lock()
	conns := make([]*quicConn, 0, len(e.accepted))
	for c := range e.accepted {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	var idle []*quicConn
	for _, c := range conns {
		c.mu.Lock()
		// no stream Transport: none can be added any more (the
		// endpoint stopped keeping it, see stopKeeping), it ends
		if c.streams == 0 {
			idle = append(idle, c)
		}
		c.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range idle {
		if w, ok := e.accepted[c]; ok && !w {
			e.accepted[c] = true
			e.waiting++
		}
	}
	if e.waiting == 0 {
		fire(&e.quiet, &e.quietSet)
	}
}

// track notes an accepted connection, kept without streams until the
// endpoint stops accepting; false once it has stopped. Called with c.mu
// (the one lock order: c.mu, then e.mu).
func (e *quicEndpoint) track(c *quicConn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.accepted == nil {
		e.accepted = make(map[*quicConn]bool)
	}
	e.accepted[c] = false
	if e.stopped {
		return false
	}
	if e.kept == nil {
		e.kept = make(map[*quicConn]struct{})
	}
	e.kept[c] = struct{}{}
	return true
}

// forget drops a connection that has ended.
func (e *quicEndpoint) forget(c *quicConn) {
	e.mu.Lock()
	delete(e.kept, c)
	if e.accepted[c] {
		e.waiting--
		if e.waiting == 0 {
			fire(&e.quiet, &e.quietSet)
		}
	}
	delete(e.accepted, c)
	e.mu.Unlock()
}

// stopKeeping: the endpoint no longer accepts; its accepted connections
// close with their last stream, or now (after the linger) if they have
// none left.
func (e *quicEndpoint) stopKeeping() {
	e.mu.Lock()
	e.stopped = true
	kept := e.kept
	e.kept = nil
	e.mu.Unlock()
	for c := range kept {
		c.stopKeeping()
	}
}

// ref counts a new connection; false once the endpoint is released.
func (e *quicEndpoint) ref() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refs == 0 {
		return false
	}
	e.refs++
	return true
}

func (e *quicEndpoint) unref() {
	e.mu.Lock()
	e.refs--
	last := e.refs == 0
	e.mu.Unlock()
	if last {
		_ = e.tr.Close()
		_ = e.udp.Close()
		e.mu.Lock()
		fire(&e.closed, &e.closedSet)
		e.mu.Unlock()
	}
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
		if requiredDatagrams(conn, l.opts) != nil { // closed: the client did not enable datagrams
			continue
		}
		if !l.ref() { // the listener and its socket are gone
			_ = conn.CloseWithError(quicCodeAbort, "")
			continue
		}
		qc := newQUICConn(conn, l.udp, l.opts, l.unref, &l.quicEndpoint)
		l.wg.Add(1)
		go l.firstStream(qc)
	}
}

// firstStream waits for the first stream of a new connection,
// bidirectional or unidirectional (accept also returns when the connection
// ends).
func (l *quicListener) firstStream(qc *quicConn) {
	defer l.wg.Done()
	str, err := qc.accept(l.ctx)
	if err != nil {
		_ = qc.conn.CloseWithError(quicCodeAbort, "")
		return
	}
	t := qc.add(str)
	select {
	case l.ready <- t:
	case <-l.ctx.Done():
		_ = t.Abort()
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
// accepted are closed, accepted ones stay open while they have stream
// Transports (and close with the last one), those without any left close
// after the linger (see quicMinLinger). It does not wait for them: Quiet
// is closed once those without stream Transports have ended, Closed once
// the UDP socket is closed (after the last connection). With no
// connection left, the socket is closed when Close returns.
func (l *quicListener) Close() error {
	l.once.Do(func() {
		l.cancel()
		_ = l.ln.Close()
		l.wg.Wait()
		l.stopKeeping()
		l.unref()
		l.quieten()
	})
	return nil
}

func (l *quicListener) Addr() net.Addr { return l.udp.LocalAddr() }
