package stacks

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// This file is the HTTPS resource record (RFC 9460) step of candidate
// gathering (RFC 9623 §4.1, Happy Eyeballs v3): a minimal DNS client for
// the HTTPS records of a name (Go's net.Resolver cannot ask for them),
// their parsing, and what they tell a race: which of the QUIC ("h3") and
// TLS over TCP ("http/1.1", "h2") stacks the server offers, in which
// order, on which port.

// HTTPSRecord is one HTTPS resource record (RFC 9460 §2, §7), the fields
// a race uses. A record whose parameters are malformed, or that has a
// mandatory key this package does not implement (RFC 9460 §8: ech among
// them), is never an HTTPSRecord: it is dropped as it is parsed.
type HTTPSRecord struct {
	// Priority is the SvcPriority: 0 for AliasMode, else ServiceMode,
	// lower first.
	Priority uint16
	// Target is the TargetName, fully qualified and lower case: "." is the
	// owner name in ServiceMode.
	Target string
	// ALPN is the alpn parameter (the protocols the service endpoint
	// offers); NoDefaultALPN drops the default "http/1.1" from them.
	ALPN          []string
	NoDefaultALPN bool
	// Port is the port parameter, 0 when absent.
	Port uint16
	// IPv4Hint and IPv6Hint are the address hints (HTTPSPlan.Hints).
	IPv4Hint, IPv6Hint []netip.Addr
	// ECH: the record has an ech parameter (not used: gotaps does not do
	// Encrypted Client Hello).
	ECH bool
}

// Protocols is the set of ALPN ids r's service endpoint offers (RFC 9460
// §7.1.2): its alpn parameter plus the default "http/1.1" unless
// no-default-alpn. It is pure.
func (r HTTPSRecord) Protocols() []string {
	out := slices.Clone(r.ALPN)
	if !r.NoDefaultALPN && !slices.Contains(out, "http/1.1") {
		out = append(out, "http/1.1")
	}
	return out
}

// HTTPSName is the name whose HTTPS records describe the service at host
// and port (RFC 9460 §9.1): host itself for port 443 (or 0: the default),
// else the port-prefixed "_PORT._https.host".
func HTTPSName(host string, port uint16) string {
	if port == 0 || port == 443 {
		return host
	}
	return "_" + strconv.Itoa(int(port)) + "._https." + host
}

// IsH3 reports whether the ALPN id id names HTTP/3, a protocol over QUIC
// ("h3", or a draft "h3-29"); every other id of an HTTPS record is taken
// to run over TLS over TCP ("http/1.1", "h2").
func IsH3(id string) bool { return id == "h3" || strings.HasPrefix(id, "h3-") }

// IsHTTPALPN reports whether id is an ALPN id of HTTP ("http/1.1", "h2",
// "h3" and its drafts): an application offering one of them is a client
// of the https scheme, whose HTTPS records apply to it.
func IsHTTPALPN(id string) bool { return id == "http/1.1" || id == "h2" || IsH3(id) }

// HTTPSOffer is what the HTTPS records of an endpoint say of one stack
// (quic or tls): whether a usable record offers it, the best offer's
// SvcPriority, whether that offer is only the default "http/1.1" (not
// in the record's alpn parameter), and its record's port parameter (0:
// the endpoint's own port).
type HTTPSOffer struct {
	Offered  bool
	Default  bool
	Priority uint16
	Port     uint16
}

// rank orders offers: lower SvcPriority first, and at one priority an
// id the record lists before the default "http/1.1"; not offered last.
func (o HTTPSOffer) rank() int {
	if !o.Offered {
		return 1 << 17
	}
	r := 2 * int(o.Priority)
	if o.Default {
		r++
	}
	return r
}

// HTTPSPlan is what the HTTPS records of an endpoint tell a race: the
// offers for the quic and tls stacks (other stacks are not concerned),
// and the address hints of the records used (ipv4hint, ipv6hint: IPv6
// first, families interleaved, lower SvcPriority first, no duplicate),
// which stand for the endpoint's addresses until its A and AAAA answers
// come (RFC 9460 §7.3).
type HTTPSPlan struct {
	QUIC, TLS HTTPSOffer
	Hints     []netip.Addr
}

// Offer returns the offer for the stack named stack, ok false for a stack
// the records do not concern (neither quic nor tls).
func (p HTTPSPlan) Offer(stack string) (HTTPSOffer, bool) {
	switch stack {
	case "quic":
		return p.QUIC, true
	case "tls":
		return p.TLS, true
	}
	return HTTPSOffer{}, false
}

// Rank is the place of the stack named stack among the stacks the records
// concern, lower first: a stack offered ranks by its record's
// SvcPriority, and at one priority an offer the alpn parameter makes
// before one only the default "http/1.1" makes (a record "alpn=h3" puts
// QUIC before TLS); a stack not offered ranks last. ok is false for the
// other stacks.
func (p HTTPSPlan) Rank(stack string) (rank int, ok bool) {
	o, ok := p.Offer(stack)
	if !ok {
		return 0, false
	}
	return o.rank(), true
}

// HTTPSTarget picks, from the HTTPS records recs of the host name host,
// the service endpoint a race uses (RFC 9460 §2.4): with an AliasMode
// record (SvcPriority 0: the set's ServiceMode records are then ignored,
// §2.4.2), its TargetName, alias true (its own HTTPS records are to be
// looked up; "" when it is ".": the service is not available, the race
// goes as without records); otherwise the effective TargetName of the
// ServiceMode record of lowest SvcPriority (the first listed among
// equals): "." is host (at a port-prefixed name too, whose own name has
// no address). Names are lower-case and fully qualified; "" when recs
// has no record. It is pure.
func HTTPSTarget(recs []HTTPSRecord, host string) (target string, alias bool) {
	best := -1
	for i, r := range recs {
		if r.Priority == 0 {
			if r.Target == "." {
				return "", false
			}
			return r.Target, true
		}
		if best < 0 || r.Priority < recs[best].Priority {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return effectiveTarget(recs[best], host), false
}

// HTTPSTargets lists the service endpoints of the ServiceMode records of
// recs, the HTTPS records of the host name host (an alias target's, after
// HTTPSTarget): their distinct effective TargetNames ("." is host), the
// lowest SvcPriority first (the first listed among equals), in the order
// a client tries them (RFC 9460 §3); AliasMode records are skipped. Names
// are lower-case and fully qualified. It is pure.
func HTTPSTargets(recs []HTTPSRecord, host string) []string {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b HTTPSRecord) int { return int(a.Priority) - int(b.Priority) })
	var out []string
	for _, r := range recs {
		if t := effectiveTarget(r, host); r.Priority != 0 && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// effectiveTarget is r's TargetName, host for ".".
func effectiveTarget(r HTTPSRecord, host string) string {
	if r.Target == "." {
		return fqdnLower(host)
	}
	return r.Target
}

// PlanHTTPS decides what the HTTPS records recs of the host name host
// (looked up at HTTPSName, or at an alias target) tell a race to target
// (HTTPSTarget) whose application offers the ALPN ids appALPN (nil:
// any). Only the ServiceMode records whose effective TargetName is
// target are used (the others would need their own target's addresses).
// Over them, the quic stack is offered when a record offers an "h3" id
// the application also offers, the tls stack when a record offers
// another id the application also offers (ALPN negotiation needs an id
// both offer; RFC 9460 §7.1.2 with "http/1.1" by default); each stack
// takes its best offer (HTTPSPlan.Rank), with that record's port; Hints
// are the address hints of the records used. ok is false when no record
// is usable: the race then goes as without records. It is pure.
func PlanHTTPS(recs []HTTPSRecord, host, target string, appALPN []string) (plan HTTPSPlan, ok bool) {
	target = fqdnLower(target)
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b HTTPSRecord) int { return int(a.Priority) - int(b.Priority) })
	var v6, v4 []netip.Addr
	for _, r := range recs {
		if r.Priority == 0 || effectiveTarget(r, host) != target {
			continue
		}
		ok = true
		for _, a := range r.IPv6Hint {
			if a = a.Unmap(); a.Is6() && !slices.Contains(v6, a) {
				v6 = append(v6, a)
			}
		}
		for _, a := range r.IPv4Hint {
			if !slices.Contains(v4, a) {
				v4 = append(v4, a)
			}
		}
		for _, id := range r.Protocols() {
			if len(appALPN) > 0 && !slices.Contains(appALPN, id) {
				continue
			}
			o := &plan.TLS
			if IsH3(id) {
				o = &plan.QUIC
			}
			offer := HTTPSOffer{Offered: true, Default: !slices.Contains(r.ALPN, id), Priority: r.Priority, Port: r.Port}
			if offer.rank() < o.rank() {
				*o = offer
			}
		}
	}
	if len(v6)+len(v4) > 0 {
		plan.Hints = Interleave(append(v6, v4...))
	}
	return plan, ok
}

func fqdnLower(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// knownMandatory are the keys a record may list as mandatory (RFC 9460
// §8) and still be used: those this package implements.
var knownMandatory = []dnsmessage.SVCParamKey{dnsmessage.SVCParamALPN, dnsmessage.SVCParamNoDefaultALPN,
	dnsmessage.SVCParamPort, dnsmessage.SVCParamIPv4Hint, dnsmessage.SVCParamIPv6Hint}

// httpsRecordOf reads one HTTPS resource record; ok is false when the
// record is malformed (RFC 9460 §2.2, §7, §8: a value of the wrong
// length, an empty alpn id, no-default-alpn without alpn or with a
// value, a mandatory list that lists itself or a key it lacks) or
// lists a mandatory key that is not implemented: the client ignores it
// then (RFC 9460 §8). It is pure.
func httpsRecordOf(s dnsmessage.SVCBResource) (rec HTTPSRecord, ok bool) {
	rec = HTTPSRecord{Priority: s.Priority, Target: strings.ToLower(s.Target.String())}
	var mandatory []dnsmessage.SVCParamKey
	for _, p := range s.Params {
		v := p.Value
		switch p.Key {
		case dnsmessage.SVCParamMandatory:
			if len(v) == 0 || len(v)%2 != 0 {
				return HTTPSRecord{}, false
			}
			for i := 0; i < len(v); i += 2 {
				mandatory = append(mandatory, dnsmessage.SVCParamKey(binary.BigEndian.Uint16(v[i:])))
			}
		case dnsmessage.SVCParamALPN:
			if len(v) == 0 {
				return HTTPSRecord{}, false
			}
			for len(v) > 0 {
				n := int(v[0])
				if n == 0 || 1+n > len(v) {
					return HTTPSRecord{}, false
				}
				rec.ALPN = append(rec.ALPN, string(v[1:1+n]))
				v = v[1+n:]
			}
		case dnsmessage.SVCParamNoDefaultALPN:
			if len(v) != 0 {
				return HTTPSRecord{}, false
			}
			rec.NoDefaultALPN = true
		case dnsmessage.SVCParamPort:
			if len(v) != 2 {
				return HTTPSRecord{}, false
			}
			rec.Port = binary.BigEndian.Uint16(v)
		case dnsmessage.SVCParamIPv4Hint:
			if len(v) == 0 || len(v)%4 != 0 {
				return HTTPSRecord{}, false
			}
			for i := 0; i < len(v); i += 4 {
				rec.IPv4Hint = append(rec.IPv4Hint, netip.AddrFrom4([4]byte(v[i:i+4])))
			}
		case dnsmessage.SVCParamIPv6Hint:
			if len(v) == 0 || len(v)%16 != 0 {
				return HTTPSRecord{}, false
			}
			for i := 0; i < len(v); i += 16 {
				rec.IPv6Hint = append(rec.IPv6Hint, netip.AddrFrom16([16]byte(v[i:i+16])))
			}
		case dnsmessage.SVCParamECH:
			rec.ECH = true
		}
	}
	if rec.NoDefaultALPN && rec.ALPN == nil {
		return HTTPSRecord{}, false
	}
	for _, k := range mandatory {
		if k == dnsmessage.SVCParamMandatory || !slices.Contains(knownMandatory, k) {
			return HTTPSRecord{}, false
		}
		if _, present := s.GetParam(k); !present {
			return HTTPSRecord{}, false
		}
	}
	return rec, true
}

// HTTPSQuery builds the DNS query for the HTTPS records of name, with id
// as its ID, recursion desired, and an EDNS(0) OPT record announcing 1232
// bytes of UDP payload (DNS flag day 2020).
func HTTPSQuery(id uint16, name string) ([]byte, error) {
	n, err := dnsmessage.NewName(fqdnLower(name))
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeHTTPS, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var opt dnsmessage.ResourceHeader
	if err := opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// errTruncated: a UDP answer was truncated; the query goes again over TCP.
var errTruncated = errors.New("truncated")

// errNotOurs: a datagram that is not the answer to the query (another ID
// or question, or not a response): it is ignored, not an error.
var errNotOurs = errors.New("not the answer to the query")

// ParseHTTPSAnswer reads the response msg to the query for the HTTPS
// records of name with ID id: the records of name (or of the names a
// CNAME chain in the answer leads to from it), in the answer's order,
// without those httpsRecordOf drops (malformed, or an unimplemented
// mandatory key). A name with no HTTPS record (NXDOMAIN, or no record
// of the type) gives no record and no error. Errors: a response that is
// not the answer to this query, a truncated one, a failure RCODE
// (SERVFAIL, REFUSED, ...: a *net.DNSError), or one that does not parse.
// It is pure.
func ParseHTTPSAnswer(msg []byte, id uint16, name string) ([]HTTPSRecord, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	if !h.Response || h.ID != id {
		return nil, errNotOurs
	}
	q, err := p.Question()
	if err != nil || q.Type != dnsmessage.TypeHTTPS || !strings.EqualFold(q.Name.String(), fqdnLower(name)) {
		return nil, errNotOurs
	}
	if h.Truncated {
		return nil, errTruncated
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, nil
	default:
		return nil, &net.DNSError{Err: "server answered " + h.RCode.String(), Name: name, IsTemporary: true}
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, err
	}
	owners := []string{fqdnLower(name)}
	var recs []HTTPSRecord
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, err
		}
		owned := slices.Contains(owners, strings.ToLower(rh.Name.String()))
		switch {
		case owned && rh.Type == dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return nil, err
			}
			if len(owners) < 8 { // a bounded chain
				owners = append(owners, strings.ToLower(c.CNAME.String()))
			}
		case owned && rh.Type == dnsmessage.TypeHTTPS:
			r, err := p.HTTPSResource()
			if err != nil {
				return nil, err
			}
			if rec, ok := httpsRecordOf(r.SVCBResource); ok {
				recs = append(recs, rec)
			}
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, err
			}
		}
	}
	return recs, nil
}

// resolvConf is the file whose nameserver lines LookupHTTPS queries.
var resolvConf = "/etc/resolv.conf"

// nameservers lists the servers of path's nameserver lines, as
// "address:53" (at most 3, as the stub resolver; none: 127.0.0.1 and ::1,
// as Go's resolver).
func nameservers(path string) []string {
	var out []string
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() && len(out) < 3 {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "nameserver" {
				if a, err := netip.ParseAddr(fs[1]); err == nil {
					out = append(out, netip.AddrPortFrom(a, 53).String())
				}
			}
		}
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:53", "[::1]:53"}
	}
	return out
}

// HTTPSLookupTimeout bounds one query of LookupHTTPS to one server (its
// UDP try and, on truncation, its TCP one), unless ctx ends sooner.
const HTTPSLookupTimeout = 2 * time.Second

// LookupHTTPS looks up the HTTPS records of name (RFC 9460; HTTPSName for
// a port other than 443) and returns them as ParseHTTPSAnswer does (no
// record, no error, for a name without any). The query goes over UDP, and
// again over TCP when the answer is truncated, to the nameservers of
// /etc/resolv.conf in turn (the next on a failure or after
// HTTPSLookupTimeout), each through r.DNS.Dial when r.DNS has one (the
// server r.DNS's lookups go to: a private or test DNS server). A Resolver
// whose LookupNetIP replaces DNS for addresses (another naming system)
// and whose DNS is nil sends no query: LookupHTTPS then returns no record.
// The error, when every server failed, is the last failure. It returns
// ctx's error as soon as ctx ends; no goroutine outlives it.
func (r Resolver) LookupHTTPS(ctx context.Context, name string) ([]HTTPSRecord, error) {
	if r.LookupNetIP != nil && r.DNS == nil {
		return nil, nil
	}
	var d net.Dialer
	dial := d.DialContext
	if r.DNS != nil && r.DNS.Dial != nil {
		dial = r.DNS.Dial
	}
	var last error
	for _, srv := range nameservers(resolvConf) {
		recs, err := exchangeHTTPS(ctx, dial, srv, name)
		if err == nil {
			return recs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
	}
	return nil, &ResolveError{Host: name, Err: fmt.Errorf("HTTPS records: %w", last)}
}

// exchangeHTTPS asks the server srv for the HTTPS records of name, over
// UDP, then over TCP when the answer is truncated; bounded by
// HTTPSLookupTimeout and ctx.
func exchangeHTTPS(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	srv, name string) ([]HTTPSRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, HTTPSLookupTimeout)
	defer cancel()
	id := uint16(rand.Uint32())
	q, err := HTTPSQuery(id, name)
	if err != nil {
		return nil, err
	}
	recs, err := exchangeOnce(ctx, dial, "udp", srv, q, id, name)
	if errors.Is(err, errTruncated) {
		recs, err = exchangeOnce(ctx, dial, "tcp", srv, q, id, name)
	}
	return recs, err
}

// exchangeOnce sends q over network ("udp" or "tcp", with its two-byte
// length) to srv and reads the answer (skipping datagrams that are not
// it). ctx's end unblocks it by closing the deadline of the socket.
func exchangeOnce(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	network, srv string, q []byte, id uint16, name string) ([]HTTPSRecord, error) {
	c, err := dial(ctx, network, srv)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// ctx's end (its deadline too) unblocks the socket: ctx.Err() is set
	// then, and tells the failure apart
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) ([]HTTPSRecord, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// framed as the socket is, whatever was asked (as Go's resolver
	// does: a Dial may return a UDP socket for "tcp")
	_, isPacket := c.(net.PacketConn)
	stream := !isPacket
	if stream {
		q = append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	}
	if _, err := c.Write(q); err != nil {
		return fail(err)
	}
	buf := make([]byte, 1232)
	for {
		var msg []byte
		if stream {
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return fail(err)
			}
			msg = make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, msg); err != nil {
				return fail(err)
			}
		} else {
			n, err := c.Read(buf)
			if err != nil {
				return fail(err)
			}
			msg = buf[:n]
		}
		recs, err := ParseHTTPSAnswer(msg, id, name)
		if errors.Is(err, errNotOurs) && !stream {
			continue // a stray datagram: the answer may still come
		}
		return recs, err
	}
}
