#!/usr/bin/env bash
# Regenerates every figure of docs/RESEARCH.md (simulator; about 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
for peers in 16 64; do
  for part in iid dirichlet; do
    .venv/bin/swarm experiment "experiments/compare-${part}-${peers}.toml" --out "docs/research/${part}-${peers}" --quiet
  done
done
.venv/bin/swarm experiment experiments/scale256.toml --out docs/research/scale256 --quiet
# Issue 11 figures (live engine): sim vs measured time, Ray scaling and 1,024 peers, label-skew remedies
.venv/bin/python -m benchmarks.sim_vs_webrtc
.venv/bin/python -m benchmarks.ray_scale
PYTHONPATH=. .venv/bin/python experiments/skew_table.py
PYTHONPATH=. .venv/bin/python experiments/codec_table.py
