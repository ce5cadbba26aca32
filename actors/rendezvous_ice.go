package actors

import (
	"crypto/rand"
	"encoding/binary"
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
// succeeded; the controlled side selects the pair nominated to it. The
// attributes are encoded and read by stacks (AppendSTUNICE, DecodeSTUNICE).

// newTieBreaker returns a random ICE tie-breaker (RFC 8445 §16.1).
func newTieBreaker() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return binary.BigEndian.Uint64(b[:])
}

// iceAttrs reads the ICE attributes of a STUN message the stacks decoders
// accepted: the peer's tie-breaker (ok false without ICE-CONTROLLING: a
// peer that does not take part in nomination) and whether it nominates
// (USE-CANDIDATE). It never panics.
func iceAttrs(b []byte) (tie uint64, ok, nominate bool) {
	ice, ok := stacks.DecodeSTUNICE(b)
	return ice.TieBreaker, ok, ice.UseCandidate
}

// encodeCheck is a rendezvous's Binding request: a connectivity check or,
// with nominate, a nomination.
func encodeCheck(tx [12]byte, tie uint64, nominate bool) []byte {
	return stacks.AppendSTUNICE(stacks.EncodeSTUNBindingRequest(tx, nil), stacks.STUNICE{TieBreaker: tie, UseCandidate: nominate})
}

// encodeCheckAnswer is a rendezvous's Binding success response to tx,
// seen from mapped.
func encodeCheckAnswer(tx [12]byte, mapped netip.AddrPort, tie uint64) []byte {
	return stacks.AppendSTUNICE(stacks.EncodeSTUNBindingSuccess(tx, mapped), stacks.STUNICE{TieBreaker: tie})
}
