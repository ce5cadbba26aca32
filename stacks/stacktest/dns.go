package stacktest

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSServer is an authoritative DNS server for a test zone, on 127.0.0.1
// over UDP: it answers the A, AAAA, SRV and HTTPS records added to it, NXDOMAIN
// for a name it has no record of, and an empty answer (NODATA) for a name
// it has records of but not of the type asked; SetDelay holds answers
// back, Drop leaves queries unanswered. Resolver returns a
// *net.Resolver that sends every query to it, so that a test resolves
// names without any packet leaving the loopback. It stops when the test
// ends. Its methods are safe for concurrent use.
type DNSServer struct {
	t       testing.TB
	conn    net.PacketConn
	done    chan struct{}
	late    sync.WaitGroup // the delayed answers not sent yet
	mu      sync.Mutex
	dialed  []net.Conn                       // Resolver's sockets, closed when the test ends
	zone    map[string][]dnsmessage.Resource // by lower-case FQDN
	delays  map[dnsmessage.Type]time.Duration
	drops   map[dnsmessage.Type]bool
	queries []string
	waiters []waiter // Asked's, for queries not asked yet
}

// waiter is a channel of Asked's, closed once its query is asked.
type waiter struct {
	q  string
	ch chan struct{}
}

// NewDNSServer starts an empty server, stopped (and its goroutine waited
// for) when the test ends.
func NewDNSServer(t testing.TB) *DNSServer {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dns server: %v", err)
	}
	s := &DNSServer{t: t, conn: c, done: make(chan struct{}), zone: map[string][]dnsmessage.Resource{}}
	go s.serve()
	t.Cleanup(func() {
		_ = c.Close()
		<-s.done
		s.late.Wait() // a delayed answer's write fails on the closed socket
		// a lookup left waiting for an answer (net.Resolver heeds a ctx's
		// deadline only) ends now, not at the resolver's timeout
		s.mu.Lock()
		for _, d := range s.dialed {
			_ = d.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// SetDelay delays the answers to the queries of type typ ("A", "AAAA",
// "SRV", "HTTPS") by d, each on its own (the other queries are answered at once, a
// later one possibly before an earlier one); d 0 answers at once (the
// default). It applies to the queries that come after it. An unknown type
// fails the test.
func (s *DNSServer) SetDelay(typ string, d time.Duration) {
	t := s.queryType(typ)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delays == nil {
		s.delays = map[dnsmessage.Type]time.Duration{}
	}
	s.delays[t] = d
}

// Drop makes s leave the queries of type typ ("A", "AAAA", "SRV")
// unanswered, as a server or middlebox that drops them does (the
// resolver waits for its timeout: 5 s per attempt by default); they are
// still listed by Queries. It applies to the queries that come after it.
// An unknown type fails the test.
func (s *DNSServer) Drop(typ string) {
	t := s.queryType(typ)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drops == nil {
		s.drops = map[dnsmessage.Type]bool{}
	}
	s.drops[t] = true
}

// queryType is the query type named typ; an unknown name fails the test.
func (s *DNSServer) queryType(typ string) dnsmessage.Type {
	t := map[string]dnsmessage.Type{"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "SRV": dnsmessage.TypeSRV,
		"HTTPS": dnsmessage.TypeHTTPS}[typ]
	if t == 0 {
		s.t.Helper()
		s.t.Fatalf("dns server: unknown query type %q", typ)
	}
	return t
}

// Addr is the server's address.
func (s *DNSServer) Addr() string { return s.conn.LocalAddr().String() }

// Resolver returns a pure-Go resolver whose every query goes to s (UDP
// or TCP alike: s only answers over UDP, and its answers are never
// truncated). Its sockets are closed when the test ends.
func (s *DNSServer) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", s.Addr())
		if err == nil {
			s.mu.Lock()
			s.dialed = append(s.dialed, c)
			s.mu.Unlock()
		}
		return c, err
	}}
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (s *DNSServer) add(name string, body dnsmessage.ResourceBody, typ dnsmessage.Type) {
	n := fqdn(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[n] = append(s.zone[n], dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(n), Type: typ, Class: dnsmessage.ClassINET, TTL: 60},
		Body:   body,
	})
}

// AddAddr adds an A record (an IPv4 address) or an AAAA record (IPv6) to
// name.
func (s *DNSServer) AddAddr(name string, addrs ...netip.Addr) {
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			s.add(name, &dnsmessage.AResource{A: a.As4()}, dnsmessage.TypeA)
		} else {
			s.add(name, &dnsmessage.AAAAResource{AAAA: a.As16()}, dnsmessage.TypeAAAA)
		}
	}
}

// AddSRV adds an SRV record to name ("_service._proto.host"); target "."
// says the service is not available there (RFC 2782).
func (s *DNSServer) AddSRV(name string, priority, weight, port uint16, target string) {
	s.add(name, &dnsmessage.SRVResource{Priority: priority, Weight: weight, Port: port,
		Target: dnsmessage.MustNewName(fqdn(target))}, dnsmessage.TypeSRV)
}

// Queries lists the questions asked so far, in order, as "TYPE name"
// ("SRV _echo._tcp.example.test.", "A target.example.test.").
func (s *DNSServer) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// Asked returns a channel that is closed once the question q ("SRV
// _echo._tcp.example.test.", as Queries lists them) has been asked (at
// once when it already was), so that a test can wait for a lookup to be
// under way.
func (s *DNSServer) Asked(q string) <-chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.queries, q) {
		close(ch)
	} else {
		s.waiters = append(s.waiters, waiter{q, ch})
	}
	return ch
}

func (s *DNSServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		out, delay := s.answer(buf[:n])
		switch {
		case out == nil:
		case delay > 0:
			s.late.Add(1)
			time.AfterFunc(delay, func() {
				defer s.late.Done()
				_, _ = s.conn.WriteTo(out, from)
			})
		default:
			_, _ = s.conn.WriteTo(out, from)
		}
	}
}

// answer builds the response to one query (nil: not a query to answer),
// and how long to hold it back (SetDelay).
func (s *DNSServer) answer(q []byte) ([]byte, time.Duration) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, 0
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, 0
	}
	qu := qs[0]
	name := strings.ToLower(qu.Name.String())
	s.mu.Lock()
	asked := strings.TrimPrefix(qu.Type.String(), "Type") + " " + name
	s.queries = append(s.queries, asked)
	s.waiters = slices.DeleteFunc(s.waiters, func(w waiter) bool {
		if w.q == asked {
			close(w.ch)
		}
		return w.q == asked
	})
	rrs, known := s.zone[name]
	delay, drop := s.delays[qu.Type], s.drops[qu.Type]
	s.mu.Unlock()
	if drop {
		return nil, 0
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(qu) != nil || b.StartAnswers() != nil {
		return nil, 0
	}
	for _, rr := range rrs {
		if rr.Header.Type != qu.Type {
			continue
		}
		var err error
		switch body := rr.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(rr.Header, *body)
		case *dnsmessage.AAAAResource:
			err = b.AAAAResource(rr.Header, *body)
		case *dnsmessage.SRVResource:
			err = b.SRVResource(rr.Header, *body)
		case *dnsmessage.HTTPSResource:
			err = b.HTTPSResource(rr.Header, *body)
		}
		if err != nil {
			return nil, 0
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil, 0
	}
	return out, delay
}

// AddHTTPS adds an HTTPS record (RFC 9460) to name: priority 0 is
// AliasMode, target "." the owner name (ServiceMode); params must be in
// increasing key order, and are sent as they are (a malformed value
// makes a malformed record). ALPNParam and PortParam build the common
// ones.
func (s *DNSServer) AddHTTPS(name string, priority uint16, target string, params ...dnsmessage.SVCParam) {
	tn := "."
	if target != "." {
		tn = fqdn(target)
	}
	s.add(name, &dnsmessage.HTTPSResource{SVCBResource: dnsmessage.SVCBResource{Priority: priority,
		Target: dnsmessage.MustNewName(tn), Params: params}}, dnsmessage.TypeHTTPS)
}

// DropHTTPS makes s leave every HTTPS query that comes after it
// unanswered (drop true: a resolver or middlebox that loses them), or
// answer them again (false, the default).
func (s *DNSServer) DropHTTPS(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drops == nil {
		s.drops = map[dnsmessage.Type]bool{}
	}
	s.drops[dnsmessage.TypeHTTPS] = drop
}

// ALPNParam is the alpn SvcParam (RFC 9460 §7.1) of the ALPN ids ids.
func ALPNParam(ids ...string) dnsmessage.SVCParam {
	var v []byte
	for _, id := range ids {
		v = append(append(v, byte(len(id))), id...)
	}
	return dnsmessage.SVCParam{Key: dnsmessage.SVCParamALPN, Value: v}
}

// PortParam is the port SvcParam (RFC 9460 §7.2).
func PortParam(port uint16) dnsmessage.SVCParam {
	return dnsmessage.SVCParam{Key: dnsmessage.SVCParamPort, Value: []byte{byte(port >> 8), byte(port)}}
}
