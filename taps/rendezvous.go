package taps

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// ErrRendezvousUnsupported: the transport properties and protocols leave
// no stack that can rendezvous (tcp, tls, quic, udp, udplite; unix cannot).
// Rendezvous returns it inside an EstablishmentError, before any packet is
// sent.
var ErrRendezvousUnsupported = actors.ErrRendezvousUnsupported

// Rendezvous listens on the local endpoints and connects to the remote
// endpoints at the same time (RFC 9622 §7.3) and returns the first
// transport connection established: the RendezvousDone event. The
// Connection is Established when returned and gets no Ready event (like
// one a Listener receives); its Closed and ConnectionError handlers are
// the Preconnection's. The Preconnection's Ready and EstablishmentError
// handlers are not called: a failed Rendezvous returns its error only.
//
// The Preconnection needs at least one LocalEndpoint and one
// RemoteEndpoint; without them, with invalid endpoints or properties, or
// when no stack that can rendezvous fits the properties
// (ErrRendezvousUnsupported), it returns an *EstablishmentError before any
// packet is sent. The stack is the first TCP-based one (tcp, tls) of the
// selection, in preference order; without one, the first of quic, udp and
// udplite.
//
// Common to every stack: every local endpoint is resolved (a host name
// gives one local candidate per address; a wildcard, one candidate the
// kernel routes) and remote host names are resolved as for Initiate. The
// candidate pairs, in the manner of ICE (RFC 8445 §6.1.2), are every local
// candidate with every remote address of its family, ordered by the local
// endpoints' order, then the remotes'; a local candidate without a remote
// of its family (an IPv6 address with only IPv4 remotes) is not bound.
// Over UDP and UDP-Lite every other candidate is bound (its own socket, on
// the local endpoint's port) and takes part, and the two sides nominate
// one pair (below). Over TCP, TLS and QUIC only the first candidate that
// can be bound takes part, with its pairs: the first connection
// established wins there, and nothing in band could nominate one, so with
// several candidates on each side the two sides might each keep a
// different connection. A candidate that cannot be bound is listed
// against its pairs, and Rendezvous fails only when none can. Only packets
// and connections from a remote address paired with the socket take part.
// A pair whose remote is its own local candidate (this side's address
// among the remotes, as in a candidate list both peers share) is given up
// as a "connection to itself": over TCP the connection a connect there
// makes to itself (a simultaneous open with itself) is closed, over UDP
// a check that comes back to its own socket (with this side's own
// tie-breaker) is not answered, and over TLS and QUIC it has no roles.
// Give each peer fixed local ports (the other's remote ports): with port 0
// the system picks one that the peer cannot know without signalling (see
// Resolve). The first local endpoint's STUN server is asked for the
// server-reflexive address of the rendezvous socket (the first local
// candidate bound), alongside the rendezvous once that is bound, with the
// port it is bound to (port 0 included): over UDP and QUIC the Binding
// request goes from that socket itself (a QUIC endpoint's through its
// quic.Transport, which tells the STUN answer from QUIC packets), over
// TCP, TLS and UDP-Lite from a UDP socket of its own on the candidate's
// address and bound port; it is retransmitted as for Resolve. The answer,
// or why there is none, is traced as a "rendezvous" ServerReflexive record
// (Local: what the server saw, the candidate to signal to the peer); it
// is not otherwise returned, and a failure there does not stop the
// rendezvous.
// Every rendezvous step is traced as a "rendezvous" record (Listening,
// ConnectRetry, CheckSent, CheckAnswered, CheckSucceeded, Nominated,
// NominationSucceeded, NominationReceived, Ignored, RendezvousDone, ...),
// and a failure's Attempts name each pair as "local->remote"
// (":port->remote" for a wildcard local endpoint).
//
// Over TCP (and TLS over TCP): on the local candidate, a listening
// socket and one connecting socket per remote address of its pairs share
// the candidate's address and port (SO_REUSEADDR and SO_REUSEPORT). When
// the peer does the same, the two peers get one TCP connection: by a
// simultaneous open, or because one side's SYN reaches the other's
// listener first (the other side's connect then fails with
// EADDRNOTAVAIL, and it takes the accepted connection). The listener
// accepts only connections from the remote addresses (others are reset).
// A connect that is refused (the peer does not listen yet) is tried again
// after 10 ms, doubling up to 320 ms. The first connection established
// wins; every other attempt, the listening socket and any later
// connection are closed. List the peer's local address among the remotes:
// a connect to an address where something else accepts would win.
//
// With security (the tls and quic stacks), TLS needs a client and a
// server: the side whose local address:port is lower (addresses compared
// as netip.Addr, then ports) is the client, verifying the peer's
// certificate with the trusted CAs (and the remote's host name or
// address); the other side is the server and needs a local identity (a
// peer that may end up in either role needs both; with trusted CAs the
// server also verifies a certificate the client presents). Over TLS the
// connection wins once its handshake is done.
//
// Over QUIC: one UDP socket on the local candidate carries one QUIC
// endpoint. Roles are decided per pair. Toward a remote for which this
// side is the client it dials from that endpoint: quic-go retransmits
// the Initial, and an attempt without a completed handshake
// after 100 ms (doubling up to 1 s) is replaced by a new one, until the
// rendezvous ends (each one traced as ConnectRetry). Toward a remote for
// which it is the server it listens, and refuses (CONNECTION_REFUSED, no
// handshake) an Initial from any address not paired with the endpoint.
// The winner is the first connection with its first stream, opened by
// the client, as for Initiate
// and Listen: the client's Rendezvous returns once its handshake is done,
// the server's once the client's stream arrives, which is when the client
// first sends on it. So the client side (the lower address:port) must
// send first. A side that must be the server but has no identity fails at
// once.
//
// Over UDP and UDP-Lite (connectionless: RendezvousDone comes when the
// path works), ICE-style connectivity checks with STUN (RFC 8489 Binding,
// no credentials) run on every pair, one socket per local candidate: each
// socket sends a Binding request to every remote of its pairs, again
// after 50 ms, doubling up to 500 ms, until the rendezvous ends. A
// Binding request from a remote is answered with a Binding success
// response (XOR-MAPPED-ADDRESS: the requester's address and port) and,
// while that pair's own check has not succeeded, with this side's own
// request to it (a triggered check). A pair's check succeeds when a valid
// Binding success response to this side's request comes back: the pair
// works both ways. A request alone proves only the path from the peer.
// Both sides then select the same pair by ICE regular nomination (RFC
// 8445 §7.3.1.1 and §8.1.1): every request and response carries
// ICE-CONTROLLING with a random tie-breaker, and the side with the larger
// one is controlling. It nominates the first pair whose check succeeded
// (a Binding request with USE-CANDIDATE, retransmitted as the checks are)
// and selects it once that request is answered; the controlled side
// selects the pair nominated to it. A success response without
// ICE-CONTROLLING (from a peer that does not nominate, or from the peer's
// rendezvous connection) selects its pair at once, as before nomination
// existed. The selected pair's socket, connected to its remote, becomes
// the Connection (every other socket is closed); it keeps answering the
// peer's Binding requests (its own check may still be running), and no
// STUN message (the first two bits zero, the magic cookie, the length
// right) is ever delivered as a Message. Other datagrams from the remote
// that arrive on the selected pair before the rendezvous is done (at most
// 64) are the Connection's first Messages (without their TOS byte);
// datagrams from other addresses are dropped.
//
// ctx bounds the establishment, not the connection; so does the
// Preconnection's establishment timeout. The establishment ends when the
// winner's Connection is Ready: with a framer that has a handshake, once
// that is done; should the Connection fail before (the framer's handshake
// fails, the peer closes it), Rendezvous returns an *EstablishmentError
// with the cause. When ctx or the timeout ends first, Rendezvous returns
// an *EstablishmentError (Reason Timeout) after every socket has been
// closed (its Attempts list every pair tried: the refused connects, the
// unanswered checks, and the pairs still running with the timeout or
// ctx's error). Rendezvous is safe to call concurrently; each call is a
// rendezvous of its own (on the same local port, the calls would
// compete for the same peer).
func (p *Preconnection) Rendezvous(ctx context.Context) (*Connection, error) {
	p.mu.Lock()
	nl, nr := len(p.locals), len(p.remotes)
	sec := p.sec
	p.mu.Unlock()
	if nl == 0 || nr == 0 {
		return nil, &EstablishmentError{Reason: ReasonInvalidConfiguration,
			Err: &EndpointError{Err: errors.New("Rendezvous needs a local and a remote endpoint")}}
	}
	if err := p.multicastRendezvous(); err != nil {
		return nil, err
	}
	stun, err := p.stunServers()
	if err != nil {
		return nil, p.fail(err)
	}
	cfg, h, err := p.snapshot(roleRendezvous) // its defaults: useTemporaryLocalAddress Avoid
	if err != nil {
		return nil, p.fail(err)
	}
	st, err := actors.RendezvousStack(cfg)
	if err != nil {
		return nil, &EstablishmentError{Reason: ReasonNoCandidates, Err: err}
	}
	req := &actors.StartRendezvous{Config: cfg, Stun: stun, Result: actors.NewRendezvousResult()}
	if st.Name() == "tls" || st.Name() == "quic" {
		// the server role's configuration; without an identity this side
		// cannot be the server (a TLS handshake then fails, saying so; a
		// QUIC rendezvous does not try it)
		req.ServerTLS, _ = tlsConfig(sec, true, false, p.sys)
	}
	res := req.Result
	started, err := call[*actors.RendezvousStarted](ctx, p.sys, p.sys.s.Root, req)
	var pid *actor.PID
	if err == nil {
		pid = started.PID
	} else if pid = res.Abandon(err); pid == nil {
		return nil, establishmentError(err) // no rendezvous actor will open anything
	}
	// Without a reply (ctx ended meanwhile, and the reply, if any, was
	// dropped) but with an actor that took the request: it may be
	// listening already, so it is cancelled and waited for as well.
	select {
	case <-res.Done():
	case <-ctx.Done():
		tell(p.sys, pid, &actors.CancelRendezvous{Err: ctx.Err()})
		<-res.Done() // soon: once every socket is closed (or it had won)
	}
	s, _, err := res.Outcome()
	if err != nil {
		if errors.Is(err, actors.ErrShutdown) {
			return nil, &EstablishmentError{Err: ErrSystemShutdown}
		}
		// ctx's error is the cause itself, not an attempt's (a QUIC dial
		// attempt that timed out): the attempts are kept either way
		cause := err
		if f := (*actors.EstablishmentFailure)(nil); errors.As(err, &f) {
			cause = f.Err
		}
		ee := establishmentError(err)
		if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
			ee.Reason = ReasonTimeout
		}
		return nil, ee
	}
	return p.rendezvousConn(s, cfg, h), nil
}

func (p *Preconnection) rendezvousConn(s *actors.ConnectionStarted, cfg *messages.ConnectionConfig, h connHandlers) *Connection {
	c := connectionOf(p.sys, s, cfg)
	c.installHandlers(connHandlers{closed: h.closed, connectionError: h.connectionError})
	return c
}

// stunServers returns the STUN server of each local endpoint, by index.
func (p *Preconnection) stunServers() ([]actors.StunServer, error) {
	p.mu.Lock()
	locals := append([]*LocalEndpoint(nil), p.locals...)
	p.mu.Unlock()
	out := make([]actors.StunServer, len(locals))
	for i, l := range locals {
		l.e.mu.Lock()
		srv, err := l.stun, l.e.err
		label := l.e.label()
		l.e.mu.Unlock()
		if err != nil {
			return nil, &EndpointError{Endpoint: label, Err: err}
		}
		if srv != nil {
			out[i] = actors.StunServer{Host: srv.host, Port: srv.port}
			if c := srv.creds; c != nil {
				out[i].Credentials = &stacks.STUNCredentials{Username: c.Username, Password: c.Password}
			}
		}
	}
	return out, nil
}

// Resolve binds early (RFC 9622 §7.3): it returns the Preconnection's
// endpoints made concrete, as they would be used now (the set may change
// over time):
//
//   - a LocalEndpoint with an IP address stays as it is; one with a host
//     name becomes one endpoint per address; one with neither (a
//     wildcard), with an unspecified address (0.0.0.0 or ::) or with only
//     an interface becomes one endpoint per address of the interfaces
//     that are up (only that interface; only that family), with the
//     endpoint's port (IPv6 link-local addresses carry their interface);
//   - a LocalEndpoint with a STUN server (WithStunServer) adds a
//     server-reflexive LocalEndpoint (IsServerReflexive), learned with a
//     STUN Binding request (RFC 8489, retransmitted from 500 ms on,
//     doubling, 7 requests at most) from a UDP socket bound to the
//     endpoint's address and port, which must be fixed (not 0). It is
//     returned even when it equals a local address (no NAT);
//   - a RemoteEndpoint's host name is resolved with the Preconnection's
//     resolver (both the AAAA and the A answer, waited for; in the Happy
//     Eyeballs order Initiate attempts them in when both come at once),
//     one RemoteEndpoint per address, with the endpoint's port;
//   - a RemoteEndpoint with a host name and a service (no WithPort)
//     becomes the endpoints Initiate derives from the service's DNS SRV
//     records (RemoteEndpoint.WithService), every answer waited for: one
//     RemoteEndpoint per address of each target, with its record's port,
//     in the order Initiate attempts them (RFC 2782: lowest priority
//     first, the weighted random order within a priority; the SRV
//     labels in the order of the stacks Initiate would select, which
//     Resolve selects as Initiate does and fails as it would); when the
//     stacks selected span "_tcp" and "_udp" records, each endpoint names
//     the stack it is for (WithProtocol; one endpoint per stack of its
//     record's transport). Without SRV records it is the host name's
//     addresses with the service's IANA port; with neither, the error
//     wraps a *stacks.ServiceError (ErrNoServicePort). A DNS server that drops
//     SRV queries holds Resolve until the resolver's timeout.
//
// Local endpoints come first in the Preconnection's order, each followed
// by its server-reflexive one. Errors: an *EndpointError for an invalid
// endpoint; otherwise an error wrapping the cause (a *stacks.ResolveError
// for a host name or an SRV lookup, a *stacks.ServiceError for a service with no
// port, a *stacks.STUNError or stacks.ErrSTUNTimeout for STUN,
// ctx's error). Resolve is safe for concurrent use.
func (p *Preconnection) Resolve(ctx context.Context) ([]*LocalEndpoint, []*RemoteEndpoint, error) {
	stun, err := p.stunServers()
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	cfg := &messages.ConnectionConfig{Resolver: p.resolver}
	locals := append([]*LocalEndpoint(nil), p.locals...)
	remotes := append([]*RemoteEndpoint(nil), p.remotes...)
	p.mu.Unlock()
	for _, l := range locals {
		m, err := l.e.toMessage(false, false)
		if err != nil {
			return nil, nil, err
		}
		cfg.Locals = append(cfg.Locals, m)
	}
	srv := false // a host name with a service: its SRV records are looked up
	for _, r := range remotes {
		r.e.mu.Lock()
		isPath := r.e.path != ""
		r.e.mu.Unlock()
		var m *messages.Endpoint
		var err error
		if isPath {
			m, err = r.e.toMessage(false, false) // a Unix socket path has nothing to resolve
		} else {
			m, err = r.e.toInitiateMessage() // as Initiate: a service may have no IANA port
		}
		if err != nil {
			return nil, nil, err
		}
		srv = srv || (m.HostName != "" && m.Service != "")
		cfg.Remotes = append(cfg.Remotes, m)
	}
	if srv {
		// the SRV labels to look up ("_tcp", "_udp") are those of the
		// stacks Initiate would select
		icfg, _, err := p.snapshot(roleInitiate)
		if err != nil {
			return nil, nil, err
		}
		cfg.Stacks = icfg.Stacks
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("resolve: %w", err) // nothing starts for a ctx that has ended
	}
	st, err := call[*actors.ResolveStarted](ctx, p.sys, p.sys.s.Root, &actors.ResolveEndpoints{Config: cfg, Stun: stun, Ctx: ctx})
	if err != nil {
		return nil, nil, fmt.Errorf("resolve: %w", err)
	}
	res, err := call[*actors.ResolvedEndpoints](ctx, p.sys, st.PID, &actors.AwaitResolve{})
	if err != nil {
		if ctx.Err() != nil {
			tell(p.sys, st.PID, &actors.CancelResolve{})
		}
		return nil, nil, fmt.Errorf("resolve: %w", err)
	}
	outL := make([]*LocalEndpoint, 0, len(res.Locals))
	for _, c := range res.Locals {
		l := NewLocalEndpoint().WithIPAddress(c.Addr.Addr().WithZone("").String()).WithPort(c.Addr.Port())
		if c.Interface != "" {
			l.WithInterface(c.Interface)
		}
		l.reflexive = c.ServerReflexive
		outL = append(outL, l)
	}
	outR := make([]*RemoteEndpoint, 0, len(res.Remotes))
	for _, c := range res.Remotes {
		protos := c.Protocols
		if len(protos) == 0 {
			protos = []string{""}
		}
		for _, proto := range protos { // an SRV target: one endpoint per stack of its label
			r := NewRemoteEndpoint().WithIPAddress(c.Addr.Addr().WithZone("").String()).WithPort(c.Addr.Port())
			if c.Interface != "" {
				r.WithInterface(c.Interface)
			}
			if proto != "" {
				r.WithProtocol(proto)
			}
			outR = append(outR, r)
		}
	}
	return outL, outR, nil
}
