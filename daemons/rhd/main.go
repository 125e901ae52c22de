// Command rhd is Pollux's request handler (see package requesthandler).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/rhd/requesthandler"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], requesthandler.Spec(instance.Version()))) }
