"""Optional stability proxy: relax each structure with the CHGNet universal potential and check
that it stays close to where it started (a cheap stand-in for DFT relaxation).

A structure counts as stable when StructureMatcher (the CSP tolerances) still maps the relaxed
structure onto the initial one with a normalised RMS distance <= ``rmsd_tol`` (default 0.1,
i.e. a tenth of the mean interatomic spacing (V/N)^(1/3)). Needs ``pip install chgnet``.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from typing import Sequence

import numpy as np

from .validity import structure_valid

RMSD_TOL = 0.1  # normalised (StructureMatcher) RMS distance between initial and relaxed structure


def _load_chgnet():
    """Import chgnet lazily; one clear line when it is missing."""
    try:
        from chgnet.model import CHGNet, StructOptimizer
    except ImportError as err:
        raise ImportError("the stability metric needs CHGNet: pip install chgnet (or pip install 'tgdmat[stability]')") from err
    return CHGNet, StructOptimizer


def _mean_displacement(initial, final) -> float:
    """Mean atomic displacement (Angstrom) between two same-order structures: fractional
    differences wrapped to [-0.5, 0.5) and expressed in the relaxed lattice."""
    d = np.asarray(final.frac_coords) - np.asarray(initial.frac_coords)
    d -= np.round(d)
    cart = d @ np.asarray(final.lattice.matrix)
    return float(np.linalg.norm(cart, axis=1).mean())


def relax_stability(
    structures: Sequence,
    steps: int = 100,
    rmsd_tol: float = RMSD_TOL,
    fmax: float = 0.1,
    threads: int | None = None,
    device: str | None = "cpu",
    progress: bool = False,
) -> dict:
    """Relax each structure with CHGNet (FIRE, cell relaxed, at most ``steps`` steps, ``fmax``
    eV/A) and report the share that stays within ``rmsd_tol`` and the final energies per atom.
    ``threads`` (torch intra-op threads, default 1): CHGNet graphs of small cells gain little
    from more, and spinning threads slow down badly on a shared CPU; restored afterwards.

    Returns {"stable_rate", "rmsd" (list, nan when unmatched/failed), "mean_displacement" (list,
    Angstrom), "energy_per_atom" (list, eV/atom), "energy_mean", "energy_median", "n",
    "n_failed"}. None or structurally invalid inputs count as unstable and failed.
    """
    import torch
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from tqdm import tqdm

    from .matching import MATCHER_KWARGS

    CHGNet, StructOptimizer = _load_chgnet()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads or 1))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # chgnet prints its banner
            model = CHGNet.load(use_device=device, verbose=False)
            relaxer = StructOptimizer(model=model, use_device=device, on_isolated_atoms="ignore")
        matcher = StructureMatcher(**MATCHER_KWARGS)
        n = len(structures)
        rmsd = np.full(n, np.nan)
        disp = np.full(n, np.nan)
        energy = np.full(n, np.nan)
        stable = np.zeros(n, dtype=bool)
        for i, s in enumerate(tqdm(structures, desc="CHGNet relax", file=sys.stderr, disable=not progress)):
            if s is None or not structure_valid(s):
                continue
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    res = relaxer.relax(s.copy(), fmax=fmax, steps=steps, relax_cell=True, verbose=False)
                final = res["final_structure"]
                energy[i] = float(res["trajectory"].energies[-1]) / len(final)
                disp[i] = _mean_displacement(s, final)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    match = matcher.get_rms_dist(s, final)
            except Exception:
                continue
            if match is not None:
                rmsd[i] = float(match[0])
                stable[i] = rmsd[i] <= rmsd_tol
    finally:
        torch.set_num_threads(prev_threads)
    finite = energy[np.isfinite(energy)]
    return {
        "stable_rate": float(stable.mean()) if n else float("nan"),
        "rmsd": rmsd.tolist(),
        "mean_displacement": disp.tolist(),
        "energy_per_atom": energy.tolist(),
        "energy_mean": float(finite.mean()) if len(finite) else float("nan"),
        "energy_median": float(np.median(finite)) if len(finite) else float("nan"),
        "rmsd_tol": float(rmsd_tol),
        "n": n,
        "n_failed": int(n - len(finite)),
    }


def chgnet_energies(structures: Sequence, relax_steps: int = 0, device: str | None = "cpu", threads: int | None = None) -> list[float]:
    """CHGNet energy per atom (eV/atom) of each structure, statically or after ``relax_steps`` FIRE
    steps with the cell relaxed; nan for invalid structures or failures (ranked last)."""
    import torch

    CHGNet, StructOptimizer = _load_chgnet()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads or 1))
    out = []
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = CHGNet.load(use_device=device, verbose=False)
            relaxer = StructOptimizer(model=model, use_device=device, on_isolated_atoms="ignore") if relax_steps > 0 else None
        for s in structures:
            if s is None or not structure_valid(s):
                out.append(float("nan"))
                continue
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    if relaxer is None:
                        out.append(float(model.predict_structure(s)["e"]))
                    else:
                        res = relaxer.relax(s.copy(), steps=relax_steps, relax_cell=True, verbose=False)
                        out.append(float(res["trajectory"].energies[-1]) / len(s))
            except Exception:
                out.append(float("nan"))
    finally:
        torch.set_num_threads(prev_threads)
    return out


def rank_by_energy(structures: Sequence, relax_steps: int = 0, **kwargs) -> tuple[list[int], list[float]]:
    """(indices from lowest to highest CHGNet energy per atom, energies); failures last."""
    energies = chgnet_energies(structures, relax_steps, **kwargs)
    order = sorted(range(len(energies)), key=lambda i: (not np.isfinite(energies[i]), energies[i] if np.isfinite(energies[i]) else 0.0))
    return order, energies
