#!/usr/bin/env bash
# The main job in one command: installs what is missing, builds, makes the
# default model when none is given, and runs it.
#
#   scripts/quickstart.sh [--model FILE.gguf]
#
# Today this prints the model's summary and, once the engine is built,
# generates a few tokens with moe-run.  Serving (coordinator + worker job)
# replaces it as those parts land.
set -euo pipefail
cd "$(dirname "$0")/.."

model=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?--model needs a file}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
scripts/build.sh release
bin=build/release/bin

if [ -z "$model" ]; then
  model=models/default.gguf
  if [ ! -f "$model" ]; then
    mkdir -p models
    echo "quickstart: no model given; making $model (random weights, preset 'default')"
    "$bin/moe-mkmodel" --preset default -o "$model"
  fi
fi
[ -f "$model" ] || { echo "quickstart: model '$model' not found" >&2; exit 1; }

"$bin/moe-gguf" --summary "$model"

if [ -x "$bin/moe-run" ]; then
  echo "quickstart: generating 16 tokens from a short prompt with moe-run"
  "$bin/moe-run" --model "$model" --tokens 0,17,42,99 -n 16 --stats
fi
