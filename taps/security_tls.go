package taps

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gotaps/gotaps/stacks"
)

// This file applies the security parameters that crypto/tls does not take
// as plain configuration: certificate pinning, the session caches with
// their lifetime, and QUIC's TLS 1.3 requirement in stack selection.

// CertificatePinError is the failure of the pinnedServerCertificate check
// (SecurityParameters.SetPinnedServerCertificates): the chain the server
// presented matches none of the pinned chains. The attempt's TLS handshake
// fails with it, so an Initiate's *EstablishmentError unwraps to it.
type CertificatePinError struct {
	// Presented is the server's chain, in the order it sent it (leaf
	// first).
	Presented []*x509.Certificate
	// Pinned is the number of pinned chains.
	Pinned int
}

// Error says that the pin check failed and names the server's leaf by its
// subject and the start of its SHA-256 fingerprint.
func (e *CertificatePinError) Error() string {
	leaf := "no certificate"
	if len(e.Presented) > 0 {
		sum := sha256.Sum256(e.Presented[0].Raw)
		leaf = fmt.Sprintf("leaf %q, sha256 %x...", e.Presented[0].Subject.String(), sum[:8])
	}
	return fmt.Sprintf("pinned server certificate check failed: the server's chain (%d certificate(s), %s) matches none of the %d pinned chain(s)",
		len(e.Presented), leaf, e.Pinned)
}

// checkPins returns a *CertificatePinError unless presented starts with
// one of pins (DER equality, position by position).
func checkPins(pins [][]*x509.Certificate, presented []*x509.Certificate) error {
	for _, pin := range pins {
		if len(pin) > len(presented) {
			continue
		}
		match := true
		for i, c := range pin {
			if !bytes.Equal(c.Raw, presented[i].Raw) {
				match = false
				break
			}
		}
		if match {
			return nil
		}
	}
	return &CertificatePinError{Presented: presented, Pinned: len(pins)}
}

// verifyConnection is the tls.Config.VerifyConnection of a role: the pin
// check (client role only) and then the application's trust verification
// callback, whose panic fails the handshake (recoverCallback). It is nil
// when there is nothing to check; the caller holds s.mu.
func (s *SecurityParameters) verifyConnectionLocked(listen bool) func(tls.ConnectionState) error {
	verify := s.verify
	var pins [][]*x509.Certificate
	if !listen && len(s.pins) > 0 {
		pins = s.pins
	}
	if verify == nil && pins == nil {
		return nil
	}
	return func(cs tls.ConnectionState) (err error) {
		if pins != nil {
			if err := checkPins(pins, cs.PeerCertificates); err != nil {
				return err
			}
		}
		if verify == nil {
			return nil
		}
		defer recoverCallback(&err)
		return verify(cs)
	}
}

// clientSessionCacheLocked is the session cache of an initiating side (nil:
// none), after isolateSession, SetSessionCache, SetMaxCachedSessions and
// SetCachedSessionLifetime; the caller holds s.mu.
func (s *SecurityParameters) clientSessionCacheLocked(isolate bool, sys *System) tls.ClientSessionCache {
	var c tls.ClientSessionCache
	switch {
	case isolate:
		// isolateSession: no cached session, not even from the
		// application's own cache (as stackOptionsFromMessage does when
		// the property is set on an open connection)
		return nil
	case s.sessionCache != nil:
		c = s.sessionCache
	case s.maxSessions < 0:
		return nil
	case s.ownCache != nil:
		c = s.ownCache
	default:
		c = sys.sessionCache()
	}
	scope := s.sessionScopeLocked()
	if s.lifetime <= 0 && scope == "" {
		return c
	}
	if sc, ok := c.(*sessionCache); ok {
		c = sc.c // one layer: the same store, with a lifetime and a scope
	}
	return &sessionCache{c: c, lifetime: s.lifetime, now: s.now, scope: scope}
}

// scopeSeq numbers the session scopes of identity challenge callbacks.
var scopeSeq atomic.Uint64

// sessionScopeLocked is the part of a session cache's keys that keeps
// sessions made with one client identity from being resumed with
// another: crypto/tls keys a session by the server's name alone, and a
// resumed session carries the client certificate of the handshake that
// made it (a server would see the first identity again). Empty (shared
// with every Preconnection without one) without a client identity; a
// digest of the certificates of a fixed identity; a scope of its own for
// each configuration with an identity challenge callback, whose answer
// gotaps cannot know in advance (each Preconnection makes its
// configuration once: its own Initiates resume each other's sessions).
// A supportedGroup list adds its groups: a TLS 1.2 session is resumed
// without a key exchange, and crypto/tls does not check the group its
// keys came from against the list (TLS 1.3 and QUIC make a new exchange,
// with a group of the list). The caller holds s.mu.
func (s *SecurityParameters) sessionScopeLocked() string {
	scope := s.identityScopeLocked()
	if len(s.groups) > 0 {
		var b strings.Builder
		b.WriteString("g")
		for _, g := range s.groups {
			b.WriteString(strconv.FormatUint(uint64(g), 16))
			b.WriteString(",")
		}
		scope += b.String() + "|"
	}
	return scope
}

// identityScopeLocked is sessionScopeLocked's part for the client
// identity; the caller holds s.mu.
func (s *SecurityParameters) identityScopeLocked() string {
	if s.challenge != nil {
		return "cb" + strconv.FormatUint(scopeSeq.Add(1), 10) + "|"
	}
	certs := s.roleIdentity(false)
	if len(certs) == 0 {
		return ""
	}
	h := sha256.New()
	for _, c := range certs {
		for _, der := range c.Certificate {
			h.Write(der)
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return "id" + hex.EncodeToString(h.Sum(nil)[:16]) + "|"
}

// sessionCache is a client session cache gotaps gives crypto/tls: the
// System's, a SetMaxCachedSessions one, and any with a
// cachedSessionLifetime or a client identity (its keys then carry the
// identity's scope). Put stamps each session with the time it was
// stored, in an entry of its SessionState.Extra (which crypto/tls leaves
// to the application, and in which quic-go finds its own entry by its
// prefix). Get returns a copy of the cached session state (quic-go writes
// to a resumed session's, EarlyData: a data race when concurrent
// handshakes resume from one ticket) and, with a lifetime, misses a
// session stored longer ago, or without a stamp.
type sessionCache struct {
	c        tls.ClientSessionCache
	scope    string           // prefixes every key (sessionScopeLocked)
	lifetime time.Duration    // > 0: the longest a session is resumed after its Put
	now      func() time.Time // nil: time.Now (tests set a clock)
}

// storedPrefix starts the Extra entry that holds a session's store time
// (Unix nanoseconds, 8 bytes big-endian).
const storedPrefix = "gotaps-stored:"

func (c *sessionCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// Put stores cs stamped with the time (a nil cs, crypto/tls' deletion, as
// is).
func (c *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	key = c.scope + key
	if cs == nil {
		c.c.Put(key, nil)
		return
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil {
		c.c.Put(key, cs)
		return
	}
	cp := *st
	cp.Extra = make([][]byte, 0, len(st.Extra)+1)
	for _, e := range st.Extra {
		if !strings.HasPrefix(string(e), storedPrefix) {
			cp.Extra = append(cp.Extra, e)
		}
	}
	cp.Extra = append(cp.Extra, binary.BigEndian.AppendUint64([]byte(storedPrefix), uint64(c.clock().UnixNano())))
	stamped, err := tls.NewResumptionState(ticket, &cp)
	if err != nil {
		c.c.Put(key, cs)
		return
	}
	c.c.Put(key, stamped)
}

// Get returns a copy of the session cached for key, unless it is older
// than the lifetime.
func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.c.Get(c.scope + key)
	if !ok || cs == nil {
		return cs, ok
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil {
		return cs, ok
	}
	if c.lifetime > 0 {
		stored, ok := storedAt(st.Extra)
		if !ok || c.clock().Sub(stored) > c.lifetime {
			return nil, false
		}
	}
	cp := *st
	cp.Extra = append([][]byte(nil), st.Extra...)
	ncs, err := tls.NewResumptionState(ticket, &cp)
	if err != nil {
		return cs, ok
	}
	return ncs, true
}

// storedAt reads the store time stamped in extra.
func storedAt(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if b, ok := bytes.CutPrefix(e, []byte(storedPrefix)); ok && len(b) == 8 {
			return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
		}
	}
	return time.Time{}, false
}

// sessionCache is the System's TLS session ticket cache, so that
// resumption works across Initiates to the same host unless isolateSession
// is set. It is made on first use.
func (s *System) sessionCache() tls.ClientSessionCache {
	s.cacheOnce.Do(func() { s.tlsCache = &sessionCache{c: tls.NewLRUClientSessionCache(256)} })
	return s.tlsCache
}

// withoutTLS13Only drops the stacks that run TLS 1.3 only (QUIC) from all.
func withoutTLS13Only(all []stacks.Stack) []stacks.Stack {
	out := make([]stacks.Stack, 0, len(all))
	for _, st := range all {
		if st.Name() != "quic" {
			out = append(out, st)
		}
	}
	return out
}

// quicRuledOut is the selection error of parameters that do not allow TLS
// 1.3 when only QUIC would have been selected without that: a
// *SecurityParameterError wrapping err (which wraps ErrUnfulfilled).
func quicRuledOut(sec *SecurityParameters, err error) error {
	sec.mu.Lock()
	lo, hi := sec.versionsLocked()
	sec.mu.Unlock()
	return &SecurityParameterError{Op: "select", Param: "allowedSecurityProtocols", Value: [2]uint16{lo, hi},
		Err: fmt.Errorf("QUIC runs TLS 1.3 only (RFC 9001 §4.2), and the newest version allowed is %s: %w",
			tls.VersionName(hi), err)}
}
