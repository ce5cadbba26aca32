package taps

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// NoConnectionLimit is the default (infinite) new-connection limit of a
// Listener.
const NoConnectionLimit int64 = -1

// DefaultAcceptSetupTimeout bounds the setup of a connection a Listener
// accepted (its TLS or QUIC handshake, then its framers' handshakes, up
// to ConnectionReceived) when its Preconnection has no
// WithEstablishmentTimeout: 10 s.
const DefaultAcceptSetupTimeout = actors.DefaultAcceptSetupTimeout

// A Listener receives connections (RFC 9622 §7.2). Its methods are safe for
// concurrent use.
//
// A Listener accepts only as fast as the application takes connections:
// it holds at most a backlog of them (WithAcceptBacklog, default 128)
// accepted and not yet taken, counted from accept (while being set up,
// then queued for Accept or for the ConnectionReceived handler) until
// Accept returns one or its handler call begins (the call running is not
// counted: handler calls run one at a time, so a handler that blocks
// holds up the next ones). At the bound it stops accepting and new peers
// wait in the kernel's listen backlog, as they would for a net.Listener
// nobody accepts from; they are accepted as the application takes the
// connections held. This bound and SetNewConnectionLimit both pause
// accepting: it resumes only when both allow it. Over TLS the handshakes
// run below that bound, ahead of it: up to 128 further peers have their
// TCP connection accepted and their TLS handshake completed meanwhile
// (their Initiate succeeds), each holding a socket, and wait so for the
// Listener to take them; only the peers after those wait in the kernel's
// backlog. QUIC peers wait likewise in quic-go's accept queue.
//
// The setup of an accepted connection (its framers' handshakes: a framer
// that waits for the peer before MakeConnectionReady) is bounded by the
// Preconnection's WithEstablishmentTimeout when set, else by 10 s
// ([DefaultAcceptSetupTimeout]): a connection not Ready by then is
// aborted (its peer sees a reset or the end of the stream) and its place
// in the backlog given back, without any event to the application, which
// never received it (traced: Kind "listener", Event "SetupTimeout").
// Peers that connect and send nothing thus cannot fill the backlog for
// ever. Connections without framers, or whose framers are ready at once,
// are not concerned. The same bound applies, before that, to the TLS or
// QUIC handshake of each connection the Listener accepts: a peer whose
// handshake has not completed by then is closed, never accepted.
//
// An accept that fails for want of a resource (the process or the system
// out of file descriptors, buffers or memory: EMFILE, ENFILE, ENOBUFS,
// ENOMEM) does not stop the Listener: as net/http's Server.Serve, it waits
// 5 ms, doubling up to 1 s while the accepts keep failing (from 5 ms again
// after one succeeds), and accepts again; the peers wait in the kernel's
// backlog meanwhile. Each wait is traced (Kind "listener", Event
// "AcceptRetry", Stack "tcp", "tls" or "unix", Error the accept's; TLS
// accepts under its handshakes, which go on meanwhile). Stop ends the
// wait at once. Any other accept error stops the Listener (Done, then
// Accept returns the error). UDP and QUIC have no accept to fail: they
// receive every peer on one socket, and a UDP Listener outlives the read
// errors on it.
type Listener struct {
	sys     *System
	pid     *actor.PID
	q       *actors.ListenQueue
	sockets *actors.ListenAddrs // where it listens now (updated by the listener)
	cfg     *messages.ConnectionConfig
	h       connHandlers
}

func newListener(sys *System, st *actors.ListenerStarted, cfg *messages.ConnectionConfig, h connHandlers) *Listener {
	sockets := st.Sockets
	if sockets == nil {
		sockets = &actors.ListenAddrs{}
	}
	sys.trackListener(st.Queue)
	return &Listener{sys: sys, pid: st.PID, q: st.Queue, sockets: sockets, cfg: cfg, h: h}
}

// wrap is the Connection of a received connection, accepted, with the
// Preconnection's Closed and ConnectionError handlers. A QUIC stream the
// peer opened may have been handed out already (GroupedConnections of
// another member of its session's group), and may be in use on other
// goroutines: it is the same Connection, and the handlers the application
// set on it stay.
func (l *Listener) wrap(st *actors.ConnectionStarted) *Connection {
	c := connectionOf(l.sys, st, l.cfg)
	c.accepted.Store(true)
	c.installMissingHandlers(connHandlers{closed: l.h.closed, connectionError: l.h.connectionError})
	return c
}

// Accept waits for the next ConnectionReceived event and returns its
// connection, already Established (there is no Ready event for it). After
// Stop it returns the connections already received, then an error
// unwrapping to ErrClosed.
func (l *Listener) Accept(ctx context.Context) (*Connection, error) {
	st, err := l.q.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return l.wrap(st), nil
}

// OnConnectionReceived makes every received connection go to fn instead of
// Accept, one at a time, in order. A panic in fn ends only that
// Connection (a *ConnectionError wrapping a *PanicError), and is reported
// (WithHandlerPanic). nil removes
// the handler: connections go to Accept again.
func (l *Listener) OnConnectionReceived(fn func(*Listener, *Connection)) {
	if fn == nil {
		l.q.SetConnHandler(nil)
		return
	}
	l.q.SetConnHandler(func(st *actors.ConnectionStarted) {
		c := l.wrap(st)
		if err := supervision.Contain("ConnectionReceived handler", func() { fn(l, c) }); err != nil {
			pe := err.(*PanicError)
			pe.ConnectionID = c.ID()
			tell(l.sys, c.pid, &messages.AbortConnection{Err: pe})
			l.sys.s.ReportPanicOf(pe, st.Link)
		}
	})
}

// OnStopped sets the handler of the Listener's end (RFC 9622 §7.2: the
// Stopped event, and the EstablishmentError of a Listener that fails
// after Listen returned): err is nil after Stop, otherwise a
// *EstablishmentError saying why it stopped (an accept error other than
// a lack of resources, see Listener). It is called once, after the
// ConnectionReceived calls of the connections received before the end
// (those still queued for Accept stay there), and at once on a Listener
// that has stopped already. A panic in fn is contained and reported
// (WithHandlerPanic). nil removes the handler.
func (l *Listener) OnStopped(fn func(l *Listener, err error)) {
	if fn == nil {
		l.q.SetStopHandler(nil)
		return
	}
	l.q.SetStopHandler(func(err error) {
		if err != nil {
			err = listenerError(err)
		}
		if perr := supervision.Contain("Stopped handler", func() { fn(l, err) }); perr != nil {
			l.sys.s.ReportPanic(perr.(*PanicError))
		}
	})
}

// Err returns why the Listener stopped: nil while it listens and after
// Stop, otherwise the *EstablishmentError that OnStopped gets.
func (l *Listener) Err() error {
	if err := l.q.Err(); err != nil {
		return listenerError(err)
	}
	return nil
}

// listenerError is the EstablishmentError of a Listener that an accept
// error stopped.
func listenerError(err error) *EstablishmentError {
	return &EstablishmentError{Reason: ReasonEstablishmentFailed, Err: fmt.Errorf("listener stopped: %w", err)}
}

// LocalEndpoints returns where the Listener listens now, one endpoint per
// listening socket: its address with port 0 resolved and, when the socket
// is bound to an interface (WithInterface, or the Interface property),
// that interface. A Listener whose Interface property Prohibits anything
// (an interface or a type of interface, whether it is up, down or absent
// at Listen) and Requires nothing has one socket on each up interface
// that is not Prohibited, the loopback included, and none unbound, so
// that the Prohibit holds for the Listener's whole life; on Linux it
// follows them: the result changes as allowed interfaces come up (a
// socket on the Listener's port) and go down or are removed (their socket
// closed; connections already received stay), and a Prohibited interface
// that comes up is not listened on. Listen fails (an [EstablishmentError]
// with a [*PathError]) when no allowed interface is up. Other Listeners
// (no Interface property, only Prefer and Avoid entries, or Required
// interfaces) keep the sockets bound at Listen; a socket bound to an
// interface on the wildcard address (WithInterface and no address) takes
// the addresses that interface gains later. After Stop it returns the
// last sockets. Each call reads the current set (a copy; it does not wait
// for the listener).
func (l *Listener) LocalEndpoints() []*LocalEndpoint {
	addrs, ifaces := l.sockets.Get()
	out := make([]*LocalEndpoint, 0, len(addrs))
	for i, a := range addrs {
		var ap netip.AddrPort
		switch v := a.(type) {
		case *net.TCPAddr:
			ap = v.AddrPort()
		case *net.UDPAddr:
			ap = v.AddrPort()
		case *net.UnixAddr:
			out = append(out, NewLocalEndpoint().WithUnixPath(v.Name))
			continue
		default:
			continue
		}
		le := NewLocalEndpoint().WithIPAddress(ap.Addr().Unmap().String()).WithPort(ap.Port())
		if i < len(ifaces) && ifaces[i] != "" {
			le = le.WithInterface(ifaces[i])
		}
		out = append(out, le)
	}
	return out
}

// Addr returns the first listening address as a net.Addr (nil when the
// Listener listens nowhere now: see LocalEndpoints).
func (l *Listener) Addr() net.Addr {
	addrs, _ := l.sockets.Get()
	if len(addrs) == 0 {
		return nil
	}
	return addrs[0]
}

// SetNewConnectionLimit sets how many more connections the Listener
// delivers (RFC 9622 §7.2): each ConnectionReceived decrements it; at 0 no
// more are delivered (new ones wait in the kernel's backlog; over TLS up
// to 128 of them with their handshake done first, see Listener) until it
// is raised. NoConnectionLimit (the default) means infinite, as does any
// negative limit. Connections already accepted when it reaches 0 are held
// (they count toward the backlog bound: WithAcceptBacklog) and delivered
// once it is raised. It waits at most 5 s for the Listener's actor.
func (l *Listener) SetNewConnectionLimit(limit int64) error {
	if limit < 0 {
		limit = NoConnectionLimit
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := call[bool](ctx, l.sys, l.pid, &messages.SetConnectionLimit{Limit: limit})
	if err != nil {
		return fmt.Errorf("set new connection limit: %w", err)
	}
	return nil
}

// Stop stops listening (RFC 9622 §7.2). Connections already received are
// not affected. Done is closed once it has stopped and its sockets are
// released (see Done).
func (l *Listener) Stop() {
	tell(l.sys, l.pid, &messages.StopListener{})
}

// Refused returns how many peers the Listener refused because they were
// not one of its remote endpoints (see Preconnection.Listen).
func (l *Listener) Refused() uint64 { return l.q.Refused() }

// Done is closed once the Listener has stopped (the Stopped event) and
// its sockets are closed, their ports free for a new Listener: TCP, TLS
// and Unix sockets are closed when it stops, and so are UDP and UDP-Lite
// sockets that no Connection it received is left on. A UDP or UDP-Lite
// Listener's socket is shared with the Connections it received (each is
// one peer's datagrams on that socket): while one of them is open when
// the Listener stops, the socket stays bound (the port in use, those
// Connections working; datagrams from new peers are dropped), is not
// waited for by Done, and is closed when the last of them ends, before
// that Connection's Done. A QUIC Listener's UDP
// socket is shared with the sessions it accepted, which may outlive it
// (README, "QUIC:"), and is closed once the last of them has ended. Done
// waits for the sessions that have no Connection left open when it stops
// (they end after a linger of at most 2 s), not for those whose
// Connections are still open: the socket is then closed when the last of
// those ends, before the Done of the Connection whose end ended it
// (however it ended: its graceful Close, at once as the active closer or
// after the linger as the passive one, an Abort, or the peer's end of
// the session; see Connection.Done), and before System.Shutdown returns.
// The sockets a Listener following its interfaces closed while it ran
// (an interface went down) are waited for likewise.
func (l *Listener) Done() <-chan struct{} { return l.q.Released() }
