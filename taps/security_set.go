package taps

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// This file holds the generic form of the security parameters (Set, by
// their RFC 9622 §6.3 names), their errors, and the checks that make an
// unusable value fail Initiate and Listen before any packet.

// Errors of the security parameters. They are wrapped in a
// [*SecurityParameterError]; test for them with errors.Is.
var (
	// ErrUnknownSecurityParameter: Set was given a name that is not an
	// RFC 9622 §6.3 security parameter.
	ErrUnknownSecurityParameter = errors.New("unknown security parameter")
	// ErrInvalidSecurityParameter: a value of the wrong Go type for its
	// parameter, or one that cannot be used (an unknown TLS version,
	// cipher suite or group, a TLS 1.3 cipher suite, a minimum version
	// above the maximum, an empty pinned chain, a negative lifetime, an
	// identity without a chain or without its private key, an ALPN
	// protocol name that is empty or longer than 255 bytes).
	ErrInvalidSecurityParameter = errors.New("invalid security parameter")
)

// SecurityParameterError reports a security parameter that cannot be used:
// Set returns it, and Initiate, Listen and Rendezvous fail with an
// *EstablishmentError wrapping it. Err wraps [ErrUnknownSecurityParameter],
// [ErrInvalidSecurityParameter], errors.ErrUnsupported (signatureAlgorithm
// and preSharedKey, which crypto/tls has no API for) or, with Op "select",
// [ErrUnfulfilled] (no protocol stack is left that can honour it: QUIC
// with TLS 1.3 not allowed).
type SecurityParameterError struct {
	// Op is "set" (the value itself is unusable) or "select" (no stack
	// can honour it).
	Op string
	// Param is the RFC 9622 name: "allowedSecurityProtocols",
	// "ciphersuite", ...
	Param string
	// Value is the offending value, or nil.
	Value any
	// Err is the cause.
	Err error
}

// Error returns "<op> security parameter <name>: <cause>", for example
// "set security parameter ciphersuite: invalid security parameter:
// TLS_AES_128_GCM_SHA256 is a TLS 1.3 cipher suite, which crypto/tls does
// not let an application choose".
func (e *SecurityParameterError) Error() string {
	op := e.Op
	if op == "" {
		op = "set"
	}
	return op + " security parameter " + e.Param + ": " + errString(e.Err)
}

// Unwrap returns the cause.
func (e *SecurityParameterError) Unwrap() error { return e.Err }

// securityParamNames are the RFC 9622 §6.3 names Set takes, in the order
// a Preconnection checks them.
var securityParamNames = []string{
	"allowedSecurityProtocols", "serverCertificate", "clientCertificate", "pinnedServerCertificate",
	"alpn", "supportedGroup", "ciphersuite", "signatureAlgorithm", "maxCachedSessions",
	"cachedSessionLifetimeSeconds", "preSharedKey",
}

// Set sets the security parameter named param (its RFC 9622 §6.3 name) to
// value, as the typed setter named below does; a value of the wrong Go
// type is not stored, and fails with a *SecurityParameterError wrapping
// ErrInvalidSecurityParameter. A stored value that cannot be used gives
// the error Initiate and Listen will fail with (see
// [SecurityParameters]); otherwise Set returns nil. The names and the
// types they take:
//
//	allowedSecurityProtocols      []string or string ("tls1.2", "tls1.3")  SetAllowedSecurityProtocols
//	serverCertificate             []tls.Certificate or tls.Certificate      SetServerCertificates
//	clientCertificate             []tls.Certificate or tls.Certificate      SetClientCertificates
//	pinnedServerCertificate       [][]*x509.Certificate (chains),           SetPinnedServerCertificates
//	                              []*x509.Certificate (one chain) or
//	                              *x509.Certificate (a leaf)
//	alpn                          []string or string                       SetALPN
//	supportedGroup                []tls.CurveID or tls.CurveID             SetSupportedGroups
//	ciphersuite                   []uint16 or uint16                       SetCipherSuites
//	signatureAlgorithm            []tls.SignatureScheme or                 SetSignatureAlgorithms
//	                              tls.SignatureScheme
//	maxCachedSessions             int (any integer type)                   SetMaxCachedSessions
//	cachedSessionLifetimeSeconds  int (any integer type: seconds) or       SetCachedSessionLifetime
//	                              time.Duration
//	preSharedKey                  PreSharedKey or *PreSharedKey            SetPreSharedKey
//
// An unknown name fails with ErrUnknownSecurityParameter. Set is safe for
// concurrent use, as the setters are.
func (s *SecurityParameters) Set(param string, value any) error {
	wrongType := func(want string) error {
		return &SecurityParameterError{Op: "set", Param: param, Value: value,
			Err: fmt.Errorf("%w: %T, want %s", ErrInvalidSecurityParameter, value, want)}
	}
	switch param {
	case "allowedSecurityProtocols":
		v, ok := sliceOf[string](value)
		if !ok {
			return wrongType("[]string or string")
		}
		s.SetAllowedSecurityProtocols(v...)
	case "serverCertificate", "clientCertificate":
		v, ok := sliceOf[tls.Certificate](value)
		if !ok {
			return wrongType("[]tls.Certificate or tls.Certificate")
		}
		if param == "serverCertificate" {
			s.SetServerCertificates(v...)
		} else {
			s.SetClientCertificates(v...)
		}
	case "pinnedServerCertificate":
		var chains [][]*x509.Certificate
		switch v := value.(type) {
		case [][]*x509.Certificate:
			chains = v
		case []*x509.Certificate:
			chains = [][]*x509.Certificate{v}
		case *x509.Certificate:
			chains = [][]*x509.Certificate{{v}}
		default:
			return wrongType("[][]*x509.Certificate, []*x509.Certificate or *x509.Certificate")
		}
		s.SetPinnedServerCertificates(chains...)
	case "alpn":
		v, ok := sliceOf[string](value)
		if !ok {
			return wrongType("[]string or string")
		}
		s.SetALPN(v...)
	case "supportedGroup":
		v, ok := sliceOf[tls.CurveID](value)
		if !ok {
			return wrongType("[]tls.CurveID or tls.CurveID")
		}
		s.SetSupportedGroups(v...)
	case "ciphersuite":
		v, ok := sliceOf[uint16](value)
		if !ok {
			return wrongType("[]uint16 or uint16")
		}
		s.SetCipherSuites(v...)
	case "signatureAlgorithm":
		v, ok := sliceOf[tls.SignatureScheme](value)
		if !ok {
			return wrongType("[]tls.SignatureScheme or tls.SignatureScheme")
		}
		s.SetSignatureAlgorithms(v...)
	case "maxCachedSessions":
		n, ok := integer(value)
		if !ok {
			return wrongType("an integer (that fits an int)")
		}
		s.SetMaxCachedSessions(n)
	case "cachedSessionLifetimeSeconds":
		d, ok := value.(time.Duration)
		if !ok {
			n, isInt := integer(value)
			if !isInt {
				return wrongType("an integer (seconds) or time.Duration")
			}
			if d = time.Duration(n) * time.Second; d/time.Second != time.Duration(n) {
				return &SecurityParameterError{Op: "set", Param: param, Value: value,
					Err: fmt.Errorf("%w: %d s does not fit a time.Duration", ErrInvalidSecurityParameter, n)}
			}
		}
		s.SetCachedSessionLifetime(d)
	case "preSharedKey":
		switch v := value.(type) {
		case PreSharedKey:
			s.SetPreSharedKey(v)
		case *PreSharedKey:
			if v == nil {
				return wrongType("PreSharedKey or a non-nil *PreSharedKey")
			}
			s.SetPreSharedKey(*v)
		default:
			return wrongType("PreSharedKey or *PreSharedKey")
		}
	default:
		return &SecurityParameterError{Op: "set", Param: param, Value: value,
			Err: fmt.Errorf("%w (want one of %s)", ErrUnknownSecurityParameter, strings.Join(securityParamNames, ", "))}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paramErrLocked(param)
}

// sliceOf returns v as a []T when it is one, or a T.
func sliceOf[T any](v any) ([]T, bool) {
	switch v := v.(type) {
	case []T:
		return v, true
	case T:
		return []T{v}, true
	}
	return nil, false
}

// integer returns v as an int when it is a Go integer that fits one.
func integer(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case int8:
		return int(v), true
	case int16:
		return int(v), true
	case int32:
		return int(v), true
	case int64:
		return int(v), int64(int(v)) == v
	case uint8:
		return int(v), true
	case uint16:
		return int(v), true
	case uint32:
		return int(v), uint64(v) <= math.MaxInt
	case uint:
		return int(v), uint64(v) <= math.MaxInt
	case uint64:
		return int(v), v <= math.MaxInt
	}
	return 0, false
}

// problemLocked is the first unusable parameter of s, in
// securityParamNames order, or nil; the caller holds s.mu.
func (s *SecurityParameters) problemLocked() error {
	for _, name := range securityParamNames {
		if err := s.paramErrLocked(name); err != nil {
			return err
		}
	}
	return nil
}

// paramErrLocked tells why the parameter name's value cannot be used, or
// returns nil; the caller holds s.mu.
func (s *SecurityParameters) paramErrLocked(name string) error {
	invalid := func(v any, format string, args ...any) error {
		return &SecurityParameterError{Op: "set", Param: name, Value: v,
			Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidSecurityParameter}, args...)...)}
	}
	unsupported := func(v any, what string) error {
		return &SecurityParameterError{Op: "set", Param: name, Value: v,
			Err: fmt.Errorf("crypto/tls has no API to %s: %w", what, errors.ErrUnsupported)}
	}
	switch name {
	case "allowedSecurityProtocols":
		if s.badProtocols != nil {
			return s.badProtocols
		}
		for _, v := range []uint16{s.minVersion, s.maxVersion} {
			if v != 0 && (v < tls.VersionTLS10 || v > tls.VersionTLS13) {
				return invalid(v, "TLS version %#04x (want tls.VersionTLS10 to tls.VersionTLS13)", v)
			}
		}
		if lo, hi := s.versionsLocked(); lo > hi {
			return invalid([2]uint16{lo, hi}, "minimum version %s above maximum %s",
				tls.VersionName(lo), tls.VersionName(hi))
		}
	case "serverCertificate", "clientCertificate":
		for i, c := range s.roleIdentity(name == "serverCertificate") {
			if why := identityProblem(c); why != "" {
				return invalid(c, "certificate %d: %s", i, why)
			}
		}
	case "alpn":
		for _, p := range s.alpn {
			if len(p) == 0 || len(p) > 255 {
				return invalid(p, "protocol name of %d bytes (RFC 7301: 1 to 255)", len(p))
			}
		}
	case "pinnedServerCertificate":
		for i, c := range s.pins {
			if len(c) == 0 {
				return invalid(c, "pinned chain %d is empty (it would match any server)", i)
			}
			for _, cert := range c {
				if cert == nil || len(cert.Raw) == 0 {
					return invalid(c, "pinned chain %d has a nil or unparsed certificate", i)
				}
			}
		}
	case "supportedGroup":
		for _, g := range s.groups {
			if strings.HasPrefix(g.String(), "CurveID(") {
				return invalid(g, "group %d is not one crypto/tls supports", uint16(g))
			}
		}
	case "ciphersuite":
		for _, id := range s.suites {
			cs := cipherSuite(id)
			switch {
			case cs == nil:
				return invalid(id, "cipher suite %#04x is not one crypto/tls supports", id)
			case !beforeTLS13(cs.SupportedVersions):
				return invalid(id, "%s is a TLS 1.3 cipher suite, which crypto/tls does not let an application choose "+
					"(TLS 1.3 and QUIC always offer TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256)",
					cs.Name)
			}
		}
	case "signatureAlgorithm":
		if len(s.sigAlgs) > 0 {
			return unsupported(s.sigAlgs, "choose the signature algorithms")
		}
	case "maxCachedSessions":
	case "cachedSessionLifetimeSeconds":
		if s.lifetime < 0 {
			return invalid(s.lifetime, "negative lifetime %v", s.lifetime)
		}
	case "preSharedKey":
		if len(s.psk.Key) > 0 || s.psk.Identity != "" {
			return unsupported(s.psk.Identity, "use an external pre-shared key (it has resumption PSKs only)")
		}
	}
	return nil
}

// identityProblem tells why c cannot be a TLS identity (a chain whose
// leaf does not parse, no private key, a key that cannot sign or does not
// belong to the leaf), or returns "". crypto/tls would only find out in a
// handshake: a Listener would accept connections and fail each one.
func identityProblem(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return "no certificate chain"
	}
	leaf := c.Leaf // tls.X509KeyPair and LoadX509KeyPair parse it
	if leaf == nil || !bytes.Equal(leaf.Raw, c.Certificate[0]) {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return "the leaf certificate does not parse: " + err.Error()
		}
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		if c.PrivateKey == nil {
			return "no private key"
		}
		return fmt.Sprintf("private key of type %T cannot sign", c.PrivateKey)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return "the private key does not match the leaf certificate's public key"
	}
	return ""
}

// beforeTLS13 reports whether versions has a version before TLS 1.3.
func beforeTLS13(versions []uint16) bool {
	for _, v := range versions {
		if v < tls.VersionTLS13 {
			return true
		}
	}
	return false
}

// cipherSuite is crypto/tls's description of id, secure or not, or nil.
func cipherSuite(id uint16) *tls.CipherSuite {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			if cs.ID == id {
				return cs
			}
		}
	}
	return nil
}

// versionsLocked returns the minimum and maximum TLS versions in effect;
// the caller holds s.mu.
func (s *SecurityParameters) versionsLocked() (lo, hi uint16) {
	lo, hi = s.minVersion, s.maxVersion
	if lo == 0 {
		lo = tls.VersionTLS12
	}
	if hi == 0 {
		hi = tls.VersionTLS13
	}
	return lo, hi
}

// allowsQUIC reports whether the parameters allow TLS 1.3, the only
// version QUIC runs (RFC 9001 §4.2). Parameters that do not secure (nil,
// disabled) do not concern QUIC: true.
func (s *SecurityParameters) allowsQUIC() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, hi := s.versionsLocked()
	return s.mode == SecurityDisabled || hi >= tls.VersionTLS13
}

// protocolNames are the allowedSecurityProtocols names and their versions.
var protocolNames = map[string]uint16{"tls1.2": tls.VersionTLS12, "tls1.3": tls.VersionTLS13}

// versionRange returns the oldest and newest version named in protos (0, 0
// for none: the defaults).
func versionRange(protos []string) (lo, hi uint16, err error) {
	for _, p := range protos {
		v, ok := protocolNames[strings.ToLower(p)]
		if !ok {
			why := `want "tls1.2" or "tls1.3"`
			if l := strings.ToLower(p); l == "tls1.0" || l == "tls1.1" {
				why += "; TLS 1.0 and 1.1 are deprecated (RFC 8996), see SetMinVersion"
			}
			return 0, 0, fmt.Errorf("%w: unknown security protocol %q (%s)", ErrInvalidSecurityParameter, p, why)
		}
		if lo == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return lo, hi, nil
}
