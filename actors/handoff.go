package actors

import (
	"sync/atomic"

	"github.com/gotaps/gotaps/stacks"
)

// Handoff carries an established transport from the candidate that dialed
// it to whoever wins it. Exactly one of Claim and Abandon succeeds, so the
// socket is either owned by the winner or closed, never both and never
// neither, whatever order messages and Stops arrive in.
type Handoff struct {
	t     stacks.Transport
	state atomic.Int32 // 0 offered, 1 claimed, 2 abandoned
}

// NewHandoff wraps t.
func NewHandoff(t stacks.Transport) *Handoff { return &Handoff{t: t} }

// Claim takes ownership of the transport; ok is false when it was
// abandoned first.
func (h *Handoff) Claim() (t stacks.Transport, ok bool) {
	if h.state.CompareAndSwap(0, 1) {
		return h.t, true
	}
	return nil, false
}

// Abandon closes the transport unless it was claimed.
func (h *Handoff) Abandon() {
	if h.state.CompareAndSwap(0, 2) {
		_ = h.t.Abort()
	}
}
