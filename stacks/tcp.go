package stacks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

type tcpStack struct{}

// TCP returns the TCP stack: a reliable, ordered, congestion-controlled byte
// stream with no message boundaries.
func TCP() Stack { return tcpStack{} }

func (tcpStack) Name() string { return "tcp" }

func (tcpStack) Capabilities() Capabilities {
	return Capabilities{
		Reliability:       true,
		PreserveOrder:     true,
		CongestionControl: true,
		FullChecksumSend:  true,
		FullChecksumRecv:  true,
		KeepAlive:         true,
	}
}

func (tcpStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	d := net.Dialer{KeepAlive: keepAlive(opts), Control: bindControl(opts.Interface)}
	if opts.Local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(opts.Local)
	}
	c, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return nil, err
	}
	return &tcpTransport{TCPConn: c.(*net.TCPConn)}, nil
}

func (tcpStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	lc := net.ListenConfig{KeepAlive: keepAlive(opts), Control: bindControl(opts.Interface)}
	addr := ":0"
	if opts.Local.IsValid() {
		addr = opts.Local.String()
	} else if opts.Local.Port() != 0 {
		addr = net.JoinHostPort("", itoa(int(opts.Local.Port())))
	}
	network := "tcp"
	if opts.Local.IsValid() && opts.Local.Addr().Is4() {
		network = "tcp4"
	}
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &tcpListener{ln: ln.(*net.TCPListener)}, nil
}

func keepAlive(opts Options) time.Duration {
	if opts.KeepAlive > 0 {
		return opts.KeepAlive
	}
	return -1 // off unless asked for (RFC 9622 keepAlive default No Preference)
}

type tcpTransport struct{ *net.TCPConn }

// WriteBuffers writes b with one vectored write (writev) where it can.
func (t *tcpTransport) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(t.TCPConn) }

func (t *tcpTransport) Abort() error {
	_ = t.SetLinger(0) // RST instead of FIN
	return t.Close()
}

type tcpListener struct{ ln *net.TCPListener }

func (l *tcpListener) Accept() (Transport, error) {
	c, err := l.ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return &tcpTransport{TCPConn: c}, nil
}

func (l *tcpListener) Close() error   { return l.ln.Close() }
func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }

// bindControl binds sockets to an interface when name is set.
func bindControl(name string) func(network, address string, c syscall.RawConn) error {
	if name == "" {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.BindToDevice(int(fd), name)
		}); err != nil {
			return err
		}
		if serr != nil {
			return errors.Join(errors.New("bind to interface "+name), serr)
		}
		return nil
	}
}
