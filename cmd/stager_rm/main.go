// Command stager_rm removes files from Pollux (see package client).
package main

import (
	"os"

	"github.com/pollux-storage/pollux/cmd/client"
)

func main() { os.Exit(client.Main(client.Rm)) }
