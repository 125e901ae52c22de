// Command monitord is Pollux's web monitor (see package monitor).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/monitord/monitor"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], monitor.Spec(instance.Version()))) }
