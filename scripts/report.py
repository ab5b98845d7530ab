"""Plots of the shipped figures, made from the result JSONs in docs/results (so they never drift
from them): CSP match and exact-match rates of our models against the published rows per
dataset, prompt adherence per field, and match rate against sampling speed. PNGs go to
docs/figures; the docs show them.

    python scripts/report.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS, FIGURES = ROOT / "docs" / "results", ROOT / "docs" / "figures"
# whole-test-set CSP figures: (label, JSON under docs/results)
OURS = {
    "perov_5": [("perov_5_long_facts (long)", "full/csp_perov_5_long_facts_full.json"), ("perov_5_csp_facts (short + facts)", "full/csp_perov_5_csp_facts_full.json"),
                ("perov_5_csp (short)", "speed/full_perov_5_csp_bf16_300_rescaled.json"), ("perov_5_csp_notext (none)", "full/csp_perov_5_csp_notext_full.json")],
    "carbon_24": [("carbon_24_long_facts (long)", "full/csp_carbon_24_long_facts_full.json"), ("carbon_24_csp_facts (short + facts), 1000 steps", "full/csp_carbon_24_csp_facts_full_s1000_compiled.json")],
    "mp_20": [("mp_20_csp_facts (short + facts), test_pilot1000", "mp_20/csp_mp_20_csp_facts_pilot1000.json"),
              ("its stage-1 weights (82 min), today's sampler", "mp_20/csp_mp_20_csp_facts_stage1_clip_pilot1000.json"),
              ("stage-1 weights before the lattice fix (history)", "mp_20/csp_mp_20_csp_facts_82min_pilot1000.json")],
}
# published rows (standard splits, 1 sample), quoted: (label, match %)
PUBLISHED = {
    "perov_5": [("TGDMat long (quoted)", 90.46), ("TGDMat short (quoted)", 56.54), ("DiffCSP (quoted)", 52.02)],
    "carbon_24": [("TGDMat long (quoted)", 44.63), ("TGDMat short (quoted)", 24.13), ("DiffCSP (quoted)", 17.54)],
    "mp_20": [("TFMat (quoted)", 77.80), ("TGDMat long (quoted)", 55.15), ("TGDMat short (quoted)", 52.22), ("DiffCSP (quoted)", 51.49)],
}
ADHERENCE = [("perov_5_csp_facts, Perov-5", "adherence_perov_5_csp_facts_enforced.json"), ("carbon_24_csp_facts, Carbon-24", "adherence_carbon_24_csp_facts_enforced.json"),
             ("perov_5 enforced, Perov-5", "adherence_perov_5_enforced.json"), ("perov_5 free, Perov-5", "adherence_perov_5_free.json")]
SPEED = [("Perov-5 perov_5_csp 300 steps", "speed/full_perov_5_csp_bf16_300_rescaled.json"), ("the same, compiled", "speed/full_perov_5_csp_bf16_300_rescaled_compiled.json"),
         ("100 steps, fixed corrector", "speed/full_perov_5_csp_bf16_100_fixed.json"), ("Carbon-24 1000 steps, compiled", "full/csp_carbon_24_csp_facts_full_s1000_compiled.json"),
         ("Carbon-24 300 steps", "full/csp_carbon_24_csp_facts_full.json")]


def load(rel: str) -> dict | None:
    path = RESULTS / rel
    return json.loads(path.read_text()) if path.exists() else None


def _save(plt, fig, name: str) -> Path:
    fig.tight_layout()
    out = FIGURES / name
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def csp_figure(plt, dataset: str) -> Path | None:
    rows = [(label, r) for label, rel in OURS[dataset] if (r := load(rel)) is not None]
    if not rows:
        return None
    labels = [f"{label}\n{r['n']} test crystals" for label, r in rows] + [p for p, _ in PUBLISHED[dataset]]
    match = [100 * r["match_rate"] for _, r in rows] + [m for _, m in PUBLISHED[dataset]]
    exact = [100 * r["exact_match_rate"] for _, r in rows] + [None] * len(PUBLISHED[dataset])
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(labels) + 1.2))
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], match, height=0.4, color=["C0"] * len(rows) + ["0.6"] * len(PUBLISHED[dataset]), label="match rate")
    ax.barh([i - 0.2 for i, e in zip(y, exact) if e is not None], [e for e in exact if e is not None], height=0.4, color="C2", label="exact match (RMSE < 0.05)")
    for i, (m, e) in enumerate(zip(match, exact)):
        ax.text(m + 0.5, i + 0.2, f"{m:.1f}", va="center", fontsize=8)
        if e is not None:
            ax.text(e + 0.5, i - 0.2, f"{e:.1f}", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("% of test crystals (1 sample)")
    ax.set_title(f"{dataset}: CSP, ours (shared-data protocol) and published (standard splits, quoted)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, f"csp_{dataset}.png")


def adherence_figure(plt) -> Path | None:
    rows = [(label, r) for label, rel in ADHERENCE if (r := load(rel)) is not None]
    if not rows:
        return None
    fields = ["formula", "spacegroup", "crystal_system", "all"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(rows)
    for k, (label, r) in enumerate(rows):
        values = [100 * r[f"adherence_{f}"] for f in fields]
        ax.bar([i + k * width for i in range(len(fields))], values, width=width, label=f"{label} ({r['n']} prompts)")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(fields))], [f.replace("_", " ") for f in fields])
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of crystals with the stated field")
    ax.set_title("Prompt adherence in generation from test prompts (spglib 0.1 Å)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return _save(plt, fig, "adherence.png")


def speed_figure(plt) -> Path | None:
    rows = [(label, r) for label, rel in SPEED if (r := load(rel)) is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, r in rows:
        ax.scatter(r["crystals_per_second"], 100 * r["match_rate"], s=30)
        ax.annotate(f"{label}\n({r['steps']} steps)", (r["crystals_per_second"], 100 * r["match_rate"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("crystals per second (this 2-core CPU, whole test set)")
    ax.set_ylabel("match rate %")
    ax.set_title("Match rate against sampling speed", fontsize=9)
    return _save(plt, fig, "speed.png")


GENERATION = ("perov_5_csp_facts, 500 Perov-5 test prompts enforced", "generation/gen_perov_5_csp_facts_500_enforced_hist.json")


def generation_figure(plt) -> Path | None:
    """Density and number-of-elements distributions of generated crystals against the test set."""
    label, rel = GENERATION
    r = load(rel)
    if r is None or "distributions" not in r:
        return None
    h = r["distributions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    edges = h["density_edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    width = edges[1] - edges[0]
    left.bar(centres, h["density_test"], width=width, color="0.6", label="test set")
    left.step(centres, h["density_generated"], where="mid", color="C0", label="generated")
    left.set_xlabel("density (g/cm³)")
    left.set_ylabel("share of crystals")
    left.set_title(f"W(density) = {r['wdist_density']:.3f}", fontsize=9)
    left.legend(fontsize=8)
    k = h["num_elements"]
    right.bar([x - 0.2 for x in k], h["num_elements_test"], width=0.4, color="0.6", label="test set")
    right.bar([x + 0.2 for x in k], h["num_elements_generated"], width=0.4, color="C0", label="generated")
    right.set_xticks(k)
    right.set_xlabel("number of elements")
    right.set_title(f"W(#elements) = {r['wdist_num_elems']:.3f}", fontsize=9)
    fig.suptitle(f"Generation: {label} ({r['n']} crystals)", fontsize=9)
    return _save(plt, fig, "generation.png")


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    made = [csp_figure(plt, d) for d in OURS] + [adherence_figure(plt), speed_figure(plt), generation_figure(plt)]
    for path in made:
        if path is not None:
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
