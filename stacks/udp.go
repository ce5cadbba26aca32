package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
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
// before it drops newer ones; [UDPPeerQueueBytes] bounds their bytes.
const UDPPeerQueue = 256

// UDPPeerQueueBytes bounds the bytes of the datagrams a UDP listener
// buffers per peer (1 MiB): a datagram that would take a peer's queue
// beyond it is dropped, unless the queue is empty (a datagram of any
// size gets through alone). Without it a peer whose application does not
// read could make the listener hold UDPPeerQueue datagrams of 64 KiB,
// 16 MiB, whatever the connection's receive buffer.
const UDPPeerQueueBytes = 1 << 20

// udpPeerQueueLen is UDPPeerQueue; tests shrink it before Listen.
var udpPeerQueueLen = UDPPeerQueue

// UDPAcceptQueue is the number of new peers a UDP listener holds until
// they are accepted (the backlog: a burst of new remotes waits here while
// the application takes them one by one); the first datagram of a new peer
// beyond it is dropped. [UDPAcceptQueueBytes] bounds their datagrams'
// bytes.
const UDPAcceptQueue = 1024

// UDPAcceptQueueBytes bounds the bytes of the datagrams a UDP listener
// buffers for all its peers not yet accepted together (4 MiB): a datagram
// beyond it, from a new peer or from one waiting to be accepted, is
// dropped. Without it, UDPAcceptQueue peers (one source port each) that
// the application does not take could make the listener hold their
// UDPPeerQueueBytes each, 1 GiB.
const UDPAcceptQueueBytes = 4 << 20

type udpStack struct{}

// UDP returns the connected-UDP stack for the unreliable-datagram profile:
// every Write sends one datagram and every Read returns exactly one
// (message boundaries are preserved), with no reliability, ordering or
// congestion control. It applies Options.Local, Interface, DSCP and
// SoftErrors. Its Transports (dialled and accepted) implement SocketInfo,
// TOSDatagrams (per-datagram TOS/ECN on receive and send) and
// SoftErrorNotifier; ICMP errors never fail their Read or Write.
//
// Its Listener uses one socket and demultiplexes by remote address: Accept
// returns one Transport per peer, created by the first datagram from that
// peer. On Linux a Listener bound to the wildcard address tells peers apart
// by 4-tuple (the remote address and the local address the peer sends to,
// IP_PKTINFO / IPV6_RECVPKTINFO), and answers each from the local address
// it sends to, which is its Transport's LocalAddr (elsewhere the kernel
// picks the source by route). Closing the Listener stops accepting new peers; the socket stays
// open until the last peer Transport is closed too.
func UDP() Stack { return udpStack{} }

func (udpStack) Name() string { return "udp" }

func (udpStack) Capabilities() Capabilities {
	return Capabilities{
		PreserveMsgBoundaries: true,
		FullChecksumSend:      true,
		FullChecksumRecv:      true,
		SoftErrorNotify:       softErrorsDelivered, // Options.SoftErrors
	}
}

func (udpStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	d := net.Dialer{Control: withPathControl(socketControl(opts, sockUDP), opts)}
	if opts.Local.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(opts.Local)
	}
	c, err := d.DialContext(ctx, "udp", remote.String())
	if err != nil {
		return nil, err
	}
	t, err := newUDPTransport(c.(*net.UDPConn), "udp", opts)
	if err != nil {
		return nil, err
	}
	if err := t.sendToGroup(remote.Addr(), opts); err != nil {
		return nil, err
	}
	return t, nil
}

// sendToGroup configures t, dialled to remote, as a multicast sender when
// remote is a multicast group (multicast.go); it closes t on error.
func (t *udpTransport) sendToGroup(remote netip.Addr, opts Options) error {
	if !remote.IsMulticast() {
		return nil
	}
	if err := setupMulticastSender(t.UDPConn, remote, opts); err != nil {
		_ = t.Close()
		return err
	}
	t.group = remote
	return nil
}

// newUDPTransport wraps a connected UDP (or UDP-Lite) socket, enabling
// IP_RECVTOS and, with opts.SoftErrors, IP_RECVERR. It closes c on error.
func newUDPTransport(c *net.UDPConn, stack string, opts Options) (*udpTransport, error) {
	if err := configureUDPSocket(c, opts.SoftErrors); err != nil {
		_ = c.Close()
		return nil, err
	}
	t := &udpTransport{UDPConn: c, stack: stack}
	if opts.SoftErrors {
		t.soft = newSoftErrors()
	}
	return t, nil
}

// udpTransport is a connected UDP socket.
type udpTransport struct {
	*net.UDPConn
	stack string      // "udp" or "udplite"
	soft  *softErrors // nil unless Options.SoftErrors
	df    dfState     // noFragmentation's switch (nofrag.go)
	// peer is the remote address of a socket adopted with net.FileConn
	// (UDP-Lite, rendezvous): the runtime does not know such a socket is
	// connected, and WriteMsgUDP needs the address; nil for a dialled one
	peer *net.UDPAddr
	// group is the multicast group the transport sends to (sendToGroup);
	// the zero Addr for unicast
	group netip.Addr
}

// Read returns one datagram; see ErrMessageTruncated.
func (t *udpTransport) Read(b []byte) (int, error) {
	n, _, err := t.readMsg(b)
	return n, err
}

// Write sends b as one datagram.
func (t *udpTransport) Write(b []byte) (int, error) { return t.write(b, nil) }

// Close closes the socket and the SoftErrors channel.
func (t *udpTransport) Close() error {
	err := t.UDPConn.Close()
	if t.soft != nil {
		t.soft.close()
	}
	return err
}

// SoftErrors returns the ICMP error channel; see SoftErrorNotifier.
func (t *udpTransport) SoftErrors() <-chan error { return t.soft.chanOf() }

// CloseWrite does nothing: UDP has no end-of-stream signal.
func (t *udpTransport) CloseWrite() error { return nil }

// Abort is Close: UDP has no reset.
func (t *udpTransport) Abort() error { return t.Close() }

func (t *udpTransport) Info() (TransportInfo, error) {
	info := udpInfoFor(t.RemoteAddr())
	info.Stack = t.stack
	info.SoftErrors = t.soft != nil
	rc, err := t.SyscallConn()
	if err != nil {
		return info, err
	}
	if err := readSockInfo(rc, sockUDP, &info); err != nil {
		return info, err
	}
	info.SingularMsgMaxLen = udpSingularMax(t.UDPConn)
	if t.group.IsValid() {
		info.Multicast = true
		if info.MulticastHopLimit, err = multicastHopLimit(t.UDPConn, t.group); err != nil {
			return info, err
		}
	}
	return info, nil
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
	lc := net.ListenConfig{Control: withPathControl(socketControl(opts, sockUDP), opts)}
	local := opts.Local
	if isMulticastListen(opts) { // multicast.go
		lc.Control = multicastListenControl(lc.Control)
		local = multicastBindAddr(local)
		if uc, ok, err := listenGroupUDP(lc.Control, local); ok {
			if err != nil {
				return nil, err
			}
			return newUDPListener(uc, "udp", opts)
		}
	}
	network, addr := listenAddr("udp", local)
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newUDPListener(pc.(*net.UDPConn), "udp", opts)
}

// newUDPListener serves a bound UDP (or UDP-Lite) socket, enabling
// IP_RECVTOS and, with opts.SoftErrors, IP_RECVERR. It closes conn on
// error.
func newUDPListener(conn *net.UDPConn, stack string, opts Options) (*udpListener, error) {
	return newUDPListenerReading(conn, conn, stack, opts)
}

// udpMsgReader is the read side of a listener's socket: the socket
// itself, or in the tests a wrapper of it.
type udpMsgReader interface {
	ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error)
}

// newUDPListenerReading is newUDPListener reading the datagrams from rd
// (conn, or a test's wrapper of it).
func newUDPListenerReading(conn *net.UDPConn, rd udpMsgReader, stack string, opts Options) (*udpListener, error) {
	if err := configureUDPSocket(conn, opts.SoftErrors); err != nil {
		_ = conn.Close()
		return nil, err
	}
	var mcast *multicastMembership
	var err error
	switch {
	case isMulticastListen(opts):
		if mcast, err = joinMulticast(conn, opts.Local.Addr(), opts.MulticastSource, opts.Interface); err != nil {
			_ = conn.Close()
			return nil, err
		}
	case opts.MulticastSource.IsValid():
		_ = conn.Close()
		return nil, fmt.Errorf("multicast source %s without a multicast group to listen on", opts.MulticastSource)
	}
	l := &udpListener{
		mcast:      mcast,
		ignore:     ignoredSender(mcast, opts.MulticastIgnore),
		conn:       conn,
		rd:         rd,
		stack:      stack,
		softErrors: opts.SoftErrors,
		peers:      map[udpPeerKey]*udpPeer{},
		accept:     make(chan *udpPeer, UDPAcceptQueue),
		stopped:    make(chan struct{}),
		done:       make(chan struct{}),
		sockClosed: make(chan struct{}),
	}
	if l.dst, err = enableRecvDst(conn); err != nil { // udpsrc_linux.go
		_ = conn.Close()
		return nil, fmt.Errorf("set IP_PKTINFO / IPV6_RECVPKTINFO: %w", err)
	}
	if stack == "udplite" { // its socket was made with this coverage
		l.cov = &covState{def: opts.SendChecksumLen, cur: opts.SendChecksumLen}
	}
	go l.readLoop()
	return l, nil
}

// udpListener owns one socket and a reader goroutine that hands every
// datagram to the queue of its peer's Transport.
type udpListener struct {
	conn       *net.UDPConn
	rd         udpMsgReader // conn's read side (conn itself but in tests)
	stack      string       // "udp" or "udplite"
	softErrors bool         // IP_RECVERR set: peers get SoftErrors
	// mcast is the listener's membership of its multicast group (nil:
	// unicast); Close leaves the group
	mcast  *multicastMembership
	ignore netip.AddrPort // Options.MulticastIgnore: datagrams dropped unseen
	// dst: the socket is bound to the wildcard address and reports each
	// datagram's destination address (udpsrc_linux.go), which tells the
	// peers apart with the remote address and is their answers' source
	dst        bool
	accept     chan *udpPeer // peers not yet accepted
	stopped    chan struct{} // closed by Close
	done       chan struct{} // closed when readLoop ended
	sockClosed chan struct{} // closed with the socket: ends readLoop's wait

	mu     sync.Mutex
	peers  map[udpPeerKey]*udpPeer
	closed bool // socket closed
	// pendingBytes: the bytes queued for the peers not yet accepted
	// (udpPeer.pending), at most UDPAcceptQueueBytes
	pendingBytes int

	df dfState // noFragmentation's switch, shared by the peers (nofrag.go)
	// cov is UDP-Lite's send coverage switch, shared by the peers, each of
	// which sends with its own (udplite.go); nil for UDP
	cov *covState

	stopOnce sync.Once
	// Dropped counts datagrams dropped because a peer's queue or the
	// accept queue was full.
	dropped atomic.Uint64
}

// The wait before reading again after a read failed with an error that
// is not an ICMP error (the want of buffers or memory, ENOBUFS, ENOMEM, or
// an error of the socket that may recur): from udpReadRetryMin, doubling
// up to udpReadRetryMax, and from udpReadRetryMin again after a datagram.
const (
	udpReadRetryMin = 5 * time.Millisecond
	udpReadRetryMax = time.Second
)

// readLoop reads the socket until it is closed and hands every datagram
// to its peer. An ICMP error reported by a read (isSoftErrno: ECONNREFUSED,
// ...; one per ICMP message, which the read consumes) goes to the peer it
// concerns (softError) and the reading goes on at once: a peer's ICMP
// errors must not delay the others' datagrams. Any other error (ENOBUFS,
// ENOMEM, ...) keeps the socket: the reading goes on after a wait
// (udpReadRetryMin to udpReadRetryMax), which the closing of the socket
// ends at once, so that an error that keeps coming back does not spin.
func (l *udpListener) readLoop() {
	defer close(l.done)
	buf := make([]byte, 65536)
	oobSpace := tosOOBSpace
	if l.dst {
		oobSpace += dstOOBSpace
	}
	oob := make([]byte, oobSpace)
	var wait time.Duration // the last wait after a read error, 0 after a datagram
	for {
		n, oobn, _, from, err := l.rd.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				l.closeAllPeers()
				return
			case isSoftErrno(err, true):
				l.softError() // e.g. ECONNREFUSED from an ICMP error: keep serving others
			default:
				wait = min(max(2*wait, udpReadRetryMin), udpReadRetryMax)
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-l.sockClosed:
					t.Stop() // the next read reports net.ErrClosed
				}
			}
			continue
		}
		wait = 0
		key := udpPeerKey{remote: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}
		var tos uint8
		if l.dst {
			tos, key.local = parseTOSDst(oob[:oobn])
			if key.local.IsLinkLocalUnicast() { // on the interface the peer's datagram came by
				key.local = key.local.WithZone(key.remote.Addr().Zone())
			}
		} else {
			tos = parseTOS(oob[:oobn])
		}
		msg := udpDatagram{b: append([]byte(nil), buf[:n]...), tos: tos}
		l.deliver(key, msg)
	}
}

// udpPeerKey tells a listener's peers apart: the remote address and, on a
// socket bound to the wildcard address (udpListener.dst), the local
// address the peer sends to (the zero Addr otherwise): one peer per
// 4-tuple.
type udpPeerKey struct {
	local  netip.Addr
	remote netip.AddrPort
}

// udpDatagram is one received datagram and its TOS byte.
type udpDatagram struct {
	b   []byte
	tos uint8
}

// softError hands the queued ICMP errors to the peers they concern (by
// the destination of the datagram that caused them).
func (l *udpListener) softError() {
	if !l.softErrors {
		return
	}
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return
	}
	for _, se := range drainErrQueue(rc) {
		l.mu.Lock()
		to := l.peersAt(se.Dest)
		l.mu.Unlock()
		for _, p := range to {
			p.soft.deliver(se)
		}
	}
}

// peersAt returns the peers at dest (with l.mu): the one keyed so, or on
// a wildcard socket each that sends to one of its addresses. A link-local
// dest carries its zone, named after the interface as the peers' keys
// (the addresses the datagrams came from) are; should the names differ
// (the net package's cache of interface names lags behind an interface
// that was just made again), the peers at the address on any interface
// get it.
func (l *udpListener) peersAt(dest netip.AddrPort) []*udpPeer {
	if p := l.peers[udpPeerKey{remote: dest}]; p != nil {
		return []*udpPeer{p}
	}
	if !l.dst && dest.Addr().Zone() == "" {
		return nil
	}
	var to, unzoned []*udpPeer
	for k, p := range l.peers {
		switch {
		case k.remote == dest:
			to = append(to, p)
		case dest.Addr().Zone() != "" && k.remote.Port() == dest.Port() &&
			k.remote.Addr().WithZone("") == dest.Addr().WithZone(""):
			unzoned = append(unzoned, p)
		}
	}
	if len(to) == 0 {
		return unzoned
	}
	return to
}

func (l *udpListener) deliver(from udpPeerKey, msg udpDatagram) {
	if from.remote == l.ignore {
		return // this host's own sender (Options.MulticastIgnore): not a peer
	}
	n := len(msg.b)
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[from]
	if p == nil {
		select {
		case <-l.stopped:
			l.dropped.Add(1)
			return
		default:
		}
		if l.pendingBytes+n > UDPAcceptQueueBytes {
			l.dropped.Add(1) // the peers not yet accepted hold enough
			return
		}
		p = newUDPPeer(l, from)
		select {
		case l.accept <- p:
			l.peers[from] = p
		default:
			l.dropped.Add(1)
			return
		}
	}
	// the byte bounds (a datagram alone in its peer's queue is taken
	// whatever its size, as long as the peers not yet accepted have room)
	if (p.pending && l.pendingBytes+n > UDPAcceptQueueBytes) ||
		(len(p.queue) > 0 && int(p.bytes.Load())+n > UDPPeerQueueBytes) {
		p.dropped.Add(1)
		l.dropped.Add(1)
		return
	}
	p.bytes.Add(int64(n)) // before the queue: ReadMsg takes it off after
	select {
	case p.queue <- msg:
		if p.pending {
			l.pendingBytes += n
		}
	default:
		p.bytes.Add(-int64(n))
		p.dropped.Add(1)
		l.dropped.Add(1)
	}
}

// Accept returns the Transport of the next new peer.
func (l *udpListener) Accept() (Transport, error) {
	select {
	case p := <-l.accept:
		l.mu.Lock()
		l.acceptedLocked(p)
		l.mu.Unlock()
		return p, nil
	case <-l.stopped:
		return nil, net.ErrClosed
	}
}

// acceptedLocked takes the bytes queued for p, taken from the accept
// queue (accepted, or dropped with the listener), off pendingBytes. l.mu
// is held: until then only deliver, under it too, changed p.bytes.
func (l *udpListener) acceptedLocked(p *udpPeer) {
	if p.pending {
		p.pending = false
		l.pendingBytes -= int(p.bytes.Load())
	}
}

// Close stops accepting new peers, and leaves the listener's multicast
// group. Peers already accepted keep working; the socket is closed with
// the last of them.
func (l *udpListener) Close() error {
	var err error
	l.stopOnce.Do(func() {
		if l.mcast != nil {
			err = l.mcast.leave()
		}
		close(l.stopped)
		l.mu.Lock()
		// Peers never accepted are dropped with the listener.
		for {
			select {
			case p := <-l.accept:
				delete(l.peers, p.key)
				l.acceptedLocked(p)
				p.markClosed()
				continue
			default:
			}
			break
		}
		l.maybeCloseLocked()
		l.mu.Unlock()
	})
	return err
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
		close(l.sockClosed)
		_ = l.conn.Close()
	}
}

func (l *udpListener) closeAllPeers() {
	l.mu.Lock()
	peers := l.peers
	l.peers = map[udpPeerKey]*udpPeer{}
	l.mu.Unlock()
	for _, p := range peers {
		p.markClosed()
	}
}

func (l *udpListener) removePeer(p *udpPeer) {
	l.mu.Lock()
	if l.peers[p.key] == p {
		delete(l.peers, p.key)
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
	l      *udpListener
	key    udpPeerKey
	remote netip.AddrPort // key.remote
	// src is the control message that sends from the address the peer
	// sends to (srcOOB; nil unless the listener's socket is bound to the
	// wildcard address)
	src     []byte
	queue   chan udpDatagram
	bytes   atomic.Int64 // the bytes of the datagrams in queue
	pending bool         // not accepted yet (guarded by l.mu)
	soft    *softErrors  // nil unless the listener has SoftErrors
	closed  chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	rd      deadline
	// own is the peer's own DSCP (connCapacityProfile set on the accepted
	// connection, setOwnDSCP): nil while the peer follows the shared
	// socket's.
	own atomic.Pointer[peerTOS]
	// sendCov is a UDP-Lite peer's send coverage (Options.SendChecksumLen's
	// convention; udpLitePeer.SetSendChecksumLen), which every datagram
	// it writes carries (covState)
	sendCov atomic.Int32
}

// peerTOS is the DSCP every datagram of one peer carries unless it has a
// TOS of its own (WriteMsg), and the control message that sets it.
type peerTOS struct {
	dscp uint8
	oob  []byte // IP_TOS / IPV6_TCLASS control message, read-only
}

// setOwnDSCP gives the peer a DSCP of its own: every later datagram Write
// or WriteNoFrag (without a TOS) sends to it carries dscp, with the ECN
// bits Not-ECT as setDSCP leaves a socket, in an IP_TOS / IPV6_TCLASS
// control message. The listener's socket, shared by every peer, is not
// touched. It fails with errors.ErrUnsupported where datagrams cannot
// carry their own TOS (Windows).
func (p *udpPeer) setOwnDSCP(dscp uint8) error {
	oob, err := tosOOB(p.remote.Addr(), TOS(dscp, NotECT))
	if err != nil {
		return err
	}
	p.own.Store(&peerTOS{dscp: dscp, oob: oob})
	return nil
}

// ownOOB is the control message of the peer's own DSCP (nil: none).
func (p *udpPeer) ownOOB() []byte {
	if o := p.own.Load(); o != nil {
		return o.oob
	}
	return nil
}

func newUDPPeer(l *udpListener, key udpPeerKey) *udpPeer {
	p := &udpPeer{l: l, key: key, remote: key.remote, src: srcOOB(key.local, key.remote.Addr()), queue: make(chan udpDatagram, udpPeerQueueLen), pending: true, closed: make(chan struct{}), rd: makeDeadline()}
	if l.softErrors {
		p.soft = newSoftErrors()
	}
	if l.cov != nil {
		p.sendCov.Store(int32(l.cov.def))
	}
	return p
}

func (p *udpPeer) markClosed() {
	p.once.Do(func() {
		close(p.closed)
		if p.soft != nil {
			p.soft.close()
		}
	})
}

// Read returns the next datagram from the peer; see ErrMessageTruncated.
func (p *udpPeer) Read(b []byte) (int, error) {
	n, _, err := p.ReadMsg(b)
	return n, err
}

// ReadMsg returns the next datagram from the peer and its TOS byte; see
// TOSDatagrams and ErrMessageTruncated.
func (p *udpPeer) ReadMsg(b []byte) (int, uint8, error) {
	select {
	case <-p.closed:
		return 0, 0, net.ErrClosed
	default:
	}
	select {
	case msg := <-p.queue:
		p.bytes.Add(-int64(len(msg.b)))
		n := copy(b, msg.b)
		if n < len(msg.b) {
			return n, msg.tos, ErrMessageTruncated
		}
		return n, msg.tos, nil
	case <-p.closed:
		return 0, 0, net.ErrClosed
	case <-p.rd.wait():
		return 0, 0, os.ErrDeadlineExceeded
	}
}

// Write sends b as one datagram to the peer (fragmentation allowed: a
// shared socket a peer's WriteNoFrag switched is switched back first),
// with the peer's own DSCP when it has one (setOwnDSCP).
func (p *udpPeer) Write(b []byte) (int, error) { return p.writeDF(b, p.ownOOB(), false) }

// WriteMsg sends b as one datagram to the peer with its own TOS byte (over
// the peer's own DSCP); see TOSDatagrams.
func (p *udpPeer) WriteMsg(b []byte, tos uint8) (int, error) {
	oob, err := tosOOB(p.remote.Addr(), tos)
	if err != nil {
		return 0, err
	}
	return p.writeDF(b, oob, false)
}

// write sends one datagram; a pending ICMP error the shared socket reports
// instead (sk_err, set with IP_RECVERR) is handed out and the send retried.
func (p *udpPeer) write(b, oob []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	for i := 0; ; i++ {
		var n int
		var err error
		switch {
		case p.l.cov != nil: // UDP-Lite: the peer's own checksum coverage
			n, err = p.l.cov.send(p.l.conn, int(p.sendCov.Load()), func() (int, error) { return p.writeTo(b, oob) })
		default:
			n, err = p.writeTo(b, oob)
		}
		if err != nil && i < 3 && isSoftErrno(err, false) {
			p.l.softError()
			continue
		}
		return n, err
	}
}

// writeTo writes one datagram to the peer on the shared socket, from the
// address the peer sends to (src) on a wildcard socket.
func (p *udpPeer) writeTo(b, oob []byte) (int, error) {
	if p.src != nil {
		if oob == nil {
			oob = p.src
		} else {
			oob = append(append(make([]byte, 0, len(p.src)+len(oob)), p.src...), oob...)
		}
	}
	if oob == nil {
		return p.l.conn.WriteToUDPAddrPort(b, p.remote)
	}
	n, _, err := p.l.conn.WriteMsgUDPAddrPort(b, oob, p.remote)
	return n, err
}

// SoftErrors returns the peer's ICMP error channel (nil unless the
// listener was made with Options.SoftErrors); see SoftErrorNotifier.
func (p *udpPeer) SoftErrors() <-chan error { return p.soft.chanOf() }

// Close removes the peer from its listener; a later datagram from the
// same address creates a new peer.
func (p *udpPeer) Close() error {
	p.markClosed()
	p.rd.stop()
	p.l.removePeer(p)
	return nil
}

func (p *udpPeer) CloseWrite() error { return nil }
func (p *udpPeer) Abort() error      { return p.Close() }

// LocalAddr is the address the peer sends to on a socket bound to the
// wildcard address, the socket's address otherwise.
func (p *udpPeer) LocalAddr() net.Addr {
	la := p.l.conn.LocalAddr()
	if ua, ok := la.(*net.UDPAddr); ok && p.key.local.IsValid() {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.key.local, uint16(ua.Port)))
	}
	return la
}
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
	info.Stack = p.l.stack
	info.SoftErrors = p.soft != nil
	info.Multicast = p.l.mcast != nil
	select {
	case <-p.closed:
		return info, net.ErrClosed
	default:
	}
	rc, err := p.l.conn.SyscallConn()
	if err != nil {
		return info, err
	}
	if err := readSockInfo(rc, sockUDP, &info); err != nil {
		return info, err
	}
	if o := p.own.Load(); o != nil {
		info.DSCP = o.dscp // set per datagram, not on the shared socket
	}
	// the listener's socket is not connected to the peer: a probe is
	info.SingularMsgMaxLen, _ = probeSingularMax(net.UDPAddrFromAddrPort(p.remote))
	return info, nil
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
