#!/usr/bin/env bash
# The main job in one command: installs what is missing, builds, makes the
# default model when none is given, and serves it: a coordinator that runs
# (and restarts) a 2-rank worker job on this machine (deploy/serve.sh), until Ctrl-C.
#
#   scripts/quickstart.sh [--model FILE.gguf] [--model-dir DIR] [serve.sh flags...]
#
# --model-dir: where the default model is made (default: models/).
# Other flags (--ranks, --listen, --workers, ...) go to deploy/serve.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

model="" model_dir=models
serve=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?--model needs a file}"; shift 2 ;;
    --model-dir) model_dir="${2:?--model-dir needs a folder}"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) serve+=("$1"); shift ;;
  esac
done

scripts/setup.sh
scripts/build.sh release
bin=build/release/bin

if [ -z "$model" ]; then
  model=$model_dir/default.gguf
  if [ ! -f "$model" ]; then
    mkdir -p "$model_dir"
    # DeepSeek-V3's own tokenizer and chat template (data/, from the
    # fixtures), so chat requests work on the default model too
    tok=$model_dir/deepseek-v3-tokenizer.gguf
    if [ ! -f "$tok" ]; then
      xz -dc data/deepseek-v3-tokenizer.gguf.xz > "$tok.tmp"
      mv "$tok.tmp" "$tok"
    fi
    echo "quickstart: no model given; making $model (random weights, preset 'default', DeepSeek-V3 tokenizer)"
    "$bin/moe-mkmodel" --preset default --vocab-from "$tok" -o "$model"
  fi
fi
[ -f "$model" ] || { echo "quickstart: model '$model' not found" >&2; exit 1; }

"$bin/moe-gguf" --summary "$model"
exec deploy/serve.sh --model "$model" "${serve[@]}"
