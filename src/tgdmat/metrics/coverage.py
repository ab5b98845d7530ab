"""Coverage (COV-R / COV-P) and property distances of generated crystals, as CDVAE computes them.

Fingerprints (CDVAE ``Crystal.get_fingerprints``): a structure's fingerprint is the mean over
its sites of matminer ``CrystalNNFingerprint.from_preset("ops")`` (61 features, unscaled); a
composition's is matminer ``ElementProperty.from_preset("magpie")`` (132 features), standardised
with CDVAE's fixed ``CompScalerMeans``/``CompScalerStds`` (cdvae/common/constants.py, used by
``CompScaler`` in scripts/eval_utils.py) with NaN replaced by 0. Coverage (CDVAE
``compute_cov``): for each test crystal the smallest structure distance and, independently, the
smallest composition distance to any generated crystal; it is covered when both are <= the
dataset's cutoffs. COV-P is the same from the generated side, divided by the number of generated
crystals (those whose fingerprint fails count as not covered).
"""
from __future__ import annotations

import math
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..workers import init_worker
from .validity import MIN_VOLUME, valid_mask

# scripts/compute_metrics.py, COV_Cutoffs (keys there: mp20, carbon, perovskite)
COV_CUTOFFS = {
    "mp_20": {"struc": 0.4, "comp": 10.0},
    "carbon_24": {"struc": 0.2, "comp": 4.0},
    "perov_5": {"struc": 0.2, "comp": 4.0},
}
_DATASET_ALIASES = {"mp20": "mp_20", "mp_20_subset": "mp_20", "mpts_52": "mp_20", "carbon": "carbon_24", "perovskite": "perov_5"}
_BLOCK = 2048  # generated rows per distance block (bounds memory for 10k x 10k)

# CDVAE cdvae/common/constants.py: CompScalerMeans / CompScalerStds (magpie, 22 properties x 6 stats)
COMP_SCALER_MEANS = np.array([
    21.194441759304013, 58.20212663122281, 37.0076848719188, 36.52738520455582, 13.350626389725019, 29.468922184630255,
    28.71735137747704, 78.8868535524408, 50.16950217496375, 59.56764743604155, 19.020429484306277, 61.335572740454325,
    47.14515893344343, 141.75135923307818, 94.60620029962553, 85.95794070476977, 34.07300576173523, 68.06189371516912,
    637.9862061297893, 1817.2394155466848, 1179.2532094169414, 1127.2743149568837, 431.51034284549826, 909.1060025135899,
    3.7744320927984534, 13.673707104881585, 9.899275012083132, 9.620186927095652, 3.8426065581251856, 9.96950217496375,
    3.305461575640406, 5.483035282745288, 2.1775737071048815, 4.215114560306594, 0.8206087101824266, 3.732092798453359,
    109.16732721121315, 179.5570323827936, 70.38970517158047, 136.0978305229613, 27.027545809538527, 119.16713388110198,
    1.2721433060967857, 2.4614001837260617, 1.1892568776289631, 1.9844483610247092, 0.4691462290494881, 2.100143582306204,
    1.4829869502174964, 1.9899951667472209, 0.5070082165297245, 1.7956250375970633, 0.2056251946617602, 1.745867568873852,
    0.05650072498791687, 2.3618656355727405, 2.3053649105848235, 1.2829636137262992, 0.9995555685850794, 1.5150314161430642,
    0.7731271145480909, 7.4648139197680035, 6.691686805219913, 4.010677272036105, 2.612307566507693, 3.303528274528758,
    0.2739487675205413, 5.889753504108265, 5.615804736587724, 2.3244356612494683, 2.1426251769710905, 1.4464475592073465,
    4.739246012566457, 14.578395360077332, 9.839149347510874, 9.413701584608935, 3.537059747455868, 8.550410826486225,
    0.008119864668922184, 0.43286611889801835, 0.4247462542290962, 0.16687837041055423, 0.17139889490813626, 0.10898985016916385,
    0.06283228612856452, 2.6573707104881583, 2.594538424359594, 1.219602938224228, 1.0596390454742999, 1.1120831319478008,
    0.14842919284678588, 3.8473658772353794, 3.6989366843885936, 1.4541605082183982, 1.3862277372859781, 0.8018849685838569,
    0.03542774287095215, 2.4474625422909617, 2.4120347994200095, 0.7745217539010397, 0.9145812330586208, 0.3198646689221846,
    1.552730787820203, 6.910681488641856, 5.357950700821653, 3.615163570754227, 1.9072256165179793, 2.6702271628806185,
    14.608536589568727, 34.83222477045747, 20.223688180890715, 22.47901710732293, 7.17674504190757, 18.641837024143584,
    0.009066988883518605, 0.9185191396809959, 0.9094521507974755, 0.4368550481994018, 0.38905942883427047, 0.48375558240695804,
    0.0012985909686158003, 0.21708593995837092, 0.21578734898975546, 0.08167977375391729, 0.08155386250705281, 0.06036340747305611,
    116.32010633156113, 217.5905751570807, 101.27046882551957, 162.87154200548844, 41.920624308665566, 136.4664572257129,
])
COMP_SCALER_STDS = np.array([
    16.35781741152948, 20.189540126474725, 20.516298414514758, 16.816765336550194, 7.966591328222124, 22.270791076753067,
    21.802116630115243, 12.804546460581966, 24.756629388687983, 13.930306216047477, 10.214535652334533, 27.801612936980938,
    39.74031558353379, 54.269739685575814, 53.70466607591569, 42.852342044453444, 20.78341194242935, 56.28783510219931,
    563.8004405882157, 732.0722574247563, 736.2122907972664, 606.351603075103, 272.62646060896407, 810.6156779688841,
    3.0362262146833428, 3.2075174256751606, 4.0633818989245665, 2.9738244769894764, 1.7805586029644034, 5.643243225066782,
    1.1994336274579853, 0.8939013979423364, 1.2297581799896975, 1.0066021334519983, 0.49129747526397105, 1.4159553146070951,
    31.754756468836774, 28.054241463256226, 38.16336054795611, 25.83485338379922, 15.388376641904662, 39.67137484594156,
    0.31988340032011076, 0.6833658037760536, 0.7464197945553585, 0.4881349085029781, 0.3176591553643101, 0.8601748146737138,
    0.5864801661863596, 0.10048913710210677, 0.5836289120986499, 0.2811748167435902, 0.2468696279341553, 0.5007375747433073,
    0.37237566669029587, 1.7235989187720187, 1.7058836077743305, 1.1558859351244697, 0.7677842566598179, 1.9203550253462733,
    2.1289400248865182, 3.5326064169848332, 3.708508303762512, 2.8709941136664567, 1.6110681295257014, 4.310192504023775,
    1.6644182118209292, 6.228287671164213, 6.1200848808512305, 3.1986202996110302, 2.4492978142248867, 4.030497343977163,
    3.662028270049814, 6.8192125550358345, 6.614243783887738, 4.334987449618594, 2.568319610320196, 5.9494890200106925,
    0.08974370432893491, 0.4954725441517777, 0.494304434278516, 0.2309340434963803, 0.2072873961103969, 0.31162647950590266,
    0.39805702757060923, 1.8111691089355726, 1.7973395144505941, 0.9486995373104102, 0.7538753151875139, 1.5233177017753785,
    0.7952606701778913, 3.711190225170556, 3.638721437232604, 1.7171165424006831, 1.4307904413917036, 2.1047820817622904,
    0.49193748323158065, 4.064840532426175, 4.035286619587313, 1.4858577214526643, 1.5799117659864677, 1.6130080156145745,
    1.555249156140194, 4.776932951077492, 4.569790780459629, 2.224617778217326, 1.7217507416156546, 2.5969733650703763,
    7.215001918238936, 19.252513469778584, 18.775394044177858, 9.447222764774764, 6.7467931836261235, 11.106825644766616,
    0.27206794253092115, 1.6449321034573106, 1.6236282792648686, 0.8506917026741503, 0.7020945355184042, 1.2281895279350408,
    0.04134438177238229, 0.5508855867341717, 0.5486095551438679, 0.24239297524046477, 0.2127779137935831, 0.3036750942874694,
    80.06063945615361, 21.345794811194104, 80.16475677581042, 52.58533928558554, 35.40836791039412, 85.980205895116,
])


def _dataset_key(dataset: str) -> str:
    """Canonical COV_CUTOFFS key of a dataset name (CDVAE's names are accepted too)."""
    key = _DATASET_ALIASES.get(dataset, dataset)
    if key not in COV_CUTOFFS:
        raise KeyError(f"no coverage cutoffs for dataset {dataset!r}: known {sorted(COV_CUTOFFS)}; pass struc_cutoff/comp_cutoff")
    return key


# ------------------------------------------------------------------ fingerprints
_FEATURIZERS = None


def _featurizers():
    """(CrystalNNFingerprint "ops", ElementProperty "magpie"), built once per process.
    ``impute_nan=False`` keeps missing element data as NaN, as the matminer CDVAE used did."""
    global _FEATURIZERS
    if _FEATURIZERS is None:
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                comp = ElementProperty.from_preset("magpie", impute_nan=False)
            except TypeError:  # matminer < 0.8 has no impute_nan (and never imputes)
                comp = ElementProperty.from_preset("magpie")
            _FEATURIZERS = (CrystalNNFingerprint.from_preset("ops"), comp)
    return _FEATURIZERS


def _fingerprint_one(s) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean site CrystalNN fingerprint, raw magpie fingerprint) of one structure; (None, None)
    when either fails or the cell is degenerate (CDVAE drops such crystals from coverage)."""
    if s is None or len(s) == 0:
        return None, None
    cnn, ep = _featurizers()
    try:
        if not (np.isfinite(s.lattice.matrix).all() and np.isfinite(s.frac_coords).all()) or s.volume < MIN_VOLUME:
            return None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp_fp = np.asarray(ep.featurize(s.composition), dtype=float)
            site_fps = np.asarray([cnn.featurize(s, i) for i in range(len(s))], dtype=float)
        return site_fps.mean(axis=0), comp_fp
    except Exception:
        return None, None


def _fingerprint_chunk(structures: list) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """Worker: fingerprints of a chunk of structures."""
    return [_fingerprint_one(s) for s in structures]


@dataclass
class Fingerprints:
    """Fingerprints of a list of structures; rows where ``ok`` is False are NaN (failed)."""

    struct: np.ndarray  # (n, 61) mean CrystalNN "ops" site fingerprints, unscaled
    comp: np.ndarray  # (n, 132) magpie fingerprints, unscaled (see scale_comp_fps)
    ok: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        """Number of structures fingerprinted."""
        return len(self.ok)

    @property
    def n_failed(self) -> int:
        """How many structures have no fingerprint."""
        return int((~self.ok).sum())


def fingerprints(structures: Sequence, workers: int = 2, progress: bool = False) -> Fingerprints:
    """Structure and composition fingerprints of ``structures`` over ``workers`` processes;
    failures are counted in ``.ok`` rather than raised. Compute the test set's once and reuse."""
    from tqdm import tqdm

    n = len(structures)
    _featurizers()  # import matminer once in the parent so forked workers inherit it
    results: list = [None] * n
    bar = tqdm(total=n, desc="fingerprints", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or n <= 1:
            for i, s in enumerate(structures):
                results[i] = _fingerprint_one(s)
                bar.update(1)
        else:
            size = max(1, min(16, math.ceil(n / (workers * 8))))
            with ProcessPoolExecutor(max_workers=min(workers, math.ceil(n / size)), initializer=init_worker, initargs=(False,)) as pool:
                futures = {pool.submit(_fingerprint_chunk, list(structures[s : s + size])): s for s in range(0, n, size)}
                for fut in as_completed(futures):
                    s = futures[fut]
                    res = fut.result()
                    results[s : s + len(res)] = res
                    bar.update(len(res))
    finally:
        bar.close()
    n_struct, n_comp = 61, len(COMP_SCALER_MEANS)  # "ops" and magpie sizes, unless results say otherwise
    for sfp, cfp in results:
        if sfp is not None:
            n_struct, n_comp = len(sfp), len(cfp)
            break
    struct = np.full((n, n_struct), np.nan)
    comp = np.full((n, n_comp), np.nan)
    ok = np.zeros(n, dtype=bool)
    for i, (sfp, cfp) in enumerate(results):
        if sfp is not None and cfp is not None and len(sfp) == n_struct and len(cfp) == n_comp and np.isfinite(sfp).all():
            struct[i], comp[i], ok[i] = sfp, cfp, True
    return Fingerprints(struct, comp, ok)


def scale_comp_fps(comp: np.ndarray) -> np.ndarray:
    """CDVAE's ``CompScaler.transform``: (x - mean) / std with its fixed constants, NaN -> 0."""
    comp = np.asarray(comp, dtype=float)
    if comp.shape[-1] != len(COMP_SCALER_MEANS):
        raise ValueError(f"composition fingerprints have {comp.shape[-1]} features, CDVAE's scaler {len(COMP_SCALER_MEANS)}")
    scaled = (comp - COMP_SCALER_MEANS) / COMP_SCALER_STDS
    return np.where(np.isnan(scaled), 0.0, scaled)


# ------------------------------------------------------------------ coverage
def coverage(
    gen: Sequence | None,
    test: Sequence | None,
    dataset: str | None = None,
    struc_cutoff: float | None = None,
    comp_cutoff: float | None = None,
    workers: int = 2,
    progress: bool = False,
    valid_only: bool = False,
    gen_fps: Fingerprints | None = None,
    test_fps: Fingerprints | None = None,
) -> dict:
    """COV-R / COV-P (and CDVAE's AMSD/AMCD) of generated vs test structures.

    Cutoffs come from ``COV_CUTOFFS[dataset]`` unless given. As CDVAE, every generated crystal
    with a fingerprint takes part; ``valid_only=True`` also drops invalid ones (they then count
    as not covered). Precomputed fingerprints (from ``fingerprints``) skip the slow CrystalNN step.
    """
    if struc_cutoff is None or comp_cutoff is None:
        if dataset is None:
            raise ValueError("give dataset (one of COV_CUTOFFS) or both struc_cutoff and comp_cutoff")
        cut = COV_CUTOFFS[_dataset_key(dataset)]
        struc_cutoff = cut["struc"] if struc_cutoff is None else struc_cutoff
        comp_cutoff = cut["comp"] if comp_cutoff is None else comp_cutoff
    if gen is None and gen_fps is None:
        raise ValueError("give the generated structures or their fingerprints")
    n_gen = len(gen) if gen is not None else len(gen_fps)
    attempted = np.ones(n_gen, dtype=bool)
    if valid_only:
        if gen is None:
            raise ValueError("valid_only needs the generated structures, not only their fingerprints")
        attempted &= valid_mask(gen)
    if gen_fps is None:
        idx = np.flatnonzero(attempted)
        sub = fingerprints([gen[i] for i in idx], workers, progress)
        gen_fps = Fingerprints(
            np.full((n_gen, sub.struct.shape[1]), np.nan), np.full((n_gen, sub.comp.shape[1]), np.nan), np.zeros(n_gen, dtype=bool)
        )
        gen_fps.struct[idx], gen_fps.comp[idx], gen_fps.ok[idx] = sub.struct, sub.comp, sub.ok
    if test_fps is None:
        test_fps = fingerprints(test, workers, progress)
    use_gen = attempted & gen_fps.ok
    g_struct, g_comp = gen_fps.struct[use_gen], scale_comp_fps(gen_fps.comp[use_gen])
    t_struct, t_comp = test_fps.struct[test_fps.ok], scale_comp_fps(test_fps.comp[test_fps.ok])
    out = {
        "cov_recall": 0.0,
        "cov_precision": 0.0,
        "amsd_recall": float("nan"),
        "amsd_precision": float("nan"),
        "amcd_recall": float("nan"),
        "amcd_precision": float("nan"),
        "struc_cutoff": float(struc_cutoff),
        "comp_cutoff": float(comp_cutoff),
        "n_gen": int(n_gen),
        "n_gen_used": int(use_gen.sum()),
        "n_gen_fp_failed": int((attempted & ~gen_fps.ok).sum()),
        "n_test": int(len(test_fps)),
        "n_test_fp_failed": int(test_fps.n_failed),
    }
    if len(g_struct) == 0 or len(t_struct) == 0:
        return out
    from scipy.spatial.distance import cdist

    struc_recall = np.full(len(t_struct), np.inf)
    comp_recall = np.full(len(t_struct), np.inf)
    struc_prec, comp_prec = [], []
    for s in range(0, len(g_struct), _BLOCK):
        ds = cdist(g_struct[s : s + _BLOCK], t_struct)
        dc = cdist(g_comp[s : s + _BLOCK], t_comp)
        np.minimum(struc_recall, ds.min(axis=0), out=struc_recall)
        np.minimum(comp_recall, dc.min(axis=0), out=comp_recall)
        struc_prec.append(ds.min(axis=1))
        comp_prec.append(dc.min(axis=1))
    struc_prec, comp_prec = np.concatenate(struc_prec), np.concatenate(comp_prec)
    out.update(
        cov_recall=float(np.mean((struc_recall <= struc_cutoff) & (comp_recall <= comp_cutoff))),
        cov_precision=float(np.sum((struc_prec <= struc_cutoff) & (comp_prec <= comp_cutoff)) / n_gen),
        amsd_recall=float(struc_recall.mean()),
        amsd_precision=float(struc_prec.mean()),
        amcd_recall=float(comp_recall.mean()),
        amcd_precision=float(comp_prec.mean()),
    )
    return out


# ------------------------------------------------------------------ property distances
def property_distances(gen: Sequence, test: Sequence, valid_only: bool = True) -> dict:
    """Wasserstein distances between generated and test distributions of density (g/cm^3) and
    of the number of distinct elements (CDVAE ``get_density_wdist``/``get_num_elem_wdist``).
    As CDVAE, only valid generated structures are used by default."""
    from scipy.stats import wasserstein_distance

    gen = [s for s in gen if s is not None]
    if valid_only:
        mask = valid_mask(gen)
        gen = [s for s, ok in zip(gen, mask) if ok]
    test = [s for s in test if s is not None]
    if not gen or not test:
        return {"wdist_density": float("nan"), "wdist_num_elems": float("nan"), "n_gen": len(gen), "n_test": len(test)}
    dens_g = np.array([float(s.density) for s in gen])
    dens_t = np.array([float(s.density) for s in test])
    nel_g = np.array([len(s.composition.element_composition) for s in gen])
    nel_t = np.array([len(s.composition.element_composition) for s in test])
    return {
        "wdist_density": float(wasserstein_distance(dens_g, dens_t)),
        "wdist_num_elems": float(wasserstein_distance(nel_g, nel_t)),
        "n_gen": len(gen),
        "n_test": len(test),
        "distributions": property_histograms(dens_g, dens_t, nel_g, nel_t),
    }


DENSITY_BIN = 0.25  # g/cm^3 per histogram bin
DENSITY_MAX = 25.0  # g/cm^3: the last bin holds everything denser (osmium, the densest element, is 22.6)


def property_histograms(dens_g: np.ndarray, dens_t: np.ndarray, nel_g: np.ndarray, nel_t: np.ndarray) -> dict:
    """Shares of generated and test crystals per density bin and per number of elements (what the
    two Wasserstein distances compare), small enough to keep in a result JSON and plot from it."""
    top = min(max(float(dens_g.max()), float(dens_t.max())), DENSITY_MAX)
    edges = np.arange(0.0, top + DENSITY_BIN, DENSITY_BIN)
    dens_g, dens_t = (np.clip(d, 0.0, edges[-1]) for d in (dens_g, dens_t))  # a collapsed cell counts in the last bin
    counts = np.arange(1, int(max(nel_g.max(), nel_t.max())) + 1)
    share = lambda x, bins: (np.histogram(x, bins)[0] / len(x)).round(5).tolist()  # noqa: E731
    return {
        "density_edges": edges.round(3).tolist(),
        "density_generated": share(dens_g, edges), "density_test": share(dens_t, edges),
        "num_elements": counts.tolist(),
        "num_elements_generated": [round(float(np.mean(nel_g == k)), 5) for k in counts],
        "num_elements_test": [round(float(np.mean(nel_t == k)), 5) for k in counts],
    }
