// Command testd is the framework's test daemon as a process.
package main

import (
	"os"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/daemon/internal/testdaemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], testdaemon.Spec())) }
