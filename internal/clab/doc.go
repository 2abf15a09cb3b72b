// Package clab reads lab topologies written in containerlab's file format
// (*.clab.yml) and runs them on a host without Docker, one network namespace
// per node, built on internal/lab.
//
// Load parses the subset of the format the topologies in test/containerlab
// use: the lab name; topology.defaults, topology.kinds and topology.nodes with
// kind (only "linux"), image (recorded, not used by the runner), binds, exec,
// env and labels (ignored); and links with two "node:interface" endpoints.
// Everything else is refused with the key and line that is not supported, so
// a topology never means something different here and under containerlab.
// As containerlab does, Load first expands ${VAR}, ${VAR:-default} and
// ${VAR:=default} from the environment.
//
// Deploy turns a Topology into processes and namespaces of a lab.Lab: per
// node a network namespace, a mount and UTS namespace held by a small holder
// process (a private tmpfs on /run, the node's binds mounted into it, the
// hostname set to the node name), a veth pair per link, and then the node's
// exec commands, run in order inside the node with its environment, as
// containerlab runs them with docker exec once every link is in place. Nodes
// run their exec commands concurrently. Everything is registered with the
// lab, so lab.Lab.Close tears the deployment down; processes the node
// scripts started are killed when their network namespace is deleted.
//
// The runner is not a container runtime: a node shares the host's file
// system outside /run and its binds, so node scripts must write only below
// /run. Bind targets must exist on the host or lie below /run, where the
// runner creates them in the node's private tmpfs.
package clab
