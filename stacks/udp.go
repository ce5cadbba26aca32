package stacks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Largest UDP payloads: 65535 minus the IPv4 (20) or IPv6 (0, the IPv6
// header is not counted in its payload length) header and the UDP header
// (8).
const (
	udpMaxPayload4 = 65507
	udpMaxPayload6 = 65527
)

// ErrMessageTruncated is returned by a UDP Transport's Read when the
// datagram did not fit into the buffer; the first len(b) bytes were
// copied and the rest is lost.
var ErrMessageTruncated = errors.New("datagram larger than the read buffer (truncated)")

// UDPPeerQueue is the number of datagrams a UDP listener buffers per peer
// before it drops newer ones.
const UDPPeerQueue = 256

// udpPeerQueueLen is UDPPeerQueue; tests shrink it before Listen.
var udpPeerQueueLen = UDPPeerQueue

type udpStack struct{}

// UDP returns the connected-UDP stack for the unreliable-datagram profile:
// every Write sends one datagram and every Read returns exactly one
// (message boundaries are preserved), with no reliability, ordering or
// congestion control. It applies Options.Local, Interface and DSCP.
//
// Its Listener uses one socket and demultiplexes by remote address: Accept
// returns one Transport per peer, created by the first datagram from that
// peer. Closing the Listener stops accepting new peers; the socket stays
// open until the last peer Transport is closed too.
func UDP() Stack { return udpStack{} }

func (udpStack) Name() string { return "udp" }

func (udpStack) Capabilities() Capabilities {
	return Capabilities{
		PreserveMsgBoundaries: true,
		FullChecksumSend:      true,
		FullChecksumRecv:      true,
	}
}

func (udpStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	d := net.Dialer{Control: socketControl(opts, sockUDP)}
	if opts.Local.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(opts.Local)
	}
	c, err := d.DialContext(ctx, "udp", remote.String())
	if err != nil {
		return nil, err
	}
	return &udpTransport{UDPConn: c.(*net.UDPConn)}, nil
}

// udpTransport is a connected UDP socket.
type udpTransport struct{ *net.UDPConn }

// Read returns one datagram; see ErrMessageTruncated.
func (t *udpTransport) Read(b []byte) (int, error) {
	n, _, flags, _, err := t.ReadMsgUDP(b, nil)
	if err == nil && flags&unix.MSG_TRUNC != 0 {
		err = ErrMessageTruncated
	}
	return n, err
}

// CloseWrite does nothing: UDP has no end-of-stream signal.
func (t *udpTransport) CloseWrite() error { return nil }

// Abort is Close: UDP has no reset.
func (t *udpTransport) Abort() error { return t.Close() }

func (t *udpTransport) Info() (TransportInfo, error) {
	info := udpInfoFor(t.RemoteAddr())
	rc, err := t.SyscallConn()
	if err != nil {
		return info, err
	}
	return info, readSockInfo(rc, sockUDP, &info)
}

func udpInfoFor(remote net.Addr) TransportInfo {
	max := udpMaxPayload6
	if ua, ok := remote.(*net.UDPAddr); ok && ua.AddrPort().Addr().Unmap().Is4() {
		max = udpMaxPayload4
	}
	return TransportInfo{
		Stack:         "udp",
		SendMsgMaxLen: MaxLen{Bytes: max},
		RecvMsgMaxLen: MaxLen{Bytes: max},
	}
}

func (udpStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	lc := net.ListenConfig{Control: socketControl(opts, sockUDP)}
	network, addr := listenAddr("udp", opts.Local)
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	l := &udpListener{
		conn:    pc.(*net.UDPConn),
		peers:   map[netip.AddrPort]*udpPeer{},
		accept:  make(chan *udpPeer, 64),
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go l.readLoop()
	return l, nil
}

// udpListener owns one socket and a reader goroutine that hands every
// datagram to the queue of its peer's Transport.
type udpListener struct {
	conn    *net.UDPConn
	accept  chan *udpPeer // peers not yet accepted
	stopped chan struct{} // closed by Close
	done    chan struct{} // closed when readLoop ended

	mu     sync.Mutex
	peers  map[netip.AddrPort]*udpPeer
	closed bool // socket closed

	stopOnce sync.Once
	// Dropped counts datagrams dropped because a peer's queue or the
	// accept queue was full.
	dropped atomic.Uint64
}

func (l *udpListener) readLoop() {
	defer close(l.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.closeAllPeers()
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP error: keep serving others
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		msg := append([]byte(nil), buf[:n]...)
		l.deliver(from, msg)
	}
}

func (l *udpListener) deliver(from netip.AddrPort, msg []byte) {
	l.mu.Lock()
	p := l.peers[from]
	if p == nil {
		select {
		case <-l.stopped:
			l.mu.Unlock()
			l.dropped.Add(1)
			return
		default:
		}
		p = newUDPPeer(l, from)
		select {
		case l.accept <- p:
			l.peers[from] = p
		default:
			l.mu.Unlock()
			l.dropped.Add(1)
			return
		}
	}
	l.mu.Unlock()
	select {
	case p.queue <- msg:
	default:
		p.dropped.Add(1)
		l.dropped.Add(1)
	}
}

// Accept returns the Transport of the next new peer.
func (l *udpListener) Accept() (Transport, error) {
	select {
	case p := <-l.accept:
		return p, nil
	case <-l.stopped:
		return nil, net.ErrClosed
	}
}

// Close stops accepting new peers. Peers already accepted keep working;
// the socket is closed with the last of them.
func (l *udpListener) Close() error {
	l.stopOnce.Do(func() {
		close(l.stopped)
		l.mu.Lock()
		// Peers never accepted are dropped with the listener.
		for {
			select {
			case p := <-l.accept:
				delete(l.peers, p.remote)
				p.markClosed()
				continue
			default:
			}
			break
		}
		l.maybeCloseLocked()
		l.mu.Unlock()
	})
	return nil
}

// maybeCloseLocked closes the socket when the listener is closed and no
// peer is left. l.mu is held.
func (l *udpListener) maybeCloseLocked() {
	select {
	case <-l.stopped:
	default:
		return
	}
	if len(l.peers) == 0 && !l.closed {
		l.closed = true
		_ = l.conn.Close()
	}
}

func (l *udpListener) closeAllPeers() {
	l.mu.Lock()
	peers := l.peers
	l.peers = map[netip.AddrPort]*udpPeer{}
	l.mu.Unlock()
	for _, p := range peers {
		p.markClosed()
	}
}

func (l *udpListener) removePeer(p *udpPeer) {
	l.mu.Lock()
	if l.peers[p.remote] == p {
		delete(l.peers, p.remote)
	}
	l.maybeCloseLocked()
	l.mu.Unlock()
}

func (l *udpListener) Addr() net.Addr { return l.conn.LocalAddr() }

// Dropped returns how many datagrams the listener dropped because a queue
// was full.
func (l *udpListener) Dropped() uint64 { return l.dropped.Load() }

// udpPeer is the Transport of one remote address on a udpListener.
type udpPeer struct {
	l       *udpListener
	remote  netip.AddrPort
	queue   chan []byte
	closed  chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	rd      deadline
}

func newUDPPeer(l *udpListener, remote netip.AddrPort) *udpPeer {
	return &udpPeer{l: l, remote: remote, queue: make(chan []byte, udpPeerQueueLen), closed: make(chan struct{}), rd: makeDeadline()}
}

func (p *udpPeer) markClosed() { p.once.Do(func() { close(p.closed) }) }

// Read returns the next datagram from the peer; see ErrMessageTruncated.
func (p *udpPeer) Read(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case msg := <-p.queue:
		n := copy(b, msg)
		if n < len(msg) {
			return n, ErrMessageTruncated
		}
		return n, nil
	case <-p.closed:
		return 0, net.ErrClosed
	case <-p.rd.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

// Write sends b as one datagram to the peer.
func (p *udpPeer) Write(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	return p.l.conn.WriteToUDPAddrPort(b, p.remote)
}

// Close removes the peer from its listener; a later datagram from the
// same address creates a new peer.
func (p *udpPeer) Close() error {
	p.markClosed()
	p.rd.stop()
	p.l.removePeer(p)
	return nil
}

func (p *udpPeer) CloseWrite() error    { return nil }
func (p *udpPeer) Abort() error         { return p.Close() }
func (p *udpPeer) LocalAddr() net.Addr  { return p.l.conn.LocalAddr() }
func (p *udpPeer) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(p.remote) }
func (p *udpPeer) SetReadDeadline(t time.Time) error {
	p.rd.set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: writes to the shared socket do
// not wait for the peer.
func (p *udpPeer) SetWriteDeadline(time.Time) error { return nil }
func (p *udpPeer) SetDeadline(t time.Time) error {
	p.rd.set(t)
	return nil
}

func (p *udpPeer) Info() (TransportInfo, error) {
	info := udpInfoFor(p.RemoteAddr())
	select {
	case <-p.closed:
		return info, net.ErrClosed
	default:
	}
	rc, err := p.l.conn.SyscallConn()
	if err != nil {
		return info, err
	}
	return info, readSockInfo(rc, sockUDP, &info)
}

// deadline is a settable read deadline that a select can wait on (the
// shape of net.Pipe's pipeDeadline).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passed
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its close
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) stop() {
	d.mu.Lock()
	if d.timer != nil && d.timer.Stop() {
		d.timer = nil
	}
	d.mu.Unlock()
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
