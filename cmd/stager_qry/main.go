// Command stager_qry shows what Pollux knows of files: status, size, adler32 (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Qry)) }
