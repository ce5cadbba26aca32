package stacks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNoTLSConfig is returned by the TLS and QUIC stacks when Options.TLS is
// nil: they never pick security settings on their own.
var ErrNoTLSConfig = errors.New("stack needs Options.TLS")

// ErrTLSTruncated is what a TLS transport's Read returns when the peer's
// TCP stream ended without its close_notify alert: the peer, or anyone on
// the path, cut the stream, and the data read so far may be truncated (RFC
// 8446 §6.1, RFC 5246 §7.2.1). crypto/tls reports such an end as io.EOF
// when it falls on a record boundary; this error is not io.EOF, it wraps
// io.ErrUnexpectedEOF.
var ErrTLSTruncated = fmt.Errorf("tls stream ended without close_notify, the data may be truncated: %w", io.ErrUnexpectedEOF)

// tlsMaxPendingHandshakes bounds the server handshakes a TLS listener runs
// at once; Accept of further TCP connections waits for a free slot.
const tlsMaxPendingHandshakes = 128

type tlsStack struct{}

// TLS returns the TLS-over-TCP stack (crypto/tls): TCP with every TCP
// option of Options, then the TLS handshake configured by Options.TLS.
// Dial returns when the handshake is done; Listen's Accept returns only
// connections whose handshake is done (each runs in its own goroutine,
// bounded by Options.HandshakeTimeout, so a slow client does not block
// others). CloseWrite sends close_notify and a TCP FIN; Abort resets the
// TCP connection. Read returns io.EOF only after the peer's close_notify:
// a TCP FIN without it is ErrTLSTruncated.
func TLS() Stack { return tlsStack{} }

func (tlsStack) Name() string { return "tls" }

func (tlsStack) Capabilities() Capabilities {
	return Capabilities{
		Reliability:          true,
		PreserveOrder:        true,
		CongestionControl:    true,
		FullChecksumSend:     true,
		FullChecksumRecv:     true,
		KeepAlive:            true,
		Multipath:            true, // MPTCP underneath, with Options.MPTCP
		Secure:               true,
		ActiveReadBeforeSend: true,
	}
}

// clientTLSConfig clones opts.TLS and fills ServerName (opts.ServerName,
// else the remote IP) and, if defaultALPN is set, an empty NextProtos.
func clientTLSConfig(opts Options, remote netip.AddrPort, defaultALPN string) (*tls.Config, error) {
	if opts.TLS == nil {
		return nil, ErrNoTLSConfig
	}
	cfg := opts.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = opts.ServerName
	}
	if cfg.ServerName == "" {
		cfg.ServerName = remote.Addr().Unmap().String()
	}
	if defaultALPN != "" && len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{defaultALPN}
	}
	return cfg, nil
}

// TLSHandshakeError is the error of a failed TLS handshake. It unwraps to
// the crypto/tls error, which for a rejected certificate is a
// *tls.CertificateVerificationError wrapping the x509 error (unknown
// authority, wrong host name, expired, ...).
type TLSHandshakeError struct {
	// Remote is the peer's address.
	Remote string
	Err    error
	// PeerAnswered: the peer answered in TLS (its ServerHello, or an
	// alert; over QUIC, any CRYPTO_ERROR) before the handshake failed: it
	// speaks TLS, whatever failed then (its certificate, ALPN, a
	// callback). Opportunistic security does not fall back to plain text
	// for such a peer.
	PeerAnswered bool
}

func (e *TLSHandshakeError) Error() string {
	return fmt.Sprintf("tls handshake with %s: %v", e.Remote, e.Err)
}

func (e *TLSHandshakeError) Unwrap() error { return e.Err }

func (tlsStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	cfg, err := clientTLSConfig(opts, remote, "")
	if err != nil {
		return nil, err
	}
	tc, err := dialTCP(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	t := newTLSTransport(tc, opts.TLSAllowTruncation, !opts.MPTCP)
	t.Conn = tls.Client(&t.in, cfg)
	if err := handshake(ctx, t.Conn); err != nil {
		_ = tc.Close()
		return nil, &TLSHandshakeError{Remote: remote.String(), Err: err, PeerAnswered: peerAnswered(t.Conn, err)}
	}
	return t, nil
}

// peerAnswered reports whether the server of a failed client handshake
// answered in TLS: a version was agreed (its ServerHello came) or it sent
// an alert ("remote error").
func peerAnswered(c *tls.Conn, err error) bool {
	if c.ConnectionState().Version != 0 {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// TLSCallbackPanicError is the error of a handshake whose callback (a
// tls.Config hook: VerifyConnection, VerifyPeerCertificate,
// GetClientCertificate, GetCertificate, ...) panicked: the handshake fails
// and its TCP connection is closed, the process goes on. It unwraps to the
// panic value when that is an error.
type TLSCallbackPanicError struct {
	Value any
	Stack []byte
}

func (e *TLSCallbackPanicError) Error() string {
	return fmt.Sprintf("panic in a TLS handshake callback: %v", e.Value)
}

func (e *TLSCallbackPanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// handshake runs c's handshake, a panicking callback giving a
// *TLSCallbackPanicError.
func handshake(ctx context.Context, c *tls.Conn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &TLSCallbackPanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return c.HandshakeContext(ctx)
}

// SecureTransport runs a TLS handshake over t, an established Transport of
// the TCP stack, and returns the TLS Transport (Rendezvous: the TCP
// connection exists before the roles are known). client chooses the role:
// opts.TLS must then be a client configuration (ServerName filled as for
// Dial), else a server one. ctx bounds the handshake. On failure t is
// closed and the error is a *TLSHandshakeError.
func SecureTransport(ctx context.Context, t Transport, opts Options, client bool) (Transport, error) {
	tt, ok := t.(*tcpTransport)
	if !ok {
		_ = t.Close()
		return nil, fmt.Errorf("tls over %T: not a TCP transport", t)
	}
	if opts.TLS == nil {
		_ = t.Close()
		return nil, ErrNoTLSConfig
	}
	tc := tt.TCPConn
	s := newTLSTransport(tc, opts.TLSAllowTruncation, !opts.MPTCP)
	if client {
		remote, _ := AddrPortOf(tc.RemoteAddr())
		cfg, err := clientTLSConfig(opts, remote, "")
		if err != nil {
			_ = tc.Close()
			return nil, err
		}
		s.Conn = tls.Client(&s.in, cfg)
	} else {
		s.Conn = tls.Server(&s.in, opts.TLS.Clone())
	}
	if err := handshake(ctx, s.Conn); err != nil {
		_ = tc.Close()
		return nil, &TLSHandshakeError{Remote: tc.RemoteAddr().String(), Err: err, PeerAnswered: client && peerAnswered(s.Conn, err)}
	}
	return s, nil
}

// AddrPortOf is a TCP or UDP address as a netip.AddrPort (false for any
// other kind of address).
func AddrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort(), true
	case *net.UDPAddr:
		return v.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

type tlsTransport struct {
	*tls.Conn
	tcp        *net.TCPConn
	in         tcpUnderTLS // what Conn reads and writes
	allowTrunc bool        // Options.TLSAllowTruncation
}

// newTLSTransport is the transport of a TLS connection over tc, but for
// its Conn, which must be made over t.in. allowTrunc is
// Options.TLSAllowTruncation; checkEnd is false for a socket that may run
// MPTCP (see tcpUnderTLS).
func newTLSTransport(tc *net.TCPConn, allowTrunc, checkEnd bool) *tlsTransport {
	t := &tlsTransport{tcp: tc, allowTrunc: allowTrunc}
	t.in.TCPConn, t.in.checkEnd = tc, checkEnd
	return t
}

// tcpUnderTLS is the TCP connection under a TLS connection. It notes a
// read that reached the end of the TCP stream: crypto/tls makes no read
// after the peer's close_notify (it ends the TLS stream), so a TLS end of
// stream that read the TCP end came without close_notify. With checkEnd,
// until this side shuts its sending side down (shut), that end is checked
// as TCPEndOfStream does: one the socket's reset or timeout left (no FIN)
// is that error, which crypto/tls returns as it is.
type tcpUnderTLS struct {
	*net.TCPConn
	eof      atomic.Bool
	shut     atomic.Bool
	checkEnd bool
}

func (c *tcpUnderTLS) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if err == io.EOF {
		c.eof.Store(true)
		if c.checkEnd && !c.shut.Load() {
			if h := testHookTLSEndOfStream.Load(); h != nil {
				(*h)()
			}
			if rc, rerr := c.TCPConn.SyscallConn(); rerr == nil {
				err = TCPEndOfStream(rc)
			}
			if err != io.EOF && c.shut.Load() {
				// CloseWrite came while the state was read: TCP_CLOSE may
				// be its graceful exchange's (shut is set before the FIN
				// goes, so still unset the state was read before it)
				err = io.EOF
			}
		}
	}
	return n, err
}

// testHookTLSEndOfStream, when set, runs in tcpUnderTLS.Read at a checked
// end of stream, between its reading of shut and of the socket's state.
var testHookTLSEndOfStream atomic.Pointer[func()]

// Read reads application data. The end of the stream is io.EOF after the
// peer's close_notify, ErrTLSTruncated after a TCP FIN without it (which
// crypto/tls reports as io.EOF at a record boundary, and as
// io.ErrUnexpectedEOF inside a record). With Options.TLSAllowTruncation, a
// FIN without close_notify at a record boundary is io.EOF. A TCP stream
// that ended without a FIN (the socket reset or timed out, and a write
// took its error; Linux) ends with TCPEndOfStream's error instead
// (tcpUnderTLS).
func (t *tlsTransport) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	// err != nil first: a read that returns data pays one check
	if err != nil && (err == io.EOF || err == io.ErrUnexpectedEOF) && t.in.eof.Load() &&
		(err == io.ErrUnexpectedEOF || !t.allowTrunc) {
		err = ErrTLSTruncated
	}
	return n, err
}

// CloseWrite sends close_notify, then a TCP FIN; reads go on.
func (t *tlsTransport) CloseWrite() error {
	t.in.shut.Store(true) // the socket is TCP_CLOSE once the peer's FIN answers
	if err := t.Conn.CloseWrite(); err != nil {
		return err
	}
	return t.tcp.CloseWrite()
}

// Close sends close_notify and closes the connection. A close_notify the
// peer can no longer receive (it reset or closed the connection) is not an
// error: the connection is closed either way.
func (t *tlsTransport) Close() error {
	err := t.Conn.Close()
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// Abort resets the TCP connection without close_notify.
func (t *tlsTransport) Abort() error { return abortTCP(t.tcp) }

// WaitPeerReset implements ResetWatcher: the RST of the TCP connection
// under TLS.
func (t *tlsTransport) WaitPeerReset() error { return tcpWaitPeerReset(t.tcp) }

// Info reads the TCP socket options and the negotiated TLS parameters.
func (t *tlsTransport) Info() (TransportInfo, error) {
	info, err := tcpInfo(t.tcp, "tls")
	st := t.ConnectionState()
	info.TLSVersion, info.CipherSuite, info.ALPN = st.Version, st.CipherSuite, st.NegotiatedProtocol
	info.Group, info.Resumed = st.CurveID, st.DidResume
	if info.SingularMsgMaxLen > 0 {
		// one record per segment: its header, and the AEAD's tag (TLS
		// 1.3: and the inner content type; TLS 1.2: the explicit nonce)
		overhead := 5 + 16 + 1
		if st.Version < tls.VersionTLS13 {
			overhead = 5 + 16 + 8
		}
		info.SingularMsgMaxLen = max(info.SingularMsgMaxLen-overhead, 0)
	}
	return info, err
}

func (tlsStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	if opts.TLS == nil {
		return nil, ErrNoTLSConfig
	}
	ln, err := listenTCP(ctx, opts)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		ln:      ln,
		cfg:     opts.TLS.Clone(),
		timeout: opts.handshakeTimeout(),
		ready:   make(chan *tlsTransport),
		ctx:     hctx,
		cancel:  cancel,
		slots:   make(chan struct{}, tlsMaxPendingHandshakes),
	}
	l.acceptFrom = opts.AcceptFrom
	l.acceptRetry = opts.AcceptRetry
	l.uto = acceptUserTimeout(opts)
	l.allowTrunc, l.mptcp = opts.TLSAllowTruncation, opts.MPTCP
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// tlsListener accepts TCP connections in acceptLoop and runs each server
// handshake in its own goroutine; finished handshakes wait in ready for
// Accept.
type tlsListener struct {
	ln      *net.TCPListener
	cfg     *tls.Config
	timeout time.Duration
	ready   chan *tlsTransport
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	slots   chan struct{}
	wg      sync.WaitGroup
	// acceptFrom is Options.AcceptFrom
	acceptFrom func(net.Addr) bool
	// acceptRetry is Options.AcceptRetry
	acceptRetry func(local net.Addr, err error)
	allowTrunc  bool          // Options.TLSAllowTruncation
	mptcp       bool          // Options.MPTCP
	uto         time.Duration // acceptUserTimeout

	mu  sync.Mutex
	err error // why acceptLoop ended, if not Close
}

// acceptLoop accepts TCP connections until Close. An accept that failed
// for want of a resource (AcceptRetryable: EMFILE, ...) is tried again
// after a wait, 5 ms doubling up to 1 s (from 5 ms again after an accept),
// which Close ends (each told to Options.AcceptRetry); any other error ends
// the loop, and Accept returns it.
func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	var wait time.Duration // the last wait after a resource error, 0 after an accept
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		tc, err := l.ln.AcceptTCP()
		if err != nil {
			<-l.slots
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if AcceptRetryable(err) {
				wait = min(max(2*wait, 5*time.Millisecond), time.Second)
				if l.acceptRetry != nil {
					l.acceptRetry(l.ln.Addr(), err)
				}
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					continue
				case <-l.ctx.Done():
					t.Stop()
					return
				}
			}
			if !errors.Is(err, net.ErrClosed) {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
			}
			l.cancel()
			return
		}
		wait = 0
		if l.acceptFrom != nil && !l.acceptFrom(tc.RemoteAddr()) {
			<-l.slots
			_ = abortTCP(tc) // no handshake with a refused peer
			continue
		}
		setAcceptedUserTimeout(tc, l.uto)
		l.wg.Add(1)
		go l.handshake(tc)
	}
}

func (l *tlsListener) handshake(tc *net.TCPConn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	t := newTLSTransport(tc, l.allowTrunc, !l.mptcp)
	t.Conn = tls.Server(&t.in, l.cfg)
	if err := handshake(ctx, t.Conn); err != nil {
		_ = tc.Close()
		return
	}
	select {
	case l.ready <- t:
	case <-l.ctx.Done():
		_ = tc.Close()
	}
}

// Accept returns the next connection whose TLS handshake is done.
func (l *tlsListener) Accept() (Transport, error) {
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

// Close stops listening, aborts handshakes in progress and closes
// connections not yet accepted. Accepted connections stay open.
func (l *tlsListener) Close() error {
	err := l.ln.Close()
	l.cancel()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.ln.Addr() }
