package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

const usageText = `usage:
  tapscat [flags] HOST PORT          initiate; each message read from stdin is sent, each received message printed
  tapscat -l [flags] [ADDR] PORT     listen (default ADDR: all addresses); with --echo every received message is sent back

flags:
`

// config is the parsed command line.
type config struct {
	listen bool
	host   string // empty when listening on all addresses
	port   string

	framer       string
	echo         bool
	count        int
	timeout      time.Duration
	trace        bool
	verbose      bool
	attemptDelay time.Duration

	profile   string
	prefs     []preference
	protocols []string // nil: no restriction

	tls           bool
	opportunistic bool // TLS when the peer speaks it, plain otherwise
	ca            string
	cert          string
	key           string
	alpn          string
	serverName    string
}

// preference is one --require/--prefer/--avoid/--prohibit.
type preference struct {
	flag  string
	level taps.Preference
	name  string
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// parseArgs parses the command line. Flags may come before, between or
// after the positional arguments; "--" ends the flags. It returns
// flag.ErrHelp for -h.
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("tapscat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.listen, "l", false, "listen instead of initiating")
	fs.BoolVar(&c.listen, "listen", false, "same as -l")
	fs.StringVar(&c.framer, "framer", "none", "message framer: none (a byte stream), length (4-byte big-endian prefix) or line")
	fs.BoolVar(&c.echo, "echo", false, "send every received message back on its connection")
	fs.IntVar(&c.count, "count", 0, "exit after `N` received messages (0: no limit)")
	fs.DurationVar(&c.timeout, "timeout", 0, "overall time limit (0: none)")
	fs.BoolVar(&c.trace, "trace", false, "one JSON object per line on stderr for every state change, racing event and message event")
	fs.BoolVar(&c.verbose, "v", false, "report listening addresses and connections on stderr")
	fs.BoolVar(&c.verbose, "verbose", false, "same as -v")
	fs.DurationVar(&c.attemptDelay, "attempt-delay", 0, "racing stagger (0: the default, 250ms)")
	fs.StringVar(&c.profile, "profile", "", "reliable-inorder-stream, reliable-message or unreliable-datagram")
	for _, p := range []struct {
		name  string
		level taps.Preference
	}{{"require", taps.Require}, {"prefer", taps.Prefer}, {"avoid", taps.Avoid}, {"prohibit", taps.Prohibit}} {
		fs.Func(p.name, "RFC 9622 selection `PROPERTY` names (repeatable, or comma-separated)", func(s string) error {
			n0 := len(c.prefs)
			for _, n := range strings.Split(s, ",") {
				if n = strings.TrimSpace(n); n != "" {
					c.prefs = append(c.prefs, preference{flag: p.name, level: p.level, name: n})
				}
			}
			if len(c.prefs) == n0 {
				return errors.New("want a property name")
			}
			return nil
		})
	}
	fs.Func("protocols", "only these stacks may be selected, comma-separated `LIST` of tcp, tls, quic, udp, udplite;\n"+
		"tls and quic alone imply --tls, udp and udplite alone the unreliable-datagram profile (unless --profile)", func(s string) error {
		c.protocols = nil
		for _, n := range strings.Split(s, ",") {
			n = strings.TrimSpace(n)
			if _, ok := protocolKinds[n]; !ok {
				return fmt.Errorf("unknown protocol %q: want tcp, tls, quic, udp or udplite", n)
			}
			c.protocols = append(c.protocols, n)
		}
		return nil
	})
	fs.BoolVar(&c.tls, "tls", false, "require security (implied by the other TLS flags)")
	fs.BoolVar(&c.opportunistic, "opportunistic", false, "TLS when the peer speaks it, plain TCP otherwise, unauthenticated\n"+
		"(the other TLS flags apply; a listener is TLS with --cert, plain without)")
	fs.StringVar(&c.ca, "ca", "", "PEM `FILE` of the CAs that verify the peer (default: the system's)")
	fs.StringVar(&c.cert, "cert", "", "PEM certificate `FILE` of the local identity")
	fs.StringVar(&c.key, "key", "", "PEM private key `FILE` of the local identity")
	fs.StringVar(&c.alpn, "alpn", "", "comma-separated application protocols to negotiate")
	fs.StringVar(&c.serverName, "server-name", "", "name to verify the server certificate against")

	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stderr, usageText)
				fs.SetOutput(stderr)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, &usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case c.listen && len(pos) == 1:
		c.port = pos[0]
	case len(pos) == 2:
		c.host, c.port = strings.TrimSuffix(strings.TrimPrefix(pos[0], "["), "]"), pos[1]
	case c.listen:
		return nil, usagef("want [ADDR] PORT after -l, got %d argument(s)", len(pos))
	default:
		return nil, usagef("want HOST PORT, got %d argument(s)", len(pos))
	}
	switch c.framer {
	case "none", "length", "line":
	default:
		return nil, usagef("--framer %q: want none, length or line", c.framer)
	}
	if c.count < 0 {
		return nil, usagef("--count %d: want N >= 0", c.count)
	}
	if c.timeout < 0 {
		return nil, usagef("--timeout %s: want a duration >= 0", c.timeout)
	}
	if c.attemptDelay < 0 {
		return nil, usagef("--attempt-delay %s: want a duration >= 0", c.attemptDelay)
	}
	if c.tls && c.opportunistic {
		return nil, usagef("--tls requires security, --opportunistic does not: choose one")
	}
	if !c.opportunistic && (c.ca != "" || c.cert != "" || c.key != "" || c.alpn != "" || c.serverName != "") {
		c.tls = true
	}
	if (c.cert == "") != (c.key == "") {
		return nil, usagef("--cert and --key go together")
	}
	if len(c.protocols) > 0 {
		secure, datagram := true, true
		for _, n := range c.protocols {
			secure = secure && protocolKinds[n] == secureStack
			datagram = datagram && protocolKinds[n] == datagramStack
		}
		// otherwise no stack named could be selected at all
		if secure && !c.opportunistic {
			c.tls = true
		}
		if datagram && c.profile == "" {
			c.profile = "unreliable-datagram"
			if slices.Contains(c.protocols, "udplite") { // the profile requires full checksum coverage
				c.prefs = append([]preference{{"prefer", taps.Prefer, string(taps.FullChecksumSend)},
					{"prefer", taps.Prefer, string(taps.FullChecksumRecv)}}, c.prefs...)
			}
		}
	}
	return c, nil
}

// Kinds of protocol stacks, for what --protocols implies.
const (
	plainStack = iota
	secureStack
	datagramStack
)

// protocolKinds lists the stacks --protocols may name.
var protocolKinds = map[string]int{
	"tcp": plainStack, "tls": secureStack, "quic": secureStack, "udp": datagramStack, "udplite": datagramStack,
}

// numberedPort reports the port as a number when it is one.
func (c *config) numberedPort() (uint16, bool, error) {
	n, err := strconv.ParseUint(c.port, 10, 16)
	if err == nil {
		return uint16(n), true, nil
	}
	if c.port == "" || strings.IndexFunc(c.port, func(r rune) bool { return r >= '0' && r <= '9' }) == 0 {
		return 0, false, usagef("bad port %q", c.port)
	}
	return 0, false, nil // a service name
}

func (c *config) remoteEndpoint() (*taps.RemoteEndpoint, error) {
	r := taps.NewRemoteEndpoint()
	if _, err := netip.ParseAddr(c.host); err == nil {
		r.WithIPAddress(c.host)
	} else {
		r.WithHostName(c.host)
	}
	n, ok, err := c.numberedPort()
	switch {
	case err != nil:
		return nil, err
	case ok && n == 0:
		return nil, usagef("port 0: want the peer's port")
	case ok:
		r.WithPort(n)
	default:
		r.WithService(c.port)
	}
	return r, nil
}

func (c *config) localEndpoint() (*taps.LocalEndpoint, error) {
	l := taps.NewLocalEndpoint()
	if c.host != "" {
		if _, err := netip.ParseAddr(c.host); err == nil {
			l.WithIPAddress(c.host)
		} else {
			l.WithHostName(c.host)
		}
	}
	n, ok, err := c.numberedPort()
	switch {
	case err != nil:
		return nil, err
	case ok:
		l.WithPort(n)
	default:
		l.WithService(c.port)
	}
	return l, nil
}

// transportProperties applies --profile, then the preferences in order.
func (c *config) transportProperties() (*taps.TransportProperties, error) {
	var tp *taps.TransportProperties
	if c.profile != "" {
		p, err := taps.ParseProfile(c.profile)
		if err != nil {
			return nil, usagef("--profile: %w", err)
		}
		tp = taps.NewTransportProperties(p)
	} else {
		tp = taps.NewTransportProperties()
	}
	apply := map[taps.Preference]func(taps.Property) error{
		taps.Require: tp.Require, taps.Prefer: tp.Prefer, taps.Avoid: tp.Avoid, taps.Prohibit: tp.Prohibit,
	}
	for _, p := range c.prefs {
		prop, err := taps.ParseProperty(p.name)
		if err != nil {
			return nil, usagef("--%s %s: %w", p.flag, p.name, err)
		}
		if err := apply[p.level](prop); err != nil {
			return nil, usagef("--%s %s: %w", p.flag, p.name, err)
		}
	}
	return tp, nil
}

// security builds the SecurityParameters of the TLS flags (required
// security) or of --opportunistic; nil without either.
func (c *config) security() (*taps.SecurityParameters, error) {
	if !c.tls && !c.opportunistic {
		return nil, nil
	}
	sec := taps.NewSecurityParameters()
	if c.opportunistic {
		sec = taps.NewOpportunisticSecurityParameters()
	}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, usagef("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ca %s: no PEM certificate found", c.ca)
		}
		sec.SetTrustedCAs(pool)
	}
	if c.cert != "" {
		cert, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, usagef("--cert/--key: %w", err)
		}
		sec.SetIdentity(cert)
	}
	if c.alpn != "" {
		var protos []string
		for _, p := range strings.Split(c.alpn, ",") {
			if p = strings.TrimSpace(p); p != "" {
				protos = append(protos, p)
			}
		}
		sec.SetALPN(protos...)
	}
	if c.serverName != "" {
		sec.SetServerName(c.serverName)
	}
	return sec, nil
}

// newFramer returns a fresh framer for --framer, nil for none.
func (c *config) newFramer() framers.Framer {
	switch c.framer {
	case "length":
		return framers.NewLengthPrefix()
	case "line":
		return framers.NewLines()
	}
	return nil
}

// preconnection builds the Preconnection of the command line in sys.
func (c *config) preconnection(sys *taps.System) (*taps.Preconnection, error) {
	tp, err := c.transportProperties()
	if err != nil {
		return nil, err
	}
	sec, err := c.security()
	if err != nil {
		return nil, err
	}
	opts := []taps.PreconnectionOption{taps.WithSystem(sys), taps.WithTransportProperties(tp)}
	if len(c.protocols) > 0 {
		opts = append(opts, taps.WithProtocols(c.protocols...))
	}
	if sec == nil {
		sec = taps.NewDisabledSecurityParameters() // plain TCP unless a TLS flag asks
	}
	opts = append(opts, taps.WithSecurityParameters(sec))
	if c.attemptDelay > 0 {
		opts = append(opts, taps.WithAttemptDelay(c.attemptDelay))
	}
	if c.listen {
		l, err := c.localEndpoint()
		if err != nil {
			return nil, err
		}
		opts = append(opts, taps.WithLocalEndpoint(l))
	} else {
		r, err := c.remoteEndpoint()
		if err != nil {
			return nil, err
		}
		opts = append(opts, taps.WithRemoteEndpoint(r))
	}
	pre := taps.NewPreconnection(opts...)
	if f := c.newFramer(); f != nil {
		pre.AddFramer(f)
	}
	return pre, nil
}
