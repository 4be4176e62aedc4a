package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func outputFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "output", "o", "text", "output format: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return kferr.Usage("--output must be text or json, got %q", o)
	}
	return nil
}

func newStatus(g *globals) *cobra.Command {
	var name, output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show a cluster's state, nodes and API server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					if err := printJSON(g, st); err != nil {
						return err
					}
				} else {
					printStatus(g, st)
				}
				if st.State == cluster.StateMissing {
					return kferr.Usage("cluster %q does not exist: create it with `kubeforge start --name %s`", name, name)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	outputFlag(c, &output)
	return c
}

func printStatus(g *globals, st cluster.Status) {
	out := g.streams.Out
	fmt.Fprintf(out, "Cluster:    %s (%s driver)\nState:      %s\n", st.Name, st.Driver, st.State)
	if st.State == cluster.StateMissing {
		return
	}
	ready := "not answering"
	if st.APIServerReady {
		ready = "ready"
	}
	fmt.Fprintf(out, "Kubernetes: %s\nAPI server: %s (%s)\nKubeconfig: %s\n", st.KubernetesVersion, st.APIServer, ready, st.Kubeconfig)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tIP\tSTATE\tVERSION")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.IP, n.State, n.Version)
	}
	tw.Flush()
}

func newList(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List kubeforge clusters",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			type item struct {
				Name   string `json:"name"`
				Driver string `json:"driver"`
				State  string `json:"state"`
				Nodes  int    `json:"nodes"`
				Error  string `json:"error,omitempty"`
			}
			items := []item{}
			// A cluster whose driver does not answer (or whose status cannot be read) is listed
			// as Unknown with the reason; the errors (with their hints, and the first's exit
			// code) follow the list.
			var unreachable []error
			err := g.withProvider(func(p *cluster.Provider) error {
				all, err := p.List(cmd.Context())
				for _, c := range all {
					if c.Err != nil {
						items = append(items, item{Name: c.Name, Driver: c.Driver, State: "Unknown", Error: c.Err.Error()})
						unreachable = append(unreachable, fmt.Errorf("cluster %s: %w", c.Name, c.Err))
						continue
					}
					items = append(items, item{Name: c.Name, Driver: c.Status.Driver, State: c.Status.State, Nodes: len(c.Status.Nodes)})
				}
				return err
			})
			if err != nil {
				return err
			}
			if err := printList(g, output, len(items), func(tw io.Writer) {
				fmt.Fprintln(tw, "NAME\tDRIVER\tSTATE\tNODES")
				for _, i := range items {
					nodes := strconv.Itoa(i.Nodes)
					if i.Error != "" {
						nodes = "?"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, i.Driver, i.State, nodes)
				}
			}, items); err != nil {
				return err
			}
			return errors.Join(unreachable...)
		},
	}
	outputFlag(c, &output)
	return c
}

// printList prints items as JSON, or as a table written by table ("No clusters..." when n is 0).
func printList(g *globals, output string, n int, table func(io.Writer), items any) error {
	if output == "json" {
		return printJSON(g, items)
	}
	if n == 0 {
		fmt.Fprintln(g.streams.Out, "No clusters. Create one with `kubeforge start`.")
		return nil
	}
	tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}
