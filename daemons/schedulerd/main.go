// Command schedulerd places subrequests on disk servers (see package scheduler).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/schedulerd/scheduler"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], scheduler.Spec())) }
