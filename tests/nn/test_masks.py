"""Dropout masks a trainer draws the same alone or in a fused group (tunelab.nn.masks)."""

import pytest
import torch

from tunelab.nn.masks import DropoutStream, _mix, draw_masks, drawing
from tunelab.nn.models import Dropout

WAYS = pytest.mark.parametrize("hashed", [False, True], ids=["generator", "hashed"])


@WAYS
def test_a_group_draws_each_members_masks_bit_for_bit_as_the_member_alone(hashed):
    def streams():
        made = [DropoutStream(seed, hashed) for seed in (0, 1, 2**40 + 3, 5)]
        for stream, earlier in zip(made, (0, 5, 2, 0), strict=True):
            for _ in range(earlier):  # members that joined later, or were resumed
                stream.mask(torch.empty(4), 0.5)
        return made

    keeps = [0.5, 0.9, 0.7, 1.0]
    x = torch.randn(4, 32, 8)
    together = draw_masks(streams(), keeps, x.shape, x.dtype, x.device)
    alone = streams()
    for stream, keep, mask in zip(alone, keeps, together, strict=True):
        assert torch.equal(stream.mask(x[0], 1 - keep), mask)
    assert [s.draws for s in alone] == [1, 6, 3, 0]  # a keep of 1 draws nothing
    assert torch.equal(together[3], torch.ones(32, 8))


@WAYS
def test_masks_keep_the_rate_scale_kept_units_and_differ_from_draw_to_draw(hashed):
    stream = DropoutStream(7, hashed)
    x = torch.ones(256, 512)
    first, second = stream.mask(x, 0.3), stream.mask(x, 0.3)
    kept = first > 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    assert torch.equal(first[kept], torch.full_like(first[kept], 1 / torch.tensor(0.7)))
    assert abs((kept & (second > 0)).float().mean().item() - 0.49) < 0.005  # independent draws
    units = kept.float()
    neighbours = torch.corrcoef(torch.stack([units[:, :-1].flatten(), units[:, 1:].flatten()]))
    assert abs(neighbours[0, 1].item()) < 0.01
    other = DropoutStream(8, hashed).mask(x, 0.3) > 0
    assert abs((kept & other).float().mean().item() - 0.49) < 0.005  # another seed


@WAYS
def test_a_restored_stream_draws_what_the_saved_one_would(hashed):
    stream, x = DropoutStream(4, hashed), torch.empty(64)
    stream.mask(x, 0.5)
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in stream.state_dict().items()}
    expected = stream.mask(x, 0.5)
    restored = DropoutStream(4, hashed)
    restored.load_state_dict(saved)
    assert torch.equal(restored.mask(x, 0.5), expected)


def test_the_hash_is_the_same_on_python_ints_and_on_tensors():
    values = [0, 1, 2**31 - 1, 2**32 - 1, 123456789]
    assert _mix(torch.tensor(values)).tolist() == [_mix(v) for v in values]


def test_the_builtin_dropout_draws_from_the_active_stream_and_is_torchs_outside():
    layer, x = Dropout(0.4), torch.randn(16, 32)
    with drawing(DropoutStream(3)):
        inside = layer(x)
    assert torch.equal(inside, x * DropoutStream(3).mask(x, 0.4))
    torch.manual_seed(0)
    outside = layer(x)
    torch.manual_seed(0)
    assert torch.equal(outside, torch.nn.functional.dropout(x, 0.4))
    assert torch.equal(layer.eval()(x), x)
