// Command httptaps serves net/http over a gotaps Listener, to show that
// gotaps fits the standard library: Listener.NetListener is a net.Listener
// that http.Server.Serve accepts, and taps.Dialer is a dial function for
// http.Transport.DialContext.
//
//	go run ./examples/httptaps -listen 127.0.0.1:8080
//	curl http://127.0.0.1:8080/          # hello from gotaps
//
// With -get URL it is a client instead: it fetches URL over a gotaps
// connection and prints the body.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/gotaps/gotaps/taps"
)

// Greeting is the body of GET /.
const Greeting = "hello from gotaps"

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	get := flag.String("get", "", "fetch this URL over gotaps and print the body, instead of serving")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *get != "" {
		err = fetch(ctx, *get, os.Stdout)
	} else {
		err = serve(ctx, *listen)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httptaps:", err)
		os.Exit(1)
	}
}

// Handler answers GET / with Greeting.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, Greeting)
	})
	return mux
}

// Server is an HTTP server on a gotaps Listener.
type Server struct {
	sys  *taps.System
	ln   *taps.Listener
	http *http.Server
	done chan error
}

// Start listens on addr ("host:port"; port 0 picks one) in sys and serves
// Handler until Shutdown.
func Start(ctx context.Context, sys *taps.System, addr string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", port)
	}
	local := taps.NewLocalEndpoint().WithPort(uint16(p))
	if host != "" {
		local.WithIPAddress(host)
	}
	pre := taps.NewPreconnection(taps.WithSystem(sys), taps.WithLocalEndpoint(local))
	ln, err := pre.Listen(ctx)
	if err != nil {
		return nil, err
	}
	s := &Server{sys: sys, ln: ln, done: make(chan error, 1),
		http: &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go func() { s.done <- s.http.Serve(ln.NetListener()) }()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server gracefully: no new connections, in-flight
// requests finish, idle connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	<-s.ln.Done()
	return err
}

func serve(ctx context.Context, addr string) error {
	sys := taps.NewSystem()
	defer sys.Shutdown(context.Background())
	s, err := Start(ctx, sys, addr)
	if err != nil {
		return err
	}
	log.Printf("serving on http://%s/", s.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// NewClient returns an http.Client whose connections are gotaps
// Connections made in sys.
func NewClient(sys *taps.System) *http.Client {
	tr := &http.Transport{
		DialContext:       taps.Dialer(taps.NewPreconnection(taps.WithSystem(sys))),
		ForceAttemptHTTP2: false,
		MaxIdleConns:      10,
		IdleConnTimeout:   30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func fetch(ctx context.Context, url string, out io.Writer) error {
	sys := taps.NewSystem()
	defer sys.Shutdown(context.Background())
	client := NewClient(sys)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
