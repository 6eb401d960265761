/**
 * How a harness node becomes a cluster member: the ActorSystem's name, Pekko Management, and the
 * join itself — Kubernetes cluster bootstrap, {@code OUTBOARD_SEED_NODES}, or a self-join when a
 * node (embedded mode, a single node) has no seed nodes.
 */
package dev.outboard.cluster;
