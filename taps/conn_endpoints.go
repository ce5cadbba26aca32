package taps

import (
	"context"
	"errors"
	"fmt"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// ErrEndpointRemoved: the endpoint a connection was using was removed
// (RemoveRemote, RemoveLocal); the error is an *EndpointRemovedError.
var ErrEndpointRemoved = supervision.ErrEndpointRemoved

// EndpointRemovedError says that the endpoint a connection was using was
// removed. It is the error of the Reestablishing event of a connection
// that switches to its other endpoints, and the cause in the
// *ConnectionError of one that cannot (which was aborted: it also unwraps
// to ErrAborted). It unwraps to ErrEndpointRemoved.
type EndpointRemovedError = supervision.EndpointRemovedError

// AddRemote adds remote endpoints to the connection (RFC 9622 §7.5). A
// connection keeps the set of remote endpoints it was made from (the
// Preconnection's; for a connection received by a Listener, its peer's
// address; a received connection is never re-established),
// and its next establishment uses that set: re-establishment under
// WithReestablishment, and Clone, which goes to the remote in use first and
// falls back to the others. gotaps uses one path at a time (no multipath):
// adding an endpoint does not open a path to it now. Endpoints already in
// the set are ignored. An invalid endpoint is an *EndpointError (unwrapping
// to ErrInvalidEndpoint) and nothing changes. A host name's service with
// no IANA port is valid, as for Initiate (RemoteEndpoint.WithService):
// the next establishment looks up its SRV records for its port. Allowed while Establishing
// or Established; otherwise a *StateError unwrapping to ErrNotAllowed.
func (c *Connection) AddRemote(ctx context.Context, remotes ...*RemoteEndpoint) error {
	eps, err := remoteMessages(remotes)
	if err != nil {
		return err
	}
	return c.changeEndpoints(ctx, &actors.ChangeEndpoints{Endpoints: eps})
}

// RemoveRemote removes remote endpoints from the connection's set (RFC
// 9622 §7.5); endpoints not in the set are ignored. Removing one the
// connection does not use only changes what its next establishment tries.
// Removing the one in use (the same address and port; for a host name, the
// name whose address the connection was established to) changes the path:
// a connection with WithReestablishment and other remotes left is
// established again to them at once (OnReestablishing with an
// *EndpointRemovedError, attempt 1 of a new row of the policy's attempts
// whatever the row before had spent, then OnReestablished; messages not
// yet sent get a SendError); any other connection (no policy, a received connection, or no
// remote left: removing every remote) is aborted, and its ConnectionError
// wraps an *EndpointRemovedError. RemoveRemote returns once the set has
// changed; it reports only errors of its own (as AddRemote).
func (c *Connection) RemoveRemote(ctx context.Context, remotes ...*RemoteEndpoint) error {
	eps, err := remoteMessages(remotes)
	if err != nil {
		return err
	}
	return c.changeEndpoints(ctx, &actors.ChangeEndpoints{Endpoints: eps, Remove: true})
}

// AddLocal adds local endpoints to the connection (RFC 9622 §7.5), as
// AddRemote does remote ones. An establishment binds to the first local
// endpoint of the set (none: any address, an ephemeral port), so an added
// one is used once those before it are removed. It opens no path now.
func (c *Connection) AddLocal(ctx context.Context, locals ...*LocalEndpoint) error {
	eps, err := localMessages(locals)
	if err != nil {
		return err
	}
	return c.changeEndpoints(ctx, &actors.ChangeEndpoints{Endpoints: eps, Local: true})
}

// RemoveLocal removes local endpoints from the connection's set (RFC 9622
// §7.5), as RemoveRemote does remote ones. A local endpoint is in use when
// it has the connection's local address and its port is 0 or the
// connection's; one named by host name or interface, or with a wildcard
// address, when it is the first of the set and the connection was bound to
// it. Removing the one in use re-establishes a connection with
// WithReestablishment (from the next local endpoint, or any address when
// none is left) and aborts any other with an *EndpointRemovedError.
//
// A connection this side initiated over QUIC migrates instead (RFC 9000
// §9), with or without WithReestablishment, when another local endpoint
// is left in the set (an IP address of the remote's family other than the
// current one, a host name, or an interface): its session moves to a new
// UDP socket bound to the first such endpoint (with the original socket's
// options), once a probe of the new path (at most 5 s) is answered. The
// old socket keeps reading, however long, until QUIC has switched to the
// new path (which it does at its next packet sent or received: the
// server's packets still sent to the old address are read there, and
// acknowledged from the new path, which makes the server follow), and 5 s
// more; it is closed then, or at once when the connection ends. Every
// stream of the session carries on, so every member of the connection
// group sharing it: nothing is lost, there is no Reestablishing event,
// the connection stays Established (and keeps sending on the old path
// while the new one is probed), and OnPathChange
// fires with the new local address, on this connection and on the other
// members of the group on the same session (their endpoint sets are their
// own and do not change). When the probe or the bind fails, the removal
// has the effect above, and the *EndpointRemovedError's Reason says that
// the migration failed. The route monitor's path loss (OnPathChange; only
// for connections with WithReestablishment) migrates the same way when
// another local endpoint of the set has an IP address that is up. The
// accepting side cannot migrate (RemoveLocal there aborts as before);
// when its peer migrates, its connections on that session follow (see
// OnPathChange): ConnectionInfo's remote endpoint and Endpoints' remote
// set show the peer's new address, and each connection with an
// OnPathChange handler fires it once.
func (c *Connection) RemoveLocal(ctx context.Context, locals ...*LocalEndpoint) error {
	eps, err := localMessages(locals)
	if err != nil {
		return err
	}
	return c.changeEndpoints(ctx, &actors.ChangeEndpoints{Endpoints: eps, Local: true, Remove: true})
}

// Endpoints returns the connection's remote and local endpoint sets, as
// AddRemote, RemoveRemote, AddLocal and RemoveLocal left them: what its
// next establishment uses. For a connection received by a Listener they
// start as its peer's address and the address it was accepted on. Once the
// connection is Closed it returns a *StateError.
func (c *Connection) Endpoints(ctx context.Context) ([]*RemoteEndpoint, []*LocalEndpoint, error) {
	sets, err := c.endpointSets(ctx)
	if err != nil {
		return nil, nil, err
	}
	remotes := make([]*RemoteEndpoint, 0, len(sets.Remotes))
	for _, m := range sets.Remotes {
		remotes = append(remotes, remoteFromEndpoint(m))
	}
	locals := make([]*LocalEndpoint, 0, len(sets.Locals))
	for _, m := range sets.Locals {
		locals = append(locals, localFromEndpoint(m))
	}
	return remotes, locals, nil
}

// endpointSets reads the connection's endpoint sets and ConnectionInfo
// (Endpoints, Clone).
func (c *Connection) endpointSets(ctx context.Context) (*actors.EndpointSets, error) {
	return askEndpoints(ctx, c, &actors.ChangeEndpoints{})
}

func (c *Connection) changeEndpoints(ctx context.Context, cmd *actors.ChangeEndpoints) error {
	if len(cmd.Endpoints) == 0 {
		return nil // nothing to add or remove (an empty command is a read)
	}
	if st := c.link.State(); !st.Allows(actors.OpChangeEndpoints) {
		return &actors.StateError{Op: actors.OpChangeEndpoints, State: st}
	}
	_, err := askEndpoints(ctx, c, cmd)
	return err
}

// askEndpoints sends cmd to the connection actor and awaits its reply, or
// the actor's stop (Gone; a command queued as it stopped gets no answer).
// Not the connection's Done: that comes after its last event handler, and
// a handler calling Endpoints or Clone would wait for its own return.
func askEndpoints(ctx context.Context, c *Connection, cmd *actors.ChangeEndpoints) (*actors.EndpointSets, error) {
	closed := &actors.StateError{Op: actors.OpChangeEndpoints, State: actors.Closed}
	if c.sys.s.IsShutdown() {
		return nil, ErrSystemShutdown
	}
	if c.link.State() == actors.Closed {
		return nil, closed
	}
	res, err := actors.AskUnlessDone(ctx, c.sys.s, c.pid, cmd, c.link.Gone())
	if errors.Is(err, actors.ErrActorGone) {
		return nil, closed
	}
	if err != nil {
		return nil, err
	}
	sets, ok := res.(*actors.EndpointSets)
	if !ok {
		return nil, fmt.Errorf("taps: unexpected reply %T", res)
	}
	return sets, nil
}

// remoteMessages validates remote endpoints as a Preconnection does.
func remoteMessages(remotes []*RemoteEndpoint) ([]*messages.Endpoint, error) {
	out := make([]*messages.Endpoint, 0, len(remotes))
	for _, r := range remotes {
		if r == nil {
			return nil, &EndpointError{Err: errors.New("nil RemoteEndpoint")}
		}
		r.e.mu.Lock()
		isPath := r.e.path != ""
		r.e.mu.Unlock()
		var m *messages.Endpoint
		var err error
		if isPath {
			m, err = r.e.toMessage(false, false)
		} else {
			// as Initiate: a host name's service may have no IANA port,
			// its port coming from the SRV records at the next establishment
			m, err = r.e.toInitiateMessage()
		}
		if err != nil {
			return nil, err
		}
		if m.Multicast {
			return nil, &EndpointError{Endpoint: groupLabel(m), Err: errMulticastAdded}
		}
		out = append(out, m)
	}
	return out, nil
}

// localMessages validates local endpoints as a Preconnection does.
func localMessages(locals []*LocalEndpoint) ([]*messages.Endpoint, error) {
	out := make([]*messages.Endpoint, 0, len(locals))
	for _, l := range locals {
		if l == nil {
			return nil, &EndpointError{Err: errors.New("nil LocalEndpoint")}
		}
		m, err := l.e.toMessage(false, false)
		if err != nil {
			return nil, err
		}
		if m.Multicast {
			return nil, &EndpointError{Endpoint: groupLabel(m), Err: errMulticastAdded}
		}
		out = append(out, m)
	}
	return out, nil
}

// remoteFromEndpoint and localFromEndpoint turn a set's endpoint back into
// the application's type, keeping every identifier it had.
func remoteFromEndpoint(m *messages.Endpoint) *RemoteEndpoint {
	r := remoteFromMessage(m)
	r.e.service, r.e.protocol = m.Service, m.Protocol
	return r
}

func localFromEndpoint(m *messages.Endpoint) *LocalEndpoint {
	l := localFromMessage(m)
	l.e.service, l.e.protocol = m.Service, m.Protocol
	return l
}

// cloneEndpoints are the endpoints of a Clone: the remote the original
// uses first (Clone opens a connection to it), then the rest of its remote
// set to fall back on, and its local set.
func cloneEndpoints(cur *messages.Endpoint, sets *actors.EndpointSets) (remotes, locals []*messages.Endpoint) {
	remotes = []*messages.Endpoint{{IpAddress: cur.IpAddress, Port: cur.Port, Interface: cur.Interface}}
	for _, r := range sets.Remotes {
		if r.Path == "" && r.HostName == "" && r.Port == cur.Port && r.IpAddress == cur.IpAddress {
			continue // the one in use, first already
		}
		remotes = append(remotes, r)
	}
	return remotes, sets.Locals
}
