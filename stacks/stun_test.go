package stacks

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stunResponse builds a Binding response to tx with the given attributes
// (type, value), then optional MESSAGE-INTEGRITY (key) and FINGERPRINT.
func stunResponse(typ uint16, tx [12]byte, attrs [][2][]byte, key []byte, fingerprint bool) []byte {
	b := make([]byte, stunHeaderLen)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], STUNMagicCookie)
	copy(b[8:], tx[:])
	for _, a := range attrs {
		b = appendSTUNAttr(b, binary.BigEndian.Uint16(a[0]), a[1])
	}
	if key != nil {
		b = appendIntegrity(b, key)
	}
	if fingerprint {
		b = appendFingerprint(b)
	}
	return b
}

func attrType(t uint16) []byte { return binary.BigEndian.AppendUint16(nil, t) }

// stunAddrValue encodes a (XOR-)MAPPED-ADDRESS value.
func stunAddrValue(a netip.AddrPort, xor bool, tx [12]byte) []byte {
	v := []byte{0, stunFamilyIPv4}
	if a.Addr().Is6() {
		v[1] = stunFamilyIPv6
	}
	port := a.Port()
	var key [16]byte
	binary.BigEndian.PutUint32(key[:], STUNMagicCookie)
	copy(key[4:], tx[:])
	if xor {
		port ^= STUNMagicCookie >> 16
	}
	v = binary.BigEndian.AppendUint16(v, port)
	raw := a.Addr().AsSlice()
	for i := range raw {
		if xor {
			raw[i] ^= key[i]
		}
	}
	return append(v, raw...)
}

func TestSTUNEncodeRequest(t *testing.T) {
	tx := NewSTUNTransactionID()
	b := EncodeSTUNBindingRequest(tx, nil)
	require.Len(t, b, stunHeaderLen+8) // FINGERPRINT only
	require.Equal(t, uint16(stunBindingRequest), binary.BigEndian.Uint16(b))
	require.Equal(t, uint32(STUNMagicCookie), binary.BigEndian.Uint32(b[4:]))
	require.Equal(t, tx[:], b[8:20])
	require.Equal(t, uint16(len(b)-stunHeaderLen), binary.BigEndian.Uint16(b[2:]))

	creds := &STUNCredentials{Username: "alice", Password: "secret"}
	b = EncodeSTUNBindingRequest(tx, creds)
	// USERNAME (4+8 padded), MESSAGE-INTEGRITY (24), FINGERPRINT (8)
	require.Len(t, b, stunHeaderLen+12+24+8)
	require.Equal(t, uint16(stunAttrUsername), binary.BigEndian.Uint16(b[20:]))
	require.Equal(t, "alice", string(b[24:29]))
	require.Equal(t, uint16(stunAttrMessageIntegrity), binary.BigEndian.Uint16(b[32:]))
}

func TestSTUNDecode(t *testing.T) {
	tx := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	other := [12]byte{9}
	v4 := netip.MustParseAddrPort("192.0.2.7:40000")
	v6 := netip.MustParseAddrPort("[2001:db8::42]:3478")
	creds := &STUNCredentials{Username: "u", Password: "pw"}
	xorAttr := func(a netip.AddrPort) [2][]byte {
		return [2][]byte{attrType(stunAttrXorMappedAddress), stunAddrValue(a, true, tx)}
	}
	plainAttr := func(a netip.AddrPort) [2][]byte {
		return [2][]byte{attrType(stunAttrMappedAddress), stunAddrValue(a, false, tx)}
	}
	ok := stunResponse(stunBindingSuccess, tx, [][2][]byte{xorAttr(v4)}, nil, true)
	corrupt := func(b []byte, i int, v byte) []byte { c := append([]byte(nil), b...); c[i] = v; return c }
	for _, tc := range []struct {
		name  string
		in    []byte
		creds *STUNCredentials
		want  netip.AddrPort
		err   error // errors.Is target; nil = success
		code  int   // STUNError code
	}{
		{name: "xor v4", in: ok, want: v4},
		{name: "xor v6", in: stunResponse(stunBindingSuccess, tx, [][2][]byte{xorAttr(v6)}, nil, false), want: v6},
		{name: "mapped fallback", in: stunResponse(stunBindingSuccess, tx, [][2][]byte{plainAttr(v4)}, nil, false), want: v4},
		{name: "xor preferred", in: stunResponse(stunBindingSuccess, tx, [][2][]byte{plainAttr(v6), xorAttr(v4)}, nil, false), want: v4},
		{name: "unknown attribute skipped", in: stunResponse(stunBindingSuccess, tx,
			[][2][]byte{{attrType(0x8022), []byte("soft")}, xorAttr(v4)}, nil, false), want: v4},
		{name: "integrity ok", in: stunResponse(stunBindingSuccess, tx, [][2][]byte{xorAttr(v4)}, []byte("pw"), true), creds: creds, want: v4},
		{name: "integrity wrong", in: stunResponse(stunBindingSuccess, tx, [][2][]byte{xorAttr(v4)}, []byte("nope"), true), creds: creds, err: ErrSTUNIntegrity},
		{name: "integrity missing", in: ok, creds: creds, err: ErrSTUNIntegrity},
		{name: "error response", in: stunResponse(stunBindingErrorRes, tx,
			[][2][]byte{{attrType(stunAttrErrorCode), append([]byte{0, 0, 4, 1}, "Unauthorized"...)}}, nil, false), code: 401},
		{name: "error without code", in: stunResponse(stunBindingErrorRes, tx, nil, nil, false), err: ErrSTUNMalformed},
		{name: "bad error class", in: stunResponse(stunBindingErrorRes, tx,
			[][2][]byte{{attrType(stunAttrErrorCode), []byte{0, 0, 7, 1}}}, nil, false), err: ErrSTUNMalformed},
		{name: "empty", in: nil, err: ErrSTUNMalformed},
		{name: "short header", in: ok[:19], err: ErrSTUNMalformed},
		{name: "truncated", in: ok[:len(ok)-4], err: ErrSTUNMalformed},
		{name: "trailing bytes", in: append(append([]byte(nil), ok...), 0, 0, 0, 0), err: ErrSTUNMalformed},
		{name: "top bits", in: corrupt(ok, 0, 0x41), err: ErrSTUNMalformed},
		{name: "no cookie", in: corrupt(ok, 4, 0), err: ErrSTUNMalformed},
		{name: "a request", in: corrupt(ok, 0, 0x00), err: ErrSTUNMalformed},
		{name: "other transaction", in: stunResponse(stunBindingSuccess, other, nil, nil, false), err: ErrSTUNTransaction},
		{name: "no address", in: stunResponse(stunBindingSuccess, tx, nil, nil, false), err: ErrSTUNMalformed},
		{name: "bad family", in: stunResponse(stunBindingSuccess, tx,
			[][2][]byte{{attrType(stunAttrXorMappedAddress), []byte{0, 3, 0, 0, 1, 2, 3, 4}}}, nil, false), err: ErrSTUNMalformed},
		{name: "short v6", in: stunResponse(stunBindingSuccess, tx,
			[][2][]byte{{attrType(stunAttrXorMappedAddress), []byte{0, 2, 0, 0, 1, 2, 3, 4}}}, nil, false), err: ErrSTUNMalformed},
		{name: "attribute overrun", in: func() []byte {
			b := corrupt(ok, 22, 0) // XOR-MAPPED-ADDRESS length 0x00xx -> set high byte below
			binary.BigEndian.PutUint16(b[22:], 200)
			return b
		}(), err: ErrSTUNMalformed},
		{name: "fingerprint wrong", in: corrupt(ok, len(ok)-1, ok[len(ok)-1]^1), err: ErrSTUNMalformed},
		{name: "length not multiple of 4", in: corrupt(ok, 3, ok[3]+1), err: ErrSTUNMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSTUNBindingResponse(tc.in, tx, tc.creds)
			switch {
			case tc.code != 0:
				var se *STUNError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tc.code, se.Code)
				require.Equal(t, "Unauthorized", se.Reason)
			case tc.err != nil:
				require.ErrorIs(t, err, tc.err)
				var de *STUNDecodeError
				require.ErrorAs(t, err, &de)
			default:
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
			}
		})
	}
}

func FuzzSTUNDecode(f *testing.F) {
	tx := [12]byte{1, 2, 3}
	a := netip.MustParseAddrPort("198.51.100.1:1234")
	f.Add(stunResponse(stunBindingSuccess, tx, [][2][]byte{{attrType(stunAttrXorMappedAddress), stunAddrValue(a, true, tx)}}, nil, true))
	f.Add(stunResponse(stunBindingSuccess, tx, [][2][]byte{{attrType(stunAttrMappedAddress), stunAddrValue(a, false, tx)}}, []byte("k"), false))
	f.Add(stunResponse(stunBindingErrorRes, tx, [][2][]byte{{attrType(stunAttrErrorCode), []byte{0, 0, 4, 0, 'x'}}}, nil, false))
	f.Add([]byte{})
	f.Add(EncodeSTUNBindingRequest(tx, nil))
	f.Add(EncodeSTUNBindingRequest(tx, &STUNCredentials{Username: "u", Password: "k"}))
	f.Add(EncodeSTUNBindingSuccess(tx, netip.MustParseAddrPort("[2001:db8::1]:443")))
	f.Add(AppendSTUNICE(EncodeSTUNBindingRequest(tx, nil), STUNICE{TieBreaker: 7, UseCandidate: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeSTUNICE(b) // never panics
		// the request side: never panics, a decoded request is STUN and
		// keeps its transaction id
		if rtx, err := DecodeSTUNBindingRequest(b); err == nil {
			require.True(t, IsSTUN(b))
			require.Equal(t, STUNTransactionID(b), rtx)
		} else {
			var de *STUNDecodeError
			require.ErrorAs(t, err, &de)
			require.ErrorIs(t, err, ErrSTUNMalformed)
		}
		for _, creds := range []*STUNCredentials{nil, {Username: "u", Password: "k"}} {
			got, err := DecodeSTUNBindingResponse(b, tx, creds)
			if err == nil {
				require.True(t, got.IsValid())
				continue
			}
			var de *STUNDecodeError
			var se *STUNError
			if !errors.As(err, &de) && !errors.As(err, &se) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
	})
}

// The ICE attributes a rendezvous adds survive the decoders (which ignore
// them; the FINGERPRINT is recomputed), read back as written, and a
// message without them has none.
func TestSTUNICE(t *testing.T) {
	tx := NewSTUNTransactionID()
	mapped := netip.MustParseAddrPort("127.0.0.1:9")
	for _, ice := range []STUNICE{{TieBreaker: 0x0102030405060708}, {TieBreaker: 42, UseCandidate: true}} {
		req := EncodeSTUNBindingRequest(tx, nil)
		b := AppendSTUNICE(req, ice)
		require.Equal(t, EncodeSTUNBindingRequest(tx, nil), req, "msg unchanged")
		require.True(t, IsSTUN(b))
		got, err := DecodeSTUNBindingRequest(b)
		require.NoError(t, err, "FINGERPRINT recomputed")
		require.Equal(t, tx, got)
		read, ok := DecodeSTUNICE(b)
		require.True(t, ok)
		require.Equal(t, ice, read)

		b = AppendSTUNICE(EncodeSTUNBindingSuccess(tx, mapped), ice)
		m, err := DecodeSTUNBindingResponse(b, tx, nil)
		require.NoError(t, err)
		require.Equal(t, mapped, m)
		read, ok = DecodeSTUNICE(b)
		require.True(t, ok)
		require.Equal(t, ice, read)
	}
	_, ok := DecodeSTUNICE(EncodeSTUNBindingSuccess(tx, mapped))
	require.False(t, ok, "a plain peer's answer has no tie-breaker")
	for _, junk := range [][]byte{nil, make([]byte, 20), append(make([]byte, 20), 0x80, 0x2a, 0xff, 0xff)} {
		_, ok = DecodeSTUNICE(junk)
		require.False(t, ok)
	}
}

// stunServer answers Binding requests on 127.0.0.1 with the sender's
// address as XOR-MAPPED-ADDRESS; drop tells it to ignore the first n
// requests, errCode to answer with an error response instead.
type stunServer struct {
	pc       *net.UDPConn
	drop     atomic.Int32
	errCode  int
	requests atomic.Int32
	done     chan struct{}
}

func newSTUNServer(t *testing.T, errCode int) *stunServer {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	s := &stunServer{pc: pc, done: make(chan struct{}), errCode: errCode}
	go s.serve()
	t.Cleanup(func() { _ = pc.Close(); <-s.done })
	return s
}

func (s *stunServer) addr() netip.AddrPort { return s.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *stunServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < stunHeaderLen || binary.BigEndian.Uint16(buf) != stunBindingRequest {
			continue
		}
		s.requests.Add(1)
		if s.drop.Add(-1) >= 0 {
			continue
		}
		tx := [12]byte(buf[8:20])
		var resp []byte
		if s.errCode != 0 {
			resp = stunResponse(stunBindingErrorRes, tx, [][2][]byte{{attrType(stunAttrErrorCode),
				[]byte{0, 0, byte(s.errCode / 100), byte(s.errCode % 100)}}}, nil, false)
		} else {
			// a stray answer first: another transaction, ignored by the client
			_, _ = s.pc.WriteToUDPAddrPort(stunResponse(stunBindingSuccess, [12]byte{}, nil, nil, false), from)
			resp = stunResponse(stunBindingSuccess, tx, [][2][]byte{{attrType(stunAttrXorMappedAddress), stunAddrValue(from, true, tx)}}, nil, true)
		}
		_, _ = s.pc.WriteToUDPAddrPort(resp, from)
	}
}

func TestSTUNBindingLoopback(t *testing.T) {
	srv := newSTUNServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	got, err := STUNClient{}.Binding(ctx, pc, srv.addr())
	require.NoError(t, err)
	require.Equal(t, pc.LocalAddr().(*net.UDPAddr).AddrPort(), got)
}

func TestSTUNBindingRetransmits(t *testing.T) {
	srv := newSTUNServer(t, 0)
	srv.drop.Store(2) // the first two requests are lost
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t))
	got, err := STUNClient{RTO: 10 * time.Millisecond}.BindingFrom(ctx, local, srv.addr())
	require.NoError(t, err)
	require.Equal(t, local, got)
	require.Equal(t, int32(3), srv.requests.Load())
}

func TestSTUNBindingTimeout(t *testing.T) {
	srv := newSTUNServer(t, 0)
	srv.drop.Store(100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := STUNClient{RTO: time.Millisecond, Attempts: 3}.BindingFrom(ctx, netip.AddrPort{}, srv.addr())
	require.ErrorIs(t, err, ErrSTUNTimeout)
	require.Equal(t, int32(3), srv.requests.Load())
}

func TestSTUNBindingErrorResponse(t *testing.T) {
	srv := newSTUNServer(t, 420)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := STUNClient{}.BindingFrom(ctx, netip.AddrPort{}, srv.addr())
	var se *STUNError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 420, se.Code)
}

func TestSTUNBindingContext(t *testing.T) {
	srv := newSTUNServer(t, 0)
	srv.drop.Store(100)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := STUNClient{RTO: time.Hour}.BindingFrom(ctx, netip.AddrPort{}, srv.addr())
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// freeUDPPort returns a UDP port that was free on 127.0.0.1 a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

func TestSTUNEncodeBindingSuccess(t *testing.T) {
	tx := [12]byte{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}
	for i, tt := range []struct {
		mapped string
		// the XOR-MAPPED-ADDRESS attribute, header included (RFC 5769
		// §2.2 and §2.3 for the first and the last)
		attr []byte
	}{
		{"192.0.2.1:32853", []byte{0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}},
		{"[::ffff:192.0.2.1]:32853", []byte{0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}}, // sent as IPv4
		{"127.0.0.1:0", []byte{0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x21, 0x12, 0x5e, 0x12, 0xa4, 0x43}},
		{"[2001:db8:1234:5678:11:2233:4455:6677]:32853", []byte{0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47,
			0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9}},
	} {
		mapped := netip.MustParseAddrPort(tt.mapped)
		b := EncodeSTUNBindingSuccess(tx, mapped)
		if got := binary.BigEndian.Uint16(b); got != stunBindingSuccess {
			t.Errorf("#%d: type %#04x; want %#04x", i, got, stunBindingSuccess)
		}
		if got := b[stunHeaderLen : stunHeaderLen+len(tt.attr)]; string(got) != string(tt.attr) {
			t.Errorf("#%d: XOR-MAPPED-ADDRESS % x; want % x", i, got, tt.attr)
		}
		if tail := b[stunHeaderLen+len(tt.attr):]; len(tail) != 8 || binary.BigEndian.Uint16(tail) != stunAttrFingerprint {
			t.Errorf("#%d: no FINGERPRINT last: % x", i, tail)
		}
		if !IsSTUN(b) {
			t.Errorf("#%d: not recognised as STUN", i)
		}
		got, err := DecodeSTUNBindingResponse(b, tx, nil)
		require.NoError(t, err, "#%d", i)
		want := netip.AddrPortFrom(mapped.Addr().Unmap(), mapped.Port())
		if got != want {
			t.Errorf("#%d: decoded %s; want %s", i, got, want)
		}
		if _, err := DecodeSTUNBindingRequest(b); !errors.Is(err, ErrSTUNMalformed) {
			t.Errorf("#%d: a response decoded as a request: %v", i, err)
		}
	}
}

func TestSTUNDecodeBindingRequest(t *testing.T) {
	tx := [12]byte{9, 8, 7}
	req := EncodeSTUNBindingRequest(tx, nil)
	withCreds := EncodeSTUNBindingRequest(tx, &STUNCredentials{Username: "alice", Password: "pw"})
	badFP := append([]byte(nil), req...)
	badFP[len(badFP)-1] ^= 1
	noFP := req[:stunHeaderLen:stunHeaderLen]
	noFP = append([]byte(nil), noFP...)
	binary.BigEndian.PutUint16(noFP[2:], 0)
	overrun := append([]byte(nil), noFP...)
	overrun = append(overrun, 0x80, 0x22, 0x00, 0x09, 'x', 'y', 'z', 0)
	binary.BigEndian.PutUint16(overrun[2:], 8)
	for i, tt := range []struct {
		b    []byte
		stun bool // IsSTUN
		ok   bool // a valid Binding request
	}{
		{req, true, true},
		{withCreds, true, true}, // credentials are not checked
		{noFP, true, true},      // FINGERPRINT is optional
		{badFP, true, false},
		{overrun, true, false},
		{EncodeSTUNBindingSuccess(tx, netip.MustParseAddrPort("10.0.0.1:1")), true, false},
		{[]byte("hello, this is not STUN at all"), false, false},
		{append([]byte{0x40}, req[1:]...), false, false},                                     // first two bits
		{req[:len(req)-4], false, false},                                                     // length field
		{append(append([]byte(nil), req[:4]...), make([]byte, len(req)-4)...), false, false}, // no cookie
		{nil, false, false},
	} {
		if got := IsSTUN(tt.b); got != tt.stun {
			t.Errorf("#%d: IsSTUN %v; want %v", i, got, tt.stun)
		}
		got, err := DecodeSTUNBindingRequest(tt.b)
		switch {
		case tt.ok && err != nil:
			t.Errorf("#%d: %v", i, err)
		case tt.ok && got != tx:
			t.Errorf("#%d: transaction %x; want %x", i, got, tx)
		case !tt.ok && !errors.Is(err, ErrSTUNMalformed):
			t.Errorf("#%d: got %v; want ErrSTUNMalformed", i, err)
		}
	}
}

// TestSTUNClientWait: the retransmission schedule of RFC 8489 §6.2.1 (RTO,
// doubled after each request, 16 x RTO after the last one).
func TestSTUNClientWait(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		c    STUNClient
		n    int
		want time.Duration
	}{
		{STUNClient{}, 1, 500 * ms},
		{STUNClient{}, 2, time.Second},
		{STUNClient{}, 6, 16 * time.Second},
		{STUNClient{}, 7, 8 * time.Second}, // the last of the default 7: 16 x RTO
		{STUNClient{RTO: 10 * ms, Attempts: 3}, 1, 10 * ms},
		{STUNClient{RTO: 10 * ms, Attempts: 3}, 2, 20 * ms},
		{STUNClient{RTO: 10 * ms, Attempts: 3}, 3, 160 * ms},
	}
	for _, tt := range tests {
		if got := tt.c.Wait(tt.n); got != tt.want {
			t.Errorf("%+v Wait(%d) = %v; want %v", tt.c, tt.n, got, tt.want)
		}
	}
}
