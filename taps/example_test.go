package taps_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

// loopbackListener starts a Listener on 127.0.0.1 (an ephemeral port) and
// returns it with a RemoteEndpoint that reaches it.
func loopbackListener(ctx context.Context, sys *taps.System, fs ...framers.Framer) (*taps.Listener, *taps.RemoteEndpoint, error) {
	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	ln, err := pre.Listen(ctx)
	if err != nil {
		return nil, nil, err
	}
	addr, _ := ln.LocalEndpoints()[0].Addr()
	return ln, taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(addr.Port()), nil
}

// echoOne accepts one connection and sends its first message back.
func echoOne(ctx context.Context, ln *taps.Listener) {
	conn, err := ln.Accept(ctx)
	if err != nil {
		return
	}
	if msg, err := conn.Receive(ctx); err == nil {
		_ = conn.Send(ctx, msg.Data, nil)
	}
}

func ExamplePreconnection_Initiate() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	// A server that echoes one message, with 4-byte length-prefix framing.
	ln, remote, err := loopbackListener(ctx, sys, framers.NewLengthPrefix())
	if err != nil {
		fmt.Println(err)
		return
	}
	go echoOne(ctx, ln)

	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithRemoteEndpoint(remote),
		taps.WithTransportProperties(taps.NewTransportProperties(taps.ReliableMessage)))
	pre.AddFramer(framers.NewLengthPrefix())
	conn, err := pre.Initiate(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("state:", conn.State())
	if err := conn.Send(ctx, []byte("hello, transport services"), nil); err != nil {
		fmt.Println(err)
		return
	}
	msg, err := conn.Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("received %q (complete: %v)\n", msg.Data, msg.EndOfMessage)
	_ = conn.Close()
	<-conn.Done()
	fmt.Println("state:", conn.State())
	// Output:
	// state: Established
	// received "hello, transport services" (complete: true)
	// state: Closed
}

// InitiateAsync is the RFC 9622 §7.1 form of Initiate: the Connection comes
// back at once, Establishing; Ready or EstablishmentError follow as events,
// and what is sent meanwhile waits for Ready.
func ExamplePreconnection_InitiateAsync() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	ln, remote, err := loopbackListener(ctx, sys, framers.NewLengthPrefix())
	if err != nil {
		fmt.Println(err)
		return
	}
	go echoOne(ctx, ln)

	pre := taps.NewPreconnection(taps.WithSystem(sys), taps.WithRemoteEndpoint(remote))
	pre.AddFramer(framers.NewLengthPrefix())
	ready := make(chan struct{})
	pre.OnReady(func(*taps.Connection) { close(ready) })
	pre.OnEstablishmentError(func(_ *taps.Connection, err error) { fmt.Println("failed:", err) })
	conn, err := pre.InitiateAsync(ctx)
	if err != nil { // invalid properties or endpoints: nothing was started
		fmt.Println(err)
		return
	}
	conn.SendAsync([]byte("sent before Ready"), nil, nil) // queued until Ready
	msg, err := conn.Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	<-ready
	fmt.Printf("received %q\n", msg.Data)
	_ = conn.Close()
	<-conn.Done()
	fmt.Println("state:", conn.State(), "err:", conn.Err())
	// Output:
	// received "sent before Ready"
	// state: Closed err: <nil>
}

func ExampleNewTransportProperties() {
	// The reliable-message profile: TCP-like, with message boundaries.
	tp := taps.NewTransportProperties(taps.ReliableMessage)
	fmt.Println("reliability:", tp.Preference(taps.Reliability))
	fmt.Println("preserveMsgBoundaries:", tp.Preference(taps.PreserveMsgBoundaries))

	// Selection Properties take a Preference...
	_ = tp.Avoid(taps.Multistreaming)
	fmt.Println("multistreaming:", tp.Preference(taps.Multistreaming))

	// ...other properties a typed value; a wrong type is an error.
	if err := tp.Set(taps.ConnTimeout, 30*time.Second); err != nil {
		fmt.Println(err)
	}
	v, _ := tp.Get(taps.ConnTimeout)
	fmt.Println("connTimeout:", v)
	err := tp.Set(taps.ConnTimeout, 30)
	fmt.Println("int for a duration:", errors.Is(err, taps.ErrInvalidPropertyType))

	// Names are RFC 9622 camelCase; kebab-case and the seed's names parse too.
	p, _ := taps.ParseProperty("msg-prio")
	fmt.Println(p, p.Kind())
	// Output:
	// reliability: Require
	// preserveMsgBoundaries: Require
	// multistreaming: Avoid
	// connTimeout: 30s
	// int for a duration: true
	// msgPriority Message
}

func ExampleListener_Accept() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	ln, remote, err := loopbackListener(ctx, sys)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Stop()

	// A client that sends one message and closes.
	go func() {
		conn, err := taps.NewPreconnection(taps.WithSystem(sys), taps.WithRemoteEndpoint(remote)).Initiate(ctx)
		if err != nil {
			return
		}
		_ = conn.Send(ctx, []byte("ping"), nil)
		_ = conn.Close()
	}()

	conn, err := ln.Accept(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("accepted") // the client may already have closed: its data is kept
	// Without a framer the connection is a byte stream: read it to its end.
	var data []byte
	for {
		msg, err := conn.Receive(ctx)
		if err != nil {
			fmt.Println("end of stream:", errors.Is(err, taps.ErrClosed))
			break
		}
		data = append(data, msg.Data...)
	}
	fmt.Printf("received %q\n", data)
	// The client's end of stream half-closes the connection: this side could
	// still send (a reply) before it closes too.
	fmt.Println("state:", conn.State(), "canSend:", conn.GetProperties().CanSend)
	_ = conn.Close()
	<-conn.Done()
	fmt.Println("state:", conn.State())
	// Output:
	// accepted
	// end of stream: true
	// received "ping"
	// state: Established canSend: true
	// state: Closed
}

func ExampleConnection_ReceiveAsync() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	ln, remote, err := loopbackListener(ctx, sys, framers.NewLengthPrefix())
	if err != nil {
		fmt.Println(err)
		return
	}
	go echoOne(ctx, ln)
	pre := taps.NewPreconnection(taps.WithSystem(sys), taps.WithRemoteEndpoint(remote))
	pre.AddFramer(framers.NewLengthPrefix())
	conn, err := pre.Initiate(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Events go to handlers, one at a time and in order per connection.
	received := make(chan string, 1)
	conn.ReceiveAsync(func(c *taps.Connection, msg *taps.Message, err error) {
		if err != nil {
			received <- "receive error: " + err.Error()
			return
		}
		received <- fmt.Sprintf("handler got %q", msg.Data)
	})
	sent := make(chan error, 1)
	conn.SendAsync([]byte("asynchronous"), nil, func(c *taps.Connection, err error) { sent <- err })
	fmt.Println("sent:", <-sent == nil)
	fmt.Println(<-received)
	_ = conn.Close()
	<-conn.Done()
	// Output:
	// sent: true
	// handler got "asynchronous"
}

func ExampleDialer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	// net/http served over a gotaps Listener...
	ln, _, err := loopbackListener(ctx, sys)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from gotaps")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln.NetListener()) }()

	// ...and fetched by an http.Client whose connections are gotaps
	// Connections.
	tr := &http.Transport{DialContext: taps.Dialer(taps.NewPreconnection(taps.WithSystem(sys)))}
	client := &http.Client{Transport: tr}
	resp, err := client.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))

	tr.CloseIdleConnections()
	_ = srv.Shutdown(ctx)
	fmt.Println(errors.Is(<-served, http.ErrServerClosed))
	// Output:
	// 200 OK hello from gotaps
	// true
}

// A receiver of large messages hands each message's buffer back once it is
// done with it, so that the next message is read into the same memory.
func ExampleMessage_Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	ln, remote, err := loopbackListener(ctx, sys, framers.NewLengthPrefix())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Stop()
	pre := taps.NewPreconnection(taps.WithSystem(sys), taps.WithRemoteEndpoint(remote))
	pre.AddFramer(framers.NewLengthPrefix())
	sender, err := pre.Initiate(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sender.Abort()
	receiver, err := ln.Accept(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer receiver.Abort()

	chunk := make([]byte, 256<<10)
	var sum int
	for i := 0; i < 4; i++ {
		if err := sender.Send(ctx, chunk, nil); err != nil {
			fmt.Println(err)
			return
		}
		msg, err := receiver.Receive(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		sum += len(msg.Data) // use Data...
		msg.Release()        // ...then hand its buffer back: Data is nil now
	}
	fmt.Println("received", sum>>10, "KiB")
	// Output:
	// received 1024 KiB
}
