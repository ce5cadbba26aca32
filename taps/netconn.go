package taps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
)

// errWriteClosed: Write after CloseWrite.
var errWriteClosed = errors.New("write side closed")

// NetConn returns a net.Conn view of the Connection, with byte-stream
// semantics over the message API, for code written against the standard
// library (net/http, bufio, io.Copy, ...):
//
//   - Write sends p as one Message and returns when it is Sent. p is copied,
//     so the caller may reuse it at once. The write deadline bounds the wait;
//     a Write that times out once its Message was handed to the Connection
//     (it is still sent) returns len(p) with the error, and 0 before.
//   - Read returns the next received bytes (Receive with
//     MinIncompleteLength(1) and MaxLength(len(p))), without waiting for a
//     Message to end; message boundaries are not visible. Read returns
//     io.EOF once the peer has closed and every byte was read.
//   - SetDeadline, SetReadDeadline and SetWriteDeadline apply to pending
//     and future calls; a call that times out returns a *net.OpError that
//     wraps os.ErrDeadlineExceeded and whose Timeout method reports true.
//   - CloseWrite half-closes: the queued data is sent, then the peer sees
//     the end of the stream (an empty message with the Final property:
//     TCP's FIN, TLS's close_notify, a QUIC stream's FIN), and Read goes
//     on until the peer ends its stream; the connection is Closed once
//     both have. With a framer, the end of the stream follows an empty
//     message, which Read skips (a peer reading with Receive gets an empty
//     Message with the Final property). The peer's CloseWrite half-closes
//     this side the same way: Read returns io.EOF and Write still works.
//   - Close closes the Connection gracefully and returns at once, as a
//     *net.TCPConn's does: it waits only for the Writes in progress to
//     end (they end at once, with an error wrapping net.ErrClosed, their
//     message handed to the Connection or not at all), never for the
//     peer. The Connection goes on closing in the background: what was
//     written is sent, then the end of the stream, and it is Closed once
//     the peer has ended its stream too (see Connection.Close; the
//     linger timeout bounds that wait, and System.Shutdown ends it). Close
//     returns an error only when the Connection had already failed (its
//     *ConnectionError) and, called again, one wrapping net.ErrClosed.
//     Read, Write and the deadline setters then return errors wrapping
//     net.ErrClosed.
//   - LocalAddr and RemoteAddr are read once, when NetConn is called. They
//     are never nil: a *net.UnixAddr over a Unix domain socket (the
//     socket's path; "@" for an unbound one, as net.UnixConn reports it),
//     a *net.UDPAddr over UDP, a *net.TCPAddr otherwise; an unknown
//     address is the zero *net.TCPAddr.
//
// The net.Conn is safe for concurrent use: concurrent Writes are sent one
// after the other, concurrent Reads are served one after the other. Call
// NetConn once per Connection and do not mix it with Receive, Send or
// handlers on the same Connection: they would share the data.
func (c *Connection) NetConn() net.Conn {
	nc := &netConn{c: c, closed: make(chan struct{})}
	nc.rd.init()
	nc.wd.init()
	nc.laddr, nc.raddr = connAddrs(c)
	return nc
}

// connAddrs reads the endpoints of a connection as net.Addrs.
func connAddrs(c *Connection) (net.Addr, net.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.GetPropertiesContext(ctx)
	if err != nil {
		return &net.TCPAddr{}, &net.TCPAddr{}
	}
	var l, r *endpoint
	if p.Local != nil {
		l = &p.Local.e
	}
	if p.Remote != nil {
		r = &p.Remote.e
	}
	return endpointAddr(l, p.Stack), endpointAddr(r, p.Stack)
}

// endpointAddr converts an endpoint to a *net.UnixAddr for the "unix"
// stack (Name empty for an unbound socket, as net.UnixConn has it), a
// *net.UDPAddr for the "udp" stack, a *net.TCPAddr otherwise.
func endpointAddr(e *endpoint, stack string) net.Addr {
	var ap netip.AddrPort
	var path string
	if e != nil {
		e.mu.Lock()
		ip, port, zone := e.ip, e.port, e.iface
		path = e.path
		e.mu.Unlock()
		if a, err := netip.ParseAddr(ip); err == nil {
			if zone != "" && a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(zone)
			}
			ap = netip.AddrPortFrom(a, uint16(port))
		} else {
			ap = netip.AddrPortFrom(netip.Addr{}, uint16(port))
		}
	}
	if stack == "unix" {
		return &net.UnixAddr{Name: path, Net: "unix"}
	}
	if stack == "udp" {
		if !ap.Addr().IsValid() {
			return &net.UDPAddr{Port: int(ap.Port())}
		}
		return net.UDPAddrFromAddrPort(ap)
	}
	if !ap.Addr().IsValid() {
		return &net.TCPAddr{Port: int(ap.Port())}
	}
	return net.TCPAddrFromAddrPort(ap)
}

type netConn struct {
	c            *Connection
	laddr, raddr net.Addr
	rd, wd       deadline

	rmu         sync.Mutex // serializes Reads and guards buf, eof
	buf         []byte     // received bytes not yet returned
	eof         bool
	wmu         sync.Mutex // serializes Writes
	once        sync.Once
	closed      chan struct{} // closed by Close
	writeClosed bool          // set by CloseWrite; guarded by wmu
}

func (nc *netConn) isClosed() bool {
	select {
	case <-nc.closed:
		return true
	default:
		return false
	}
}

func (nc *netConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: nc.laddr.Network(), Source: nc.laddr, Addr: nc.raddr, Err: err}
}

// Read implements net.Conn.
func (nc *netConn) Read(p []byte) (int, error) {
	nc.rmu.Lock()
	defer nc.rmu.Unlock()
	if nc.isClosed() {
		return 0, nc.opError("read", net.ErrClosed)
	}
	if len(nc.buf) > 0 {
		n := copy(p, nc.buf)
		nc.buf = nc.buf[n:]
		return n, nil
	}
	if nc.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	ctx := nc.rd.context()
	if ctx.Err() != nil {
		return 0, nc.opError("read", ctx.Err())
	}
	for {
		m, err := nc.c.Receive(ctx, MinIncompleteLength(1), MaxLength(len(p)))
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return 0, nc.opError("read", cerr)
			}
			if errors.Is(err, ErrClosed) {
				nc.eof = true
				return 0, io.EOF
			}
			return 0, nc.opError("read", err)
		}
		if len(m.Data) == 0 {
			continue // the end-of-message marker of a byte stream
		}
		n := copy(p, m.Data)
		if n < len(m.Data) {
			nc.buf = append(nc.buf[:0], m.Data[n:]...)
		}
		return n, nil
	}
}

// Write implements net.Conn.
func (nc *netConn) Write(p []byte) (int, error) {
	nc.wmu.Lock()
	defer nc.wmu.Unlock()
	if nc.isClosed() {
		return 0, nc.opError("write", net.ErrClosed)
	}
	if nc.writeClosed {
		return 0, nc.opError("write", errWriteClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	ctx := nc.wd.context()
	if ctx.Err() != nil {
		return 0, nc.opError("write", ctx.Err())
	}
	// Send may still use the data after ctx ended: give it a copy.
	data := append([]byte(nil), p...)
	if err := nc.c.Send(ctx, data, nil); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return sentAnyway(err, len(p)), nc.opError("write", cerr)
		}
		return 0, nc.opError("write", err)
	}
	return len(p), nil
}

// sentAnyway is what a Send that ended with its ctx wrote: all n bytes
// when the message had been handed over (Send returns ctx's error alone
// then, and the message is still sent), none when it had not (a
// *SendError: it waited for room in the send queue).
func sentAnyway(err error, n int) int {
	var se *SendError
	if errors.As(err, &se) {
		return 0
	}
	return n
}

// CloseWrite closes the Connection gracefully without releasing the
// net.Conn (see NetConn).
func (nc *netConn) CloseWrite() error {
	nc.wmu.Lock()
	defer nc.wmu.Unlock()
	if nc.isClosed() {
		return nc.opError("close", net.ErrClosed)
	}
	if nc.writeClosed {
		return nil
	}
	nc.writeClosed = true
	// an empty Final message is the end of the stream alone (FIN,
	// close_notify, a QUIC stream's FIN); with a framer it is framed as an
	// empty message first, which a peer's Read skips (a peer's Receive
	// gets it, empty and final). Reading goes on until the peer ends its
	// own stream.
	ctx := nc.wd.context()
	if err := nc.c.Send(ctx, nil, NewMessageContext().Final(true)); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nc.opError("close", cerr)
		}
		return nc.opError("close", err)
	}
	return nil
}

// Close implements net.Conn.
func (nc *netConn) Close() error {
	first := false
	nc.once.Do(func() {
		first = true
		close(nc.closed)
		nc.rd.close()
		nc.wd.close()
	})
	if !first {
		return nc.opError("close", net.ErrClosed)
	}
	// A Write in progress ends at once (its context is done); holding wmu,
	// the close is queued after the message it handed over, which is sent.
	var err error
	nc.wmu.Lock()
	select {
	case <-nc.c.Done():
		err = nc.c.Err() // it had ended already: a failure is reported
	default:
		_ = nc.c.Close() // ErrClosed when it has just ended: nothing to do
	}
	nc.wmu.Unlock()
	nc.discard()
	if err != nil {
		return nc.opError("close", err)
	}
	return nil
}

// discard drops the received data nobody will read now, as closing a
// socket does: a full receive buffer would otherwise stop the connection
// from reading the peer's end of stream, and the graceful close would
// last until the linger timeout.
func (nc *netConn) discard() {
	nc.rmu.Lock()
	defer nc.rmu.Unlock()
	nc.buf = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Receive still returns what is already there
	for {
		if _, err := nc.c.Receive(ctx, MinIncompleteLength(1)); err != nil {
			return
		}
	}
}

// LocalAddr implements net.Conn.
func (nc *netConn) LocalAddr() net.Addr { return nc.laddr }

// RemoteAddr implements net.Conn.
func (nc *netConn) RemoteAddr() net.Addr { return nc.raddr }

// SetDeadline implements net.Conn.
func (nc *netConn) SetDeadline(t time.Time) error {
	if nc.isClosed() {
		return nc.opError("set", net.ErrClosed)
	}
	nc.rd.set(t)
	nc.wd.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (nc *netConn) SetReadDeadline(t time.Time) error {
	if nc.isClosed() {
		return nc.opError("set", net.ErrClosed)
	}
	nc.rd.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (nc *netConn) SetWriteDeadline(t time.Time) error {
	if nc.isClosed() {
		return nc.opError("set", net.ErrClosed)
	}
	nc.wd.set(t)
	return nil
}

// deadline is a settable deadline as net.Pipe has one: ch is closed when
// the deadline passes or the conn is closed. Changing a deadline that has
// not passed keeps ch, so pending calls see the new deadline.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	ch     chan struct{}
	closed bool // the conn is closed: ch stays closed
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired: wait until its callback closed ch
	}
	d.timer = nil
	expired := isClosedChan(d.ch)
	if t.IsZero() {
		if expired {
			d.ch = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if expired {
			d.ch = make(chan struct{})
		}
		ch := d.ch
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !expired {
		close(d.ch)
	}
}

func (d *deadline) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired: wait until its callback closed ch
	}
	d.timer = nil
	if !isClosedChan(d.ch) {
		close(d.ch)
	}
}

// context returns a context that ends when the deadline passes (Err:
// os.ErrDeadlineExceeded) or the conn is closed (Err: net.ErrClosed).
func (d *deadline) context() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &deadlineCtx{d: d, ch: d.ch}
}

// deadlineCtx is a context.Context ended by a deadline's channel. It
// carries no values and no Deadline: the deadline may move.
type deadlineCtx struct {
	d  *deadline
	ch chan struct{}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *deadlineCtx) Done() <-chan struct{}       { return c.ch }
func (c *deadlineCtx) Value(any) any               { return nil }
func (c *deadlineCtx) Err() error {
	if !isClosedChan(c.ch) {
		return nil
	}
	c.d.mu.Lock()
	closed := c.d.closed
	c.d.mu.Unlock()
	if closed {
		return net.ErrClosed
	}
	return os.ErrDeadlineExceeded
}

// NetListener returns a net.Listener view of the Listener for code written
// against the standard library (http.Server.Serve, ...): Accept returns the
// next received Connection as a net.Conn (see Connection.NetConn); Close
// stops the Listener and returns once it has stopped (connections already
// accepted stay open, those received but not accepted are aborted) and
// makes pending and later Accepts return an error wrapping net.ErrClosed; Addr is
// Listener.Addr (never nil). It is safe for concurrent use. Do not mix it
// with Accept or OnConnectionReceived on the same Listener.
func (l *Listener) NetListener() net.Listener {
	ctx, cancel := context.WithCancel(context.Background())
	return &netListener{l: l, ctx: ctx, cancel: cancel}
}

type netListener struct {
	l      *Listener
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// netListenerStopWait bounds how long net.Listener.Close waits for the
// Listener to stop.
const netListenerStopWait = 5 * time.Second

// errNotAccepted aborts the connections a closed net.Listener received
// but never returned.
var errNotAccepted = errors.New("net.Listener closed before the connection was accepted")

// Accept implements net.Listener.
func (nl *netListener) Accept() (net.Conn, error) {
	var st *actors.ConnectionStarted
	err := nl.ctx.Err()
	if err == nil {
		st, err = nl.l.q.Accept(nl.ctx)
	}
	if err == nil && nl.ctx.Err() != nil { // taken as Close drained the queue
		tell(nl.l.sys, st.Conn, &messages.AbortConnection{Err: errNotAccepted})
		err = nl.ctx.Err()
	}
	if err != nil {
		if nl.ctx.Err() != nil {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: nl.Addr().Network(), Addr: nl.Addr(), Err: err}
	}
	return nl.l.wrap(st).NetConn(), nil
}

// Close implements net.Listener. It returns once the Listener has
// stopped (its sockets are closed); the connections it received and
// Accept did not return are aborted, as the kernel resets those left in a
// closed socket's backlog.
func (nl *netListener) Close() error {
	first := false
	nl.once.Do(func() {
		first = true
		nl.cancel()
		nl.l.Stop()
	})
	if !first {
		return &net.OpError{Op: "close", Net: nl.Addr().Network(), Addr: nl.Addr(), Err: net.ErrClosed}
	}
	t := time.NewTimer(netListenerStopWait)
	defer t.Stop()
	select {
	case <-nl.l.Done(): // no connection is queued after this
	case <-t.C:
	}
	done, cancel := context.WithCancel(context.Background())
	cancel() // Accept still returns what is queued
	for {
		st, err := nl.l.q.Accept(done)
		if err != nil {
			return nil
		}
		tell(nl.l.sys, st.Conn, &messages.AbortConnection{Err: errNotAccepted})
	}
}

// Addr implements net.Listener.
func (nl *netListener) Addr() net.Addr {
	if a := nl.l.Addr(); a != nil {
		return a
	}
	return &net.TCPAddr{}
}

// Dialer returns a dial function for code that wants one
// (http.Transport.DialContext, grpc.WithContextDialer, ...): each call
// initiates a Connection from a copy of pre whose remote endpoints are
// replaced by addr ("host:port"; host is an IP address or a host name,
// port a number or a service name, its IANA port: no DNS SRV record is
// looked up, as for net.Dial; an empty host is the local system, as for
// net.Dial) and returns its NetConn. ctx bounds the establishment
// only. network must be "tcp", "tcp4" or "tcp6" (or empty); "tcp4" and
// "tcp6" restrict the addresses raced to IPv4 or IPv6 (a host name's other
// family is not looked up; an IP address of the other family is a
// *net.OpError wrapping a *net.AddrError, before any packet), as net.Dial
// does; the protocol stack is still chosen by pre's transport properties.
// An establishment failure is a *net.OpError wrapping the
// *EstablishmentError.
// The function is safe for concurrent use; later changes to pre affect
// later dials.
func Dialer(pre *Preconnection) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch network {
		case "tcp", "tcp4", "tcp6", "":
		default:
			return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		if host == "" { // the local system, as net.Dial has it
			host = map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
			if host == "" {
				host = "localhost"
			}
			addr = net.JoinHostPort(host, port)
		}
		if a, err := netip.ParseAddr(host); err == nil && !familyFits(network, a) {
			return nil, &net.OpError{Op: "dial", Net: network,
				Err: &net.AddrError{Err: "no suitable address found", Addr: host}}
		}
		r, err := remoteFromHostPort(addr)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		q := pre.withRemotes(r)
		if network == "tcp4" || network == "tcp6" {
			q.resolver.LookupNetIP = familyLookup(network, q.resolver.IPLookup())
		}
		c, err := q.Initiate(ctx)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		return c.NetConn(), nil
	}
}

// familyFits reports whether a is of the family network ("tcp4", "tcp6")
// restricts the dial to; any address fits "tcp".
func familyFits(network string, a netip.Addr) bool {
	switch network {
	case "tcp4":
		return a.Unmap().Is4()
	case "tcp6":
		return a.Is6() && !a.Is4In6()
	}
	return true
}

// familyLookup wraps lookup (nil: net.DefaultResolver's) for a dial
// restricted to network's family ("tcp4", "tcp6"): the other family's
// query is answered "not found" without being sent, and addresses of the
// other family are dropped from an answer.
func familyLookup(network string, lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)) func(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	want := map[string]string{"tcp4": "ip4", "tcp6": "ip6"}[network]
	return func(ctx context.Context, ipnet, host string) ([]netip.Addr, error) {
		if ipnet != want {
			return nil, &net.DNSError{Err: "no address of this family (" + network + " dial)", Name: host, IsNotFound: true}
		}
		addrs, err := lookup(ctx, ipnet, host)
		out := addrs[:0:0]
		for _, a := range addrs {
			if familyFits(network, a) {
				out = append(out, a)
			}
		}
		return out, err
	}
}

// remoteFromHostPort parses "host:port" into a RemoteEndpoint; a port
// given by service name is its IANA port (TCP first), as for net.Dial:
// no SRV records are looked up.
func remoteFromHostPort(addr string) (*RemoteEndpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	r := NewRemoteEndpoint()
	if a, err := netip.ParseAddr(host); err == nil {
		r.WithIPAddress(a.String())
	} else if host != "" {
		r.WithHostName(host)
	} else {
		return nil, &EndpointError{Endpoint: addr, Err: errors.New("no host")}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		r.WithPort(uint16(n))
	} else if port != "" {
		// a service name is a TCP port, as net.Dial has it: no SRV lookup
		n, err := servicePort(port, "tcp")
		if err != nil {
			return nil, &EndpointError{Endpoint: addr, Err: fmt.Errorf("unknown service %q", port)}
		}
		r.WithPort(uint16(n))
	} else {
		return nil, &EndpointError{Endpoint: addr, Err: fmt.Errorf("no port")}
	}
	return r, nil
}

// withRemotes returns a copy of p whose remote endpoints are rs.
func (p *Preconnection) withRemotes(rs ...*RemoteEndpoint) *Preconnection {
	q := p.clone()
	q.remotes = rs
	return q
}
