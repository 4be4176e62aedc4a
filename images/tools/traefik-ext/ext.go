// Package ext stands in for Traefik's dynamic-configuration extension module
// (github.com/traefik/traefik/dynamic/ext), which Traefik keeps as a nested module of its
// repository, reaches through a replace directive, and does not publish to the module proxy.
// Traefik v3.7.13 embeds two of its types, with no fields, in dynamic.HTTPConfiguration and
// dynamic.Router; build-traefik.sh points the replace here.
package ext

// HTTP is embedded in dynamic.HTTPConfiguration.
type HTTP struct{}

// Router is embedded in dynamic.Router.
type Router struct{}
