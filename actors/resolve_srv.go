package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// A RemoteEndpoint with a host name and a service name (WithService) is
// resolved through the service's DNS SRV records (RFC 2782), rather than
// its host name: "_service._tcp.host" for the stacks over TCP (tcp, tls),
// "_service._udp.host" for those over UDP (udp, udplite, quic), each
// label looked up once for the stacks selected. The records' targets,
// resolved (A and AAAA), are the endpoint's derived endpoints, in the
// records' order, each with its record's port; they are attempted over
// the stacks of their label only. The host name is resolved alongside
// the SRV lookups, for the fallback to the IANA port when there is no
// record. This file is that step of resolution.

// maxSRVTargets bounds the SRV targets of one endpoint that are resolved
// (RFC 9623 §12.2: limit the state a DNS answer can create), as
// maxDerivedEndpoints bounds its addresses.
const maxSRVTargets = maxDerivedEndpoints

// srvProtos returns the SRV protocol labels (stacks.SRVProto) to look up
// for the remote endpoint r over the stacks sts, in the stacks' order,
// each once (only r.Protocol's stack counts when r names one). It is nil
// when r has no SRV records to look up: no service, or one that cannot be
// an SRV label (a port number, say: stacks.ValidServiceName), no host name
// (an IP address, a path), a host name that is an IP literal, or
// "localhost" or a name under it (RFC 6761 §6.3). A port
// given with WithPort leaves no service in the message (the port wins).
// It is pure.
func srvProtos(r *messages.Endpoint, sts []stacks.Stack) []string {
	if r.Service == "" || r.IpAddress != "" || r.Path != "" || r.Multicast ||
		!stacks.ValidServiceName(r.Service) || !stacks.SRVHostName(r.HostName) {
		return nil
	}
	var out []string
	for _, st := range sts {
		if r.Protocol != "" && st.Name() != r.Protocol {
			continue
		}
		if p := stacks.SRVProto(st.Name()); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// scopedAddr gives a's port and, for a link-local IPv6 address of a
// remote endpoint that names an interface, that interface as its zone.
func scopedAddr(r *messages.Endpoint, a netip.Addr, port uint16) netip.AddrPort {
	if r.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
		a = a.WithZone(r.Interface)
	}
	return netip.AddrPortFrom(a, port)
}

// srvLookup is the answer to one SRV query of resolveSRVStream.
type srvLookup struct {
	recs []*net.SRV
	err  error
}

// resolveSRVStream resolves the remote endpoint r, whose service has SRV
// records to look up under the labels protos (srvProtos), for a race. The
// SRV queries (one per label) and, when r's service has an IANA port to
// fall back on (r.Port), the Happy Eyeballs resolution of r's host name
// (stacks.Resolver.ResolveStream) run concurrently, so that a service
// without SRV records, the common case, costs no DNS round trip more than
// a host name without a service. put gets the outcome, on the calling
// goroutine:
//
//   - When no label has an SRV record and none says the service is not
//     available (a "." target), r is resolved as an endpoint without SRV
//     records is, its host name with its IANA port (a failed SRV lookup
//     counts as no record, so that a DNS server that does not answer SRV
//     queries does not stop the connection): put gets the host name's
//     answers as ResolveStream yields them (addrs; final on the last, or
//     err), those yielded before the SRV answers were in as one, the
//     latest. When r.Port is 0 (the service is not an IANA name) there is
//     nothing to fall back on: put gets an error that says so.
//   - Otherwise put gets, once and final, r's derived endpoints (sets),
//     one remoteAddrs per label that gives any, restricted to that label's
//     stacks (transport): for a label with SRV records, the addresses of
//     their targets (at most maxSRVTargets, resolved concurrently, each in
//     full: A and AAAA, families interleaved; a target that does not
//     resolve is dropped) in the records' order (stacks.Resolver.LookupSRV:
//     lowest priority first, RFC 2782's weighted draw within a priority),
//     each with its record's port; for a label without records, the host
//     name's addresses in full (the resolution already running) with the
//     IANA port (none without one); for a label whose only target is ".",
//     none. The host name's own addresses are never attempted over a label
//     with records. The label of every set is r's (endpointLabel): the
//     name a secure attempt verifies the server's certificate against is
//     r's host name, not the target's (an SRV answer is not authenticated:
//     RFC 6125 §6.2.1 uses the source domain as the reference identity).
//     err is non-nil when no set has an address: it wraps the SRV lookups'
//     errors (*stacks.ResolveError, one wrapping
//     stacks.ErrServiceUnavailable for "."), and the targets'.
//
// The SRV answers are not waited for without bound, as Happy Eyeballs v3
// (draft-ietf-happy-happyeyeballs-v3) and RFC 9460 §5.1 wait for SVCB
// answers (an address answer that comes first starts connecting after
// 50 ms): once the host name has addresses and r has an IANA port, they
// are waited for stacks.ResolutionDelay (50 ms, the delay a lone A answer
// waits for the AAAA one) at most. Past it, put gets the host name's addresses with
// the IANA port (addrs, not final), and each later answer of the host
// name, as for the fallback above, while the SRV answers are pending, so
// that a DNS server that drops SRV queries costs the race 50 ms, not the
// resolver's timeout (5 s per attempt). The SRV answers, once in, are
// used as above: on a fallback put gets the host name's answers left
// (the latest again when it is final); otherwise it gets the derived
// endpoints, final, and the race (resolveStream, mergePlan) takes them in
// place of the host name's addresses: the SRV targets join it, the
// fallback's addresses not attempted yet are dropped (SRV records win
// over the IANA port), and an attempt to one already started goes on and
// may win. The race does not fail while the SRV answers are pending. A
// late SRV answer that leaves no derived endpoint (err: a lone "."
// target, targets that do not resolve) drops r from the plans made after
// it, and with them the fallback's addresses not attempted yet, when
// another remote endpoint is left; when r is the only one the plan fails
// and the race drops the fallback's addresses not attempted yet all the
// same (racerActor.replanned; RFC 2782: "." says the service is decidedly
// not available, and records whose targets do not resolve still win over
// the IANA port): the attempts already running go on, and should they
// fail the race fails with err.
//
// since, with the host name's addresses, is when their first positive
// answer came (stacks.Resolver.ResolveStreamSince; zero with sets), so
// that a wait counted from the first addresses (the HTTPS answer's:
// resolveStream) is not counted again from the fallback's put, which
// itself came a resolution delay after them.
//
// put is never called once ctx has ended. resolveSRVStream returns after
// its final put, or once ctx has ended; no lookup outlives it.
func resolveSRVStream(ctx context.Context, cfg *messages.ConnectionConfig, r *messages.Endpoint, protos []string,
	put func(addrs []netip.Addr, sets []remoteAddrs, final bool, err error, since time.Time)) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // the host name's resolution, when no label needed it
		wg.Wait()
	}()
	type hostAnswer struct {
		addrs []netip.Addr
		final bool
		err   error
		since time.Time // its first positive answer's arrival (ResolveStreamSince)
	}
	hostCh := make(chan hostAnswer)
	if r.Port != 0 {
		wg.Go(func() {
			send := func(a hostAnswer) {
				select {
				case hostCh <- a:
				case <-lctx.Done():
				}
			}
			err := cfg.Resolver.ResolveStreamSince(lctx, r.HostName, func(addrs []netip.Addr, final bool, since time.Time) {
				send(hostAnswer{addrs: addrs, final: final, since: since})
			})
			if err != nil {
				send(hostAnswer{final: true, err: err})
			}
		})
	}
	srvCh := make(chan []srvLookup, 1)
	wg.Go(func() { srvCh <- lookupSRVs(lctx, cfg, r, protos) })

	var host *hostAnswer // the host name's latest answer
	var looks []srvLookup
	// once the host name has addresses, the SRV answers are waited for
	// stacks.ResolutionDelay at most (srvWait); then the fallback goes to
	// the race while they are pending (early), each later host answer too
	var srvWait <-chan time.Time
	early := false
	var sent *hostAnswer // the host answer put last, not final, while the SRV answers were pending
	for looks == nil {
		fresh := false // the host name's answer, to put when early
		select {
		case a := <-hostCh:
			host, fresh = &a, true
			if srvWait == nil && !early && len(a.addrs) > 0 {
				t := time.NewTimer(stacks.ResolutionDelay)
				defer t.Stop()
				srvWait = t.C
			}
		case <-srvWait:
			srvWait, early, fresh = nil, true, true
		case looks = <-srvCh:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		if early && fresh && looks == nil && len(host.addrs) > 0 {
			put(host.addrs, nil, false, nil, host.since)
			sent = host
		}
	}
	hostFull := func() ([]netip.Addr, error) { // the host name's final answer
		for host == nil || !host.final {
			select {
			case a := <-hostCh:
				host = &a
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return host.addrs, host.err
	}
	sets, fallback, err := srvSets(ctx, cfg, r, protos, looks, hostFull)
	if !fallback {
		if ctx.Err() == nil {
			put(nil, sets, true, err, time.Time{})
		}
		return
	}
	for {
		if ctx.Err() != nil {
			return
		}
		if host != nil && (host != sent || host.final) {
			put(host.addrs, nil, host.final, host.err, host.since)
			if host.final {
				return
			}
		}
		select {
		case a := <-hostCh:
			host = &a
		case <-ctx.Done():
			return
		}
	}
}

// srvCandidates resolves the remote endpoint r, whose service has SRV
// records to look up under the labels protos (srvProtos), in full, for
// Preconnection.Resolve: what resolveSRVStream gives a race as its final
// answer (every SRV answer and every address waited for), one candidate
// per address: the SRV targets' addresses with their records' ports, in
// the order a race attempts them (RFC 2782: lowest priority first, the
// weighted draw within a priority), label by label in protos' order, or,
// on the fallback, the host name's addresses with the IANA port. When
// protos has both labels, a target's candidate names the stacks of
// cfg.Stacks of its label (Protocols), so that the "_tcp" targets are not
// attempted over UDP nor the "_udp" ones over TCP. err is the resolution's
// failure (a *stacks.ServiceError when the service has no port), or ctx's.
func srvCandidates(ctx context.Context, cfg *messages.ConnectionConfig, r *messages.Endpoint, protos []string) ([]RemoteCandidate, error) {
	var addrs []netip.Addr
	var sets []remoteAddrs
	var err error
	resolveSRVStream(ctx, cfg, r, protos, func(a []netip.Addr, s []remoteAddrs, final bool, e error, _ time.Time) {
		if final {
			addrs, sets, err = a, s, e
		}
	})
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	var out []RemoteCandidate
	for _, a := range addrs { // the fallback
		out = append(out, RemoteCandidate{Addr: scopedAddr(r, a, uint16(r.Port)), Interface: r.Interface})
	}
	for _, s := range sets {
		var names []string
		if len(protos) > 1 {
			for _, st := range cfg.Stacks {
				if (r.Protocol == "" || st.Name() == r.Protocol) && stacks.SRVProto(st.Name()) == s.transport {
					names = append(names, st.Name())
				}
			}
		}
		for _, a := range s.addrs {
			out = append(out, RemoteCandidate{Addr: a, Interface: r.Interface, Protocols: names})
		}
	}
	return out, nil
}

// lookupSRVs looks up the SRV records of the remote endpoint r for each
// label of protos, concurrently, and returns their answers in protos'
// order once all are in (non-nil).
func lookupSRVs(ctx context.Context, cfg *messages.ConnectionConfig, r *messages.Endpoint, protos []string) []srvLookup {
	looks := make([]srvLookup, len(protos))
	var wg sync.WaitGroup
	for i, p := range protos {
		wg.Go(func() {
			recs, err := cfg.Resolver.LookupSRV(ctx, r.Service, p, r.HostName)
			looks[i] = srvLookup{recs: recs, err: err}
		})
	}
	wg.Wait()
	return looks
}

// srvSets decides, from the SRV answers looks (one per label of protos),
// how the remote endpoint r is resolved (resolveSRVStream): fallback
// true when no label has a record and none a "." target while r has an
// IANA port, else the derived endpoints sets, or err when none has an
// address. host returns the host name's addresses in full; it is called
// only for a label without records when r has an IANA port.
func srvSets(ctx context.Context, cfg *messages.ConnectionConfig, r *messages.Endpoint, protos []string, looks []srvLookup,
	host func() ([]netip.Addr, error)) (sets []remoteAddrs, fallback bool, err error) {
	found := false
	var errs []error
	for _, l := range looks {
		switch {
		case len(l.recs) > 0:
			found = true
		case errors.Is(l.err, stacks.ErrServiceUnavailable):
			found = true
			errs = append(errs, l.err)
		}
	}
	noPort := func(lookupErr error) error {
		return &stacks.ServiceError{Service: r.Service, Host: r.HostName, Err: lookupErr}
	}
	if !found {
		if r.Port != 0 {
			return nil, true, nil
		}
		for _, l := range looks {
			errs = append(errs, l.err)
		}
		return nil, false, noPort(errors.Join(errs...))
	}
	label := endpointLabel(r)
	var hostAddrs []netip.Addr // r's host name resolved, for a label without SRV records
	var hostErr error
	hostDone := false
	for i, l := range looks {
		ra := remoteAddrs{label: label, iface: r.Interface, protocol: r.Protocol, transport: protos[i]}
		switch {
		case len(l.recs) > 0:
			addrs, err := resolveTargets(ctx, cfg, r, l.recs)
			if err != nil {
				errs = append(errs, err)
			}
			ra.addrs = addrs
		case errors.Is(l.err, stacks.ErrServiceUnavailable):
			continue
		case r.Port == 0:
			errs = append(errs, noPort(l.err))
			continue
		default:
			if !hostDone {
				hostDone = true
				hostAddrs, hostErr = host()
			}
			if hostErr != nil {
				errs = append(errs, hostErr)
			}
			for _, a := range hostAddrs {
				ra.addrs = append(ra.addrs, scopedAddr(r, a, uint16(r.Port)))
			}
		}
		if len(ra.addrs) > 0 {
			sets = append(sets, ra)
		}
	}
	if len(sets) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		return nil, false, errors.Join(errs...)
	}
	return sets, false, nil
}

// resolveTargets resolves the targets of SRV records (in the order to
// attempt them; at most maxSRVTargets), concurrently, and returns their
// addresses in that order, each with its record's port; err joins the
// failures of the targets that did not resolve, and is nil when none
// failed.
func resolveTargets(ctx context.Context, cfg *messages.ConnectionConfig, r *messages.Endpoint, recs []*net.SRV) ([]netip.AddrPort, error) {
	if len(recs) > maxSRVTargets {
		recs = recs[:maxSRVTargets]
	}
	type result struct {
		addrs []netip.Addr
		err   error
	}
	res := make([]result, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() {
			as, err := cfg.Resolver.Resolve(ctx, rec.Target)
			res[i] = result{addrs: as, err: err}
		})
	}
	wg.Wait()
	var out []netip.AddrPort
	var errs []error
	for i, rec := range recs {
		if rec.Port == 0 && res[i].err == nil {
			res[i].err = errors.New("port 0")
		}
		if res[i].err != nil {
			errs = append(errs, fmt.Errorf("SRV target %s:%d: %w", rec.Target, rec.Port, res[i].err))
			continue
		}
		for _, a := range res[i].addrs {
			out = append(out, scopedAddr(r, a, rec.Port))
		}
	}
	return out, errors.Join(errs...)
}
