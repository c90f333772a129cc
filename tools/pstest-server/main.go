// Command pstest-server runs the in-memory Pub/Sub fake of cloud.google.com/go/pubsub/v2/pstest
// as a standalone gRPC server, for the sidecar's pull-subscription tests. It prints the address it
// listens on ("ADDR host:port") once ready, and serves until it is terminated.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "host:port to listen on (port 0 = any free port)")
	flag.Parse()
	srv := pstest.NewServerWithAddress(*addr)
	fmt.Printf("ADDR %s\n", srv.Addr)
	os.Stdout.Sync()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	srv.Close()
}
