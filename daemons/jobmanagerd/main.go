// Command jobmanagerd submits decided subrequests to the scheduler (see package jobmanager).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/jobmanagerd/jobmanager"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], jobmanager.Spec())) }
