package stacks

import "time"

// RetransmitCounts are the retransmission counters of a TCP connection,
// read from TCP_INFO.
type RetransmitCounts struct {
	// Total is tcpi_total_retrans: every segment retransmitted over the
	// connection's life (timeouts, fast retransmits, loss probes).
	Total uint32
	// Consecutive is tcpi_retransmits: how many times in a row the oldest
	// unacknowledged segment was retransmitted on timeout; back to 0 when
	// it is acknowledged.
	Consecutive uint8
	// Backoff is tcpi_backoff, the RTO exponential backoff count.
	Backoff uint8
}

// Retransmitter is implemented by TCP and TLS Transports. Safe for
// concurrent use; the counters are read anew on every call.
type Retransmitter interface {
	// Retransmissions reads the retransmission counters (TCP_INFO). It
	// fails on closed Transports, on kernels that refuse TCP_INFO (e.g.
	// some MPTCP sockets) and outside Linux (errors.ErrUnsupported).
	Retransmissions() (RetransmitCounts, error)
}

// Retransmissions reads TCP_INFO; see Retransmitter.
func (t *tcpTransport) Retransmissions() (RetransmitCounts, error) { return tcpRetrans(t.TCPConn) }

// Retransmissions reads TCP_INFO of the TCP socket under TLS; see
// Retransmitter.
func (t *tlsTransport) Retransmissions() (RetransmitCounts, error) { return tcpRetrans(t.tcp) }

// RetransmitEvent is an "excessive retransmissions" notice (the seed's
// retransmit-notify): Count retransmissions happened within the watch's
// window (or since the previous event or the first reading).
type RetransmitEvent struct {
	Count  uint32
	Counts RetransmitCounts // the reading that raised the event
}

// RetransmitWatch turns successive RetransmitCounts readings into
// excessive-retransmission events (the seed's
// retransmit-notify-threshold). It is pure (time is passed in) and not
// safe for concurrent use. The zero value with Threshold 0 never fires.
//
// The first reading is the baseline: retransmissions before it do not
// count. An event fires when Total grew by at least Threshold since the
// baseline; the baseline then moves to that reading, so the next event
// needs Threshold more. With Window > 0 only growth between the oldest
// reading within the last Window and now counts (older readings are
// forgotten), which makes the threshold a rate; read often enough (a few
// times per Window) for this to be accurate.
type RetransmitWatch struct {
	// Threshold is the number of retransmissions that is excessive; 0
	// disables the watch.
	Threshold uint32
	// Window limits counting to the last Window; 0 counts since the
	// baseline.
	Window time.Duration

	samples []retransSample // samples[0] is the baseline
}

type retransSample struct {
	at    time.Time
	total uint32
}

// Observe records a reading taken at now and reports an event when the
// retransmissions reached the threshold.
func (w *RetransmitWatch) Observe(now time.Time, c RetransmitCounts) (RetransmitEvent, bool) {
	if len(w.samples) == 0 || c.Total < w.samples[0].total { // first, or counter reset
		w.samples = append(w.samples[:0], retransSample{now, c.Total})
		return RetransmitEvent{}, false
	}
	if w.Window > 0 {
		w.samples = append(w.samples, retransSample{now, c.Total})
		start := now.Add(-w.Window)
		// the oldest reading within the window is the base
		i := 0
		for i+1 < len(w.samples) && w.samples[i].at.Before(start) {
			i++
		}
		w.samples = w.samples[i:]
	}
	count := c.Total - w.samples[0].total
	if w.Threshold == 0 || count < w.Threshold {
		return RetransmitEvent{}, false
	}
	w.samples = append(w.samples[:0], retransSample{now, c.Total})
	return RetransmitEvent{Count: count, Counts: c}, true
}
