"""sleep2vec backbone, configs, fusion and heads: shapes, parameter counts, masking, padding."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from s2v_core.modalities import MODALITIES, samples_per_epoch
from s2v_core.model import (
    PRESETS,
    ConfigError,
    GatedFusion,
    HeadConfig,
    ModelConfig,
    NightHead,
    Sleep2Vec,
    Sleep2VecClassifier,
    count_classifier_parameters,
    count_parameters,
    get_preset,
    sample_token_mask,
)
from s2v_core.model.encoder import apply_rotary, rotary_cos_sin

TINY = get_preset("tiny")


def make_inputs(modalities, B=2, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, T, samples_per_epoch(m), generator=g) for m in modalities}


def all_valid(B, T):
    return torch.ones(B, T, dtype=torch.bool)


# --- config ---------------------------------------------------------------------------------


def test_config_json_round_trip_and_canonical_order():
    cfg = ModelConfig(d_token=8, hidden=16, n_layers=1, n_heads=2, modalities=("spo2", "eeg"))
    assert cfg.modalities == ("eeg", "spo2")
    text = json.dumps(cfg.to_dict())
    assert ModelConfig.from_dict(json.loads(text)) == cfg
    assert ModelConfig().modalities == MODALITIES
    assert cfg.samples_per_token("eeg") == 3840 and cfg.samples_per_token("spo2") == 120


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown ModelConfig key.*n_experts.*allowed: d_token"):
        ModelConfig.from_dict({**TINY.to_dict(), "n_experts": 4})
    with pytest.raises(ConfigError, match="config format 7, this version reads 1"):
        ModelConfig.from_dict({**TINY.to_dict(), "format_version": 7})
    with pytest.raises(ConfigError, match="hidden .30. must split into n_heads .4."):
        ModelConfig(hidden=30, n_heads=4)
    with pytest.raises(ConfigError, match="hidden .24. must split into n_heads .8. heads of even"):
        ModelConfig(hidden=24, n_heads=8)  # head width 3 cannot be rotated in pairs
    with pytest.raises(ConfigError, match="unknown modality 'eg'"):
        ModelConfig(modalities=("eeg", "eg"))
    with pytest.raises(ConfigError, match="mask_ratio must be a number in"):
        ModelConfig(mask_ratio=1.5)
    with pytest.raises(ConfigError, match="n_layers must be a positive integer"):
        ModelConfig(n_layers=0)
    with pytest.raises(ConfigError, match="unknown model preset 'huge'; allowed: tiny, small"):
        get_preset("huge")
    with pytest.raises(ConfigError, match="unknown HeadConfig key"):
        HeadConfig.from_dict({"n_classes": 5})
    with pytest.raises(ConfigError, match="modality 'ibi' is not in this model; it has eeg"):
        get_preset("tiny", modalities=("eeg",)).samples_per_token("ibi")


def _tokenizer_params(spe: int, d: int) -> int:
    return (spe * 2 * d + 2 * d) + (2 * d * d + d) + (spe * d + d) + 2 * d


def _expected_params(cfg: ModelConfig, pretraining: bool = True) -> int:
    """Independent count by formula (see METHOD.md section 3)."""
    d, H, L, r, P = cfg.d_token, cfg.hidden, cfg.n_layers, cfg.mlp_ratio, cfg.proj_dim
    n = sum(_tokenizer_params(samples_per_epoch(m), d) for m in cfg.modalities)
    layer = 2 * 2 * H + (H * 3 * H + 3 * H) + (H * H + H) + (H * r * H + r * H) + (r * H * H + H)
    n += d * H + H + (H if cfg.use_cls else 0) + L * layer + 2 * H
    if pretraining:
        n += len(cfg.modalities) * d + (H * H + H) + (H * P + P)
    return n


def _expected_classifier_params(cfg: ModelConfig, head: HeadConfig) -> int:
    H, M, hh = cfg.hidden, len(cfg.modalities), head.head_hidden
    n = _expected_params(cfg, pretraining=False) + M
    if head.per_epoch_gate:
        n += M * (H + 1)

    def mlp(k):
        return 2 * H + H * hh + hh + hh * k + k

    n += mlp(head.n_stage_classes)
    if head.night_outputs:
        n += mlp(head.night_outputs)
    return n


PINNED = {  # pretraining model, backbone only, default classifier, classifier + night head
    "tiny": (791_008, 789_280, 794_519, 798_897),
    "small": (3_976_896, 3_943_296, 3_961_879, 3_977_873),
    "dense": (99_396_224, 98_704_896, 98_812_439, 98_905_873),
    "large": (216_439_680, 215_256_576, 215_399_703, 215_524_113),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_counts_are_pinned(name):
    cfg = get_preset(name)
    night = HeadConfig(night_outputs=3, per_epoch_gate=False)
    counts = (
        count_parameters(cfg),
        count_parameters(cfg, pretraining=False),
        count_classifier_parameters(cfg),
        count_classifier_parameters(cfg, night),
    )
    assert counts == PINNED[name]
    assert counts[0] == _expected_params(cfg)
    assert counts[1] == _expected_params(cfg, pretraining=False)
    assert counts[2] == _expected_classifier_params(cfg, HeadConfig())
    assert counts[3] == _expected_classifier_params(cfg, night)


def test_preset_sizes_match_the_paper():
    assert (PRESETS["dense"].hidden, PRESETS["dense"].n_layers, PRESETS["dense"].n_heads) == (
        768,
        12,
        16,
    )
    assert (PRESETS["large"].hidden, PRESETS["large"].n_layers, PRESETS["large"].n_heads) == (
        1024,
        16,
        16,
    )
    # the tiny encoder (without tokenizers) stays in the 10k-100k range
    tiny_encoder = count_parameters(TINY, pretraining=False) - sum(
        _tokenizer_params(samples_per_epoch(m), TINY.d_token) for m in MODALITIES
    )
    assert 10_000 < tiny_encoder < 100_000


# --- rotary embeddings ----------------------------------------------------------------------


def test_rotary_preserves_norm_and_encodes_relative_position():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 1, 8, generator=g).expand(1, 1, 6, 8)
    k = torch.randn(1, 1, 1, 8, generator=g).expand(1, 1, 6, 8)
    cos, sin = rotary_cos_sin(6, 8)
    qr, kr = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))
    scores = qr[0, 0] @ kr[0, 0].T  # (6, 6): depends only on j - i
    torch.testing.assert_close(scores[0, 2], scores[3, 5])
    torch.testing.assert_close(scores[1, 0], scores[5, 4])
    assert not torch.allclose(scores[0, 1], scores[0, 3])
    torch.testing.assert_close(qr[0, 0, 0], q[0, 0, 0])  # position 0 is not rotated


# --- backbone -------------------------------------------------------------------------------


def test_encoder_sees_positions():
    """Without positions a transformer is permutation-equivariant; RoPE must break that."""
    model = Sleep2Vec(TINY, seed=0)
    x, valid = make_inputs(("ibi",), B=1, T=6), all_valid(1, 6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    h = model.encode(x, valid)["ibi"][0]  # (6, H)
    h_perm = model.encode({"ibi": x["ibi"][:, perm]}, valid)["ibi"][0]
    assert (h_perm - h[perm]).abs().amax() > 1e-2


@pytest.mark.parametrize("T", [1, 7, 120])
@pytest.mark.parametrize("mods", [("eeg",), ("ibi", "resp"), ("ecg", "effort"), MODALITIES])
def test_output_shapes_across_lengths_and_subsets(T, mods):
    model = Sleep2Vec(TINY, seed=0)
    out = model.encode(make_inputs(mods, B=2, T=T), all_valid(2, T))
    assert list(out) == list(mods)
    for h in out.values():
        assert h.shape == (2, T, TINY.hidden) and h.dtype == torch.float32
    z = model.project(out[mods[0]])
    assert z.shape == (2, T, TINY.proj_dim)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, T))


def test_same_seed_same_output_and_pinned_values():
    x, valid = make_inputs(("ibi", "spo2"), B=1, T=4, seed=3), all_valid(1, 4)
    a = Sleep2Vec(TINY, seed=0).encode(x, valid)
    b = Sleep2Vec(TINY, seed=0).encode(x, valid)
    c = Sleep2Vec(TINY, seed=1).encode(x, valid)
    assert torch.equal(a["ibi"], b["ibi"]) and torch.equal(a["spo2"], b["spo2"])
    assert not torch.allclose(a["ibi"], c["ibi"])
    # building with a seed leaves the global RNG alone
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    Sleep2Vec(TINY, seed=0)
    assert torch.equal(torch.rand(1), expected)
    # fixed-seed numbers (torch CPU generator): catch silent changes of init or architecture
    got = a["ibi"][0, :2, :3]
    pinned = torch.tensor([[0.02461, -0.65165, 0.75800], [1.64632, 0.30341, -0.26070]])
    torch.testing.assert_close(got, pinned, atol=2e-4, rtol=0)


@pytest.mark.parametrize("use_cls", [True, False])
def test_padding_does_not_affect_valid_positions(use_cls):
    cfg = dataclasses.replace(TINY, use_cls=use_cls)
    model = Sleep2Vec(cfg, seed=0).eval()
    mods = ("eeg", "ibi")
    x = make_inputs(mods, B=2, T=9, seed=1)
    valid = all_valid(2, 9)
    valid[0, 6:] = False  # sample 0: 6 valid tokens then padding
    ref = model.encode({m: v[:1, :6] for m, v in x.items()}, all_valid(1, 6))
    noisy = {m: v.clone() for m, v in x.items()}
    for v in noisy.values():
        v[0, 6:] = 1e3 * torch.randn_like(v[0, 6:])
    for inputs in (x, noisy):
        out = model.encode(inputs, valid)
        for m in mods:
            torch.testing.assert_close(out[m][0, :6], ref[m][0], atol=1e-5, rtol=1e-5)
            assert torch.all(out[m][0, 6:] == 0)


def test_modalities_and_samples_are_encoded_independently():
    model = Sleep2Vec(TINY, seed=0)
    x = make_inputs(("eeg", "ibi", "spo2"), B=3, T=5, seed=2)
    valid = all_valid(3, 5)
    full = model.encode(x, valid)
    eeg_alone = model.encode({"eeg": x["eeg"]}, valid)
    torch.testing.assert_close(full["eeg"], eeg_alone["eeg"], atol=1e-6, rtol=1e-6)
    present = {"ibi": torch.tensor([True, False, True])}
    part = model.encode(x, valid, present)
    assert torch.all(part["ibi"][1] == 0)
    torch.testing.assert_close(part["ibi"][[0, 2]], full["ibi"][[0, 2]], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(part["spo2"], full["spo2"], atol=1e-6, rtol=1e-6)
    none = model.encode(x, valid, {"ibi": torch.zeros(3, dtype=torch.bool)})
    assert torch.all(none["ibi"] == 0)


def test_fully_padded_row_gives_zeros_and_finite_gradients():
    cfg = dataclasses.replace(TINY, use_cls=False)
    model = Sleep2Vec(cfg, seed=0)
    x = make_inputs(("ibi",), B=2, T=4)
    valid = all_valid(2, 4)
    valid[1] = False
    out = model(x, valid)["ibi"]
    assert torch.all(out[1] == 0) and torch.isfinite(out).all()
    model.project(out).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_token_mask_counts_and_never_touches_padding():
    valid = torch.ones(4, 40, dtype=torch.bool)
    valid[1, 20:] = False
    valid[2, 3:] = False
    valid[3] = False
    mask = sample_token_mask(valid, 0.15, generator=torch.Generator().manual_seed(0))
    assert mask.sum(dim=1).tolist() == [6, 3, 0, 0]  # round(0.15 * n_valid)
    assert not (mask & ~valid).any()
    again = sample_token_mask(valid, 0.15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_masking_changes_outputs_reproducibly():
    model = Sleep2Vec(TINY, seed=0).eval()
    x, valid = make_inputs(("eeg", "resp"), B=2, T=20), all_valid(2, 20)
    plain = model(x, valid)
    masked = model(x, valid, mask_tokens=True, generator=torch.Generator().manual_seed(1))
    again = model(x, valid, mask_tokens=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(plain["eeg"], masked["eeg"])
    assert torch.equal(masked["eeg"], again["eeg"]) and torch.equal(masked["resp"], again["resp"])
    # a masked position's hidden state no longer depends on that epoch's raw samples
    where = sample_token_mask(valid, TINY.mask_ratio, generator=torch.Generator().manual_seed(1))
    t = int(where[0].nonzero()[0])  # first masked position of sample 0 (same for every modality)
    changed = {m: v.clone() for m, v in x.items()}
    changed["eeg"][0, t] += 5.0
    masked2 = model(changed, valid, mask_tokens=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(masked2["eeg"], masked["eeg"])


def test_input_validation_names_the_problem():
    model = Sleep2Vec(get_preset("tiny", modalities=("eeg", "ibi")), seed=0)
    valid = all_valid(1, 3)
    with pytest.raises(ValueError, match="no tokenizer for spo2"):
        model(make_inputs(("spo2",), B=1, T=3), valid)
    with pytest.raises(ValueError, match=r"inputs\['ibi'\] has shape \(1, 3, 100\)"):
        model({"ibi": torch.zeros(1, 3, 100)}, valid)
    with pytest.raises(ValueError, match=r"present\['ibi'\] has shape \(2,\), expected \(1,\)"):
        model({"ibi": torch.zeros(1, 3, 120)}, valid, {"ibi": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="inputs is empty"):
        model({}, valid)
    with pytest.raises(ValueError, match="exceeds max_len=1440"):
        model({"ibi": torch.zeros(1, 1441, 120)}, all_valid(1, 1441))
    with pytest.raises(ValueError, match="mask_tokens=True needs a pretraining model"):
        Sleep2Vec(TINY, pretraining=False)(make_inputs(("ibi",)), all_valid(2, 7), mask_tokens=True)


def test_encode_restores_training_mode_and_disables_grad():
    model = Sleep2Vec(TINY, seed=0).train()
    out = model.encode(make_inputs(("ibi",)), all_valid(2, 7))
    assert model.training and not out["ibi"].requires_grad


# --- fusion and heads -----------------------------------------------------------------------


def _hidden(mods, B=2, T=3, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, T, H, generator=g) for m in mods}


def test_gates_softmax_over_present_modalities_only():
    fusion = GatedFusion(("eeg", "ecg", "ibi"), hidden=4, per_epoch=False)
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
    h = _hidden(("eeg", "ecg", "ibi"))
    present = {"ecg": torch.tensor([True, False])}
    fused, gw, ew = fusion(h, present)
    e = torch.exp(torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(gw[0], e / e.sum())
    torch.testing.assert_close(gw[1], torch.tensor([e[0], 0.0, e[2]]) / (e[0] + e[2]))
    assert gw[1, 1].item() == 0.0  # exactly zero, not just small
    torch.testing.assert_close(ew, gw[:, None, :].expand(2, 3, 3))
    manual = sum(gw[:, i, None, None] * h[m] for i, m in enumerate(("eeg", "ecg", "ibi")))
    torch.testing.assert_close(fused, manual)
    # a missing key is the same as absent everywhere
    fused_b, gw_b, _ = fusion({"eeg": h["eeg"], "ibi": h["ibi"]})
    torch.testing.assert_close(gw_b[0], gw[1])
    torch.testing.assert_close(fused_b[1], fused[1])


def test_per_epoch_gate_starts_global_then_varies_with_input():
    fusion = GatedFusion(("eeg", "ibi"), hidden=4, per_epoch=True)
    h = _hidden(("eeg", "ibi"), B=1, T=5)
    _, gw, ew = fusion(h)
    torch.testing.assert_close(ew, torch.full((1, 5, 2), 0.5))
    with torch.no_grad():
        fusion.epoch_gates["eeg"].weight.fill_(1.0)
    _, gw, ew = fusion(h)
    torch.testing.assert_close(gw, torch.full((1, 2), 0.5))  # global gates unchanged
    torch.testing.assert_close(ew.sum(-1), torch.ones(1, 5))
    expected_eeg = torch.sigmoid(h["eeg"].sum(-1) + 0.0)  # softmax of (s + 0, 0) = sigmoid(s)
    torch.testing.assert_close(ew[..., 0], expected_eeg)


def test_sample_without_modalities_gets_zero_and_finite_gradients():
    fusion = GatedFusion(("eeg", "ibi"), hidden=4, per_epoch=True)
    h = {m: v.requires_grad_() for m, v in _hidden(("eeg", "ibi")).items()}
    none = torch.tensor([True, False])
    fused, gw, ew = fusion(h, {"eeg": none, "ibi": none})
    assert torch.all(gw[1] == 0) and torch.all(ew[1] == 0) and torch.all(fused[1] == 0)
    fused.sum().backward()
    assert torch.isfinite(fusion.logits.grad).all() and torch.isfinite(h["eeg"].grad).all()


def test_night_head_pools_valid_tokens_only():
    head = NightHead(hidden=4, n_outputs=2, dropout=0.0)
    x = torch.randn(1, 6, 4)
    valid = torch.tensor([[True, True, True, False, False, False]])
    a = head(x, valid)
    x2 = x.clone()
    x2[0, 3:] = 100.0
    torch.testing.assert_close(head(x2, valid), a)
    torch.testing.assert_close(head(x[:, :3], valid[:, :3]), a)


@pytest.mark.parametrize("mods", [("eeg",), ("ibi", "resp"), MODALITIES])
def test_classifier_shapes_and_missing_key_equals_absent(mods):
    head = HeadConfig(night_outputs=3)
    clf = Sleep2VecClassifier(TINY, head, seed=0).eval()
    x, valid = make_inputs(mods, B=2, T=7), all_valid(2, 7)
    out = clf(x, valid)
    assert out.stage_logits.shape == (2, 7, 5) and out.night.shape == (2, 3)
    assert out.global_weights.shape == (2, 9) and out.epoch_weights.shape == (2, 7, 9)
    torch.testing.assert_close(out.global_weights.sum(-1), torch.ones(2))
    absent = [i for i, m in enumerate(MODALITIES) if m not in mods]
    assert torch.all(out.global_weights[:, absent] == 0)
    extra = "spo2" if "spo2" not in mods else None
    if extra:
        with_extra = {**x, extra: torch.randn(2, 7, 120)}
        out2 = clf(with_extra, valid, {extra: torch.zeros(2, dtype=torch.bool)})
        torch.testing.assert_close(out2.stage_logits, out.stage_logits, atol=1e-6, rtol=1e-6)


def test_classifier_freezes_tokenizers_and_loads_backbone():
    clf = Sleep2VecClassifier(TINY, seed=0)
    assert not any(p.requires_grad for p in clf.backbone.tokenizers.parameters())
    assert all(p.requires_grad for p in clf.backbone.encoder.parameters())
    pre = Sleep2Vec(TINY, seed=7)
    clf.load_backbone(pre)
    x, valid = make_inputs(("ecg", "effort")), all_valid(2, 7)
    a, b = pre.encode(x, valid), clf.backbone.encode(x, valid)
    torch.testing.assert_close(a["ecg"], b["ecg"])
    out = clf(x, valid)
    out.stage_logits.sum().backward()
    assert (
        clf.fusion.logits.grad is not None
        and clf.backbone.encoder.input_proj.weight.grad is not None
    )
    assert clf.backbone.tokenizers["ecg"].residual.weight.grad is None
    with pytest.raises(ValueError, match="config differs"):
        clf.load_backbone(Sleep2Vec(get_preset("tiny", n_layers=1)))


def test_small_preset_forward_time_full_night(capsys):
    """Print (not assert) the CPU time of 9 modalities x 960 tokens (8 h) with the small preset."""
    cfg = get_preset("small")
    model = Sleep2Vec(cfg, seed=0)
    x, valid = make_inputs(MODALITIES, B=1, T=960), all_valid(1, 960)
    model.encode(x, valid)  # warm-up
    start = time.perf_counter()
    out = model.encode(x, valid)
    elapsed = time.perf_counter() - start
    assert out["eeg"].shape == (1, 960, cfg.hidden)
    with capsys.disabled():
        print(
            f"\n[small preset] 9 x 960 tokens forward: {elapsed:.3f} s "
            f"on {torch.get_num_threads()} threads"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_forward_and_loss_are_finite():
    from s2v_core.train.losses import dash_infonce

    model = Sleep2Vec(TINY, seed=0).cuda()
    x = {m: v.cuda() for m, v in make_inputs(("eeg", "ibi"), B=4, T=12).items()}
    valid = all_valid(4, 12).cuda()
    valid[0, 9:] = False
    with torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = model(x, valid, mask_tokens=True, generator=torch.Generator().manual_seed(0))
        za, zb = model.project(hidden["eeg"]), model.project(hidden["ibi"])
    meta = torch.full((4,), float("nan")), torch.full((4,), -1), torch.full((4,), -1)
    loss = dash_infonce(za, zb, valid, *(t.cuda() for t in meta), torch.arange(4).cuda())
    loss.backward()
    assert torch.isfinite(loss) and all(
        torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None
    )


# --- spectral tokenizer branch (ModelConfig.spectral_bands) ---------------------------------
def test_band_matrix_tiles_every_non_dc_bin_once():
    import numpy as np

    from s2v_core.model.tokenizer import band_matrix

    for samples, bands in [(3840, 48), (120, 48), (120, 8), (16, 4)]:
        w = band_matrix(samples, bands)
        n_bins = samples // 2 + 1
        assert w.shape[0] == n_bins and 1 <= w.shape[1] <= bands
        covered = (w > 0).sum(axis=1)
        assert covered[0] == 0 and np.all(covered[1 : n_bins - 1] == 1)  # DC out, each bin once
        np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=1e-5)  # each column is an average
    with pytest.raises(ValueError):
        band_matrix(2, 4)


def test_band_power_peaks_in_the_band_of_a_sine():
    import numpy as np

    from s2v_core.model.tokenizer import BandPower, band_matrix

    fs, samples = 128, 3840
    w = band_matrix(samples, 48)
    bp = BandPower(samples, 48)
    t = torch.arange(samples) / fs
    for f in (1.0, 2.0, 10.0, 13.0, 30.0):  # delta, alpha, sigma, beta
        out = bp(torch.sin(2 * torch.pi * f * t)[None])[0]
        bin_ = int(round(f * samples / fs))
        assert int(out.argmax()) == int(np.flatnonzero(w[bin_])[0])
    # a 10x larger amplitude adds log(100) in every band with signal: scale shows as an offset
    x = torch.randn(1, samples)
    np.testing.assert_allclose((bp(10 * x) - bp(x)).numpy(), np.log(100.0), atol=1e-3)


def test_spectral_bands_config_checkpoint_and_defaults(tmp_path):
    from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint

    assert get_preset("small").spectral_bands == 0  # the presets stay the paper's tokenizer
    with pytest.raises(ConfigError):
        get_preset("tiny", spectral_bands=-1)
    with pytest.raises(ConfigError):
        get_preset("tiny", spectral_bands=True)
    cfg = get_preset("tiny", spectral_bands=16)
    model = Sleep2Vec(cfg, seed=0)
    plain = Sleep2Vec(get_preset("tiny"), seed=0)
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra > 0 and all("bands" not in k for k in model.state_dict())  # buffer not saved
    save_checkpoint(tmp_path / "ck", model, cfg)
    loaded, lcfg, _ = load_checkpoint(tmp_path / "ck")
    assert lcfg.spectral_bands == 16
    x = {"eeg": torch.randn(2, 6, 3840), "ibi": torch.randn(2, 6, 120)}
    valid = torch.ones(2, 6, dtype=torch.bool)
    model.eval()
    a, b = model.encode(x, valid), loaded.encode(x, valid)
    for m in a:
        torch.testing.assert_close(a[m], b[m])
    # a config written before the option existed still loads (as the paper's tokenizer)
    old = {k: v for k, v in get_preset("tiny").to_dict().items() if k != "spectral_bands"}
    assert ModelConfig.from_dict(old).spectral_bands == 0


def test_feature_bins_are_step_functions_flat_beyond_the_edges():
    from s2v_core.model.tokenizer import FEATURE_BIN_RANGE, FeatureBins, ModalityTokenizer

    bins = FeatureBins(9)
    x = torch.tensor([[-100.0, -2.5, -0.1, 0.1, 2.5, 100.0]])
    code = bins(x).reshape(1, 6, 10)
    assert torch.equal(code.sum(-1), torch.ones(1, 6))  # one-hot
    assert code[0].argmax(-1).tolist() == [0, 0, 4, 5, 9, 9]  # far outside = the outer bin
    with pytest.raises(ValueError):
        FeatureBins(0)
    tok = ModalityTokenizer(0, 8, dropout=0.0, raw_branch=False, n_features=3, feature_bins=9).eval()
    inside, beyond = torch.tensor([[FEATURE_BIN_RANGE + 0.5] * 3]), torch.tensor([[1e6] * 3])
    torch.testing.assert_close(tok(inside), tok(beyond))  # no linear extrapolation
    assert not torch.allclose(tok(torch.zeros(1, 3)), tok(inside))


def test_feature_bins_config_checkpoint_and_defaults(tmp_path):
    from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint

    for bad in (-1, True, 65, 2.5):
        with pytest.raises(ConfigError, match="feature_bins"):
            get_preset("tiny", raw_branch=False, features=2, feature_bins=bad)
    cfg = get_preset("tiny", raw_branch=False, features=2, feature_bins=9)
    model = Sleep2Vec(cfg, seed=0).eval()
    values = Sleep2Vec(get_preset("tiny", raw_branch=False, features=2), seed=0)
    assert count_parameters(cfg) > count_parameters(values.config)  # wider first layer
    save_checkpoint(tmp_path / "ck", model, cfg)
    loaded, lcfg, _ = load_checkpoint(tmp_path / "ck")  # rebuilt on the meta device
    assert lcfg.feature_bins == 9
    x = {"eeg": torch.randn(2, 6, cfg.token_width("eeg")), "ibi": torch.randn(2, 6, cfg.token_width("ibi"))}
    valid = torch.ones(2, 6, dtype=torch.bool)
    a, b = model.encode(x, valid), loaded.encode(x, valid)
    for m in a:
        torch.testing.assert_close(a[m], b[m])
    old = {k: v for k, v in cfg.to_dict().items() if k != "feature_bins"}
    assert ModelConfig.from_dict(old).feature_bins == 0  # checkpoints from before the option


def test_binned_modalities_bins_only_the_named_tokenizers(tmp_path):
    from s2v_core.cli.options import TOKENIZERS
    from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint

    cfg = get_preset("tiny", **TOKENIZERS["features-mixed"])
    assert cfg.binned_modalities == ("eeg", "eog")
    model = Sleep2Vec(cfg, seed=0).eval()
    binned = {m for m, tok in model.tokenizers.items() if tok.feature_bins is not None}
    assert binned == {"eeg", "eog"}
    # the value tokenizers are exactly as wide as in a features-only model
    values = Sleep2Vec(get_preset("tiny", **TOKENIZERS["features"]), seed=0)
    for m in ("emg", "ibi", "spo2"):
        assert sum(p.numel() for p in model.tokenizers[m].parameters()) == sum(
            p.numel() for p in values.tokenizers[m].parameters()
        )
    save_checkpoint(tmp_path / "ck", model, cfg)
    loaded, lcfg, _ = load_checkpoint(tmp_path / "ck")
    assert lcfg == cfg and lcfg.binned_modalities == ("eeg", "eog")
    x = {m: torch.randn(2, 4, cfg.token_width(m)) for m in ("eeg", "ibi")}
    valid = torch.ones(2, 4, dtype=torch.bool)
    a, b = model.encode(x, valid), loaded.encode(x, valid)
    for m in a:
        torch.testing.assert_close(a[m], b[m])
    # canonical order, no repeats, only the model's modalities, and only with bins
    assert get_preset("tiny", **{**TOKENIZERS["features-mixed"], "binned_modalities": ["eog", "eeg"]}).binned_modalities == ("eeg", "eog")
    with pytest.raises(ConfigError, match="not modalities of this model"):
        get_preset("tiny", **{**TOKENIZERS["features-mixed"], "modalities": ("ibi",)})
    with pytest.raises(ConfigError, match="needs feature_bins"):
        get_preset("tiny", raw_branch=False, features=2, binned_modalities=("eeg",))
    with pytest.raises(ConfigError, match="repeat"):
        get_preset("tiny", raw_branch=False, features=2, feature_bins=9, binned_modalities=("eeg", "eeg"))
    assert get_preset("tiny", raw_branch=False, features=2, feature_bins=9).feature_bins_of("ibi") == 9
