// Command render writes the kubeadm config that `kind create cluster --config FILE` would write to
// each Kubernetes node (/kind/kubeadm.conf), without Docker: it loads FILE with kind's own loader
// and runs kind's own "Writing configuration" action (template for the node's Kubernetes version,
// then the cluster's and the node's kubeadmConfigPatches) against in-memory nodes.
//
//	render -config manifests/kind/kind-config.yaml -kubernetes-version v1.35.0 -out DIR
//
// writes DIR/<node name>.yaml for every node and prints their paths.
//
// This file is compiled as package sigs.k8s.io/kind/pkg/cluster/kindcheck through `go build
// -overlay` (hack/build-kindcheck.sh): kind keeps this code under pkg/cluster/internal, which Go
// only lets packages under sigs.k8s.io/kind/pkg/cluster import. No kind source is copied; the only
// code here is the stand-in for Docker (the provider and its nodes).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/kind/pkg/cluster/internal/create/actions"
	configaction "sigs.k8s.io/kind/pkg/cluster/internal/create/actions/config"
	"sigs.k8s.io/kind/pkg/cluster/internal/providers"
	"sigs.k8s.io/kind/pkg/cluster/internal/providers/common"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
	"sigs.k8s.io/kind/pkg/internal/cli"
	"sigs.k8s.io/kind/pkg/log"
)

const kubeadmConfPath = "/kind/kubeadm.conf" // where kind's config action writes it

func main() {
	configPath := flag.String("config", "", "kind Cluster config file (kind.x-k8s.io/v1alpha4)")
	kubeVersion := flag.String("kubernetes-version", "", "the node image's Kubernetes version (/kind/version), e.g. v1.35.0")
	outDir := flag.String("out", "", "folder for <node>.yaml")
	flag.Parse()
	if *configPath == "" || *kubeVersion == "" || *outDir == "" {
		fmt.Fprintln(os.Stderr, "render: -config, -kubernetes-version and -out are required")
		os.Exit(2)
	}
	if err := run(*configPath, *kubeVersion, *outDir); err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		os.Exit(1)
	}
}

func run(configPath, kubeVersion, outDir string) error {
	// kind create cluster: encoding.Load (parse, default, convert), then defaults and Validate().
	cfg, err := encoding.Load(configPath)
	if err != nil {
		return fmt.Errorf("loading %s: %w", configPath, err)
	}
	config.SetDefaultsCluster(cfg)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s is not a valid kind config: %w", configPath, err)
	}
	if config.ClusterHasImplicitLoadBalancer(cfg) {
		// kind would add a load balancer container and its own action; not modelled here.
		return errors.New("more than one control-plane node is not supported by this check")
	}
	p := newProvider(cfg, kubeVersion)
	logger := log.NoopLogger{}
	ctx := actions.NewActionContext(logger, cli.StatusForLogger(logger), p, cfg)
	if err := configaction.NewAction().Execute(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, n := range p.nodes {
		content, ok := n.written(kubeadmConfPath)
		if !ok {
			return fmt.Errorf("kind wrote no %s to node %s", kubeadmConfPath, n.name)
		}
		path := filepath.Join(outDir, n.name+".yaml")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
		fmt.Println(path)
	}
	return nil
}

// provider stands in for kind's docker provider after Provision: the same node names (docker's
// provision names them with common.MakeNodeNamer in config order), roles, and internal endpoint.
type provider struct {
	nodes []*node
}

func newProvider(cfg *config.Cluster, kubeVersion string) *provider {
	namer := common.MakeNodeNamer(cfg.Name)
	p := &provider{}
	for i, n := range cfg.Nodes {
		// Addresses as docker hands them out on kind's network (any address works for kubeadm).
		ip := fmt.Sprintf("172.18.0.%d", i+2)
		p.nodes = append(p.nodes, &node{
			name: namer(string(n.Role)), role: string(n.Role), ip: ip,
			files: map[string]string{"/kind/version": kubeVersion + "\n"},
		})
	}
	return p
}

func (p *provider) String() string { return "docker" } // kind's NodeProvider value for Docker

// Info describes rootful Docker, the guide's setup; of these only Rootless reaches kubeadm's config.
func (p *provider) Info() (*providers.ProviderInfo, error) {
	return &providers.ProviderInfo{Cgroup2: true, SupportsMemoryLimit: true, SupportsPidsLimit: true, SupportsCPUShares: true}, nil
}

func (p *provider) ListNodes(string) ([]nodes.Node, error) {
	out := make([]nodes.Node, len(p.nodes))
	for i, n := range p.nodes {
		out[i] = n
	}
	return out, nil
}

// GetAPIServerInternalEndpoint answers as kind's docker provider does: the endpoint node's name
// (its hostname on the kind network) and kind's internal API server port.
func (p *provider) GetAPIServerInternalEndpoint(cluster string) (string, error) {
	all, _ := p.ListNodes(cluster)
	n, err := nodeutils.APIServerEndpointNode(all)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d", n.String(), common.APIServerInternalPort), nil
}

var errNoDocker = errors.New("not available without Docker")

func (p *provider) Provision(*cli.Status, *config.Cluster) error { return errNoDocker }
func (p *provider) ListClusters() ([]string, error)              { return nil, errNoDocker }
func (p *provider) DeleteNodes([]nodes.Node) error               { return errNoDocker }
func (p *provider) GetAPIServerEndpoint(string) (string, error)  { return "", errNoDocker }
func (p *provider) CollectLogs(string, []nodes.Node) error       { return errNoDocker }

// node answers the only commands kind's config action runs on a node: `cat /kind/version`,
// `mkdir -p DIR` and `cp /dev/stdin FILE`; anything else is an error, so a kind release that
// needs more from its nodes fails this check loudly instead of rendering something else.
type node struct {
	name, role, ip string
	mu             sync.Mutex
	files          map[string]string
}

func (n *node) String() string              { return n.name }
func (n *node) Role() (string, error)       { return n.role, nil }
func (n *node) IP() (string, string, error) { return n.ip, "", nil }
func (n *node) SerialLogs(io.Writer) error  { return errNoDocker }
func (n *node) Command(c string, args ...string) kindexec.Cmd {
	return &cmd{node: n, argv: append([]string{c}, args...)}
}
func (n *node) CommandContext(_ context.Context, c string, args ...string) kindexec.Cmd {
	return n.Command(c, args...)
}

func (n *node) written(path string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	content, ok := n.files[path]
	return content, ok
}

type cmd struct {
	node   *node
	argv   []string
	stdin  io.Reader
	stdout io.Writer
}

func (c *cmd) SetEnv(...string) kindexec.Cmd      { return c }
func (c *cmd) SetStdin(r io.Reader) kindexec.Cmd  { c.stdin = r; return c }
func (c *cmd) SetStdout(w io.Writer) kindexec.Cmd { c.stdout = w; return c }
func (c *cmd) SetStderr(io.Writer) kindexec.Cmd   { return c }

func (c *cmd) Run() error {
	n := c.node
	n.mu.Lock()
	defer n.mu.Unlock()
	argv := strings.Join(c.argv, " ")
	switch {
	case len(c.argv) == 2 && c.argv[0] == "cat":
		content, ok := n.files[c.argv[1]]
		if !ok {
			return fmt.Errorf("node %s: no file %s", n.name, c.argv[1])
		}
		if c.stdout != nil {
			_, err := io.WriteString(c.stdout, content)
			return err
		}
		return nil
	case len(c.argv) == 3 && c.argv[0] == "mkdir" && c.argv[1] == "-p":
		return nil
	case len(c.argv) == 3 && c.argv[0] == "cp" && c.argv[1] == "/dev/stdin" && c.stdin != nil:
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, c.stdin); err != nil {
			return err
		}
		n.files[c.argv[2]] = buf.String()
		return nil
	}
	return fmt.Errorf("node %s: kind ran %q, which this Docker-less check does not model", n.name, argv)
}
