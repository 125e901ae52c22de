// Command stager_prepareToGet makes files ready on disk without transferring them (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.PrepareToGet)) }
