"""Symmetries of the denoiser: rotations, atom permutations and periodic shifts."""
import math

import pytest
import torch

from tgdmat.config import ModelConfig
from tgdmat.model.cspnet import CSPNet, Graph, fully_connected_edges


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = CSPNet(ModelConfig(hidden=32, layers=2, num_freqs=8, time_dim=16, text_dim=12, text_hidden=8)).double().eval()
    num_atoms = torch.tensor([3, 1, 4])
    n = int(num_atoms.sum())
    inputs = dict(
        type_classes=torch.randint(0, 101, (n,)),
        frac=torch.rand(n, 3, dtype=torch.float64),
        lattices=torch.randn(3, 3, 3, dtype=torch.float64) + 4 * torch.eye(3, dtype=torch.float64),
        t=torch.tensor([10, 500, 999]),
        text_emb=torch.randn(3, 12, dtype=torch.float64),
    )
    return net, num_atoms, inputs


def run(net, num_atoms, **inputs):
    with torch.no_grad():
        return net(graph=Graph(num_atoms), **inputs)


def random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_fully_connected_edges_cover_each_crystal():
    src, dst, crystal = fully_connected_edges(torch.tensor([2, 1, 3]))
    pairs = set(zip(src.tolist(), dst.tolist()))
    expected = {(i, j) for block in ([0, 1], [2], [3, 4, 5]) for i in block for j in block}
    assert pairs == expected and len(src) == 14
    assert crystal.tolist() == [0] * 4 + [1] + [2] * 9


def test_rotation_equivariance(setup):
    net, num_atoms, inputs = setup
    eps, score, logits = run(net, num_atoms, **inputs)
    rot = random_rotation(0)
    eps_r, score_r, logits_r = run(net, num_atoms, **{**inputs, "lattices": inputs["lattices"] @ rot.T})
    assert torch.allclose(eps_r, eps @ rot.T, atol=1e-5)  # lattice noise rotates with the lattice
    assert torch.allclose(score_r, score, atol=1e-5)  # fractional score is invariant
    assert torch.allclose(logits_r, logits, atol=1e-5)


def test_periodic_translation_invariance(setup):
    net, num_atoms, inputs = setup
    out = run(net, num_atoms, **inputs)
    shifted = (inputs["frac"] + torch.tensor([0.37, -0.81, 2.25], dtype=torch.float64)) % 1.0
    out_s = run(net, num_atoms, **{**inputs, "frac": shifted})
    for a, b in zip(out, out_s):
        assert torch.allclose(a, b, atol=1e-5)


def test_permutation_equivariance(setup):
    net, num_atoms, inputs = setup
    eps, score, logits = run(net, num_atoms, **inputs)
    perm = torch.tensor([2, 0, 1, 3, 7, 4, 6, 5])  # within each crystal
    eps_p, score_p, logits_p = run(net, num_atoms, **{**inputs, "type_classes": inputs["type_classes"][perm], "frac": inputs["frac"][perm]})
    assert torch.allclose(eps_p, eps, atol=1e-5)
    assert torch.allclose(score_p, score[perm], atol=1e-5)
    assert torch.allclose(logits_p, logits[perm], atol=1e-5)


def test_batch_composition_does_not_leak(setup):
    """A crystal's output does not depend on the other crystals of the batch (and a batch of one works)."""
    net, num_atoms, inputs = setup
    eps, score, _ = run(net, num_atoms, **inputs)
    one = run(net, torch.tensor([4]), type_classes=inputs["type_classes"][4:], frac=inputs["frac"][4:], lattices=inputs["lattices"][2:], t=inputs["t"][2:], text_emb=inputs["text_emb"][2:])
    assert torch.allclose(one[0], eps[2:], atol=1e-6) and torch.allclose(one[1], score[4:], atol=1e-6)


def test_text_changes_output_and_nan_means_null(setup):
    net, num_atoms, inputs = setup
    with torch.no_grad():
        net.text_proj.weight.normal_()
    a = run(net, num_atoms, **inputs)
    b = run(net, num_atoms, **{**inputs, "text_emb": inputs["text_emb"] + 1})
    assert not torch.allclose(a[1], b[1])
    null = run(net, num_atoms, **{**inputs, "text_emb": torch.full_like(inputs["text_emb"], math.nan)})
    none = run(net, num_atoms, **{**inputs, "text_emb": None})
    assert torch.allclose(null[1], none[1]) and torch.isfinite(null[1]).all()


def test_factored_edge_input_is_the_concatenated_linear_map(setup):
    """The first edge map computed per atom then gathered equals W [h_i, h_j, e_ij] + b per edge."""
    net, num_atoms, _ = setup
    layer = net.layers[0]
    g = Graph(num_atoms)
    gen = torch.Generator().manual_seed(3)
    hn = torch.randn(int(num_atoms.sum()), 32, generator=gen, dtype=torch.float64)
    edge_feats = torch.randn(len(g.src), layer.edge_mlp[0].in_features - 64, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        concatenated = layer.edge_mlp[0](torch.cat([hn[g.src], hn[g.dst], edge_feats], dim=-1))
        factored = layer.edge_input(hn, edge_feats, g.src, g.dst)
    assert torch.allclose(factored, concatenated, atol=1e-12)
    swapped = layer.edge_input(hn, edge_feats, g.dst, g.src)  # the two node parts are not interchangeable
    assert not torch.allclose(swapped, concatenated, atol=1e-6)


def test_bf16_network_stays_close_to_fp32(setup):
    """bf16 autocast changes the outputs by well under 5% (relative norm) and returns float32 from the sampler's wrapper."""
    from tgdmat.diffusion.joint import network_precision

    net, num_atoms, inputs = setup
    net32 = CSPNet(net.cfg).eval()
    net32.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    x = {k: (v.float() if v.is_floating_point() else v) for k, v in inputs.items()}
    ref = run(net32, num_atoms, **x)
    with network_precision("bf16", torch.device("cpu")):
        low = run(net32, num_atoms, **x)
    for a, b in zip(ref, low):
        assert b.dtype == torch.bfloat16 or b.dtype == torch.float32
        assert float((a - b.float()).norm() / a.norm()) < 0.05
    with pytest.raises(ValueError, match="precision"):
        network_precision("fp8", torch.device("cpu"))


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    import tgdmat.diffusion.joint as joint

    monkeypatch.setattr(joint, "native_bf16", lambda device: False)
    assert joint.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(joint, "native_bf16", lambda device: True)
    assert joint.resolve_precision("auto", "cpu") == "bf16"
    assert joint.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        joint.resolve_precision("fp16", "cpu")
