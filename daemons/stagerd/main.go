// Command stagerd decides new subrequests (see package stager).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/stagerd/stager"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], stager.Spec())) }
