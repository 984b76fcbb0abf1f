"""The readout: energy-gated mean and std of z and c, the one embedding every path publishes."""

from __future__ import annotations

import numpy as np
import torch

from streamssl.learning.readout import ENERGY_RANGE_DB, energy_weights, pool, readout_dim


def test_energy_gate_pools_loud_frames_and_ignores_quiet_ones():
    mel = torch.full((1, 6, 4), -10.0)
    mel[0, :2] = 0.0  # two loud frames
    mel[0, 2] = -2.0  # 8.7 dB below the loudest: inside the range
    w = energy_weights(mel)[0]
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0, 0])), w
    assert ENERGY_RANGE_DB < 10 / np.log(10) * 10.0  # the -10 frames (43 dB down) are out of range


def test_a_window_of_pure_noise_pools_every_frame():
    mel = torch.randn(2, 5, 8) * 0.1 - 12.0
    assert torch.allclose(energy_weights(mel), torch.full((2, 5), 0.2))


def test_pool_is_weighted_mean_and_std_of_z_then_c():
    rng = np.random.default_rng(0)
    z, c = rng.standard_normal((1, 5, 3)), rng.standard_normal((1, 5, 2))
    mel = np.full((1, 5, 4), -20.0)
    mel[0, [0, 2, 3]] = 0.0
    out = pool(torch.tensor(z), torch.tensor(c), torch.tensor(mel))[0].numpy()
    keep = [0, 2, 3]
    want = np.concatenate([z[0, keep].mean(0), z[0, keep].std(0), c[0, keep].mean(0), c[0, keep].std(0)])
    assert out.shape == (readout_dim(3, 2),)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_a_variance_floor_keeps_the_gradient_finite_where_a_feature_is_constant():
    """A loss trained through the readout (bench/speaker_oracle.py) needs the floor; the published readout has none."""
    z = torch.randn(2, 6, 3)
    z[:, :, 0] = 1.0  # constant over the frames: std 0, d std / d var infinite without a floor
    c, mel = torch.randn(2, 6, 2), torch.zeros(2, 6, 4)
    grads = {}
    for floor in (0.0, 1e-4):
        zz = z.clone().requires_grad_(True)
        out = pool(zz, c, mel, var_floor=floor)
        (g,) = torch.autograd.grad(out.sum(), zz)
        grads[floor] = g
        std_of_constant = out[:, 3]  # z's std block starts after its 3 means
        torch.testing.assert_close(std_of_constant, torch.full((2,), floor**0.5))
    assert not torch.isfinite(grads[0.0]).all()
    assert torch.isfinite(grads[1e-4]).all()
    torch.testing.assert_close(pool(z, c, mel), pool(z, c, mel, var_floor=0.0), rtol=0, atol=0)
