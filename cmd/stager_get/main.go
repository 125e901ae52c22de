// Command stager_get reads files from Pollux: it waits for a mover per file and prints its endpoint, or downloads to a local file with --file (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Get)) }
