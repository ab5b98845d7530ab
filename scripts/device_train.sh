#!/usr/bin/env bash
# Time-boxed training on a lent GPU machine (no pymatgen, no text encoder there): three runs side
# by side on the one GPU, each from a training bundle written here with `tgdmat train ...
# --write-bundle runs/bundles/NAME.safetensors` (carried to the machine as runs/bundles):
#   mp_20_csp_facts   MP-20 CSP, short prompt + facts, fine-tuned from the shipped weights
#   mpts_52_csp_facts MPTS-52 CSP, short prompt (3 variants: the bundle fits the 64 MiB) + facts, from the MP-20 weights
#   mp_20_gen_facts   MP-20 joint model (de novo types + CSP), short prompt + facts, from scratch
# float32 weights with TF32 products (the network is small: launches, not arithmetic, bound it).
# The learning rate decays over the time budget (train.lr_schedule=cosine_time). Each run's
# best.safetensors and a tarball of the logs land in $OUT (at most 8 files come back).
# Usage (device tool): bash scripts/device_train.sh MINUTES [RUN...]   (default: all three)
# CONTINUE=1: every run starts from its own shipped weights at half the learning rate (a second
# cosine cycle; carry only the bundles those runs read).
set -u
minutes=${1:?minutes per run}
shift
selected=" ${*:-mp_20_csp_facts mpts_52_csp_facts mp_20_gen_facts} "
out=${OUT:-/tmp/out}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
runs=/tmp/tgdmat_runs
mkdir -p "$runs" "$out/logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/logs/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >> "$out/logs/gpu.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > "$out/logs/gpu_load.csv" 2>&1 &
monitor=$!
device=${TGDMAT_DEVICE:-cuda}  # cpu: a dry run of this script's mechanics
facts=(--set model.facts=true --set model.facts_numbers=true --set train.lr_schedule=cosine_time --set train.threads=4 --set train.bf16=false --max-minutes "$minutes")

job() {  # NAME CONFIG BUNDLE INIT LR ARGS...
    local name=$1 config=$2 bundle=$3 init=$4 lr=$5
    shift 5
    [[ $selected == *" $name "* ]] || return 0
    if [[ ${CONTINUE:-0} == 1 ]]; then init=$name; lr=$(python3 -c "print($lr / 2)"); fi
    set -- --set train.lr="$lr" ${init:+--init "$init"} "$@"
    python3 -m tgdmat.cli train --config "$config" --bundle "runs/bundles/$bundle.safetensors" --device "$device" --out "$runs/$name" "${facts[@]}" "$@" > "$out/logs/$name.stderr" 2>&1
    echo "$name exit $?" >> "$out/logs/gpu.txt"
    cp "$runs/$name/log.jsonl" "$out/logs/$name.log.jsonl" 2>/dev/null
    cp "$runs/$name/best.safetensors" "$out/$name.safetensors" 2>/dev/null
}

pids=()
job mp_20_csp_facts mp_20 mp_20_csp_facts mp_20_csp_facts 0.0005 --set diffusion.task=csp --set train.batch_size=256 &
pids+=($!)
job mpts_52_csp_facts mpts_52 mpts_52_csp_facts mp_20_csp_facts 0.0005 --set diffusion.task=csp --set data.prompt_variants=3 --set train.batch_size=128 &
pids+=($!)
job mp_20_gen_facts mp_20 mp_20_csp_facts "" 0.001 --set train.batch_size=256 --set train.warmup_steps=200 &
pids+=($!)
wait "${pids[@]}"
kill "$monitor" 2>/dev/null
for f in "$out"/logs/*.stderr; do  # progress-bar redraws out, everything else kept
    tr '\r' '\n' < "$f" | grep -v '^ *$' | grep -v '^epoch [0-9]*: ' > "$f.txt"
    rm "$f"
done
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -r "$out/logs"
ls -la "$out"
