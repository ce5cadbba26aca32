package actors

import (
	"crypto/rand"
	"encoding/binary"
	"hash/crc32"
	"net/netip"

	"github.com/gotaps/gotaps/stacks"
)

// The ICE attributes (RFC 8445 §16.1) a UDP rendezvous adds to its STUN
// messages, so that two peers with several candidate pairs select the same
// one. Every request and every success response of a rendezvous carries
// ICE-CONTROLLING with the rendezvous's random tie-breaker: both peers
// start as controlling, and the role conflict is resolved as in RFC 8445
// §7.3.1.1 (the larger tie-breaker stays controlling), without the 487
// round trip because each side learns the other's tie-breaker from the
// first message it gets. The controlling side nominates (USE-CANDIDATE,
// RFC 8445 §8.1.1, regular nomination) the first pair whose check
// succeeded; the controlled side selects the pair nominated to it.
const (
	stunAttrUseCandidate   = 0x0025
	stunAttrICEControlling = 0x802A
	stunAttrFingerprintICE = 0x8028
	stunFingerprintXORICE  = 0x5354554e
	stunHeaderLenICE       = 20
)

// newTieBreaker returns a random ICE tie-breaker (RFC 8445 §16.1).
func newTieBreaker() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return binary.BigEndian.Uint64(b[:])
}

// withICEAttrs returns msg (a STUN message from the stacks encoders,
// ending with a FINGERPRINT) with ICE-CONTROLLING (tie) and, if nominate,
// USE-CANDIDATE inserted before a new FINGERPRINT.
func withICEAttrs(msg []byte, tie uint64, nominate bool) []byte {
	b := make([]byte, 0, len(msg)+24)
	b = append(b, msg[:len(msg)-8]...) // without its FINGERPRINT
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], tie)
	b = appendICEAttr(b, stunAttrICEControlling, v[:])
	if nominate {
		b = appendICEAttr(b, stunAttrUseCandidate, nil)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLenICE+8))
	var fp [4]byte
	binary.BigEndian.PutUint32(fp[:], crc32.ChecksumIEEE(b)^stunFingerprintXORICE)
	return appendICEAttr(b, stunAttrFingerprintICE, fp[:])
}

func appendICEAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeaderLenICE))
	return b
}

// iceAttrs reads the ICE attributes of a STUN message the stacks decoders
// accepted (IsSTUN holds): the peer's tie-breaker (ok false without
// ICE-CONTROLLING: a peer that does not take part in nomination) and
// whether it nominates (USE-CANDIDATE). It never panics.
func iceAttrs(b []byte) (tie uint64, ok, nominate bool) {
	for off := stunHeaderLenICE; off+4 <= len(b); {
		at := binary.BigEndian.Uint16(b[off:])
		al := int(binary.BigEndian.Uint16(b[off+2:]))
		v := off + 4
		if al > len(b)-v {
			return tie, ok, nominate
		}
		switch at {
		case stunAttrICEControlling:
			if al == 8 {
				tie, ok = binary.BigEndian.Uint64(b[v:]), true
			}
		case stunAttrUseCandidate:
			nominate = true
		}
		off = v + (al+3)&^3
	}
	return tie, ok, nominate
}

// encodeCheck is a rendezvous's Binding request: a connectivity check or,
// with nominate, a nomination.
func encodeCheck(tx [12]byte, tie uint64, nominate bool) []byte {
	return withICEAttrs(stacks.EncodeSTUNBindingRequest(tx, nil), tie, nominate)
}

// encodeCheckAnswer is a rendezvous's Binding success response to tx,
// seen from mapped.
func encodeCheckAnswer(tx [12]byte, mapped netip.AddrPort, tie uint64) []byte {
	return withICEAttrs(stacks.EncodeSTUNBindingSuccess(tx, mapped), tie, false)
}
