package stacks

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"time"
)

// A small STUN client (RFC 8489): a Binding request over UDP and the
// server-reflexive address from its answer, which is what RFC 9622's
// Resolve and Rendezvous need from a STUN server (LocalEndpoint
// WithStunServer). No TURN, no long-term credentials (a 401 challenge is
// reported as a *STUNError), no TCP transport.

// STUNMagicCookie is the fixed value of every STUN header (RFC 8489 §5).
const STUNMagicCookie = 0x2112A442

const (
	stunHeaderLen = 20

	stunBindingRequest  = 0x0001
	stunBindingSuccess  = 0x0101
	stunBindingErrorRes = 0x0111

	stunAttrMappedAddress    = 0x0001
	stunAttrUsername         = 0x0006
	stunAttrMessageIntegrity = 0x0008
	stunAttrErrorCode        = 0x0009
	stunAttrXorMappedAddress = 0x0020
	stunAttrUseCandidate     = 0x0025
	stunAttrICEControlling   = 0x802A
	stunAttrFingerprint      = 0x8028

	stunFamilyIPv4 = 0x01
	stunFamilyIPv6 = 0x02

	stunFingerprintXOR = 0x5354554e
)

// Errors of the STUN client. Decoding errors are *STUNDecodeError values
// unwrapping to ErrSTUNMalformed; an error response is a *STUNError.
var (
	// ErrSTUNMalformed: a datagram that is not a well-formed STUN Binding
	// response.
	ErrSTUNMalformed = errors.New("malformed STUN message")
	// ErrSTUNTransaction: a well-formed response to another transaction.
	ErrSTUNTransaction = errors.New("STUN response to another transaction")
	// ErrSTUNTimeout: no response after every retransmission.
	ErrSTUNTimeout = errors.New("no STUN response")
	// ErrSTUNIntegrity: MESSAGE-INTEGRITY missing or wrong in a response
	// to a request made with credentials.
	ErrSTUNIntegrity = errors.New("STUN message integrity check failed")
)

// STUNDecodeError says why a datagram is not a usable Binding response.
type STUNDecodeError struct {
	// Offset is the byte where decoding stopped.
	Offset int
	Reason string
	// Err is ErrSTUNMalformed, ErrSTUNTransaction or ErrSTUNIntegrity.
	Err error
}

func (e *STUNDecodeError) Error() string {
	return fmt.Sprintf("stun: %s at byte %d", e.Reason, e.Offset)
}
func (e *STUNDecodeError) Unwrap() error { return e.Err }

// STUNError is a Binding error response (RFC 8489 §14.8): Code is the
// class times 100 plus the number (400, 401, 420, 438, 500, ...).
type STUNError struct {
	Code   int
	Reason string
}

func (e *STUNError) Error() string { return fmt.Sprintf("stun error response %d %s", e.Code, e.Reason) }

// STUNCredentials are short-term credentials (RFC 8489 §9.1): the request
// carries USERNAME and MESSAGE-INTEGRITY keyed with Password, and a
// success response must carry a valid MESSAGE-INTEGRITY. Passwords are
// used as given (no OpaqueString preparation).
type STUNCredentials struct {
	Username string
	Password string
}

// NewSTUNTransactionID returns a random 96-bit transaction id.
func NewSTUNTransactionID() [12]byte {
	var id [12]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24)
	return id
}

// EncodeSTUNBindingRequest returns a Binding request with transaction id
// tx; with creds, it carries USERNAME and MESSAGE-INTEGRITY, and a
// FINGERPRINT either way.
func EncodeSTUNBindingRequest(tx [12]byte, creds *STUNCredentials) []byte {
	b := make([]byte, stunHeaderLen, 128)
	binary.BigEndian.PutUint16(b[0:], stunBindingRequest)
	binary.BigEndian.PutUint32(b[4:], STUNMagicCookie)
	copy(b[8:20], tx[:])
	if creds != nil {
		b = appendSTUNAttr(b, stunAttrUsername, []byte(creds.Username))
		b = appendIntegrity(b, []byte(creds.Password))
	}
	return appendFingerprint(b)
}

func appendSTUNAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLen))
	return b
}

// appendIntegrity appends MESSAGE-INTEGRITY: HMAC-SHA1 over the message up
// to the attribute, with the header's length counting the attribute.
func appendIntegrity(b, key []byte) []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLen+24))
	m := hmac.New(sha1.New, key)
	m.Write(b)
	return appendSTUNAttr(b, stunAttrMessageIntegrity, m.Sum(nil))
}

func appendFingerprint(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLen+8))
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], crc32.ChecksumIEEE(b)^stunFingerprintXOR)
	return appendSTUNAttr(b, stunAttrFingerprint, v[:])
}

// STUNICE are the ICE attributes (RFC 8445 §16.1) of a connectivity
// check: ICE-CONTROLLING with the sender's tie-breaker and, on a
// nomination, USE-CANDIDATE. A rendezvous (actors) carries them in its
// Binding requests and success responses so that two peers with several
// candidate pairs select the same one.
type STUNICE struct {
	TieBreaker   uint64
	UseCandidate bool
}

// AppendSTUNICE returns msg (a STUN message of this file's encoders,
// ending with its FINGERPRINT) with ice's attributes inserted before a
// recomputed FINGERPRINT. msg is not changed.
func AppendSTUNICE(msg []byte, ice STUNICE) []byte {
	b := make([]byte, 0, len(msg)+24)
	b = append(b, msg[:len(msg)-8]...) // without its FINGERPRINT
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLen))
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], ice.TieBreaker)
	b = appendSTUNAttr(b, stunAttrICEControlling, v[:])
	if ice.UseCandidate {
		b = appendSTUNAttr(b, stunAttrUseCandidate, nil)
	}
	return appendFingerprint(b)
}

// DecodeSTUNICE reads the ICE attributes of a STUN message (one IsSTUN
// accepts); ok is false without ICE-CONTROLLING (a peer that takes no part
// in nomination). It never panics, whatever b holds.
func DecodeSTUNICE(b []byte) (ice STUNICE, ok bool) {
	for off := stunHeaderLen; off+4 <= len(b); {
		at := binary.BigEndian.Uint16(b[off:])
		al := int(binary.BigEndian.Uint16(b[off+2:]))
		v := off + 4
		if al > len(b)-v {
			break
		}
		switch at {
		case stunAttrICEControlling:
			if al == 8 {
				ice.TieBreaker, ok = binary.BigEndian.Uint64(b[v:]), true
			}
		case stunAttrUseCandidate:
			ice.UseCandidate = true
		}
		off = v + (al+3)&^3
	}
	return ice, ok
}

// DecodeSTUNBindingResponse decodes a Binding response to transaction tx
// and returns the mapped address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
// (RFC 5389 servers and older). An error response is a *STUNError;
// anything else that is not a valid response to tx is a *STUNDecodeError.
// With creds, a success response must carry a valid MESSAGE-INTEGRITY.
// A FINGERPRINT, when present, must be right. It never panics, whatever b
// holds, and does not keep b.
func DecodeSTUNBindingResponse(b []byte, tx [12]byte, creds *STUNCredentials) (netip.AddrPort, error) {
	bad := func(off int, reason string) (netip.AddrPort, error) {
		return netip.AddrPort{}, &STUNDecodeError{Offset: off, Reason: reason, Err: ErrSTUNMalformed}
	}
	if len(b) < stunHeaderLen {
		return bad(len(b), "short header")
	}
	if b[0]&0xc0 != 0 {
		return bad(0, "first two bits not zero")
	}
	typ := binary.BigEndian.Uint16(b[0:])
	length := int(binary.BigEndian.Uint16(b[2:]))
	if length%4 != 0 {
		return bad(2, "length not a multiple of 4")
	}
	if stunHeaderLen+length != len(b) {
		return bad(2, fmt.Sprintf("length %d for %d bytes of attributes", length, len(b)-stunHeaderLen))
	}
	if binary.BigEndian.Uint32(b[4:]) != STUNMagicCookie {
		return bad(4, "no magic cookie")
	}
	if typ != stunBindingSuccess && typ != stunBindingErrorRes {
		return bad(0, fmt.Sprintf("message type %#04x is not a Binding response", typ))
	}
	if [12]byte(b[8:20]) != tx {
		return netip.AddrPort{}, &STUNDecodeError{Offset: 8, Reason: "transaction id", Err: ErrSTUNTransaction}
	}
	var xorMapped, mapped netip.AddrPort
	var stunErr *STUNError
	integrity := false
	for off := stunHeaderLen; off < len(b); {
		if len(b)-off < 4 {
			return bad(off, "truncated attribute header")
		}
		at := binary.BigEndian.Uint16(b[off:])
		al := int(binary.BigEndian.Uint16(b[off+2:]))
		vOff := off + 4
		if al > len(b)-vOff {
			return bad(off, fmt.Sprintf("attribute %#04x of %d bytes overruns the message", at, al))
		}
		v := b[vOff : vOff+al]
		next := vOff + (al+3)&^3
		if next > len(b) {
			return bad(off, "attribute padding overruns the message")
		}
		switch at {
		case stunAttrXorMappedAddress:
			if integrity {
				break // after MESSAGE-INTEGRITY: ignored (RFC 8489 §14.5)
			}
			a, err := decodeSTUNAddress(v, true, tx)
			if err != nil {
				return bad(vOff, "XOR-MAPPED-ADDRESS: "+err.Error())
			}
			xorMapped = a
		case stunAttrMappedAddress:
			if integrity {
				break
			}
			a, err := decodeSTUNAddress(v, false, tx)
			if err != nil {
				return bad(vOff, "MAPPED-ADDRESS: "+err.Error())
			}
			mapped = a
		case stunAttrErrorCode:
			if len(v) < 4 {
				return bad(vOff, "short ERROR-CODE")
			}
			class, num := int(v[2]&0x07), int(v[3])
			if class < 3 || class > 6 || num > 99 {
				return bad(vOff, fmt.Sprintf("ERROR-CODE class %d number %d", class, num))
			}
			stunErr = &STUNError{Code: class*100 + num, Reason: string(v[4:])}
		case stunAttrMessageIntegrity:
			if integrity {
				break
			}
			if al != 20 {
				return bad(vOff, "MESSAGE-INTEGRITY not 20 bytes")
			}
			if creds != nil {
				// the HMAC covers the message up to this attribute, with the
				// length counting up to its end
				head := append([]byte(nil), b[:off]...)
				binary.BigEndian.PutUint16(head[2:], uint16(off-stunHeaderLen+24))
				m := hmac.New(sha1.New, []byte(creds.Password))
				m.Write(head)
				if !hmac.Equal(m.Sum(nil), v) {
					return netip.AddrPort{}, &STUNDecodeError{Offset: vOff, Reason: "MESSAGE-INTEGRITY mismatch", Err: ErrSTUNIntegrity}
				}
			}
			integrity = true
		case stunAttrFingerprint:
			if al != 4 || next != len(b) {
				return bad(off, "FINGERPRINT not the last 4-byte attribute")
			}
			head := append([]byte(nil), b[:off]...)
			binary.BigEndian.PutUint16(head[2:], uint16(off-stunHeaderLen+8))
			if crc32.ChecksumIEEE(head)^stunFingerprintXOR != binary.BigEndian.Uint32(v) {
				return bad(vOff, "FINGERPRINT mismatch")
			}
		}
		off = next
	}
	if typ == stunBindingErrorRes {
		if stunErr == nil {
			return bad(0, "error response without ERROR-CODE")
		}
		return netip.AddrPort{}, stunErr
	}
	if creds != nil && !integrity {
		return netip.AddrPort{}, &STUNDecodeError{Offset: len(b), Reason: "no MESSAGE-INTEGRITY", Err: ErrSTUNIntegrity}
	}
	switch {
	case xorMapped.IsValid():
		return xorMapped, nil
	case mapped.IsValid():
		return mapped, nil
	}
	return bad(len(b), "no mapped address")
}

// decodeSTUNAddress decodes the value of a (XOR-)MAPPED-ADDRESS.
func decodeSTUNAddress(v []byte, xor bool, tx [12]byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, errors.New("short value")
	}
	port := binary.BigEndian.Uint16(v[2:])
	var key [16]byte
	binary.BigEndian.PutUint32(key[:], STUNMagicCookie)
	copy(key[4:], tx[:])
	if xor {
		port ^= STUNMagicCookie >> 16
	}
	switch v[1] {
	case stunFamilyIPv4:
		if len(v) != 8 {
			return netip.AddrPort{}, fmt.Errorf("IPv4 value of %d bytes", len(v))
		}
		var a [4]byte
		copy(a[:], v[4:8])
		if xor {
			for i := range a {
				a[i] ^= key[i]
			}
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port), nil
	case stunFamilyIPv6:
		if len(v) != 20 {
			return netip.AddrPort{}, fmt.Errorf("IPv6 value of %d bytes", len(v))
		}
		var a [16]byte
		copy(a[:], v[4:20])
		if xor {
			for i := range a {
				a[i] ^= key[i]
			}
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("address family %#02x", v[1])
}

// STUNClient sends Binding requests (RFC 8489 §6.2.1: over UDP, the
// request is sent again after RTO, then after doubling waits, up to
// Attempts requests; after the last one the client waits 16 x RTO). The
// zero value uses the RFC's defaults. A STUNClient is a value; its methods
// are safe for concurrent use.
type STUNClient struct {
	// RTO is the first retransmission timeout (default 500 ms).
	RTO time.Duration
	// Attempts is how many requests are sent at most (default 7, the
	// RFC's Rc).
	Attempts int
	// Credentials, when set, are short-term credentials for the requests.
	Credentials *STUNCredentials
}

// Normalized returns c with the defaults filled in (RTO 500 ms, 7
// attempts).
func (c STUNClient) Normalized() STUNClient {
	if c.RTO <= 0 {
		c.RTO = 500 * time.Millisecond
	}
	if c.Attempts <= 0 {
		c.Attempts = 7
	}
	return c
}

// Wait is how long c waits for an answer after its n-th request (1-based):
// RTO doubled n-1 times, and 16 x RTO (the RFC's Rm) after the last one.
// It is pure.
func (c STUNClient) Wait(n int) time.Duration {
	c = c.Normalized()
	if n >= c.Attempts {
		return 16 * c.RTO
	}
	return c.RTO << (n - 1)
}

// Binding sends a Binding request from conn to server and returns the
// server-reflexive address the server saw (XOR-MAPPED-ADDRESS or
// MAPPED-ADDRESS). Datagrams from other addresses, for other transactions
// or malformed are ignored. ctx bounds the whole exchange; conn's read
// deadline is changed. Errors: *STUNError for an error response,
// ErrSTUNTimeout (joined with the last malformed answer's error, if any)
// when no usable answer came, or ctx's error.
func (c STUNClient) Binding(ctx context.Context, conn *net.UDPConn, server netip.AddrPort) (netip.AddrPort, error) {
	c = c.Normalized()
	attempts := c.Attempts
	tx := NewSTUNTransactionID()
	req := EncodeSTUNBindingRequest(tx, c.Credentials)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	buf := make([]byte, 1500)
	var lastErr error
	for i := 1; i <= attempts; i++ {
		if _, err := conn.WriteToUDPAddrPort(req, server); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun request to %s: %w", server, err)
		}
		deadline := time.Now().Add(c.Wait(i))
		if err := conn.SetReadDeadline(deadline); err != nil {
			return netip.AddrPort{}, err
		}
		if ctx.Err() != nil { // AfterFunc may have run before the deadline was set
			return netip.AddrPort{}, ctx.Err()
		}
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return netip.AddrPort{}, ctx.Err()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return netip.AddrPort{}, fmt.Errorf("stun response from %s: %w", server, err)
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != server {
				continue
			}
			a, err := DecodeSTUNBindingResponse(buf[:n], tx, c.Credentials)
			var se *STUNError
			switch {
			case err == nil:
				return a, nil
			case errors.As(err, &se):
				return netip.AddrPort{}, err
			}
			lastErr = err // malformed or stray: wait on
		}
	}
	return netip.AddrPort{}, errors.Join(fmt.Errorf("stun %s: %w after %d requests", server, ErrSTUNTimeout, attempts), lastErr)
}

// BindingFrom binds a UDP socket to local (SO_REUSEADDR and SO_REUSEPORT
// set, so that a socket already bound there does not prevent it), runs
// Binding from it and closes it. local's zero address binds the wildcard
// address of server's family. On Windows, which has no SO_REUSEPORT, it
// fails with errors.ErrUnsupported.
func (c STUNClient) BindingFrom(ctx context.Context, local, server netip.AddrPort) (netip.AddrPort, error) {
	network := "udp4"
	if server.Addr().Unmap().Is6() {
		network = "udp6"
	}
	addr := ":" + itoa(int(local.Port()))
	if local.Addr().IsValid() {
		addr = local.String()
	}
	lc := net.ListenConfig{Control: reusePortControl(Options{ReusePort: true}, nil)}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stun: bind %s: %w", addr, err)
	}
	defer pc.Close()
	return c.Binding(ctx, pc.(*net.UDPConn), server)
}

// The peer side of STUN, for connectivity checks between two rendezvous
// peers (RFC 9622 §7.3 over UDP, in the manner of ICE, RFC 8445 §7): each
// peer sends Binding requests to the other and answers the other's with a
// Binding success response. No credentials: the checks are not
// authenticated (there is no signalling channel to exchange them over).

// IsSTUN reports whether b looks like a STUN message (RFC 8489 §5, as RFC
// 7983 demultiplexes): at least a header, the first two bits zero, the
// magic cookie, and a length field that is a multiple of 4 and counts
// exactly the bytes after the header. It checks no attribute.
func IsSTUN(b []byte) bool {
	if len(b) < stunHeaderLen || b[0]&0xc0 != 0 {
		return false
	}
	length := int(binary.BigEndian.Uint16(b[2:]))
	return length%4 == 0 && stunHeaderLen+length == len(b) &&
		binary.BigEndian.Uint32(b[4:]) == STUNMagicCookie
}

// STUNTransactionID returns the transaction id of a STUN message (IsSTUN
// must hold).
func STUNTransactionID(b []byte) [12]byte { return [12]byte(b[8:20]) }

// DecodeSTUNBindingRequest checks that b is a well-formed Binding request
// (IsSTUN, message type 0x0001, attributes within the message, a
// FINGERPRINT, when present, last and right) and returns its transaction
// id. Attributes are otherwise ignored: USERNAME and MESSAGE-INTEGRITY are
// not checked. Errors are *STUNDecodeError values unwrapping to
// ErrSTUNMalformed. It never panics, whatever b holds, and does not keep
// b.
func DecodeSTUNBindingRequest(b []byte) ([12]byte, error) {
	bad := func(off int, reason string) ([12]byte, error) {
		return [12]byte{}, &STUNDecodeError{Offset: off, Reason: reason, Err: ErrSTUNMalformed}
	}
	if !IsSTUN(b) {
		return bad(0, "not a STUN message")
	}
	if typ := binary.BigEndian.Uint16(b[0:]); typ != stunBindingRequest {
		return bad(0, fmt.Sprintf("message type %#04x is not a Binding request", typ))
	}
	for off := stunHeaderLen; off < len(b); {
		if len(b)-off < 4 {
			return bad(off, "truncated attribute header")
		}
		at := binary.BigEndian.Uint16(b[off:])
		al := int(binary.BigEndian.Uint16(b[off+2:]))
		vOff := off + 4
		if al > len(b)-vOff {
			return bad(off, fmt.Sprintf("attribute %#04x of %d bytes overruns the message", at, al))
		}
		next := vOff + (al+3)&^3
		if next > len(b) {
			return bad(off, "attribute padding overruns the message")
		}
		if at == stunAttrFingerprint {
			if al != 4 || next != len(b) {
				return bad(off, "FINGERPRINT not the last 4-byte attribute")
			}
			head := append([]byte(nil), b[:off]...)
			binary.BigEndian.PutUint16(head[2:], uint16(off-stunHeaderLen+8))
			if crc32.ChecksumIEEE(head)^stunFingerprintXOR != binary.BigEndian.Uint32(b[vOff:]) {
				return bad(vOff, "FINGERPRINT mismatch")
			}
		}
		off = next
	}
	return STUNTransactionID(b), nil
}

// EncodeSTUNBindingSuccess returns a Binding success response to
// transaction tx telling the requester the address it was seen from
// (XOR-MAPPED-ADDRESS, RFC 8489 §14.2; an IPv4-mapped IPv6 address is
// sent as IPv4), followed by a FINGERPRINT.
func EncodeSTUNBindingSuccess(tx [12]byte, mapped netip.AddrPort) []byte {
	b := make([]byte, stunHeaderLen, 64)
	binary.BigEndian.PutUint16(b[0:], stunBindingSuccess)
	binary.BigEndian.PutUint32(b[4:], STUNMagicCookie)
	copy(b[8:20], tx[:])
	var key [16]byte
	binary.BigEndian.PutUint32(key[:], STUNMagicCookie)
	copy(key[4:], tx[:])
	a := mapped.Addr().Unmap()
	v := []byte{0, stunFamilyIPv6}
	if a.Is4() {
		v[1] = stunFamilyIPv4
	}
	v = binary.BigEndian.AppendUint16(v, mapped.Port()^uint16(STUNMagicCookie>>16))
	raw := a.AsSlice()
	for i := range raw {
		v = append(v, raw[i]^key[i])
	}
	b = appendSTUNAttr(b, stunAttrXorMappedAddress, v)
	return appendFingerprint(b)
}
