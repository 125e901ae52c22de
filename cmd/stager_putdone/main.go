// Command stager_putdone closes files written by stager_put (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Putdone)) }
