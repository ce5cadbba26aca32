package taps

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"sync"
	"time"
)

// SecurityMode says how much security a Preconnection asks for.
type SecurityMode uint8

const (
	// SecurityRequired: only secure stacks (TLS, QUIC) may be selected;
	// NewSecurityParameters and the seed's security_needed=True.
	SecurityRequired SecurityMode = iota
	// SecurityDisabled: never add security (NewDisabledSecurityParameters).
	SecurityDisabled
	// SecurityOpportunistic: secure when available, plain otherwise
	// (NewOpportunisticSecurityParameters). The security is
	// unauthenticated (RFC 7435): an Initiate does not verify the
	// server's certificate (the trust verification callback still runs).
	// A plain stack is a fallback, not a rival: its attempt to an address
	// starts only when the secure attempts to that address (on the same
	// path) have failed, or after they have run for 2 s without an answer
	// (less when the establishment timeout or Initiate's ctx leaves less
	// than 4 s: half of it), so a slow TLS server is not beaten by plain
	// TCP to its port; a plain winner the race cache remembers does not
	// skip the secure attempt next time. A peer that answered in TLS and
	// whose handshake failed all the same (no common ALPN protocol, the
	// trust verification callback said no) gets no plain attempt: it is a
	// TLS server, and the establishment fails with the TLS attempt's error.
	SecurityOpportunistic
)

// SecurityParameters are RFC 9622 §6.3 security parameters. The setters
// return the parameters for chaining; a Preconnection copies them when it
// is created. Methods are safe for concurrent use.
//
// A setter never fails: a value that cannot be used (an unknown TLS
// version or cipher suite, a parameter crypto/tls has no API for) is
// recorded, and Initiate, InitiateWithSend, InitiateAsync, Rendezvous and
// Listen then fail before any packet is sent, with an *EstablishmentError
// (ReasonInvalidConfiguration) wrapping a *SecurityParameterError that
// names the parameter. [SecurityParameters.Set] returns that error at
// once. Parameters that disable security are not checked.
type SecurityParameters struct {
	mu         sync.Mutex
	mode       SecurityMode
	roots      *x509.CertPool
	identity   []tls.Certificate
	serverCert []tls.Certificate // serverCertificate: the server role's identity
	clientCert []tls.Certificate // clientCertificate: the client role's identity
	alpn       []string
	serverName string
	minVersion uint16
	maxVersion uint16
	// badProtocols: why SetAllowedSecurityProtocols' last list is
	// unusable (a *SecurityParameterError)
	badProtocols error
	suites       []uint16
	groups       []tls.CurveID
	sigAlgs      []tls.SignatureScheme
	psk          PreSharedKey
	pins         [][]*x509.Certificate
	verify       func(state tls.ConnectionState) error
	challenge    func(info *tls.CertificateRequestInfo) (*tls.Certificate, error)
	sessionCache tls.ClientSessionCache
	maxSessions  int
	ownCache     *sessionCache    // SetMaxCachedSessions(n > 0)'s cache
	lifetime     time.Duration    // cachedSessionLifetime (0: none of gotaps')
	now          func() time.Time // tests: the session caches' clock (nil: time.Now)
	allowTrunc   bool
}

// NewSecurityParameters returns parameters that require security, with the
// system's trusted CAs.
func NewSecurityParameters() *SecurityParameters { return &SecurityParameters{mode: SecurityRequired} }

// NewDisabledSecurityParameters returns parameters that never add security.
func NewDisabledSecurityParameters() *SecurityParameters {
	return &SecurityParameters{mode: SecurityDisabled}
}

// NewOpportunisticSecurityParameters returns parameters that use security
// when a secure stack is available and plain transport otherwise. That
// security is unauthenticated: a server whose certificate cannot be
// verified is still talked to over TLS or QUIC rather than in plain text.
func NewOpportunisticSecurityParameters() *SecurityParameters {
	return &SecurityParameters{mode: SecurityOpportunistic}
}

// Mode returns the security mode.
func (s *SecurityParameters) Mode() SecurityMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetTrustedCAs sets the CAs that verify the peer (default: the system's).
func (s *SecurityParameters) SetTrustedCAs(pool *x509.CertPool) *SecurityParameters {
	s.mu.Lock()
	s.roots = pool
	s.mu.Unlock()
	return s
}

// SetIdentity sets the local identity (certificate and key) of both
// roles: the server's certificate when listening (and in a Rendezvous's
// server role), the client certificate a server may ask for when
// initiating. [SecurityParameters.SetServerCertificates] and
// [SecurityParameters.SetClientCertificates] set one role's identity
// instead, which takes precedence over this one for that role. Default:
// none (a secure Listen then fails). A certificate that cannot be used
// (no chain, a leaf that does not parse, no private key, or one that is
// not the leaf's) makes Initiate and Listen fail (see
// [SecurityParameters]) as serverCertificate (or clientCertificate when
// only that role uses it).
func (s *SecurityParameters) SetIdentity(certs ...tls.Certificate) *SecurityParameters {
	s.mu.Lock()
	s.identity = append([]tls.Certificate(nil), certs...)
	s.mu.Unlock()
	return s
}

// SetServerCertificates sets the RFC 9622 serverCertificate parameter: the
// identity presented when this side is the server (Listen, a Rendezvous's
// server role) and never as a client certificate. Default: none, that is
// SetIdentity's certificates; no argument restores that.
func (s *SecurityParameters) SetServerCertificates(certs ...tls.Certificate) *SecurityParameters {
	s.mu.Lock()
	s.serverCert = append([]tls.Certificate(nil), certs...)
	s.mu.Unlock()
	return s
}

// SetClientCertificates sets the RFC 9622 clientCertificate parameter: the
// identity offered when a server asks this side, as the client (Initiate,
// a Rendezvous's client role), for a certificate, and never as a server's
// certificate. Default: none, that is SetIdentity's certificates; no
// argument restores that. An identity challenge callback, when set, is
// asked first.
func (s *SecurityParameters) SetClientCertificates(certs ...tls.Certificate) *SecurityParameters {
	s.mu.Lock()
	s.clientCert = append([]tls.Certificate(nil), certs...)
	s.mu.Unlock()
	return s
}

// roleIdentity is the identity for the server role (listen) or the client
// role; the caller holds s.mu.
func (s *SecurityParameters) roleIdentity(listen bool) []tls.Certificate {
	if listen && len(s.serverCert) > 0 {
		return s.serverCert
	}
	if !listen && len(s.clientCert) > 0 {
		return s.clientCert
	}
	return s.identity
}

// SetALPN sets the application protocols to negotiate. A name that is
// empty or longer than 255 bytes, which ALPN cannot carry (RFC 7301
// §3.1), makes Initiate and Listen fail (see [SecurityParameters]).
func (s *SecurityParameters) SetALPN(protos ...string) *SecurityParameters {
	s.mu.Lock()
	s.alpn = append([]string(nil), protos...)
	s.mu.Unlock()
	return s
}

// SetServerName sets the name to verify the server's certificate against
// and send as SNI (default: the host name of the RemoteEndpoint each
// attempt reaches, and for an endpoint given as an IP address that
// address: racing two endpoints, each is verified against its own name).
func (s *SecurityParameters) SetServerName(name string) *SecurityParameters {
	s.mu.Lock()
	s.serverName = name
	s.mu.Unlock()
	return s
}

// SetMinVersion sets the minimum TLS version (tls.VersionTLS12 by
// default; tls.VersionTLS10 to tls.VersionTLS13 are accepted).
func (s *SecurityParameters) SetMinVersion(v uint16) *SecurityParameters {
	s.mu.Lock()
	s.minVersion = v
	s.mu.Unlock()
	return s
}

// SetMaxVersion sets the maximum TLS version (default: tls.VersionTLS13,
// the newest crypto/tls speaks; tls.VersionTLS10 to tls.VersionTLS13 are
// accepted, not below the minimum). A maximum below tls.VersionTLS13
// rules QUIC out, which runs TLS 1.3 only (RFC 9001 §4.2): such a
// Preconnection selects TLS over TCP, and one left with QUIC alone
// (WithProtocols("quic"), or properties only QUIC satisfies) fails
// before any packet with a *SecurityParameterError (Op "select",
// allowedSecurityProtocols) wrapping ErrUnfulfilled.
func (s *SecurityParameters) SetMaxVersion(v uint16) *SecurityParameters {
	s.mu.Lock()
	s.maxVersion = v
	s.mu.Unlock()
	return s
}

// SetAllowedSecurityProtocols sets the RFC 9622 allowedSecurityProtocols
// parameter: the TLS versions that may be negotiated, by name, "tls1.2"
// and "tls1.3" (the versions RFC 8996 leaves; QUIC is TLS 1.3). It sets
// the minimum and maximum versions to the oldest and newest named, as
// SetMinVersion and SetMaxVersion do (so "tls1.2" alone rules QUIC out);
// no argument restores the defaults (TLS 1.2 to TLS 1.3). Default: both.
// An unknown name makes Initiate and Listen fail (see
// [SecurityParameters]) until a valid list is set.
func (s *SecurityParameters) SetAllowedSecurityProtocols(protos ...string) *SecurityParameters {
	lo, hi, err := versionRange(protos)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badProtocols = nil
	if err != nil {
		s.badProtocols = &SecurityParameterError{Op: "set", Param: "allowedSecurityProtocols",
			Value: slices.Clone(protos), Err: err}
		return s
	}
	s.minVersion, s.maxVersion = lo, hi
	return s
}

// SetCipherSuites sets the RFC 9622 ciphersuite parameter: the TLS 1.0-1.2
// cipher suites that may be negotiated (crypto/tls IDs such as
// tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256; the client offers them in
// this order). Default: crypto/tls's safe list; no argument restores it.
// crypto/tls does not let an application choose TLS 1.3 suites (it
// always offers TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and
// TLS_CHACHA20_POLY1305_SHA256, ordered by the hardware), so the list
// binds only connections that negotiate TLS 1.2 or older: QUIC, and TLS
// 1.3 over TCP, are not restricted by it; allow only "tls1.2"
// (SetAllowedSecurityProtocols) to make it bind every connection. A TLS
// 1.3 suite's ID, or one crypto/tls does not know, is not ignored: it
// makes Initiate and Listen fail (see [SecurityParameters]).
func (s *SecurityParameters) SetCipherSuites(ids ...uint16) *SecurityParameters {
	s.mu.Lock()
	s.suites = append([]uint16(nil), ids...)
	s.mu.Unlock()
	return s
}

// SetSupportedGroups sets the RFC 9622 supportedGroup parameter: the key
// exchange groups that may be negotiated, in order of preference
// (tls.Config.CurvePreferences: tls.X25519, tls.CurveP256,
// tls.X25519MLKEM768, ...), for TLS 1.2 and 1.3 alike, so for QUIC too.
// Default: crypto/tls's list (X25519MLKEM768 first); no argument restores
// it. An ID crypto/tls does not know makes Initiate and Listen fail (see
// [SecurityParameters]). A TLS 1.2 session, resumed without a new key
// exchange, is resumed only by parameters with the same list as those
// that made it (each list caches its sessions apart).
func (s *SecurityParameters) SetSupportedGroups(ids ...tls.CurveID) *SecurityParameters {
	s.mu.Lock()
	s.groups = append([]tls.CurveID(nil), ids...)
	s.mu.Unlock()
	return s
}

// SetSignatureAlgorithms records the RFC 9622 signatureAlgorithm
// parameter. crypto/tls has no API to choose the signature algorithms, so
// rather than ignore the request, gotaps makes Initiate and Listen fail
// before any packet with a *SecurityParameterError wrapping
// errors.ErrUnsupported. Default: none requested (crypto/tls's own
// list); no argument withdraws the request.
func (s *SecurityParameters) SetSignatureAlgorithms(algs ...tls.SignatureScheme) *SecurityParameters {
	s.mu.Lock()
	s.sigAlgs = append([]tls.SignatureScheme(nil), algs...)
	s.mu.Unlock()
	return s
}

// PreSharedKey is the RFC 9622 preSharedKey parameter: a key and the
// identity the peers know it by. The zero value is no key.
type PreSharedKey struct {
	Identity string
	Key      []byte
}

// SetPreSharedKey records the RFC 9622 preSharedKey parameter. crypto/tls
// has no external pre-shared key API (only resumption's own PSKs), so
// rather than ignore the key, gotaps makes Initiate and Listen fail before
// any packet with a *SecurityParameterError wrapping
// errors.ErrUnsupported. Default: none; the zero PreSharedKey withdraws it.
func (s *SecurityParameters) SetPreSharedKey(psk PreSharedKey) *SecurityParameters {
	s.mu.Lock()
	s.psk = PreSharedKey{Identity: psk.Identity, Key: append([]byte(nil), psk.Key...)}
	s.mu.Unlock()
	return s
}

// SetPinnedServerCertificates sets the RFC 9622 pinnedServerCertificate
// parameter: an establishment succeeds only if the certificate chain the
// server presents matches one of chains. A pinned chain matches when the
// server's chain, in the order the server sent it (leaf first), starts
// with it: each pinned certificate has the same DER encoding (Raw) as the
// server's certificate at the same position. Pinning only the leaf
// (a chain of one) thus accepts that certificate whatever intermediates
// follow it; pinning [leaf, intermediate] also requires that
// intermediate next. The check comes after the standard verification
// (trusted CAs, server name; skipped with opportunistic security), not
// instead of it, and before the trust verification callback; it runs on
// every handshake, resumed ones included (on the chain the session was
// made with). A mismatch fails the attempt with a *CertificatePinError.
// It binds the client role (Initiate, a Rendezvous's client role); a
// Listener does not check it. Default: no pin; no argument removes the
// pins. An empty chain or a nil certificate makes Initiate fail (see
// [SecurityParameters]).
func (s *SecurityParameters) SetPinnedServerCertificates(chains ...[]*x509.Certificate) *SecurityParameters {
	pins := make([][]*x509.Certificate, 0, len(chains))
	for _, c := range chains {
		pins = append(pins, append([]*x509.Certificate(nil), c...))
	}
	s.mu.Lock()
	s.pins = pins
	s.mu.Unlock()
	return s
}

// SetTrustVerificationCallback sets a callback that verifies the peer after
// the standard verification; an error fails the establishment. On a
// Listener it sees the client's certificate chain, if the client sends
// one (state.PeerCertificates): with trusted CAs (SetTrustedCAs) once they
// have verified it; without them the chain is asked for and handed to the
// callback unverified (crypto/tls only checks that the client holds the
// leaf's key), and the callback is its only judge. A client that sends
// none is not refused for that: the callback sees an empty chain.
func (s *SecurityParameters) SetTrustVerificationCallback(fn func(state tls.ConnectionState) error) *SecurityParameters {
	s.mu.Lock()
	s.verify = fn
	s.mu.Unlock()
	return s
}

// SetIdentityChallengeCallback sets the callback that provides the client
// certificate when the server asks for one. It is asked before the client
// identity (SetClientCertificates, else SetIdentity): its certificate is
// sent, its error fails the handshake, and no answer (nil, nil) sends the
// client identity's first certificate the server accepts, or none.
// &tls.Certificate{} sends no certificate whatever the identity.
func (s *SecurityParameters) SetIdentityChallengeCallback(fn func(info *tls.CertificateRequestInfo) (*tls.Certificate, error)) *SecurityParameters {
	s.mu.Lock()
	s.challenge = fn
	s.mu.Unlock()
	return s
}

// SetSessionCache sets the session ticket cache used for resumption
// (default: none of the application's, see SetMaxCachedSessions). It
// takes precedence over SetMaxCachedSessions.
func (s *SecurityParameters) SetSessionCache(c tls.ClientSessionCache) *SecurityParameters {
	s.mu.Lock()
	s.sessionCache = c
	s.mu.Unlock()
	return s
}

// SetMaxCachedSessions sets the RFC 9622 maxCachedSessions parameter: with
// n > 0, the initiating side caches its TLS and QUIC sessions for
// resumption in a cache of its own (tls.NewLRUClientSessionCache(n), the
// least recently used session leaving first), made by this call and
// shared by every Preconnection made from these parameters (each call
// makes a new, empty one); n < 0 caches no session, so none is resumed.
// Default (n = 0): the System's cache, 256 sessions shared by all of its
// Preconnections. A cache set by SetSessionCache takes precedence;
// isolateSession disables every cache.
func (s *SecurityParameters) SetMaxCachedSessions(n int) *SecurityParameters {
	var own *sessionCache
	if n > 0 {
		own = &sessionCache{c: tls.NewLRUClientSessionCache(n)}
	}
	s.mu.Lock()
	s.maxSessions, s.ownCache = n, own
	s.mu.Unlock()
	return s
}

// SetCachedSessionLifetime sets the RFC 9622 cachedSessionLifetimeSeconds
// parameter: an initiating side resumes no session it cached longer than d
// ago (it makes a full handshake instead, and caches the new session),
// whichever cache holds it; a session cached without gotaps' time stamp
// (put in an application's cache by other code) counts as too old. d is
// used with the clock's precision, not rounded to seconds. Default (d =
// 0): no limit besides the server's ticket lifetime (at most 7 days in
// TLS 1.3, RFC 8446 §4.6.1). A negative d makes Initiate fail (see
// [SecurityParameters]).
func (s *SecurityParameters) SetCachedSessionLifetime(d time.Duration) *SecurityParameters {
	s.mu.Lock()
	s.lifetime = d
	s.mu.Unlock()
	return s
}

// SetTruncationAllowed, with allow true, takes a TLS peer's TCP FIN that
// comes without a close_notify alert, after a whole record, for a clean
// end of stream (the connection half-closes, the last message is final),
// as crypto/tls itself reports it. Some peers end their streams that way
// (HTTP/1.x servers among them); allow it only when the application's own
// framing tells a complete stream from a cut one, since anyone on the path
// can end a TCP stream (RFC 8446 §6.1). By default (false) such an end is
// a failure: a *ConnectionError unwrapping to [ErrTLSTruncated]. A stream
// cut inside a record is that failure whatever this says. QUIC is not
// concerned (its streams end with their own authenticated FIN).
func (s *SecurityParameters) SetTruncationAllowed(allow bool) *SecurityParameters {
	s.mu.Lock()
	s.allowTrunc = allow
	s.mu.Unlock()
	return s
}

// truncationAllowed reports SetTruncationAllowed's value (false for nil).
func (s *SecurityParameters) truncationAllowed() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allowTrunc
}

// clone returns a copy of s (nil for nil): a Preconnection's own, which
// later setter calls on s do not change. A SetMaxCachedSessions cache is
// shared with the copy, as a SetSessionCache one is.
func (s *SecurityParameters) clone() *SecurityParameters {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pins := make([][]*x509.Certificate, 0, len(s.pins))
	for _, c := range s.pins {
		pins = append(pins, slices.Clone(c))
	}
	return &SecurityParameters{mode: s.mode, roots: s.roots, identity: slices.Clone(s.identity),
		serverCert: slices.Clone(s.serverCert), clientCert: slices.Clone(s.clientCert), alpn: slices.Clone(s.alpn),
		serverName: s.serverName, minVersion: s.minVersion, maxVersion: s.maxVersion, badProtocols: s.badProtocols,
		suites: slices.Clone(s.suites), groups: slices.Clone(s.groups), sigAlgs: slices.Clone(s.sigAlgs),
		psk: PreSharedKey{Identity: s.psk.Identity, Key: slices.Clone(s.psk.Key)}, pins: pins,
		verify: s.verify, challenge: s.challenge, sessionCache: s.sessionCache, maxSessions: s.maxSessions,
		ownCache: s.ownCache, lifetime: s.lifetime, now: s.now, allowTrunc: s.allowTrunc}
}

// requiresSecurity reports whether only secure stacks may be selected.
func (s *SecurityParameters) requiresSecurity() bool {
	return s != nil && s.Mode() == SecurityRequired
}
