"""reprokit.invariants: each check passes on a correct model and catches a realistic bug."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from torch import nn
from toy_models import (
    MLP,
    BatchCentredMLP,
    CausalSelfAttention,
    CubeLayer,
    FrozenFirstLayer,
    FunctionalDropoutMLP,
    HandBatchNorm,
    HandLogSoftmax,
    LinearThenNorm,
    SetAttention,
    SoftmaxClassifier,
    Standardiser,
    UnseededInit,
    toy_batch,
)

from reprokit import invariants as inv
from reprokit.invariants import InvariantError
from reprokit.strategies import batches, float_tensors, permutations


def seeded_model(cls: type[nn.Module], *args: object, seed: int = 0, **kwargs: object) -> nn.Module:
    """Build ``cls`` with torch's RNG forked, so tests do not move the global state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args, **kwargs)


# ----------------------------------------------------------------- the error type


def test_invariant_error_is_an_assertion_error_with_all_parts_in_its_message() -> None:
    err = InvariantError("causality", "output 2 moved", promise="P", checked="C", hint="H",
                         example="E")
    assert isinstance(err, AssertionError)
    text = str(err)
    assert text.startswith("causality violated: output 2 moved")
    for part in ("promise: P", "checked: C", "smallest input that broke it: E", "hint: H"):
        assert part in text


# ------------------------------------------------------------- batch independence


def test_mlp_with_batchnorm_is_batch_independent_in_eval_mode() -> None:
    inv.check_batch_independence(seeded_model(MLP))


def test_batchnorm_in_train_mode_mixes_the_batch_and_the_message_says_call_eval() -> None:
    with pytest.raises(InvariantError, match="batch independence violated") as info:
        inv.check_batch_independence(seeded_model(MLP), train_mode=True)
    assert "model.eval()" in str(info.value)
    assert "when sample 1 changed" in str(info.value)


def test_batch_mean_subtraction_is_caught_even_in_eval_mode() -> None:
    x, _ = toy_batch(n=5)
    with pytest.raises(InvariantError, match=r"output for sample 0 changed by .* when sample 1") as info:
        inv.check_batch_independence(seeded_model(BatchCentredMLP), x)
    assert "samples 0 and 1 alone: " in str(info.value)
    assert "(shape (2, 4), float32)" in str(info.value)


@settings(max_examples=15, deadline=None)
@given(batches(features=4, min_size=2, max_size=6, min_value=-3, max_value=3))
def test_mlp_is_batch_independent_on_any_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, _ = batch
    inv.check_batch_independence(seeded_model(MLP), x, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------ eval determinism


def test_nn_dropout_is_off_in_eval_mode() -> None:
    inv.check_eval_deterministic(seeded_model(MLP))


def test_functional_dropout_left_on_in_eval_is_caught() -> None:
    with pytest.raises(InvariantError, match="eval-mode determinism violated") as info:
        inv.check_eval_deterministic(seeded_model(FunctionalDropoutMLP))
    assert "training=self.training" in str(info.value)


# ------------------------------------------------------------------- causality


def test_causal_attention_ignores_the_future() -> None:
    inv.check_causal(seeded_model(CausalSelfAttention))


def test_off_by_one_causal_mask_is_caught_at_the_first_leaking_position() -> None:
    with pytest.raises(InvariantError) as info:
        inv.check_causal(seeded_model(CausalSelfAttention, mask_diagonal=2))
    msg = str(info.value)
    assert "causality violated: output at position 0" in msg
    assert "the input at position 1 changed" in msg
    assert "smallest input that broke it: positions 0..1 alone" in msg
    assert "(shape (1, 2, 8), float32)" in msg


@settings(max_examples=10, deadline=None)
@given(float_tensors(shape=st.tuples(st.integers(1, 2), st.integers(2, 6), st.just(8)),
                     min_value=-2, max_value=2))
def test_causal_attention_is_causal_on_any_sequence(x: torch.Tensor) -> None:
    inv.check_causal(seeded_model(CausalSelfAttention), x, atol=1e-5, rtol=1e-4)


def test_causal_check_works_on_token_ids() -> None:
    emb = seeded_model(nn.Embedding, 10, 8)
    model = nn.Sequential(emb, seeded_model(CausalSelfAttention))
    inv.check_causal(model)  # default input: token ids from the embedding's vocabulary
    leaky = nn.Sequential(emb, seeded_model(CausalSelfAttention, mask_diagonal=2))
    with pytest.raises(InvariantError, match="causality violated"):
        inv.check_causal(leaky)


# ---------------------------------------------------------- permutation equivariance


@settings(max_examples=10, deadline=None)
@given(permutations(5))
def test_set_attention_is_permutation_equivariant(perm: torch.Tensor) -> None:
    x = inv.example_input(seeded_model(SetAttention), batch=2, length=5)
    inv.check_permutation_equivariance(seeded_model(SetAttention), x, perm, dim=1)


def test_positional_embedding_breaks_equivariance_and_a_single_swap_is_reported() -> None:
    model = seeded_model(SetAttention, positional=True)
    with pytest.raises(InvariantError, match="permutation equivariance violated") as info:
        inv.check_permutation_equivariance(model, dim=1)
    assert "permuted by [1, 0, 2, 3, 4, 5, 6, 7]" in str(info.value)  # swap of positions 0, 1


def test_permutation_must_be_a_permutation() -> None:
    with pytest.raises(ValueError, match="expected a permutation"):
        inv.check_permutation_equivariance(lambda x: x, torch.zeros(3), [0, 0, 1])


# ------------------------------------------------------------------ normalisation


def test_batchnorm_normalises_each_feature_in_train_mode() -> None:
    inv.check_normalised(nn.BatchNorm1d(4))
    inv.check_normalised(HandBatchNorm(), inv.example_input(nn.Linear(4, 1), batch=32) * 3 + 2)


def test_unbiased_variance_in_batchnorm_is_caught() -> None:
    x = inv.example_input(nn.Linear(4, 1), batch=16) * 3 + 2
    with pytest.raises(InvariantError, match=r"variance of output .* is 0\.9"):
        inv.check_normalised(HandBatchNorm(bug="unbiased"), x)


def test_layernorm_normalises_over_features_not_the_batch() -> None:
    x = inv.example_input(nn.Linear(6, 1), batch=4) * 3 + 2
    inv.check_normalised(nn.LayerNorm(6, elementwise_affine=False), x, reduce_dims=(-1,))
    with pytest.raises(InvariantError, match="normalisation violated: mean"):
        inv.check_normalised(nn.LayerNorm(6, elementwise_affine=False), x)


# ------------------------------------------------------------------ scale invariance


def test_batchnorm_after_linear_is_invariant_to_the_weight_scale() -> None:
    """Ioffe & Szegedy 2015, Sec 3.3: BN((aW)u) = BN(Wu)."""
    inv.check_parameter_scale_invariance(seeded_model(LinearThenNorm, nn.BatchNorm1d(5)))


def test_centring_without_dividing_by_std_is_not_scale_invariant() -> None:
    model = seeded_model(LinearThenNorm, HandBatchNorm(bug="centre_only"))
    with pytest.raises(InvariantError, match=r"scaling 'fc\.weight' by 0\.5 changed"):
        inv.check_parameter_scale_invariance(model)


def test_batchnorm_with_running_statistics_is_not_scale_invariant() -> None:
    model = seeded_model(LinearThenNorm, nn.BatchNorm1d(5))
    with pytest.raises(InvariantError, match="eval mode"):
        inv.check_parameter_scale_invariance(model, train_mode=False)


def test_input_scale_invariance_of_a_normaliser_and_its_absence_in_a_linear_layer() -> None:
    x = inv.example_input(nn.Linear(4, 1), batch=16)
    inv.check_scale_invariance(HandBatchNorm(eps=0.0), x)
    with pytest.raises(InvariantError, match=r"f\(0\.5 \* x\) differs"):
        inv.check_scale_invariance(seeded_model(nn.Linear, 4, 2), x)


# ------------------------------------------------------------------ finite values


def test_finite_tensor_passes_and_a_single_inf_is_reported_by_index() -> None:
    t = torch.zeros(3, 4)
    inv.check_finite(t)
    t[2, 1] = float("inf")
    with pytest.raises(InvariantError, match=r"value\[2, 1\] is inf \(1 non-finite of 12"):
        inv.check_finite(t)


def test_log_of_softmax_underflow_is_caught_and_log_softmax_is_fine() -> None:
    z = torch.tensor([[0.0, 1.0, 2.0], [0.0, 200.0, 1.0]])
    inv.check_finite(lambda t: torch.log_softmax(t, dim=-1), z)
    with pytest.raises(InvariantError, match=r"output\[1, 0\] is -inf \(2 non-finite of 6"):
        inv.check_finite(HandLogSoftmax(), z)


def test_nan_inside_a_tuple_of_outputs_is_found() -> None:
    with pytest.raises(InvariantError, match=r"loss\[1\]\[0\] is nan"):
        inv.check_finite((torch.ones(2), torch.tensor([float("nan")])), name="loss")


# ------------------------------------------------------------------ probabilities


def test_softmax_over_classes_gives_probabilities() -> None:
    inv.check_probabilities(seeded_model(SoftmaxClassifier))


def test_softmax_over_the_batch_dimension_is_caught() -> None:
    with pytest.raises(InvariantError, match="sums to .* along dim -1") as info:
        inv.check_probabilities(seeded_model(SoftmaxClassifier, dim=0))
    assert "wrong dimension" in str(info.value)


def test_logits_are_not_probabilities() -> None:
    logits = torch.tensor([[0.2, 0.3, 0.5], [0.1, 1.7, -0.8]])
    with pytest.raises(InvariantError, match=r"probabilities\[1, 1\] is 1\.7, outside \[0, 1\]"):
        inv.check_probabilities(logits)


# ------------------------------------------------------------------- gradients


def test_autograd_gradients_match_finite_differences() -> None:
    inv.check_gradients(seeded_model(MLP))
    inv.check_gradients(seeded_model(CubeLayer))


def test_custom_backward_missing_a_factor_is_caught() -> None:
    with pytest.raises(InvariantError, match="gradient check violated") as info:
        inv.check_gradients(seeded_model(CubeLayer, wrong_backward=True))
    assert "autograd gives" in str(info.value) and "finite differences give" in str(info.value)


def test_gradient_check_on_a_plain_function_reports_the_worst_input_entry() -> None:
    def bad_square(x: torch.Tensor) -> torch.Tensor:
        return x * x.detach()  # cuts half of the gradient

    x = torch.tensor([1.0, -2.0, 3.0])
    inv.check_gradients(lambda t: t * t, x)
    with pytest.raises(InvariantError, match=r"d/d input 0\[2\]"):
        inv.check_gradients(bad_square, x)


class UpcastAttention(nn.Module):
    """Scores, then a softmax computed in float32 whatever the input's dtype (as transformers does)."""

    def __init__(self, cut_graph: bool = False) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.cut_graph = cut_graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x.detach() if self.cut_graph else x)
        w = torch.softmax(q @ x.transpose(-1, -2), dim=-1, dtype=torch.float32).to(x.dtype)
        return (w @ x).float()


def test_a_model_that_casts_to_float32_on_purpose_is_no_gradient_false_alarm() -> None:
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    inv.check_gradients(seeded_model(UpcastAttention), x)
    with pytest.raises(InvariantError, match=r"d/d input 0") as info:
        inv.check_gradients(seeded_model(UpcastAttention, cut_graph=True), x)
    assert "casts to lower precision kept in float64: softmax(float32), .float()" in str(info.value)


# -------------------------------------------------------------- state-dict round trip


def test_buffer_survives_a_state_dict_round_trip() -> None:
    model = seeded_model(Standardiser).fit(toy_batch()[0] + 5)
    inv.check_state_dict_roundtrip(model, Standardiser)


def test_statistic_kept_as_a_plain_attribute_is_lost_on_reload() -> None:
    model = seeded_model(Standardiser, as_buffer=False).fit(toy_batch()[0] + 5)
    with pytest.raises(InvariantError, match="state-dict round trip violated") as info:
        inv.check_state_dict_roundtrip(model, lambda: Standardiser(as_buffer=False))
    assert "register_buffer" in str(info.value)


def test_state_dict_into_a_different_architecture_is_reported() -> None:
    with pytest.raises(InvariantError, match="does not load into a fresh model"):
        inv.check_state_dict_roundtrip(seeded_model(MLP), lambda: MLP(hidden=8))


# ---------------------------------------------------------------- determinism


def test_seeded_training_is_bit_for_bit_reproducible() -> None:
    x, y = toy_batch()

    def train(model: nn.Module) -> None:
        step = inv.training_step(model, x, y)
        for _ in range(3):
            step()

    inv.check_deterministic(MLP, train, x)  # dropout masks follow the seed too


def test_unseeded_numpy_generator_in_init_is_caught() -> None:
    with pytest.raises(InvariantError, match=r"trained weight 'weight' differs") as info:
        inv.check_deterministic(UnseededInit, x=toy_batch()[0])
    assert "np.random.default_rng()" in str(info.value)


# ------------------------------------------------------------- training checks


def test_one_step_moves_trainable_and_not_frozen_parameters() -> None:
    model = seeded_model(FrozenFirstLayer)
    x, y = toy_batch()
    inv.check_parameters_update(model, inv.training_step(model, x, y))


def test_frozen_layer_moved_by_weight_decay_on_a_stale_zero_grad_is_caught() -> None:
    model = seeded_model(FrozenFirstLayer)
    model.body.requires_grad_(True)
    x, y = toy_batch()
    nn.functional.cross_entropy(model(x), y).backward()  # a first backward fills .grad
    model.body.requires_grad_(False)                     # frozen afterwards
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)

    def step() -> float:
        opt.zero_grad(set_to_none=False)  # keeps zero tensors: weight decay still applies
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    with pytest.raises(InvariantError, match=r"frozen parameter 'body\.weight' changed") as info:
        inv.check_parameters_update(model, step)
    assert "weight decay" in str(info.value)


def test_optimizer_over_a_stale_model_leaves_parameters_unchanged() -> None:
    old = seeded_model(MLP)
    opt = torch.optim.SGD(old.parameters(), lr=0.1)
    model = seeded_model(MLP, seed=1)  # rebuilt after the optimiser
    x, y = toy_batch()
    with pytest.raises(InvariantError, match=r"did not change after one step: \['fc1\.weight'"):
        inv.check_parameters_update(model, inv.training_step(model, x, y, optimizer=opt))


def test_loss_decreases_with_sgd_and_not_with_lr_zero() -> None:
    x, y = toy_batch()
    model = seeded_model(MLP, p=0.0)
    losses = inv.check_loss_decreases(inv.training_step(model, x, y))
    assert len(losses) == 5 and losses[-1] < losses[0]
    frozen = seeded_model(MLP, p=0.0)
    with pytest.raises(InvariantError, match=r"the loss went from (\S+) to \1 in 5 steps"):
        inv.check_loss_decreases(inv.training_step(frozen, x, y, lr=0.0))


def test_diverging_loss_is_reported_as_not_finite() -> None:
    x, y = toy_batch()
    model = seeded_model(nn.Linear, 4, 3)
    with pytest.raises(InvariantError, match="the loss at step 1 is nan"):
        inv.check_loss_decreases(inv.training_step(model, x * 1e20, y, lr=1e10), steps=4)


def test_mlp_can_overfit_one_batch() -> None:
    x, y = toy_batch()
    model = seeded_model(MLP, p=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    steps, loss = inv.check_can_overfit(inv.training_step(model, x, y, optimizer=opt))
    assert loss <= 0.05 and steps <= 300


def test_labels_reshuffled_every_step_cannot_be_overfit() -> None:
    x, y = toy_batch()
    model = seeded_model(MLP, p=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)

    def step() -> float:  # the bug: labels shuffled independently of the inputs
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y[torch.randperm(len(y), generator=g)])
        loss.backward()
        opt.step()
        return loss.item()

    with pytest.raises(InvariantError, match=r"after 100 steps the loss is .* expected <= 0\.05"):
        inv.check_can_overfit(step, max_steps=100)


# ----------------------------------------------------------- leaves no trace


def test_checks_restore_rng_states_modes_buffers_and_threads() -> None:
    model = seeded_model(MLP)
    model.train()
    model.bn.eval()  # a mixed mode must come back as it was
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state(),
              torch.get_num_threads(), model.bn.running_mean.clone())
    inv.check_batch_independence(model)
    inv.check_normalised(nn.BatchNorm1d(4))
    with pytest.raises(InvariantError):
        inv.check_batch_independence(model, train_mode=True)
    assert model.training and not model.bn.training and model.fc1.training
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    assert torch.get_num_threads() == before[3]
    assert torch.equal(model.bn.running_mean, before[4])


def test_a_check_without_input_explains_how_to_pass_one() -> None:
    with pytest.raises(ValueError, match="pass one"):
        inv.check_batch_independence(lambda x: x)
    with pytest.raises(ValueError, match="pass an input tensor explicitly"):
        inv.example_input(nn.ReLU())


def test_hypothesis_shrinks_a_batch_mixing_bug_to_two_zero_samples() -> None:
    model = seeded_model(BatchCentredMLP)

    def is_caught(batch: tuple[torch.Tensor, torch.Tensor]) -> bool:
        try:
            inv.check_batch_independence(model, batch[0], samples=[0])
        except InvariantError:
            return True
        return False

    x, _ = find(batches(features=4, min_size=2, max_size=4, min_value=-1, max_value=1), is_caught,
                settings=settings(max_examples=10, deadline=None, database=None,
                                  phases=[Phase.generate, Phase.shrink]))
    assert x.shape == (2, 4) and not bool(x.any())


def test_checks_fall_back_to_torch_fork_rng_without_reprokit_seeding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "reprokit.seeding", None)  # import now raises ImportError
    before = torch.get_rng_state()
    inv.check_eval_deterministic(seeded_model(MLP))
    with pytest.raises(InvariantError, match="eval-mode determinism"):
        inv.check_eval_deterministic(seeded_model(FunctionalDropoutMLP))
    assert torch.equal(torch.get_rng_state(), before)


def test_gradient_check_leaves_the_students_model_untouched() -> None:
    model = seeded_model(MLP)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inv.check_gradients(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(model.parameters()).dtype == torch.float32


def test_example_input_follows_the_first_layer_without_touching_global_rng() -> None:
    conv = seeded_model(nn.Conv2d, 3, 4, 3)
    embed = nn.Sequential(seeded_model(nn.Embedding, 7, 4))
    before = torch.get_rng_state()
    images = inv.example_input(nn.Sequential(conv), batch=2, length=5)
    tokens = inv.example_input(embed, batch=3, length=6)
    assert images.shape == (2, 3, 5, 5) and images.dtype == torch.float32
    assert tokens.shape == (3, 6) and int(tokens.min()) >= 0 and int(tokens.max()) < 7
    assert torch.equal(images, inv.example_input(conv, batch=2, length=5))
    assert torch.equal(torch.get_rng_state(), before)


def test_check_outputs_finite_calls_the_model_and_names_the_bad_output() -> None:
    z = torch.tensor([[0.0, 300.0]])
    inv.check_outputs_finite(lambda t: torch.log_softmax(t, dim=-1), z)
    with pytest.raises(InvariantError, match=r"logp\[0, 0\] is -inf"):
        inv.check_outputs_finite(HandLogSoftmax(), z, name="logp")
    with pytest.raises(TypeError, match="use check_finite"):
        inv.check_outputs_finite(z)


# ------------------------------------------------------- issue 15: the defaults on real bugs


class _TrainOnlyCentred(nn.Module):
    """Bug: centres by the batch mean, but only in train mode (eval mode is fine)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h - h.mean(0, keepdim=True) if self.training else h


def test_batch_mixing_in_train_mode_only_is_caught_by_the_default_mode() -> None:
    model = seeded_model(_TrainOnlyCentred)
    inv.check_batch_independence(model, train_mode=False)  # eval mode alone misses it
    with pytest.raises(InvariantError, match=r"in train mode with BatchNorm held in eval mode"):
        inv.check_batch_independence(model)


def test_batchnorm_and_dropout_pass_the_default_train_mode_pass() -> None:
    model = seeded_model(MLP)  # Linear -> BatchNorm -> ReLU -> Dropout -> Linear
    inv.check_batch_independence(model.train())
    assert model.training  # the mode it came in is back


def test_integer_inputs_that_are_all_equal_are_still_perturbed() -> None:
    model = nn.Sequential(seeded_model(nn.Embedding, 10, 8),
                          seeded_model(CausalSelfAttention, mask_diagonal=2))
    for token in (0, 7):
        with pytest.raises(InvariantError, match="causality violated"):
            inv.check_causal(model, torch.full((2, 6), token))
    inv.check_batch_independence(model, torch.zeros(3, 6, dtype=torch.long))


def test_normalised_follows_the_output_of_a_shape_changing_module() -> None:
    conv_bn = seeded_model(lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    inv.check_normalised(conv_bn)
    conv_only = seeded_model(lambda: nn.Sequential(nn.Conv2d(3, 8, 3)))
    with pytest.raises(InvariantError, match=r"output \(32, 8, 6, 6\)"):
        inv.check_normalised(conv_only)


class _NoisyForward(nn.Module):
    """Bug: adds noise from the global generator in every mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x + 0.1 * torch.randn_like(x))


def test_unseeded_randomness_in_forward_is_caught_by_check_deterministic() -> None:
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InvariantError, match=r"forward\(\) draws random numbers in eval mode"):
        inv.check_deterministic(_NoisyForward, x=x)
    inv.check_deterministic(_NoisyForward, x=x, random_forward=True)  # a sampler on purpose
    inv.check_deterministic(MLP, x=x)  # dropout is random in train mode only


def test_eval_determinism_hint_names_random_draws_not_only_dropout() -> None:
    with pytest.raises(InvariantError, match="torch.randn"):
        inv.check_eval_deterministic(seeded_model(_NoisyForward))


def test_naive_softmax_overflow_is_caught_at_the_default_scales_only() -> None:
    def naive_softmax(x: torch.Tensor) -> torch.Tensor:
        e = x.exp()
        return e / e.sum(-1, keepdim=True)

    x = torch.linspace(-3, 3, 12).reshape(3, 4)
    inv.check_outputs_finite(naive_softmax, x, scales=(1.0,))
    with pytest.raises(InvariantError, match=r"for the input multiplied by 1000"):
        inv.check_outputs_finite(naive_softmax, x)
    inv.check_outputs_finite(lambda v: v.softmax(-1), x)  # torch's softmax subtracts the max
    inv.check_outputs_finite(nn.Embedding(5, 3), torch.tensor([[1, 2]]))  # ids are not scaled


def test_permutation_invariance_of_mean_pooling_and_its_absence_in_first_element_pooling() -> None:
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    inv.check_permutation_invariance(lambda v: v.mean(1), x, dim=1)
    with pytest.raises(InvariantError, match=r"swapping positions 0 and 1 along dim 1 changed "
                                             r"output\[0, \d\]"):
        inv.check_permutation_invariance(lambda v: v[:, 0] + v.mean(1), x, dim=1)
    with pytest.raises(ValueError, match="perm"):
        inv.check_permutation_invariance(lambda v: v.sum(0), x, perm=[0, 0])


def test_constant_batch_through_batchnorm_is_no_false_alarm_for_weight_scale() -> None:
    """A constant input leaves BatchNorm a tiny batch variance, where eps is not negligible."""
    block = seeded_model(lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False),
                                               nn.BatchNorm2d(4)))
    inv.check_parameter_scale_invariance(block, torch.ones(2, 2, 5, 5))
    inv.check_parameter_scale_invariance(seeded_model(LinearThenNorm, nn.BatchNorm1d(5)),
                                         torch.full((4, 4), 3.0))


def test_a_large_eps_is_named_as_the_cause_of_lost_weight_scale_invariance() -> None:
    model = seeded_model(LinearThenNorm, nn.BatchNorm1d(5, eps=1.0))
    with pytest.raises(InvariantError, match=r"because of eps: 'norm' has eps=1 against a "
                                             r"smallest batch variance of"):
        inv.check_parameter_scale_invariance(model)
    inv.check_parameter_scale_invariance(model, max_eps=1.0)  # intended: the caller says so


def test_default_training_step_takes_plain_sgd_steps_like_torch_optim() -> None:
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    a, b = seeded_model(nn.Linear, 4, 3), seeded_model(nn.Linear, 4, 3)
    ours = inv.training_step(a, x, y, lr=0.1)
    theirs = inv.training_step(b, x, y, optimizer=torch.optim.SGD(b.parameters(), lr=0.1))
    for _ in range(3):
        assert ours() == pytest.approx(theirs())
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


def test_default_training_step_does_not_import_dynamo_in_a_fresh_process() -> None:
    import subprocess

    code = ("import sys, torch\n"
            "from reprokit import invariants as inv\n"
            "m = torch.nn.Linear(4, 3)\n"
            "x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))\n"
            "inv.check_loss_decreases(inv.training_step(m, x, y))\n"
            "inv.check_deterministic(lambda: torch.nn.Linear(4, 3), x=x)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_loss_that_no_parameter_reaches_is_reported_not_crashed() -> None:
    model = seeded_model(nn.Linear, 4, 3).requires_grad_(False)
    with pytest.raises(InvariantError, match=r"does not depend on any trainable parameter"):
        inv.check_loss_decreases(inv.training_step(model, torch.randn(4, 4), torch.zeros(4).long()))


def test_check_threads_none_leaves_torch_threads_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    threads = torch.get_num_threads()
    monkeypatch.setattr(inv, "CHECK_THREADS", None)
    inv.check_finite(lambda x: seen.append(torch.get_num_threads()) or x, torch.ones(2))
    monkeypatch.setattr(inv, "CHECK_THREADS", 1)
    inv.check_finite(lambda x: seen.append(torch.get_num_threads()) or x, torch.ones(2))
    assert seen == [threads, threads, 1, 1]  # one call per scale, 1 and 1000
    assert torch.get_num_threads() == threads


class _NeedsBTC(nn.Module):
    """A transformer-style block: its first layer is a Linear, its forward unpacks (B, T, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return self.fc(x).reshape(B, T, C)


def test_example_input_retries_a_sequence_for_a_transformer_block() -> None:
    assert inv.example_input(seeded_model(_NeedsBTC)).shape == (8, 8, 8)
    assert inv.example_input(seeded_model(MLP)).shape == (8, 4)


def test_pytest_shows_the_message_not_reprokits_source(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug="""
        import torch
        from reprokit.invariants import check_batch_independence

        def test_mixes():
            check_batch_independence(lambda x: x - x.mean(0), torch.eye(3))

        def test_our_own_bug_keeps_its_traceback():
            check_batch_independence(lambda x: x, [1, 2])
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    mixes = out.split(" test_mixes _")[1].split(" test_our_own_bug_keeps_its_traceback _")[0]
    ours = out.split(" test_our_own_bug_keeps_its_traceback _")[1].split("short test summary")[0]
    assert "batch independence violated" in mixes
    assert "invariants.py" not in mixes  # reprokit's frames are hidden for an InvariantError
    assert "invariants.py" in ours


def test_input_scale_invariance_of_layernorm_on_a_near_constant_input_is_no_false_alarm() -> None:
    x = torch.zeros(3, 4)
    x[:, -1] = 1e-3  # each row's variance ~2e-7, far below eps = 1e-5
    inv.check_scale_invariance(nn.LayerNorm(4), x)
    with pytest.raises(InvariantError, match=r"because of eps: '' has eps=1 "):
        inv.check_scale_invariance(nn.LayerNorm(4, eps=1.0), torch.randn(3, 4))


class _RMSNorm(nn.Module):
    """An RMSNorm keeping its eps as ``variance_epsilon``, as transformers' Llama/T5 norms do."""

    def __init__(self, features: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def test_an_rms_norm_keeping_eps_as_variance_epsilon_gets_the_eps_rerun() -> None:
    inv.check_scale_invariance(_RMSNorm(), torch.full((3, 4), 0.03))  # mean square 9e-4
    with pytest.raises(InvariantError, match=r"because of eps: '' has eps=1 "):
        inv.check_scale_invariance(_RMSNorm(eps=1.0), torch.randn(3, 4))


class _HandBatchNormWithRunningStats(nn.Module):
    """A correct hand-written BatchNorm1d: batch statistics in train mode, running ones in eval."""

    def __init__(self, features: int = 3, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps)


def test_a_hand_written_batchnorm_with_running_statistics_is_held_like_torchs() -> None:
    model = nn.Sequential(seeded_model(nn.Linear, 4, 3), _HandBatchNormWithRunningStats(),
                          nn.Dropout(0.5))
    inv.check_batch_independence(model)  # train mode differs (dropout), BN mixing is allowed
    centred = nn.Sequential(seeded_model(_TrainOnlyCentred), nn.Dropout(0.5))
    with pytest.raises(InvariantError, match="in train mode"):  # no running statistics: a bug
        inv.check_batch_independence(centred)


def test_a_hand_written_batchnorm_on_a_constant_batch_is_no_false_alarm_for_weight_scale() -> None:
    model = seeded_model(LinearThenNorm, HandBatchNorm())  # eps kept as an attribute
    inv.check_parameter_scale_invariance(model, torch.full((4, 4), 3.0))
    inv.check_parameter_scale_invariance(model)
    with pytest.raises(InvariantError, match="scale invariance violated"):
        inv.check_parameter_scale_invariance(seeded_model(LinearThenNorm, HandBatchNorm(eps=1.0)))
