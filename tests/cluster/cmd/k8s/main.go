// Command k8s is a multi-call binary holding the Kubernetes components that the
// fairing test cluster runs, built from the upstream Go modules.
//
// Usage: k8s SUBCOMMAND [flags...]   or a symlink named after the subcommand.
// Subcommands: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet, kube-proxy, kubectl.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func runCobra(c *cobra.Command) int { return cli.Run(c) }

var commands = map[string]func(args []string) int{
	"etcd": func(args []string) int {
		etcdmain.Main(append([]string{"etcd"}, args...))
		return 0
	},
	"kube-apiserver": func(args []string) int {
		c := apiserver.NewAPIServerCommand()
		c.SetArgs(args)
		return runCobra(c)
	},
	"kube-controller-manager": func(args []string) int {
		c := controllermanager.NewControllerManagerCommand()
		c.SetArgs(args)
		return runCobra(c)
	},
	"kube-scheduler": func(args []string) int {
		c := scheduler.NewSchedulerCommand()
		c.SetArgs(args)
		return runCobra(c)
	},
	"kubelet": func(args []string) int {
		c := kubelet.NewKubeletCommand(context.Background())
		c.SetArgs(args)
		return runCobra(c)
	},
	"kube-proxy": func(args []string) int {
		c := proxy.NewProxyCommand()
		c.SetArgs(args)
		return runCobra(c)
	},
	"kubectl": func(args []string) int {
		os.Args = append([]string{"kubectl"}, args...)
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
		c := kubectlcmd.NewDefaultKubectlCommand()
		c.SetArgs(args)
		if err := cli.RunNoErrOutput(c); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	},
}

func usage() int {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: k8s SUBCOMMAND [flags]\nsubcommands: %v\n", names)
	return 2
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok {
		if len(args) == 0 {
			os.Exit(usage())
		}
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if !ok {
		os.Exit(usage())
	}
	// Components read os.Args for logging; make them see their own name.
	os.Args = append([]string{name}, args...)
	os.Exit(run(args))
}
