package stacks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

type tcpStack struct{}

// ErrEndedWithoutFIN is the end of a TCP stream that came without the
// peer's FIN (TCPEndOfStream; a TLS transport's Read): the socket ended
// under the stream (a reset, TCP_USER_TIMEOUT, the retransmission
// timeout) and another call, a write, took its error. It unwraps to
// io.ErrUnexpectedEOF.
var ErrEndedWithoutFIN = fmt.Errorf("the TCP connection ended without the peer's end of stream (reset or timed out): %w", io.ErrUnexpectedEOF)

// TCP returns the TCP stack: a reliable, ordered, congestion-controlled byte
// stream with no message boundaries. It applies Options.KeepAlive,
// KeepAliveInterval, UserTimeout/ConnTimeout, DSCP, MPTCP, Interface and
// Local; its Transports implement SocketInfo.
func TCP() Stack { return tcpStack{} }

func (tcpStack) Name() string { return "tcp" }

func (tcpStack) Capabilities() Capabilities {
	return Capabilities{
		Reliability:          true,
		PreserveOrder:        true,
		CongestionControl:    true,
		FullChecksumSend:     true,
		FullChecksumRecv:     true,
		KeepAlive:            true,
		Multipath:            true, // with Options.MPTCP
		ActiveReadBeforeSend: true,
	}
}

func (tcpStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	c, err := dialTCP(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	return &tcpTransport{TCPConn: c, stack: "tcp"}, nil
}

// dialTCP connects a TCP socket with every socket option of opts applied.
func dialTCP(ctx context.Context, remote netip.AddrPort, opts Options) (*net.TCPConn, error) {
	d := net.Dialer{
		KeepAliveConfig: keepAliveConfig(opts),
		Control:         reusePortControl(opts, withPathControl(socketControl(opts, sockTCP), opts)),
	}
	if opts.KeepAlive <= 0 {
		d.KeepAlive = -1
	}
	d.SetMultipathTCP(opts.MPTCP) // explicit: never the GODEBUG default
	if opts.Local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(opts.Local)
	}
	c, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func (tcpStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	ln, err := listenTCP(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &tcpListener{ln: ln, stack: "tcp", uto: acceptUserTimeout(opts)}, nil
}

// listenTCP binds a TCP listener; accepted sockets inherit the socket
// options set on it (DSCP, TCP_USER_TIMEOUT) and get the keep-alive
// settings from Go. An MPTCP listening socket refuses TCP_USER_TIMEOUT
// (setUserTimeout skips it): the listener gives it to each socket it
// accepts itself (acceptUserTimeout, setAcceptedUserTimeout).
func listenTCP(ctx context.Context, opts Options) (*net.TCPListener, error) {
	lc := net.ListenConfig{
		KeepAliveConfig: keepAliveConfig(opts),
		Control:         reusePortControl(opts, withPathControl(socketControl(opts, sockTCP), opts)),
	}
	if opts.KeepAlive <= 0 {
		lc.KeepAlive = -1
	}
	lc.SetMultipathTCP(opts.MPTCP) // explicit: Go listens with MPTCP by default
	network, addr := listenAddr("tcp", opts.Local)
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// reusePortControl returns next preceded by SO_REUSEADDR and SO_REUSEPORT
// when opts.ReusePort is set (next itself otherwise; it may be nil).
func reusePortControl(opts Options, next func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	if !opts.ReusePort {
		return next
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setReusePort(int(fd)) }); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// listenAddr turns a local endpoint into Listen arguments: ":0" for the
// zero value, the IPv4-only network for IPv4 addresses.
func listenAddr(proto string, local netip.AddrPort) (network, addr string) {
	addr = ":0"
	if local.IsValid() {
		addr = local.String()
	} else if local.Port() != 0 {
		addr = net.JoinHostPort("", itoa(int(local.Port())))
	}
	network = proto
	if local.IsValid() && local.Addr().Is4() {
		network = proto + "4"
	}
	return network, addr
}

type tcpTransport struct {
	*net.TCPConn
	stack string
}

// WriteBuffers writes b with one vectored write (writev) where it can.
func (t *tcpTransport) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(t.TCPConn) }

// Abort resets the connection (RST instead of FIN).
func (t *tcpTransport) Abort() error { return abortTCP(t.TCPConn) }

// Quiescent implements QuiescentTransport.
func (t *tcpTransport) Quiescent() bool { return tcpQuiescent(t.TCPConn) }

// WaitPeerReset implements ResetWatcher.
func (t *tcpTransport) WaitPeerReset() error { return tcpWaitPeerReset(t.TCPConn) }

func abortTCP(c *net.TCPConn) error {
	_ = c.SetLinger(0)
	return c.Close()
}

// Info reads the socket options in effect.
func (t *tcpTransport) Info() (TransportInfo, error) { return tcpInfo(t.TCPConn, t.stack) }

func tcpInfo(c *net.TCPConn, stack string) (TransportInfo, error) {
	info := TransportInfo{
		Stack:         stack,
		SendMsgMaxLen: MaxLen{Unlimited: true},
		RecvMsgMaxLen: MaxLen{Unlimited: true},
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return info, err
	}
	if err := readSockInfo(rc, sockTCP, &info); err != nil {
		return info, err
	}
	_ = rc.Control(func(fd uintptr) {
		// some kernels do not answer TCP-level options on MPTCP sockets:
		// unknown (0) then
		info.SingularMsgMaxLen, _ = singularMax(int(fd), sockTCP, false)
		info.Congestion, _ = getCongestion(int(fd))
	})
	mp, err := c.MultipathTCP()
	if err != nil {
		return info, err
	}
	info.MPTCP = mp
	return info, nil
}

type tcpListener struct {
	ln    *net.TCPListener
	stack string
	uto   time.Duration // acceptUserTimeout
}

func (l *tcpListener) Accept() (Transport, error) {
	c, err := l.ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	setAcceptedUserTimeout(c, l.uto)
	return &tcpTransport{TCPConn: c, stack: l.stack}, nil
}

// acceptUserTimeout is the TCP_USER_TIMEOUT (connTimeout,
// tcp.userTimeoutValue) a listener of opts sets on each socket it
// accepts: 0 unless the listening socket is MPTCP. An MPTCP listening
// socket refuses the option, so the plain TCP sockets it accepts from
// peers without MPTCP would not inherit it and run with the system's
// default (a listening socket of plain TCP passes it on itself).
func acceptUserTimeout(opts Options) time.Duration {
	if !opts.MPTCP {
		return 0
	}
	return userTimeout(opts)
}

// setAcceptedUserTimeout sets TCP_USER_TIMEOUT to uto on an accepted
// socket (nothing when uto is 0; an accepted MPTCP socket is skipped as
// setUserTimeout skips it). A failure leaves the socket as accepted.
func setAcceptedUserTimeout(c *net.TCPConn, uto time.Duration) {
	if uto <= 0 {
		return
	}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = setUserTimeout(int(fd), int(uto/time.Millisecond)) })
	}
}

// AcceptRetryable reports whether err, from a Listener's Accept, is the
// want of a resource that may come back: the process or the system out of
// file descriptors (EMFILE, ENFILE), buffers (ENOBUFS) or memory (ENOMEM).
// The listening socket is fine: a later Accept may succeed (net/http's
// Server.Serve waits and accepts again likewise).
// On Windows, Winsock's WSAEMFILE and WSAENOBUFS too.
func AcceptRetryable(err error) bool {
	for _, e := range acceptRetryErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (l *tcpListener) Close() error   { return l.ln.Close() }
func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }
