#!/usr/bin/env bash
# The main job: install, then rebuild the whole pipeline on the embedded simulated company
# (dvc repro), then print the top of the at-risk list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
dvc repro
churn at-risk --top 15
