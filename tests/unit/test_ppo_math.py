"""PPO's arithmetic against values worked out by hand: GAE(lambda), the clipped surrogate, the clipped value loss."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ponder.training.ppo import gae, policy_loss, token_rewards, value_loss, whiten  # noqa: E402


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_on_one_three_token_episode():
    # gamma 0.9, lambda 0.5; rewards (0, 0, 1), values (0.5, 0.6, 0.7), nothing after the last token
    # delta_2 = 1 - 0.7 = 0.3;  delta_1 = 0 + 0.9*0.7 - 0.6 = 0.03;  delta_0 = 0 + 0.9*0.6 - 0.5 = 0.04
    # A_2 = 0.3;  A_1 = 0.03 + 0.45*0.3 = 0.165;  A_0 = 0.04 + 0.45*0.165 = 0.11425
    advantages, returns = gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=0.9, lam=0.5)
    assert advantages.tolist()[0] == pytest.approx([0.11425, 0.165, 0.3])
    assert returns.tolist()[0] == pytest.approx([0.61425, 0.765, 1.0])


def test_gae_stops_at_the_end_of_a_padded_sequence():
    # the second row ends after two tokens: its padding neither bootstraps the value nor carries advantage back
    rewards = t([[0, 0, 1], [0, 2, 0]])
    values = t([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # row 2: A_1 = 2 - 1 = 1;  A_0 = (0 + 1 - 1) + 1 = 1;  padding 0
    assert advantages.tolist()[1] == pytest.approx([1.0, 1.0, 0.0])
    assert returns.tolist()[1] == pytest.approx([2.0, 2.0, 0.0])
    # row 1 with gamma = lambda = 1: A_t = sum of rewards from t on - V_t (Monte Carlo)
    assert advantages.tolist()[0] == pytest.approx([0.5, 0.4, 0.3])


def test_gae_with_lambda_zero_is_one_step_td():
    advantages, _ = gae(t([[0, 1]]), t([[0.2, 0.5]]), t([[1, 1]]), gamma=1.0, lam=0.0)
    assert advantages.tolist()[0] == pytest.approx([0.5 - 0.2, 1 - 0.5])


def test_policy_loss_clips_the_ratio_only_where_it_would_help():
    # log ratios: ln 1.5 (ratio 1.5) with A = +1: clipped at 1.2 -> -1.2;  ratio 0.5 with A = +1: unclipped -> -0.5
    # ratio 1.5 with A = -1: max(1.5, 1.2) = 1.5 (the pessimistic, unclipped side);  ratio 0.5, A = -1: max(0.5, 0.8)
    old = t([[0.0, 0.0, 0.0, 0.0]])
    new = torch.log(t([[1.5, 0.5, 1.5, 0.5]]))
    adv = t([[1.0, 1.0, -1.0, -1.0]])
    loss, clipfrac = policy_loss(new, old, adv, t([[1, 1, 1, 1]]), clip=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4)
    assert clipfrac.item() == pytest.approx(2 / 4)  # the first and the last token took the clipped value
    masked, _ = policy_loss(new, old, adv, t([[1, 0, 0, 0]]), clip=0.2)
    assert masked.item() == pytest.approx(-1.2)


def test_policy_loss_gradient_vanishes_where_clipped():
    new = torch.log(t([[1.5, 1.1]])).requires_grad_()
    loss, _ = policy_loss(new, t([[0.0, 0.0]]), t([[1.0, 1.0]]), t([[1, 1]]), clip=0.2)
    loss.backward()
    assert new.grad.tolist()[0] == pytest.approx([0.0, -1.1 / 2])  # d(-A r / 2)/d log r = -A r / 2


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_errors():
    # old 0, new 1, return 2, clip 0.2: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 0.5 * 3.24
    assert value_loss(t([[1.0]]), t([[0.0]]), t([[2.0]]), t([[1]]), clip=0.2).item() == pytest.approx(1.62)
    # new 0.1 inside the clip: both errors are (0.1-2)^2
    assert value_loss(t([[0.1]]), t([[0.0]]), t([[2.0]]), t([[1]]), clip=0.2).item() == pytest.approx(0.5 * 1.9**2)


def test_token_rewards_put_the_score_on_the_last_real_token_and_the_kl_everywhere():
    logprobs, ref = t([[-1.0, -1.0, -1.0], [-1.0, -2.0, 0.0]]), t([[-1.5, -1.0, -0.5], [-1.0, -1.0, -3.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = token_rewards(t([1.0, 3.0]), logprobs, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, t([[0.5, 0.0, -0.5], [0.0, -1.0, 0.0]]))
    assert torch.allclose(rewards, t([[-0.05, 0.0, 1.05], [0.0, 3.1, 0.0]]))


def test_whiten_normalises_over_the_mask_only():
    out = whiten(t([[1.0, 3.0, 100.0]]), t([[1, 1, 0]]))
    assert out.tolist()[0] == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
