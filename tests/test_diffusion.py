"""The forward processes' marginals and reverse steps against their closed forms."""
import math

import pytest
import torch

from tgdmat.diffusion.coords import WrappedNormalCoords, score_norm, wrapped_normal_log_density, wrapped_normal_score
from tgdmat.diffusion.joint import respaced_steps
from tgdmat.diffusion.lattice import MAX_LATTICE_LENGTH, LatticeDDPM, clip_lattice, cosine_alphas_cumprod
from tgdmat.diffusion.types import MASK, AbsorbingTypes


def test_cosine_schedule_is_monotone_from_one():
    ab = cosine_alphas_cumprod(1000)
    assert ab[0] == 1.0 and torch.all(ab[1:] < ab[:-1]) and ab[-1] < 1e-3


def test_lattice_marginal_mean_and_variance():
    ddpm = LatticeDDPM(1000)
    g = torch.Generator().manual_seed(0)
    l0 = torch.tensor([[4.0, 0, 0], [0.5, 5.0, 0], [0.2, 0.3, 6.0]])
    n, t = 200_000, 400
    lt = ddpm.noise(l0.expand(n, 3, 3), torch.full((n,), t), torch.randn(n, 3, 3, generator=g))
    ab = float(ddpm.alphas_cumprod[t])
    assert torch.allclose(lt.mean(0), math.sqrt(ab) * l0, atol=0.01)
    assert torch.allclose(lt.var(0), torch.full((3, 3), 1 - ab), atol=0.01)


def test_first_respaced_step_does_not_magnify_a_small_noise_error():
    """At t = T, sqrt(abar_T) = 5e-5: a 1% error of the predicted noise once gave L_0 of
    thousands of Angstrom and cells of 10^6 A^3 per atom after a 100-step sampler's first jump."""
    ddpm = LatticeDDPM(1000)
    g = torch.Generator().manual_seed(0)
    l_t = torch.randn(64, 3, 3, generator=g)
    eps_hat = l_t + 0.01 * torch.randn(64, 3, 3, generator=g)  # nearly right, as a network is
    l_s = ddpm.reverse_step(l_t, eps_hat, 1000, 990, torch.zeros(64, 3, 3))
    assert float(l_s.norm(dim=-1).max()) < 3.0  # noise-sized, not 0.0156 * 20,000 * error
    unclipped = LatticeDDPM(1000, max_length=float("inf")).reverse_step(l_t, eps_hat, 1000, 990, torch.zeros(64, 3, 3))
    assert float(unclipped.norm(dim=-1).max()) > 10.0  # the failure the clip prevents


def test_lattice_clip_leaves_real_cells_alone_and_keeps_directions():
    cell = torch.tensor([[[4.0, 0, 0], [0.5, 5.0, 0], [0.2, 0.3, 46.0]]])
    assert torch.equal(clip_lattice(cell), cell)  # the longest benchmark vector is 47 A
    long = torch.tensor([[[400.0, 0, 0], [0, 3.0, 0], [300.0, 400.0, 0]]])
    clipped = clip_lattice(long)
    assert torch.allclose(clipped.norm(dim=-1), torch.tensor([[MAX_LATTICE_LENGTH, 3.0, MAX_LATTICE_LENGTH]]))
    assert torch.allclose(clipped[0, 2] / clipped[0, 2].norm(), long[0, 2] / long[0, 2].norm())


def test_lattice_reverse_step_keeps_the_marginal():
    """With the true noise, L_t -> L_s must land on q(L_s | L_0), also for skipped steps."""
    ddpm = LatticeDDPM(1000)
    g = torch.Generator().manual_seed(1)
    l0 = torch.eye(3) * 5
    n, t, s = 200_000, 700, 300
    eps = torch.randn(n, 3, 3, generator=g)
    lt = ddpm.noise(l0.expand(n, 3, 3), torch.full((n,), t), eps)
    ls = ddpm.reverse_step(lt, eps, t, s, torch.randn(n, 3, 3, generator=g))
    ab_s = float(ddpm.alphas_cumprod[s])
    assert torch.allclose(ls.mean(0), math.sqrt(ab_s) * l0, atol=0.01)
    assert torch.allclose(ls.var(0), torch.full((3, 3), 1 - ab_s), atol=0.01)
    assert torch.allclose(ddpm.reverse_step(lt[:5], eps[:5], t, 0, torch.zeros(5, 3, 3)), l0.expand(5, 3, 3), atol=1e-4)


def test_wrapped_normal_score_is_gradient_of_log_density():
    x = torch.linspace(-0.7, 1.3, 41, dtype=torch.float64).requires_grad_(True)
    for sigma in (0.01, 0.1, 0.5):
        sig = torch.full_like(x, sigma)
        (grad,) = torch.autograd.grad(wrapped_normal_log_density(x, sig).sum(), x)
        assert torch.allclose(wrapped_normal_score(x.detach(), sig), grad, atol=1e-8, rtol=1e-6)


def test_wrapped_normal_score_is_periodic_and_gaussian_for_small_sigma():
    x = torch.tensor([0.01, 0.2, -0.3], dtype=torch.float64)
    sig = torch.full_like(x, 0.3)
    assert torch.allclose(wrapped_normal_score(x, sig), wrapped_normal_score(x + 1, sig))
    small = torch.full_like(x, 0.005)
    assert torch.allclose(wrapped_normal_score(x * 0.01, small), -(x * 0.01) / 0.005**2)
    assert abs(score_norm(0.005) * 0.005**2 - 1) < 1e-3  # E[score^2] = 1/sigma^2 for a narrow normal


def test_coordinate_target_has_unit_scale():
    coords = WrappedNormalCoords(1000, 0.005, 0.5)
    g = torch.Generator().manual_seed(0)
    for t in (1, 500, 1000):
        n = 100_000
        f0 = torch.rand(n, 3, generator=g)
        ft, target = coords.noise(f0, torch.full((n,), t), torch.randn(n, 3, generator=g))
        assert ft.min() >= 0 and ft.max() < 1
        assert abs(float((target**2).mean()) - 1) < 0.03


def test_absorbing_mask_rate_and_reverse_unmasking():
    types = AbsorbingTypes(1000)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    a0 = torch.randint(0, 100, (n,), generator=g)
    for t in (1, 250, 900):
        at, masked = types.noise(a0, torch.full((n,), t), torch.rand(n, generator=g))
        assert abs(float(masked.float().mean()) - t / 1000) < 0.005
        assert torch.equal(at[~masked], a0[~masked]) and torch.all(at[masked] == MASK)
    a = torch.full((n,), MASK)
    logits = torch.zeros(n, 100)
    logits[:, 7] = 50.0
    a = types.reverse_step(a, logits, 1000, 400, torch.rand(n, generator=g), torch.zeros(n, 100))
    assert abs(float((a == MASK).float().mean()) - 0.4) < 0.005  # s / T still masked
    assert torch.all(a[a != MASK] == 7)
    a = types.reverse_step(a, logits, 400, 0, torch.rand(n, generator=g), torch.zeros(n, 100))
    assert not bool((a == MASK).any())


def test_respaced_steps_end_at_zero():
    assert respaced_steps(1000, 1000) == list(range(1000, -1, -1))
    ts = respaced_steps(1000, 50)
    assert ts[0] == 1000 and ts[-1] == 0 and len(ts) == 51 and all(a > b for a, b in zip(ts, ts[1:]))


def test_vectorised_score_norms_match_quadrature():
    from tgdmat.diffusion.coords import score_norms, sigma_schedule

    sig = sigma_schedule(1000, 0.005, 0.5)[1:]
    fast = score_norms(sig)
    for i in (0, 400, 700, 850, 999):
        assert abs(float(fast[i]) / score_norm(float(sig[i])) - 1) < 1e-6


def _tiny_model(timesteps: int = 40):
    from tgdmat.config import Config, DiffusionConfig, ModelConfig
    from tgdmat.diffusion.joint import TGDMat

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=16, layers=1, num_freqs=4, time_dim=8, use_text=False), diffusion=DiffusionConfig(timesteps=timesteps, step_lr=1e-5))
    return TGDMat(cfg).eval()


def test_rescaled_corrector_is_the_plain_one_at_full_steps_and_grows_with_the_stride():
    """corrector_rescale multiplies the Langevin step by t - s: identical at stride 1, different when respaced."""
    model = _tiny_model()
    types = torch.tensor([38, 22, 8, 8, 8, 6, 6])
    num = torch.tensor([5, 2])

    def draw(steps, rescale):
        out = model.sample(num, atom_types=types, steps=steps, generator=torch.Generator().manual_seed(4), corrector_rescale=rescale)
        return out.frac_coords, out.lattices

    for a, b in zip(draw(40, False), draw(40, True)):
        assert torch.equal(a, b)
    assert not torch.allclose(draw(10, False)[0], draw(10, True)[0])


@pytest.mark.parametrize("ratio", [0.4, 0.8])
def test_matched_corrector_noise_keeps_a_gaussians_spread_where_langevin_widens_it(ratio):
    """Langevin steps of size eps = ratio x sigma_t^2 with the exact score of a Gaussian of spread
    sigma_t: the matched noise keeps its variance, DiffCSP's sqrt(2 eps) widens it to
    sigma_t^2 / (1 - ratio / 2) (1.25x at 0.4, Carbon-24's 1,000 steps; 1.67x at 0.8)."""
    coords = WrappedNormalCoords(1000, 0.005, 0.5)
    t = 300
    sigma = float(coords.sigmas[t])
    step_lr = ratio * float(coords.sigmas[1]) ** 2  # eps = step_lr (sigma_t / sigma_1)^2 = ratio sigma_t^2
    g = torch.Generator().manual_seed(0)
    for matched, want in ((True, 1.0), (False, 1.0 / (1.0 - ratio / 2))):
        x = sigma * torch.randn(200_000, generator=g, dtype=torch.float64)
        for _ in range(40):
            drift, std = coords.corrector_terms(-x / sigma**2, t, step_lr, matched)
            x = x + drift + std * torch.randn(x.shape, generator=g, dtype=torch.float64)
        assert abs(float(x.var()) / sigma**2 - want) < 0.02, (matched, float(x.var()) / sigma**2)


def test_matched_corrector_noise_is_a_sampling_option_and_refuses_unknown_names():
    """corrector_noise reaches the sampler (another draw than langevin's) and is checked once."""
    from tgdmat.options import SamplingOptions

    model = _tiny_model()
    types = torch.tensor([38, 22, 8, 8, 8, 6, 6])
    num = torch.tensor([5, 2])

    def draw(noise):
        return model.sample(num, atom_types=types, steps=10, generator=torch.Generator().manual_seed(4), corrector_noise=noise).frac_coords

    assert torch.equal(draw(None), draw("langevin")) and not torch.allclose(draw("langevin"), draw("matched"))
    with pytest.raises(ValueError, match="corrector noise"):
        SamplingOptions(corrector_noise="hot")


def test_one_pass_per_step_reuses_the_correctors_pass_and_halves_the_passes():
    """passes_per_step=2 evaluates the network again after the Langevin move (DiffCSP's PC sampler);
    1 lets the predictor reuse the corrector's output: half the passes, a nearby draw."""
    from tgdmat.config import DiffusionConfig

    model = _tiny_model()
    types = torch.tensor([38, 22, 8, 8, 8])
    draws = {}
    for passes in (1, 2):
        before = model.passes
        draws[passes] = model.sample(torch.tensor([5]), atom_types=types, steps=10, generator=torch.Generator().manual_seed(3), passes_per_step=passes)
        assert model.passes - before == 10 * passes
    assert not torch.allclose(draws[1].frac_coords, draws[2].frac_coords)
    before = model.passes  # without a corrector there is one pass per step either way
    model.sample(torch.tensor([5]), atom_types=types, steps=10, step_lr=0.0, passes_per_step=2)
    assert model.passes - before == 10
    with pytest.raises(ValueError, match="passes_per_step"):
        DiffusionConfig(passes_per_step=3)


def test_noise_scale_is_a_temperature_on_the_reverse_steps_noise():
    """noise_scale 1 is the default sampler bit for bit; 0 removes every draw after the first, so a
    network that predicts no score leaves the coordinates where the initial draw put them."""
    model = _tiny_model()
    types, num = torch.tensor([38, 22, 8, 8, 8]), torch.tensor([5])

    def draw(scale, seed=5):
        return model.sample(num, atom_types=types, steps=8, generator=torch.Generator().manual_seed(seed), noise_scale=scale)

    assert torch.equal(draw(None).frac_coords, draw(1.0).frac_coords) and torch.equal(draw(None).lattices, draw(1.0).lattices)
    model._denoise = lambda a, f, l, *rest, **kw: (torch.zeros_like(l), torch.zeros_like(f), torch.zeros(len(a), model.net.type_out.out_features))
    g = torch.Generator().manual_seed(5)  # the sampler's first draws: the lattice, then the coordinates
    torch.randn(1, 3, 3, generator=g)
    initial = torch.rand(5, 3, generator=g)
    assert torch.allclose(draw(0.0).frac_coords, initial, atol=1e-6)
    assert not torch.allclose(draw(1.0).frac_coords, initial, atol=1e-3)


def test_bf16_sampling_keeps_composition_and_stays_finite():
    model = _tiny_model()
    types = torch.tensor([38, 22, 8, 8, 8])
    out = model.sample(torch.tensor([5, 5]), atom_types=types.repeat(2), steps=10, generator=torch.Generator().manual_seed(0), precision="bf16")
    assert torch.equal(out.atom_types, types.repeat(2))
    assert out.frac_coords.dtype == torch.float32 and bool(torch.isfinite(out.lattices).all())
    assert bool(((out.frac_coords >= 0) & (out.frac_coords < 1)).all())
    with pytest.raises(ValueError, match="precision"):
        model.sample(torch.tensor([5]), atom_types=types, steps=2, precision="half")


def test_ddim_step_with_the_true_noise_lands_on_the_marginal_and_on_the_data_at_zero():
    """For one clean lattice, the exact noise prediction moves L_t to sqrt(abar_s) L_0 + sqrt(1 - abar_s) eps
    (the same eps) and the last step returns L_0 exactly."""
    ddpm = LatticeDDPM(1000)
    gen = torch.Generator().manual_seed(0)
    l0 = torch.randn(4, 3, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 3, 3, generator=gen, dtype=torch.float64)
    l_t = ddpm.noise(l0, torch.full((4,), 700), eps)
    ab = ddpm.alphas_cumprod.double()
    step = ddpm.ddim_step(l_t, eps, 700, 300)
    assert torch.allclose(step, ab[300].sqrt() * l0 + (1 - ab[300]).sqrt() * eps, atol=1e-5)
    assert torch.allclose(ddpm.ddim_step(l_t, eps, 700, 0), l0, atol=1e-5)


def test_ode_integrator_takes_its_own_path_and_unknown_names_are_refused():
    model = _tiny_model()
    types = torch.tensor([38, 22, 8, 8, 8])
    a = model.sample(torch.tensor([5]), atom_types=types, steps=10, step_lr=0.0, generator=torch.Generator().manual_seed(2), integrator="ode")
    b = model.sample(torch.tensor([5]), atom_types=types, steps=10, step_lr=0.0, generator=torch.Generator().manual_seed(2), integrator="ancestral")
    assert torch.isfinite(a.lattices).all() and not torch.allclose(a.lattices, b.lattices)
    with pytest.raises(ValueError, match="integrator"):
        model.sample(torch.tensor([5]), atom_types=types, steps=2, integrator="euler")


def test_multistep_integrator_reaches_the_data_spread_with_fewer_steps():
    """Data N(0.5, 0.02^2) on the torus, exact score of its noised marginals: at 20 steps the
    ancestral step under-disperses (std 0.0174), the second-order multistep correction comes
    closer (0.0191); at 1 step it is the ancestral step exactly."""
    coords = WrappedNormalCoords(1000, 0.005, 0.5)
    w = 0.02

    def final_std(integrator: str, steps: int) -> float:
        g = torch.Generator().manual_seed(1)
        f = torch.rand(10_000, 1, generator=g, dtype=torch.float64)
        memory = None
        ts = respaced_steps(1000, steps)
        for t, s in zip(ts[:-1], ts[1:]):
            sigma = math.sqrt(w**2 + float(coords.sigmas[t]) ** 2)
            score = wrapped_normal_score(f - 0.5, torch.full_like(f, sigma))
            if integrator == "multistep":
                drift, std, memory = coords.multistep_terms(score, t, s, f, memory)
            else:
                drift, std = coords.predictor_terms(score, t, s)
            f = (f + drift + std * torch.randn(f.shape, generator=g, dtype=torch.float64)) % 1.0
        return float((f - 0.5).std())

    ancestral, multistep = final_std("ancestral", 20), final_std("multistep", 20)
    assert abs(multistep - w) < 0.5 * abs(ancestral - w)
    assert final_std("multistep", 1) == final_std("ancestral", 1)
