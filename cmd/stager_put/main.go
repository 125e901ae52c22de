// Command stager_put writes files into Pollux: it waits for a mover per file and prints its endpoint, or uploads a local file with --file (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Put)) }
