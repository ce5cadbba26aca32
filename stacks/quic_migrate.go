package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

// QUIC connection migration (RFC 9000 §9) on the side that dialed: the
// connection moves, with every stream of it, to a new UDP socket bound to
// another local address. quic-go lets only the client migrate
// ((*quic.Conn).AddPath); the server follows (its Conn.RemoteAddr becomes
// the client's new address once that path carries non-probing packets).

// Migrator is implemented by the stream Transports of a QUIC connection.
// It is safe to call its methods concurrently with the Transport's.
type Migrator interface {
	// CanMigrate reports whether this side may migrate the connection: it
	// dialed it (quic-go: a server cannot initiate a migration). The peer
	// may still have disabled active migration (Migrate then fails).
	CanMigrate() bool
	// Migrate moves the whole connection (every stream of it) to a new UDP
	// socket bound to local (an invalid local: the wildcard address of the
	// peer's family, an ephemeral port) with the socket options of the
	// socket Dial made; iface, when not empty, replaces the interface
	// binding (Options.Interface). It probes the new path (PATH_CHALLENGE,
	// RFC 9000 §8.2) for at most QUICProbeTimeout or until ctx is done,
	// then switches to it; the old socket keeps reading until quic-go has
	// switched and quicDrainTime longer (see there), or until the
	// connection ends. It returns the new local address. On failure the
	// connection stays on its old path, untouched. One migration runs at a time (another waits for it).
	Migrate(ctx context.Context, local netip.AddrPort, iface string) (net.Addr, error)
}

// QUICProbeTimeout bounds the probing of a new path by Migrate: three
// probe timeouts of the connection, at least QUICMinProbe and at most
// QUICMaxProbe.
const (
	QUICMinProbe = time.Second
	QUICMaxProbe = 5 * time.Second
)

// ErrMigrationNotPossible: the connection cannot migrate (this side did
// not dial it, or it has ended).
var ErrMigrationNotPossible = errors.New("QUIC connection migration not possible")

// quicUDP is what a quic.Transport is given to read and write: the UDP
// socket, or (dialed connections) the quicSocket over it.
type quicUDP interface {
	net.PacketConn
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
}

// quicSocket is the UDP socket of a connection this side dialed, as its
// quic.Transport reads it. quic-go registers the connection with every
// Transport it used (the first one, and each path's); closing such a
// Transport, or a read error on it, destroys the connection. A socket the
// connection migrated away from is therefore retired rather than closed
// with its Transport: its writes are dropped, and its Transport's reads,
// once they fail, wait until the Transport is closed with the connection
// (release). Its file descriptor stays open, and reads, until the
// connection has left it and quicDrainTime longer (see there).
type quicSocket struct {
	*net.UDPConn
	batch   *ipv4.PacketConn // recvmmsg, as quic-go does for a *net.UDPConn
	tr      *quic.Transport
	retired atomic.Bool
	stop    chan struct{} // closed once a retired socket's reads may return
	once    sync.Once
	// armed: a migration switched the connection to this socket, and
	// quic-go has not written on it since; its next write calls
	// switched (quicDialPath.switchSeen), set before armed.
	armed    atomic.Bool
	switched func(*quicSocket)
	// drain: the timer that closes the file descriptor of a retired
	// socket that still reads (guarded by quicDialPath.mu)
	drain *time.Timer
}

func newQUICSocket(udp *net.UDPConn) *quicSocket {
	return &quicSocket{UDPConn: udp, batch: ipv4.NewPacketConn(udp), stop: make(chan struct{})}
}

// held makes a read that failed on a retired socket wait for the end.
func (s *quicSocket) held(err error) error {
	if err != nil && s.retired.Load() {
		<-s.stop
	}
	return err
}

// ReadBatch is quic-go's batch read (its batchConn).
func (s *quicSocket) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	n, err := s.batch.ReadBatch(ms, flags)
	return n, s.held(err)
}

func (s *quicSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := s.UDPConn.ReadFrom(b)
	return n, a, s.held(err)
}

func (s *quicSocket) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, oobn, flags, addr, err = s.UDPConn.ReadMsgUDP(b, oob)
	return n, oobn, flags, addr, s.held(err)
}

// WriteMsgUDP and WriteTo: a retired socket's writes are dropped, not
// failed. A migration retires the old socket as soon as Switch returns,
// but quic-go switches on its run loop and drains the old send queue
// after it; a write error there would destroy the connection. What is
// dropped is lost on the old path, and sent again on the new one.
//
// A write that fails because the path is gone (the local address removed,
// the link down, no route: pathGone) is dropped too, as a loss: quic-go
// ends the whole connection at any write error but a too large datagram,
// while the route monitor's migration (or re-establishment) of the
// connection is on its way; if the path never comes back and nothing
// moves the connection, its idle timeout ends it.
func (s *quicSocket) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, oobn, _, err = s.writeMsg(b, oob, addr)
	return n, oobn, err
}

func (s *quicSocket) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, _, err := s.writeTo(b, addr)
	return n, err
}

// writeMsg is WriteMsgUDP; dropped tells that the write was dropped (a
// retired socket, or an error dropped as a loss) rather than sent. The
// ICMP watch of a Dial reads the error queue after a dropped write
// (quicICMPSocket.icmp).
func (s *quicSocket) writeMsg(b, oob []byte, addr *net.UDPAddr) (n, oobn int, dropped bool, err error) {
	s.noteWrite()
	if !s.retired.Load() {
		if n, oobn, err = s.UDPConn.WriteMsgUDP(b, oob, addr); err == nil || (!s.retired.Load() && !pathGone(err)) {
			return n, oobn, false, err
		}
	}
	return len(b), len(oob), true, nil
}

// writeTo is WriteTo, and tells whether the write was dropped (writeMsg).
func (s *quicSocket) writeTo(b []byte, addr net.Addr) (n int, dropped bool, err error) {
	s.noteWrite()
	if !s.retired.Load() {
		if n, err = s.UDPConn.WriteTo(b, addr); err == nil || (!s.retired.Load() && !pathGone(err)) {
			return n, false, err
		}
	}
	return len(b), true, nil
}

// noteWrite: quic-go's first write on a socket a migration switched it
// to, once Switch has returned, tells that its run loop has switched (see
// quicDrainTime). One atomic load per write.
func (s *quicSocket) noteWrite() {
	if s.armed.Load() && s.armed.CompareAndSwap(true, false) {
		s.switched(s)
	}
}

// pathGone tells whether a write failed because its path is gone rather
// than because of the socket or the datagram.
func pathGone(err error) bool {
	return errors.Is(err, syscall.ENETDOWN) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// SetReadDeadline: quic-go's Transport.Close sets one to end its reads;
// on a retired socket it lets them return (its file descriptor may be
// closed: the error is moot).
func (s *quicSocket) SetReadDeadline(t time.Time) error {
	if s.retired.Load() {
		s.unhold()
		_ = s.UDPConn.SetReadDeadline(t) // a draining socket still reads
		return nil
	}
	return s.UDPConn.SetReadDeadline(t)
}

func (s *quicSocket) unhold() { s.once.Do(func() { close(s.stop) }) }

// retire drops the socket's writes and holds its failed reads; its
// Transport stays until close.
func (s *quicSocket) retire() { s.retired.Store(true) }

// shut closes a retired socket's file descriptor (its reads then fail,
// and are held); its Transport stays until close.
func (s *quicSocket) shut() { _ = s.UDPConn.Close() }

// close closes the Transport and the socket.
func (s *quicSocket) close() {
	_ = s.tr.Close()
	s.unhold()
	_ = s.UDPConn.Close()
}

// quicDialPath is the path state of a connection this side dialed.
type quicDialPath struct {
	remote net.Addr // the peer (quic-go's Conn.RemoteAddr reads a field a migration rewrites)

	mig     sync.Mutex // one migration at a time
	cur     atomic.Pointer[quicSocket]
	mu      sync.Mutex    // guards retired, waiting, released and the sockets' drain
	retired []*quicSocket // sockets left by migrations (and failed probes)
	// waiting: the retired sockets that read until quic-go's switch to
	// the current socket is seen (see quicDrainTime)
	waiting []*quicSocket
	// released: the connection ended and its sockets were closed
	released bool
	// state is the connection's ConnectionState, taken before the first
	// migration: quic-go's ConnectionState reads a field its run loop
	// rewrites when it switches paths. stateMu orders the live reads
	// before it is taken.
	stateMu sync.RWMutex
	state   atomic.Pointer[quic.ConnectionState]
}

// connectionState is conn.ConnectionState, safe against a migration.
func (c *quicConn) connectionState() quic.ConnectionState {
	d := c.dial
	if d == nil {
		return c.conn.ConnectionState()
	}
	if st := d.state.Load(); st != nil {
		return *st
	}
	d.stateMu.RLock()
	defer d.stateMu.RUnlock()
	if st := d.state.Load(); st != nil {
		return *st
	}
	return c.conn.ConnectionState()
}

// release closes every socket of the connection (it has ended).
func (d *quicDialPath) release() {
	d.mu.Lock()
	d.released = true
	socks := append(d.retired, d.cur.Load())
	d.retired, d.waiting = nil, nil
	for _, s := range socks {
		if s.drain != nil {
			s.drain.Stop()
		}
	}
	d.mu.Unlock()
	for _, s := range socks {
		s.close()
	}
}

// quicDrainTime: a socket the connection migrated away from keeps reading
// until quic-go has switched, and this long after it (it drains), before
// its file descriptor is closed; the connection's end closes it at once.
//
// Path.Switch does not switch: quic-go's run loop does, when it next
// wakes up (a packet read, a timer, something to send). The peer (a
// quic-go server) follows a migration only once it has validated the new
// path and received a non-probing packet (an ACK will do) on it (RFC 9000
// §9.3); until then it sends everything (ACKs, stream data,
// RETIRE_CONNECTION_ID) to the old address. Were the old socket closed at
// once, a connection on which this side sends nothing (a download) would
// stall whenever the run loop had nothing pending at the switch: the
// server's packets lost at the closed socket, nothing waking the run
// loop to send from the new path, the server never following, until the
// idle timeout. Reading, the old socket hands them to the connection,
// which wakes, switches, and acknowledges them from the new path: the
// server follows. So the old socket reads, however long, until quic-go's
// first write on the new socket after Switch returned (switchSeen: a
// write there means the run loop has switched, or switches before its
// next send, a path probe written late having scheduled one), and then
// for quicDrainTime, which covers the server's packets sent before that
// write reaches it, or before a later one does if it is lost. A second
// migration before that write moves the wait to the newer socket: quic-go
// switches only to the last path it was told to (a → b → c may skip b).
// The drain also lets the server, when it switched to b after it began
// validating c, retire the connection ID it gave c's path and have a new
// one: it sends RETIRE_CONNECTION_ID on b, which this side must read.
//
// The rule costs one atomic load per write, and keeps a retired socket's
// file descriptor open while the connection neither sends nor receives
// after the migration (bounded by its life: release closes every socket).
const quicDrainTime = QUICMaxProbe

// testHookMigrateProbed, when set, runs in migrate between the answered
// probe of the new path and the switch to it.
var testHookMigrateProbed atomic.Pointer[func()]

// keep retires s and closes its file descriptor (a failed probe's
// socket: the connection never used it), or closes it when the
// connection has ended.
func (d *quicDialPath) keep(s *quicSocket) {
	d.mu.Lock()
	if !d.released {
		s.retire()
		d.retired = append(d.retired, s)
		s.shut()
		s = nil
	}
	d.mu.Unlock()
	if s != nil {
		s.close()
	}
}

// switchTo makes s the connection's socket once Path.Switch has returned:
// the one it replaces is retired, reading until quic-go's switch is seen
// (switchSeen) and quicDrainTime longer. It is false, and s is closed,
// when the connection has ended.
func (d *quicDialPath) switchTo(s *quicSocket) bool {
	d.mu.Lock()
	if d.released {
		d.mu.Unlock()
		s.close()
		return false
	}
	old := d.cur.Swap(s)
	old.armed.Store(false) // a late write on it no longer tells anything
	old.retire()
	d.retired = append(d.retired, old)
	d.waiting = append(d.waiting, old)
	s.switched = d.switchSeen
	s.armed.Store(true)
	d.mu.Unlock()
	return true
}

// switchSeen: quic-go wrote on s after a migration switched to it: the
// sockets waiting for that switch drain for quicDrainTime. A write on a
// socket another migration has replaced since tells nothing (the wait
// moved to the newer one).
func (d *quicDialPath) switchSeen(s *quicSocket) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released || d.cur.Load() != s {
		return
	}
	for _, w := range d.waiting {
		w.drain = time.AfterFunc(quicDrainTime, w.shut)
	}
	d.waiting = nil
}

// socket is the UDP socket the connection uses now.
func (c *quicConn) socket() *net.UDPConn {
	if c.dial != nil {
		return c.dial.cur.Load().UDPConn
	}
	return c.udp
}

func (c *quicConn) localAddr() net.Addr {
	if c.dial != nil {
		return c.dial.cur.Load().LocalAddr()
	}
	return c.conn.LocalAddr()
}

func (c *quicConn) remoteAddr() net.Addr {
	if c.dial != nil {
		return c.dial.remote
	}
	return c.conn.RemoteAddr() // the server's: atomic in quic-go, follows the client's migration
}

// CanMigrate implements Migrator.
func (s *quicStream) CanMigrate() bool { return s.c.dial != nil }

// Migrate implements Migrator.
func (s *quicStream) Migrate(ctx context.Context, local netip.AddrPort, iface string) (net.Addr, error) {
	return s.c.migrate(ctx, local, iface)
}

func (c *quicConn) migrate(ctx context.Context, local netip.AddrPort, iface string) (net.Addr, error) {
	d := c.dial
	if d == nil {
		return nil, fmt.Errorf("%w: a server cannot initiate a migration", ErrMigrationNotPossible)
	}
	d.mig.Lock()
	defer d.mig.Unlock()
	if c.conn.Context().Err() != nil {
		return nil, fmt.Errorf("%w: the connection has ended", ErrMigrationNotPossible)
	}
	if d.state.Load() == nil { // before any switch: see connectionState
		d.stateMu.Lock()
		st := c.conn.ConnectionState()
		d.state.Store(&st)
		d.stateMu.Unlock()
	}
	opts := c.opts
	if iface != "" {
		opts.Interface = iface
	}
	if !local.IsValid() {
		wild := netip.IPv6Unspecified()
		if ra, ok := AddrPortOf(d.remote); ok && ra.Addr().Unmap().Is4() {
			wild = netip.IPv4Unspecified()
		}
		local = netip.AddrPortFrom(wild, local.Port())
	}
	opts.Local = local
	udp, err := listenUDPFor(ctx, opts, local)
	if err != nil {
		return nil, err
	}
	sock := newQUICSocket(udp)
	sock.tr = &quic.Transport{Conn: quicPacketConn(sock, opts)}
	path, err := c.conn.AddPath(sock.tr)
	if err != nil {
		sock.close() // never registered with the connection
		return nil, err
	}
	s := c.conn.ConnectionStats()
	bound := min(max(3*(s.SmoothedRTT+4*s.MeanDeviation+25*time.Millisecond), QUICMinProbe), QUICMaxProbe)
	pctx, cancel := context.WithTimeoutCause(ctx, bound, errors.New("no answer on the new path"))
	stop := context.AfterFunc(c.conn.Context(), cancel)
	err = path.Probe(pctx)
	stop()
	cancel()
	if h := testHookMigrateProbed.Load(); err == nil && h != nil {
		(*h)()
	}
	if err == nil {
		err = path.Switch()
	}
	if err != nil {
		_ = path.Close()
		d.keep(sock) // a PATH_CHALLENGE registered the connection with it
		return nil, fmt.Errorf("probing the path from %v: %w", local, err)
	}
	if !d.switchTo(sock) { // it ended meanwhile: nothing to switch
		return nil, fmt.Errorf("%w: the connection has ended", ErrMigrationNotPossible)
	}
	return udp.LocalAddr(), nil
}

// The accepting side of a migration: quic-go moves a connection it
// accepted to the peer's new address once it has validated the new path
// and received the highest-numbered non-probing packet on it (RFC 9000
// §9.3), and reports it nowhere but in Conn.RemoteAddr (an atomic load of
// a value it replaces then). A PeerMoveWatcher learns of it at the
// session's next read or write after the switch: every Read of a stream
// Transport of the session, every write (Write, TryWriteBuffers,
// WriteBuffers) and datagram sent or received checks it (notePeer). The
// check costs one atomic load while nobody watches the session; while
// some stream Transport watches it, two more atomic loads and a pointer
// comparison. Nothing is read or compared per packet.

// PeerMoveWatcher is implemented by the stream Transports of a QUIC
// connection: on one this side accepted, the peer may migrate it.
type PeerMoveWatcher interface {
	// WatchPeerMoves calls moved, on a goroutine of its own, each time
	// the connection's remote address (RemoteAddr, of every stream
	// Transport of it) has changed: once per change, to every watcher of
	// the connection, when a stream Transport of it next reads or writes
	// after quic-go switched to the peer's new path. stop ends the watch
	// (a moved already under way may still run once). ok is false, and
	// nothing is watched, on a connection this side dialed: its peer (a
	// server) does not migrate.
	WatchPeerMoves(moved func()) (stop func(), ok bool)
}

// quicMoves are the watchers of the peer's address of an accepted
// connection; a value is never modified (watchPeer replaces it).
type quicMoves struct {
	ws []*quicMoveWatch
}

type quicMoveWatch struct{ moved func() }

// WatchPeerMoves implements PeerMoveWatcher.
func (s *quicStream) WatchPeerMoves(moved func()) (stop func(), ok bool) {
	return s.c.watchPeer(moved)
}

func (c *quicConn) watchPeer(moved func()) (stop func(), ok bool) {
	if c.dial != nil {
		return nil, false
	}
	w := &quicMoveWatch{moved: moved}
	c.movesMu.Lock()
	defer c.movesMu.Unlock()
	m := c.moves.Load()
	if m == nil { // the first watcher: the address as it is now
		a := c.conn.RemoteAddr()
		c.seenPeer.Store(&a)
		m = &quicMoves{}
	}
	c.moves.Store(&quicMoves{ws: append(slices.Clip(m.ws), w)})
	return func() { c.unwatchPeer(w) }, true
}

func (c *quicConn) unwatchPeer(w *quicMoveWatch) {
	c.movesMu.Lock()
	defer c.movesMu.Unlock()
	m := c.moves.Load()
	if m == nil {
		return
	}
	ws := slices.DeleteFunc(slices.Clone(m.ws), func(x *quicMoveWatch) bool { return x == w })
	if len(ws) == 0 {
		c.moves.Store(nil)
		return
	}
	c.moves.Store(&quicMoves{ws: ws})
}

// notePeer tells the watchers of the connection when its remote address
// changed since the last check (see PeerMoveWatcher): the check of every
// read and write.
func (c *quicConn) notePeer() {
	if c.moves.Load() == nil {
		return
	}
	c.notePeerWatched()
}

func (c *quicConn) notePeerWatched() {
	a := c.conn.RemoteAddr() // only on an accepted connection: watchPeer
	old := c.seenPeer.Load()
	if *old == a || !c.seenPeer.CompareAndSwap(old, &a) {
		return // the same (quic-go stores a new address only on a switch), or another check reports it
	}
	m := c.moves.Load()
	if m == nil {
		return
	}
	go func() { // off the data path: the watchers may run actors
		for _, w := range m.ws {
			w.moved()
		}
	}()
}
