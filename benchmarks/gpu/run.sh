#!/usr/bin/env bash
# Issue 33's GPU checks in one run, under 8 minutes, ending in ONE JSON line on stdout (progress
# and tracebacks go to stderr): the tests marked gpu, training against a bare loop, the IWAE
# evaluation against the fp32 matmul roofline, [train] compile eager vs compiled, and the one-layer
# Burda VAE k = 1 protocol with CUDA graphs for as many epochs as fit. Without CUDA: the CPU-side
# checks, and a line that says what was skipped. See benchmarks/gpu/run.py.
#
#   bash benchmarks/gpu/run.sh
set -u
cd "$(dirname "$0")/../.."
# run.py keeps its own deadline (450 s); this is the backstop, so that a hang still gives a line.
timeout 475 python benchmarks/gpu/run.py
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "{\"error\": \"benchmarks/gpu/run.py exited with status $rc (124: past 475 s)\"}"
fi
exit "$rc"
