// The Kaniko executor, built from its Go module (github.com/GoogleContainerTools/kaniko
// at the version go.mod pins) for the in-cluster builder's e2e tests.
package main

import (
	"os"

	"github.com/GoogleContainerTools/kaniko/cmd/executor/cmd"
)

func main() {
	if err := cmd.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
