// Command diskserverd runs a disk server: it registers the server and its data
// directories, moves the data of transfers over HTTP and deletes invalidated copies (see
// package diskserver).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/daemons/diskserverd/diskserver"
	"github.com/pollux-storage/pollux/framework/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], diskserver.Spec())) }
