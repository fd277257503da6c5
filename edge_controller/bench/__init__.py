"""Benchmarks the command line runs (`energy-p2p-edge bench ...`)."""
