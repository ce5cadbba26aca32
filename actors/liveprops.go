package actors

import (
	"fmt"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// scavengerCongestion is the TCP congestion control connCapacityProfile
// asks for: "lp" (TCP-LP, a less-than-best-effort control, RFC 6297) for
// Scavenger, "" (the system default) for every other profile. Where the
// kernel does not offer lp the socket keeps its control and Scavenger is
// the DSCP (LE) only (stacks.LiveOptions.Congestion).
func scavengerCongestion(profile string) string {
	if profile == "Scavenger" {
		return "lp"
	}
	return ""
}

// profileUnsupported refuses, on a byte stream (TCP, TLS, a QUIC stream,
// any framed stack), a message whose msgCapacityProfile asks for another
// DSCP than the connection's: the stream stamps the socket's DSCP on
// whatever segments carry its bytes, coalesced with those before and after
// (RFC 9622 §9.1.3.8: applied per message only where the stack can). The
// message fails with a SendError wrapping ErrPropertyNotSupported before
// any byte of it is written; the connection goes on. Datagram stacks
// (UDP, UDP-Lite) carry each message's DSCP in its own datagram.
func (c *connActor) profileUnsupported(m *messages.SendMessage) error {
	if c.datagram || m.Props == nil {
		return nil
	}
	if d, own := c.msgDSCP(m.Props); own && d != c.connDSCP() {
		return fmt.Errorf("%w: msgCapacityProfile (DSCP %d) differs from connCapacityProfile (DSCP %d) on %s, a byte stream that cannot mark one message's bytes apart",
			ErrPropertyNotSupported, d, c.connDSCP(), c.stack)
	}
	return nil
}

// sockStartCongestion switches a new TCP or TLS transport to the
// congestion control of its connCapacityProfile (Scavenger: lp, where the
// kernel offers it); other profiles leave the socket as the stack made it.
func (c *connActor) sockStartCongestion() {
	if c.stack != "tcp" && c.stack != "tls" {
		return
	}
	if cc := scavengerCongestion(c.spec.cfg.Properties.GetValues()["connCapacityProfile"].GetEnumValue()); cc != "" {
		c.setCongestion(cc)
	}
}

// setCongestion sets the socket's congestion control (its own function:
// the string escapes to the heap only when there is one to set).
func (c *connActor) setCongestion(cc string) {
	if err := stacks.ApplyLive(c.t, stacks.LiveOptions{Congestion: &cc}); err != nil {
		c.logger().Debug("connCapacityProfile: congestion control not set", "congestion", cc, "error", err)
	}
}
