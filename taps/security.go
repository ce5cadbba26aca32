package taps

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
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
	// skip the secure attempt next time.
	SecurityOpportunistic
)

// SecurityParameters are RFC 9622 §6.3 security parameters. The setters
// return the parameters for chaining; a Preconnection copies them when it
// is created. Methods are safe for concurrent use.
type SecurityParameters struct {
	mu           sync.Mutex
	mode         SecurityMode
	roots        *x509.CertPool
	identity     []tls.Certificate
	alpn         []string
	serverName   string
	minVersion   uint16
	verify       func(state tls.ConnectionState) error
	challenge    func(info *tls.CertificateRequestInfo) (*tls.Certificate, error)
	sessionCache tls.ClientSessionCache
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

// SetIdentity sets the local identity (certificate and key).
func (s *SecurityParameters) SetIdentity(certs ...tls.Certificate) *SecurityParameters {
	s.mu.Lock()
	s.identity = append([]tls.Certificate(nil), certs...)
	s.mu.Unlock()
	return s
}

// SetALPN sets the application protocols to negotiate.
func (s *SecurityParameters) SetALPN(protos ...string) *SecurityParameters {
	s.mu.Lock()
	s.alpn = append([]string(nil), protos...)
	s.mu.Unlock()
	return s
}

// SetServerName sets the name to verify the server's certificate against
// (default: the remote endpoint's host name).
func (s *SecurityParameters) SetServerName(name string) *SecurityParameters {
	s.mu.Lock()
	s.serverName = name
	s.mu.Unlock()
	return s
}

// SetMinVersion sets the minimum TLS version (tls.VersionTLS12 by default).
func (s *SecurityParameters) SetMinVersion(v uint16) *SecurityParameters {
	s.mu.Lock()
	s.minVersion = v
	s.mu.Unlock()
	return s
}

// SetTrustVerificationCallback sets a callback that verifies the peer after
// the standard verification; an error fails the establishment.
func (s *SecurityParameters) SetTrustVerificationCallback(fn func(state tls.ConnectionState) error) *SecurityParameters {
	s.mu.Lock()
	s.verify = fn
	s.mu.Unlock()
	return s
}

// SetIdentityChallengeCallback sets the callback that provides the client
// certificate when the server asks for one.
func (s *SecurityParameters) SetIdentityChallengeCallback(fn func(info *tls.CertificateRequestInfo) (*tls.Certificate, error)) *SecurityParameters {
	s.mu.Lock()
	s.challenge = fn
	s.mu.Unlock()
	return s
}

// SetSessionCache sets the session ticket cache used for resumption.
func (s *SecurityParameters) SetSessionCache(c tls.ClientSessionCache) *SecurityParameters {
	s.mu.Lock()
	s.sessionCache = c
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
// later setter calls on s do not change.
func (s *SecurityParameters) clone() *SecurityParameters {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &SecurityParameters{mode: s.mode, roots: s.roots,
		identity: append([]tls.Certificate(nil), s.identity...), alpn: append([]string(nil), s.alpn...),
		serverName: s.serverName, minVersion: s.minVersion, verify: s.verify, challenge: s.challenge,
		sessionCache: s.sessionCache, allowTrunc: s.allowTrunc}
}

// requiresSecurity reports whether only secure stacks may be selected.
func (s *SecurityParameters) requiresSecurity() bool {
	return s != nil && s.Mode() == SecurityRequired
}
