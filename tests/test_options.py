"""One frozen options object per sampling run: checked once, derived copies for seeds, the API's keywords folded in."""
import dataclasses
import math

import pytest

from tgdmat.options import SamplingOptions, split_options


@pytest.mark.parametrize("bad, words", [
    (dict(steps=0), "--steps"), (dict(guidance=math.nan), "--guidance"), (dict(batch_size=0), "--batch-size"),
    (dict(seed=-1), "--seed"), (dict(threads=0), "--threads"), (dict(step_lr=math.inf), "--step-lr"),
    (dict(site_order="oracle"), "site_order"), (dict(rank="luck"), "rank"), (dict(precision="half"), "precision"),
    (dict(passes_per_step=3), "passes per step"), (dict(noise_scale=1.5), "--noise-scale"), (dict(noise_scale=math.nan), "--noise-scale"),
])
def test_an_option_out_of_range_is_one_clear_line(bad, words):
    with pytest.raises(ValueError, match=words):
        SamplingOptions(**bad)


def test_options_are_frozen_and_derived_copies_change_only_what_they_say():
    o = SamplingOptions(steps=50, seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 4
    assert o.with_seed(9) == dataclasses.replace(o, seed=9) and o.seed == 3
    assert o.resolved(300, 1e-5) == dataclasses.replace(o, step_lr=1e-5)  # the stated steps stay, the model's step size fills in
    assert SamplingOptions().resolved(300, 1e-5).steps == 300


def test_the_python_api_keywords_fold_into_the_options():
    options, rest = split_options({"steps": 10, "free": True, "num_atoms": 5, "device": "cpu", "options": SamplingOptions(seed=2)})
    assert options == SamplingOptions(steps=10, seed=2, enforce=False) and rest == {"num_atoms": 5, "device": "cpu"}


def test_a_runs_integrator_corrector_and_passes_reach_the_sampler_as_at_load_time():
    """Options given to one run (the Python API, evaluate_csp) were once ignored for the
    integrator and corrector: only those given when the model was loaded counted (the corrector's
    noise included)."""
    import numpy as np

    from tgdmat.sample import Sampler

    def coordinates(sampler, **kw):
        gen = sampler.predict("SrTiO3", n=2, steps=4, threads=1, site_order="model", **kw)
        return np.concatenate([s.frac_coords.ravel() for s in gen.structures])

    plain = Sampler.load("perov_5_csp_facts")
    d = plain.cfg.diffusion  # each option below is the one the model does not default to
    other_passes = 3 - d.passes_per_step
    other_corrector = "fixed" if d.corrector_rescale else "rescaled"
    other_noise = "langevin" if d.corrector_noise == "matched" else "matched"
    for option in (dict(integrator="multistep"), dict(corrector=other_corrector), dict(passes_per_step=other_passes), dict(noise_scale=0.5), dict(corrector_noise=other_noise)):
        per_run = coordinates(plain, **option)
        assert not np.allclose(per_run, coordinates(plain))  # it changes the draw
        assert np.allclose(per_run, coordinates(Sampler.load("perov_5_csp_facts", options=SamplingOptions(**option))))
