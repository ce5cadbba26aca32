package taps

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// This file turns RFC 9622 connection properties and security parameters
// into the socket options and TLS configuration of the protocol stacks.

// stackOptions maps the connection properties of tp to stack options
// (RFC 9622 §8.1, §8.2): connTimeout and tcp.userTimeoutValue to
// TCP_USER_TIMEOUT (or the QUIC idle timeout), keepAlive and
// keepAliveTimeout to keep-alive probes (a keepAliveTimeout turns them on
// unless keepAlive is Avoid or Prohibit), connCapacityProfile to the DSCP,
// multipath to MPTCP, softErrorNotify (Prefer or Require) to ICMP error
// delivery, perMsgReliability (Prefer or Require) to QUIC datagrams, and recvChecksumLen and the default msgChecksumLen to the
// UDP-Lite checksum coverage. The rate properties are applied by the
// connection itself (they can change on an open connection).
func stackOptions(tp *TransportProperties, r role) stacks.Options {
	var o stacks.Options
	if v, ok := tp.Get(ConnTimeout); ok {
		if d, ok := v.(time.Duration); ok {
			o.ConnTimeout = d
		}
	}
	if v, _ := tp.Get(TCPUserTimeoutEnabled); v == true {
		if d, ok := mustGet(tp, TCPUserTimeoutValue).(time.Duration); ok {
			o.UserTimeout = d
		}
	}
	if pref := tp.Preference(KeepAlive); pref == Prefer || pref == Require {
		if d, ok := mustGet(tp, KeepAliveTimeout).(time.Duration); ok && (o.ConnTimeout == 0 || d <= o.ConnTimeout) {
			o.KeepAlive = d
		} else if !ok {
			o.KeepAlive = 15 * time.Second // keepAlive asked for with no period: Go's default idle time
		}
	} else if d, ok := mustGet(tp, KeepAliveTimeout).(time.Duration); ok && pref == NoPreference && (o.ConnTimeout == 0 || d <= o.ConnTimeout) {
		o.KeepAlive = d // a keepAliveTimeout asks for keep-alives where the stack has them
	}
	if c, ok := mustGet(tp, ConnCapacityProfile).(CapacityProfile); ok {
		o.DSCP = c.DSCP()
	}
	if pref := tp.Preference(SoftErrorNotify); pref == Prefer || pref == Require {
		o.SoftErrors = true
	}
	if pref := tp.Preference(PerMsgReliability); pref == Prefer || pref == Require {
		o.QUICDatagrams = true // unreliable messages as QUIC datagrams (RFC 9221)
	}
	o.RecvChecksumLen = checksumOption(mustGet(tp, RecvChecksumLen))
	o.SendChecksumLen = checksumOption(mustGet(tp, MsgChecksumLen))
	if v, ok := tp.effective(descOf(Multipath), r); ok {
		if m, ok := v.(MultipathMode); ok && m != MultipathDisabled {
			o.MPTCP = true
		}
	}
	return o
}

// stackOptionsFromMessage is messages.ConnectionConfig.DeriveStackOptions:
// base with its property-dependent fields derived anew (stackOptions,
// initiate role: the options are used to dial) from the encoded
// properties props. It is pure; props that do not decode leave base
// unchanged.
func stackOptionsFromMessage(props *messages.Properties, base stacks.Options) stacks.Options {
	tp, err := propsFromMessage(props)
	if err != nil {
		return base
	}
	base = withPropertyOptions(base, stackOptions(tp, roleInitiate))
	if v, _ := tp.Get(IsolateSession); v == true && base.TLS != nil && base.TLS.ClientSessionCache != nil {
		// isolateSession set on an open connection: later dials resume
		// no session from a cache shared outside the group (the racing
		// cache reads the property itself)
		c := base.TLS.Clone()
		c.ClientSessionCache = nil
		base.TLS = c
	}
	return base
}

// withPropertyOptions returns base with the fields stackOptions derives
// taken from o.
func withPropertyOptions(base, o stacks.Options) stacks.Options {
	base.ConnTimeout, base.UserTimeout = o.ConnTimeout, o.UserTimeout
	base.KeepAlive, base.DSCP, base.SoftErrors = o.KeepAlive, o.DSCP, o.SoftErrors
	base.RecvChecksumLen, base.SendChecksumLen, base.MPTCP = o.RecvChecksumLen, o.SendChecksumLen, o.MPTCP
	return base
}

// checksumOption maps recvChecksumLen / msgChecksumLen (bytes >= 0 or
// FullCoverage) to the stacks' coverage: 0 full, n > 0 the first n payload
// bytes, negative the header only (the property's 0).
func checksumOption(v any) int {
	n, ok := v.(int64)
	switch {
	case !ok:
		return 0
	case n == 0:
		return -1
	}
	return int(n)
}

func mustGet(tp *TransportProperties, p Property) any {
	v, _ := tp.Get(p)
	return v
}

// sessionCache is the System's TLS session ticket cache, so that
// resumption works across Initiates to the same host unless isolateSession
// is set. It is made on first use.
func (s *System) sessionCache() tls.ClientSessionCache {
	s.cacheOnce.Do(func() { s.tlsCache = tls.NewLRUClientSessionCache(256) })
	return s.tlsCache
}

// errNoIdentity: a secure Listener needs a certificate.
var errNoIdentity = errors.New("a secure listener needs a local identity (SecurityParameters.SetIdentity)")

// tlsConfig builds the TLS configuration of a Preconnection's security
// parameters for one role. It returns nil when sec does not allow
// security.
func tlsConfig(sec *SecurityParameters, listen bool, isolate bool, sys *System) (*tls.Config, error) {
	if sec == nil || sec.Mode() == SecurityDisabled {
		return nil, nil
	}
	sec.mu.Lock()
	defer sec.mu.Unlock()
	c := &tls.Config{
		RootCAs:    sec.roots,
		NextProtos: append([]string(nil), sec.alpn...),
		ServerName: sec.serverName,
		MinVersion: sec.minVersion,
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if verify := sec.verify; verify != nil {
		c.VerifyConnection = verify
	}
	if listen {
		if len(sec.identity) == 0 {
			if sec.mode == SecurityOpportunistic {
				return nil, nil
			}
			return nil, errNoIdentity
		}
		c.Certificates = append([]tls.Certificate(nil), sec.identity...)
		if sec.roots != nil { // trusted CAs on a listener verify client certificates
			c.ClientCAs = sec.roots
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	if len(sec.identity) > 0 {
		c.Certificates = append([]tls.Certificate(nil), sec.identity...)
	}
	if ch := sec.challenge; ch != nil {
		c.GetClientCertificate = ch
	}
	switch {
	case sec.sessionCache != nil:
		c.ClientSessionCache = sec.sessionCache
	case !isolate:
		c.ClientSessionCache = sys.sessionCache()
	}
	return c, nil
}
