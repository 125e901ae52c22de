// Command pollux copies files in and out of Pollux: pollux cp SRC DST (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Pollux)) }
