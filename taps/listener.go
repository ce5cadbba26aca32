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
)

// NoConnectionLimit is the default (infinite) new-connection limit of a
// Listener.
const NoConnectionLimit int64 = -1

// A Listener receives connections (RFC 9622 §7.2). Its methods are safe for
// concurrent use.
type Listener struct {
	sys    *System
	pid    *actor.PID
	q      *actors.ListenQueue
	addrs  []net.Addr
	ifaces []string // the interface each of addrs is bound to, or ""
	cfg    *messages.ConnectionConfig
	h      connHandlers
}

func newListener(sys *System, st *actors.ListenerStarted, cfg *messages.ConnectionConfig, h connHandlers) *Listener {
	return &Listener{sys: sys, pid: st.PID, q: st.Queue, addrs: st.Addrs, ifaces: st.Ifaces, cfg: cfg, h: h}
}

func (l *Listener) wrap(st *actors.ConnectionStarted) *Connection {
	c := connectionOf(l.sys, st, l.cfg)
	c.installHandlers(connHandlers{closed: l.h.closed, connectionError: l.h.connectionError})
	return c
}

// Accept waits for the next ConnectionReceived event and returns its
// connection, already Established (there is no Ready event for it). After
// Stop it returns an error unwrapping to ErrClosed.
func (l *Listener) Accept(ctx context.Context) (*Connection, error) {
	st, err := l.q.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return l.wrap(st), nil
}

// OnConnectionReceived makes every received connection go to fn instead of
// Accept, one at a time, in order.
func (l *Listener) OnConnectionReceived(fn func(*Listener, *Connection)) {
	l.q.SetHandlers(func(st *actors.ConnectionStarted) { fn(l, l.wrap(st)) }, nil)
}

// LocalEndpoints returns where the Listener listens, one endpoint per
// listening socket: its address with port 0 resolved and, when the socket
// is bound to an interface (WithInterface, or an interface Require), that
// interface.
func (l *Listener) LocalEndpoints() []*LocalEndpoint {
	out := make([]*LocalEndpoint, 0, len(l.addrs))
	for i, a := range l.addrs {
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
		if i < len(l.ifaces) && l.ifaces[i] != "" {
			le = le.WithInterface(l.ifaces[i])
		}
		out = append(out, le)
	}
	return out
}

// Addr returns the first listening address as a net.Addr.
func (l *Listener) Addr() net.Addr {
	if len(l.addrs) == 0 {
		return nil
	}
	return l.addrs[0]
}

// SetNewConnectionLimit sets how many more connections the Listener
// delivers (RFC 9622 §7.2): each ConnectionReceived decrements it; at 0 no
// more are delivered (new ones wait in the kernel's backlog) until it is
// raised. NoConnectionLimit (the default) means infinite.
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
// not affected. Done is closed once it has stopped.
func (l *Listener) Stop() {
	tell(l.sys, l.pid, &messages.StopListener{})
}

// Refused returns how many peers the Listener refused because they were
// not one of its remote endpoints (see Preconnection.Listen).
func (l *Listener) Refused() uint64 { return l.q.Refused() }

// Done is closed when the Listener has stopped (the Stopped event).
func (l *Listener) Done() <-chan struct{} { return l.q.Done() }
