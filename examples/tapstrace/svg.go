package main

import (
	"bytes"
	"cmp"
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"

	"github.com/gotaps/gotaps/messages"
)

// Layout of the drawing, in SVG user units.
const (
	width      = 960
	labelW     = 300 // the label column
	plotX      = labelW + 10
	plotW      = width - plotX - 30
	laneH      = 34
	barH       = 14
	headerH    = 56
	sectionGap = 36
)

// candidate is one racing attempt, from its AttemptStarted to its
// AttemptWon or AttemptFailed record.
type candidate struct {
	conn       uint64
	idx        string
	stack      string
	remote     string
	start, end int64 // unix ns; end 0: never finished
	startOff   int64 // offset_ns of the start record
	endOff     int64
	won        bool
	err        string
}

// stateStep is one transition of a connection.
type stateStep struct {
	at       int64
	from, to string
	event    string
	err      string
}

// connection is one connection's walk through the state machine, and its
// message events.
type connection struct {
	id      uint64
	first   int64 // its first record
	stack   string
	steps   []stateStep
	msgs    []msgEvent
	passive bool
}

type msgEvent struct {
	at    int64
	kind  string
	bytes int64
}

// timeline is what Render draws.
type timeline struct {
	t0, t1 int64
	cands  []*candidate
	conns  []*connection
}

func build(recs []*messages.TraceRecord) *timeline {
	tl := &timeline{t0: math.MaxInt64}
	candByKey := map[string]*candidate{}
	connByID := map[uint64]*connection{}
	conn := func(id uint64, at int64) *connection {
		c, ok := connByID[id]
		if !ok {
			c = &connection{id: id, first: at}
			connByID[id] = c
			tl.conns = append(tl.conns, c)
		}
		c.first = min(c.first, at)
		return c
	}
	for _, r := range recs {
		at := r.GetTimeUnixNano()
		if at == 0 {
			continue
		}
		// the axis spans the connections' records (a listener may have
		// started long before)
		if k := r.GetKind(); k != "listener" && k != "group" {
			tl.t0, tl.t1 = min(tl.t0, at), max(tl.t1, at)
		}
		switch r.GetKind() {
		case "candidate":
			if r.GetEvent() == "AttemptHeld" {
				break // a bar starts when the attempt does (a held one may never)
			}
			key := fmt.Sprintf("%d/%s/%s/%s", r.GetConnectionId(), r.GetCandidate(), r.GetStack(), r.GetRemote())
			c := candByKey[key]
			if c == nil || (r.GetEvent() == "AttemptStarted" && c.start != 0) {
				c = &candidate{conn: r.GetConnectionId(), idx: r.GetCandidate(), stack: r.GetStack(), remote: r.GetRemote()}
				candByKey[key] = c
				tl.cands = append(tl.cands, c)
			}
			switch r.GetEvent() {
			case "AttemptStarted":
				c.start, c.startOff = at, r.GetOffsetNs()
			case "AttemptWon":
				c.end, c.endOff, c.won = at, r.GetOffsetNs(), true
			case "AttemptFailed":
				c.end, c.endOff, c.err = at, r.GetOffsetNs(), r.GetError()
			}
			conn(r.GetConnectionId(), at)
		case "state":
			c := conn(r.GetConnectionId(), at)
			c.steps = append(c.steps, stateStep{at: at, from: r.GetFromState(), to: r.GetToState(), event: r.GetEvent(), err: r.GetError()})
			if r.GetStack() != "" {
				c.stack = r.GetStack()
			}
			if r.GetEvent() == "ConnectionReceived" {
				c.passive = true
			}
		case "sent", "received", "send_error", "receive_error", "expired":
			if r.GetConnectionId() != 0 {
				c := conn(r.GetConnectionId(), at)
				c.msgs = append(c.msgs, msgEvent{at: at, kind: r.GetKind(), bytes: r.GetBytes()})
			}
		case "listener":
			if r.GetEvent() == "ConnectionReceived" && r.GetConnectionId() != 0 {
				conn(r.GetConnectionId(), at).passive = true
			}
		}
	}
	for _, c := range tl.cands {
		if c.start == 0 {
			c.start = c.end
		}
	}
	slices.SortStableFunc(tl.cands, func(a, b *candidate) int {
		return cmp.Or(cmp.Compare(a.conn, b.conn), cmp.Compare(a.start, b.start))
	})
	slices.SortStableFunc(tl.conns, func(a, b *connection) int { return cmp.Compare(a.first, b.first) })
	if tl.t0 == math.MaxInt64 {
		tl.t0, tl.t1 = 0, 0
	}
	return tl
}

// ms formats a duration in ns as milliseconds.
func ms(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 2, 64) + " ms" }

var stateColor = map[string]string{
	"Establishing": "#f2c14e",
	"Established":  "#5fad56",
	"Closing":      "#4d9de0",
	"Closed":       "#9e9e9e",
}

// Render draws the trace as an SVG document. Each candidate lane is a <g>
// with class "lane candidate", each connection lane a <g> with class
// "lane connection".
func Render(recs []*messages.TraceRecord) []byte {
	tl := build(recs)
	span := max(tl.t1-tl.t0, 1)
	x := func(at int64) float64 { return plotX + float64(at-tl.t0)/float64(span)*plotW }

	height := headerH + 20 + len(tl.cands)*laneH + sectionGap + 20 + len(tl.conns)*laneH + 40
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	esc := html.EscapeString

	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="10" y="22" font-size="16" font-weight="bold">gotaps racing timeline</text>` + "\n")
	p(`<text x="10" y="40" fill="#555">%d candidates, %d connections, %s from the first record to the last</text>`+"\n",
		len(tl.cands), len(tl.conns), esc(ms(tl.t1-tl.t0)))

	// time axis ticks
	step := tickStep(span)
	for t := int64(0); t <= span; t += step {
		xx := x(tl.t0 + t)
		p(`<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", xx, headerH, xx, height-30)
		p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#777" font-size="10">%s</text>`+"\n", xx, height-16, esc(ms(t)))
	}

	y := headerH + 14
	p(`<text class="section" x="10" y="%d" font-weight="bold">Racing: one lane per candidate</text>`+"\n", y)
	y += 10
	for _, c := range tl.cands {
		p(`<g class="lane candidate" id="cand-%d-%s">`+"\n", c.conn, esc(c.idx))
		label := fmt.Sprintf("conn %d · #%s %s %s", c.conn, c.idx, c.stack, c.remote)
		p(`<text x="10" y="%d">%s</text>`+"\n", y+barH, esc(label))
		end, colour, result := c.end, "#9e9e9e", "unfinished"
		switch {
		case c.won:
			colour, result = "#5fad56", "won"
		case c.err != "":
			colour, result = "#e15554", "lost: "+c.err
		}
		if end == 0 {
			end = tl.t1
		}
		x0, x1 := x(c.start), x(end)
		p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="3" fill="%s"><title>%s</title></rect>`+"\n",
			x0, y+3, math.Max(x1-x0, 2), barH, colour, esc(result))
		p(`<circle cx="%.1f" cy="%d" r="3" fill="black"/>`+"\n", x0, y+3+barH/2)
		detail := fmt.Sprintf("start %s", ms(c.start-tl.t0))
		switch {
		case c.won:
			detail += fmt.Sprintf(", ready %s (handshake %s): won", ms(c.end-tl.t0), ms(c.end-c.start))
		case c.end != 0:
			detail += fmt.Sprintf(", failed %s (after %s): lost: %s", ms(c.end-tl.t0), ms(c.end-c.start), shorten(c.err, 70))
		default:
			detail += ": unfinished (stopped when another candidate won)"
		}
		p(`<text x="%.1f" y="%d" font-size="10" fill="#333">%s</text>`+"\n", float64(plotX), y+barH+15, esc(detail))
		p("</g>\n")
		y += laneH
	}

	y += sectionGap
	p(`<text class="section" x="10" y="%d" font-weight="bold">Connections: walk through the state machine</text>`+"\n", y-14)
	for _, c := range tl.conns {
		p(`<g class="lane connection" id="conn-%d">`+"\n", c.id)
		role := "initiated"
		if c.passive {
			role = "received"
		}
		label := fmt.Sprintf("connection %d (%s", c.id, role)
		if c.stack != "" {
			label += ", " + c.stack
		}
		label += ")"
		p(`<text x="10" y="%d">%s</text>`+"\n", y+barH, esc(label))
		// segments: from the connection's first record in its first state
		cur, since := "Establishing", c.first
		if len(c.steps) > 0 && c.steps[0].from != "" {
			cur = c.steps[0].from
		}
		marks := []string{fmt.Sprintf("%s %s", cur, ms(since-tl.t0))}
		seg := func(state string, from, to int64) {
			x0, x1 := x(from), x(to)
			p(`<rect class="state" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s → %s</title></rect>`+"\n",
				x0, y+3, math.Max(x1-x0, 1), barH, cmp.Or(stateColor[state], "#ccc"), esc(state), esc(ms(from-tl.t0)), esc(ms(to-tl.t0)))
		}
		for _, s := range c.steps {
			seg(cur, since, s.at)
			cur, since = s.to, s.at
			m := fmt.Sprintf("%s %s", s.to, ms(s.at-tl.t0))
			if s.event != "" {
				m = fmt.Sprintf("%s (%s) %s", s.to, s.event, ms(s.at-tl.t0))
			}
			if s.err != "" {
				m += ": " + s.err
			}
			marks = append(marks, m)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x(s.at), y, x(s.at), y+barH+6)
		}
		if cur != "Closed" {
			seg(cur, since, tl.t1)
		}
		for _, m := range c.msgs {
			colour := "#333"
			if m.kind != "sent" && m.kind != "received" {
				colour = "#e15554"
			}
			p(`<path d="M%.1f %d l-3 -5 h6 z" fill="%s"><title>%s %d bytes at %s</title></path>`+"\n",
				x(m.at), y+3, colour, esc(m.kind), m.bytes, esc(ms(m.at-tl.t0)))
		}
		walk := ""
		for i, m := range marks {
			if i > 0 {
				walk += " → "
			}
			walk += m
		}
		p(`<text x="%.1f" y="%d" font-size="10" fill="#333">%s</text>`+"\n", float64(plotX), y+barH+15, esc(walk))
		p("</g>\n")
		y += laneH
	}

	// legend
	lx := width - 330
	for i, s := range []string{"Establishing", "Established", "Closing", "Closed"} {
		p(`<rect x="%d" y="10" width="10" height="10" fill="%s"/><text x="%d" y="19" font-size="10">%s</text>`+"\n",
			lx+i*80, stateColor[s], lx+i*80+14, s)
	}
	p(`<rect x="%d" y="28" width="10" height="10" fill="#5fad56"/><text x="%d" y="37" font-size="10">won</text>`+"\n", lx, lx+14)
	p(`<rect x="%d" y="28" width="10" height="10" fill="#e15554"/><text x="%d" y="37" font-size="10">lost</text>`+"\n", lx+80, lx+94)
	p(`<rect x="%d" y="28" width="10" height="10" fill="#9e9e9e"/><text x="%d" y="37" font-size="10">unfinished</text>`+"\n", lx+160, lx+174)
	p("</svg>\n")
	return b.Bytes()
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// tickStep picks a round axis step (1, 2 or 5 × 10^k ns) giving about ten
// ticks over span.
func tickStep(span int64) int64 {
	raw := float64(span) / 10
	mag := math.Pow(10, math.Floor(math.Log10(math.Max(raw, 1))))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return int64(m * mag)
		}
	}
	return int64(10 * mag)
}
