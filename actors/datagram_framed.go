package actors

import "github.com/asynkron/protoactor-go/actor"

// startFramedDatagramReader is startDatagramReader for a connectionless
// stack under framers (UDP, UDP-Lite): the framer gets one pass per
// datagram. Each datagram is read whole (never into a framer's read target,
// which may be shorter than it: the rest of the datagram would be lost)
// and goes to the first framer as one input marked as a datagram; what the
// framer leaves of it (a cut frame) is dropped with it rather than
// completed by the next datagram. maxRecvRate is applied after each
// datagram.
func (c *connActor) startFramedDatagramReader(ctx actor.Context) {
	t, link, target := c.t, c.link, c.framers[0]
	recvWait := c.recvPace().wait // maxRecvRate (sockprops.go)
	root := ctx.ActorSystem().Root
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if !link.waitReadCredit() {
				return
			}
			c.wg.Add(1) // counted only while blocked in I/O (datapath.go)
			n, err := t.Read(buf)
			c.wg.Done()
			if err != nil {
				root.Send(target, newFramerInput(nil, nil, true, err))
				return
			}
			recvWait(n)
			data := make([]byte, n)
			copy(data, buf[:n])
			link.addRaw(n) // the first framer counts it off (doneRaw)
			in := newFramerInput(data, nil, false, nil)
			in.datagram = true
			root.Send(target, in)
		}
	}()
}
