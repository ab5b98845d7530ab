#!/usr/bin/env bash
# Issue 25's text ablation on MP-20 at equal budget: three twins fine-tuned from the same weights
# (mp_20_csp_facts), on the same rows (the whole mp_20 training pool: every row has its long
# description in the shipped cache, which the long arm needs), for the same number of epochs and
# the same learning-rate schedule, differing only in what they read: the robocrys long description and its facts (long), the short prompt and its
# facts (short), or nothing (none: text and facts dropped for every crystal, sampled with guidance
# 0, i.e. the unconditional branch). Each twin is then evaluated on test_pilot1000, 1 sample, free.
#
#   bash scripts/text_ablation.sh [EPOCHS] [OUT]        # defaults: 14 epochs, runs/text_ablation
#
# A finished arm (its .safetensors exported) is skipped, so the script can be run again after an
# interruption; an interrupted arm resumes from its state.pt.
set -euo pipefail
EPOCHS=${1:-14}
OUT=${2:-runs/text_ablation}
mkdir -p "$OUT"
COMMON=(--config mp_20 --set diffusion.task=csp --set model.facts=true
        --set model.facts_numbers=true --set train.threads=2
        --set train.lr=0.0003 --set train.lr_schedule=cosine --set "train.max_epochs=$EPOCHS")
declare -A EXTRA=([long]="--set data.prompt=long" [short]="" [none]="--set diffusion.text_dropout=1.0")
declare -A GUIDE=([long]="" [short]="" [none]="--guidance 0")
for arm in short none long; do
  model="$OUT/mp_20_${arm}.safetensors"
  if [ ! -f "$model" ]; then
    run="$OUT/$arm"
    if [ -f "$run/state.pt" ]; then start=(--resume); else start=(--init mp_20_csp_facts --overwrite); fi
    # shellcheck disable=SC2086
    tgdmat train "${COMMON[@]}" ${EXTRA[$arm]} --out "$run" "${start[@]}"
    tgdmat export "$run/last.safetensors" --name "mp_20_${arm}" --out "$model" --sample-steps 100 --corrector fixed --passes-per-step 1
  fi
done
for arm in long short none; do
  json="$OUT/csp_${arm}_pilot1000.json"
  # shellcheck disable=SC2086
  [ -f "$json" ] || tgdmat evaluate --task csp --checkpoint "$OUT/mp_20_${arm}.safetensors" ${GUIDE[$arm]} --threads 2 --json "$json"
done
