package main

import (
	"context"
	"fmt"
	"os"
	"time"

	cri "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"
)

// criReset stops and removes every pod sandbox of a CRI runtime, so that the
// runtime tears down their containers, network namespaces and IPs.
// Usage: k8s cri-reset unix:///path/to/containerd.sock
func criReset(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: k8s cri-reset ENDPOINT")
		return 2
	}
	logger := klog.Background()
	rs, err := cri.NewRemoteRuntimeService(args[0], 10*time.Second, nil, &logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-reset:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-reset: list:", err)
		return 1
	}
	rc := 0
	for _, p := range pods {
		name := p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
		if err := rs.StopPodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: stop %s: %v\n", name, err)
			rc = 1
		}
		if err := rs.RemovePodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: remove %s: %v\n", name, err)
			rc = 1
			continue
		}
		fmt.Printf("removed pod sandbox %s (%s)\n", name, p.Id[:12])
	}
	return rc
}

func init() { commands["cri-reset"] = criReset }
