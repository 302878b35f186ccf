"""reprokit's invariants on real third-party models, installed from PyPI (``transformers``, ``torch``).

Two halves, both at reprokit's default settings (every check's defaults, and the
hypothesis profile the plugin loads): each correct model passes every check that its
method promises (no false alarm), and each planted bug of ``planted.py`` is caught by
the check written for it, with a message that names where it is (the parameter, the
position, the sample, the layer). The hypothesis-driven tests draw their inputs from
:mod:`reprokit.strategies`, so they also show that shrinking towards zeros (constant
images, all-zero token ids) raises no false alarm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from planted import (
    AlwaysOnDropout,
    CausalEncoderLayer,
    HandGelu,
    NoisyRMSNorm,
    PerSampleNorm,
    PositionalPool,
    attention_pool,
    bert_layer,
    bert_layer_naive_softmax,
    conv_bn,
    encoder_layer,
    gpt2,
    gpt2_block,
    gpt2_without_mask,
    logits,
    resnet_layer,
    resnet_layer_with_large_eps,
    resnet_layer_without_shortcut_norm,
    rms_norm,
    vit,
    vit_always_dropout,
    vit_batch_log_softmax,
    vit_detached,
    vit_frozen,
    vit_log_probs,
    vit_noisy,
    vit_train_centred,
    vit_unsaved_cls_token,
)

from reprokit.invariants import (
    InvariantError,
    check_batch_independence,
    check_can_overfit,
    check_causal,
    check_deterministic,
    check_eval_deterministic,
    check_gradients,
    check_loss_decreases,
    check_normalised,
    check_outputs_finite,
    check_parameter_scale_invariance,
    check_parameters_update,
    check_permutation_equivariance,
    check_permutation_invariance,
    check_probabilities,
    check_scale_invariance,
    check_state_dict_roundtrip,
    training_step,
)
from reprokit.strategies import float_tensors, int_tensors

IMAGES = float_tensors(shape=(4, 1, 28, 28))  # MNIST-shaped batches, values in [-10, 10]
BLOCK_INPUTS = float_tensors(shape=(4, 4, 6, 6))  # the ResNet layer's 4 input channels
SETS = float_tensors(shape=(2, 5, 8))  # two sets of five width-8 vectors
ROWS = float_tensors(shape=(4, 16))  # rows for the RMSNorm
TOKENS = int_tensors(shape=(2, 8), min_value=0, max_value=49)  # the tiny GPT-2's vocabulary


def image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 28, 28, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def cross_entropy(out, y: torch.Tensor) -> torch.Tensor:
    """The loss on a transformers ImageClassifierOutput."""
    return F.cross_entropy(out.logits, y)


def nll(out, y: torch.Tensor) -> torch.Tensor:
    """The loss on log-probabilities in an ImageClassifierOutput's ``logits``."""
    return F.nll_loss(out.logits, y)


def log_probs_of(model):
    return lambda v: model.eval()(v).logits.exp()


def seeded_randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ======================================================= correct models: no false alarm


@given(BLOCK_INPUTS)
def test_resnet_layer_is_invariant_to_the_scale_of_its_conv_weights(x):
    check_parameter_scale_invariance(resnet_layer(), x)


@given(BLOCK_INPUTS)
def test_resnet_layer_with_a_normalised_shortcut_is_input_scale_invariant_in_train_mode(x):
    check_scale_invariance(resnet_layer().train(), x)


def test_resnet_layer_passes_the_forward_checks_in_eval_mode():
    layer = resnet_layer()
    x = seeded_randn(4, 4, 6, 6, seed=1)
    check_batch_independence(layer, x)
    check_eval_deterministic(layer, x)
    check_outputs_finite(layer, x)
    check_gradients(layer, x[:2])


def test_conv_then_batchnorm_is_normalised_per_channel():
    check_normalised(conv_bn())


@given(IMAGES)
def test_vit_is_batch_independent_in_both_modes(x):
    check_batch_independence(vit(), x)


@given(IMAGES)
def test_vit_outputs_are_finite_log_probabilities(x):
    check_outputs_finite(vit(), x)
    check_probabilities(log_probs_of(vit_log_probs()), x)


def test_vit_trains_deterministically_and_round_trips():
    x, y = image_batch()
    model = vit()
    check_eval_deterministic(model, x)
    check_parameters_update(model, training_step(model, x, y, loss_fn=cross_entropy))
    check_state_dict_roundtrip(vit(seed=1), vit, x)
    check_deterministic(vit, x=x)
    check_gradients(vit(), x[:1])


def test_default_inputs_fit_the_real_models():
    from reprokit.invariants import example_input

    assert example_input(vit()).shape == (8, 1, 28, 28)  # ViT accepts only its image size
    assert example_input(gpt2()).shape == (8, 8)
    assert example_input(bert_layer()).shape == (8, 8, 8)  # attention splits B, T, C
    check_gradients(vit())
    check_batch_independence(vit())


def test_vit_loss_decreases_and_it_overfits_a_batch():
    x, y = image_batch()
    model = vit_log_probs()
    check_loss_decreases(training_step(model, x, y, loss_fn=nll, lr=0.01))
    model = vit_log_probs()
    check_can_overfit(training_step(model, x, y, loss_fn=nll, lr=0.01))


@given(TOKENS)
def test_gpt2_is_causal_and_batch_independent_on_token_ids(idx):
    model = gpt2(dropout=0.1).eval()
    check_causal(logits(model), idx)
    check_batch_independence(logits(model), idx)


def test_gpt2_block_passes_its_checks_and_round_trips():
    block = gpt2_block()
    check_causal(block)
    check_batch_independence(block, seeded_randn(3, 8, 32))
    check_gradients(block)
    check_outputs_finite(block)
    check_deterministic(lambda: gpt2(dropout=0.1))
    check_state_dict_roundtrip(gpt2(), gpt2, torch.zeros(2, 8, dtype=torch.long))


@given(ROWS)
def test_llama_rms_norm_is_scale_invariant(x):
    check_scale_invariance(rms_norm(), x)  # near-constant rows: its eps is re-run, not blamed


@given(SETS)
def test_encoder_layers_without_positions_are_permutation_equivariant(x):
    check_permutation_equivariance(bert_layer(), x, dim=1)
    check_permutation_equivariance(encoder_layer(), x, dim=1)


@given(SETS)
def test_attention_pooling_is_permutation_invariant_and_finite(x):
    pool = attention_pool()
    check_permutation_invariance(pool, x, dim=1)
    check_outputs_finite(pool, x)
    check_outputs_finite(bert_layer(), x)
    check_batch_independence(bert_layer(), x)


# ============================================= planted bugs: caught, and located


@given(IMAGES)
def _train_centred_batch_independence(x):
    check_batch_independence(vit_train_centred(), x)


def test_batch_mixing_in_train_mode_only_is_caught_at_the_defaults():
    with pytest.raises(InvariantError, match=r"when sample \d+ changed .* in train mode") as err:
        _train_centred_batch_independence()
    assert "self.training" in str(err.value)


@given(TOKENS)
def _maskless_gpt2_causal(idx):
    check_causal(logits(gpt2_without_mask()), idx)


def test_gpt2_attention_kernel_without_its_mask_is_caught_on_token_ids():
    with pytest.raises(InvariantError, match=r"output at position 0 changed .* when the input at "
                                             r"position 1 changed"):
        _maskless_gpt2_causal()


@given(SETS)
def _causal_encoder_equivariance(x):
    check_permutation_equivariance(encoder_layer(CausalEncoderLayer), x, dim=1)


def test_a_causal_mask_in_set_attention_breaks_equivariance():
    with pytest.raises(InvariantError, match=r"permutation equivariance violated: with the inputs "
                                             r"permuted by \[\d, \d"):
        _causal_encoder_equivariance()


@given(SETS)
def _positional_pool_invariance(x):
    check_permutation_invariance(attention_pool(PositionalPool), x, dim=1)


def test_a_position_embedding_in_set_pooling_breaks_invariance():
    with pytest.raises(InvariantError, match=r"swapping positions 0 and 1 along dim 1 changed "
                                             r"output\[0, "):
        _positional_pool_invariance()


@given(SETS)
def _naive_softmax_finite(x):
    check_outputs_finite(bert_layer_naive_softmax(), x)


def test_softmax_without_max_subtraction_overflows_at_the_default_scales():
    with pytest.raises(InvariantError, match=r"is nan .* for the input multiplied by 1000") as err:
        _naive_softmax_finite()
    assert "subtract the max" in str(err.value)


@given(BLOCK_INPUTS)
def _shortcut_without_norm(x):
    check_parameter_scale_invariance(resnet_layer_without_shortcut_norm(), x)


def test_a_shortcut_without_batchnorm_breaks_weight_scale_invariance():
    with pytest.raises(InvariantError, match=r"scaling 'shortcut.convolution.weight' by"):
        _shortcut_without_norm()


@given(BLOCK_INPUTS)
def _large_eps(x):
    check_parameter_scale_invariance(resnet_layer_with_large_eps(), x)


def test_a_large_batchnorm_eps_is_named_as_the_cause():
    with pytest.raises(InvariantError, match=r"because of eps: '(shortcut|layer\.[01])"
                                             r"\.normalization' has eps=1 "):
        _large_eps()


def test_normalising_each_sample_instead_of_each_channel_is_caught():
    with pytest.raises(InvariantError, match=r"mean of output over dims \[0, 2, 3\] is .* for "
                                             r"feature \[\d\]"):
        check_normalised(conv_bn(PerSampleNorm(8)))


def test_rms_norm_with_a_large_eps_outside_the_sqrt_is_not_scale_invariant():
    with pytest.raises(InvariantError, match=r"f\(0.5 \* x\) differs from f\(x\)"):
        check_scale_invariance(rms_norm(NoisyRMSNorm), seeded_randn(4, 16))


def test_unseeded_noise_in_forward_is_caught_by_check_deterministic():
    x, _ = image_batch()
    with pytest.raises(InvariantError, match=r"forward\(\) draws random numbers in eval mode") as err:
        check_deterministic(vit_noisy, x=x)
    assert "randn" in str(err.value)


def test_functional_dropout_left_on_in_eval_mode_is_caught():
    x, _ = image_batch()
    assert isinstance(vit_always_dropout().vit.layers[0].dropout, AlwaysOnDropout)
    with pytest.raises(InvariantError, match=r"two forward passes in eval mode differ at "
                                             r"output\['logits'\]\[\d, \d\]"):
        check_eval_deterministic(vit_always_dropout(), x)


def test_a_wrong_hand_written_backward_is_caught_by_the_gradient_check():
    with pytest.raises(InvariantError, match=r"gradient check violated: d/d ") as err:
        check_gradients(gpt2_block(HandGelu()))
    wrong, right = str(err.value).split("; wrong for ")[1].split("; right for ")
    assert "'mlp.c_fc.weight'" in wrong and "'mlp.c_proj.weight'" in right.split(" (")[0]


def test_detached_embeddings_leave_the_patch_projection_unchanged():
    x, y = image_batch()
    model = vit_detached()
    with pytest.raises(InvariantError, match=r"did not change after one step: \[.*"
                                             r"'vit.embeddings.patch_embeddings.projection.weight'"):
        check_parameters_update(model, training_step(model, x, y, loss_fn=cross_entropy))


def test_log_softmax_over_the_batch_is_not_a_distribution_over_classes():
    x, _ = image_batch()
    with pytest.raises(InvariantError, match=r"sums to .* along dim -1 at \[\d\]"):
        check_probabilities(log_probs_of(vit_batch_log_softmax()), x)


def test_log_softmax_over_the_batch_cannot_overfit_repeated_labels():
    x, y = image_batch()  # two images of class 0: over the batch their probabilities sum to 1
    model = vit_batch_log_softmax()
    with pytest.raises(InvariantError, match=r"overfit one batch violated: after \d+ steps the "
                                             r"loss is 0.69\d .*no progress in the last 100 steps"):
        check_can_overfit(training_step(model, x[:2], y[:2], loss_fn=nll, lr=0.01))


def test_a_model_frozen_by_mistake_does_not_lower_the_loss():
    x, y = image_batch()
    model = vit_frozen()
    with pytest.raises(InvariantError, match=r"does not depend on any trainable parameter of "
                                             r"ViTForImageClassification \(0 of \d+"):
        check_loss_decreases(training_step(model, x, y, loss_fn=cross_entropy))


def test_a_cls_token_kept_outside_the_state_dict_is_caught():
    x, _ = image_batch()
    with pytest.raises(InvariantError, match=r"the reloaded model's output\['logits'\]\[\d, \d\]"
                                             ) as err:
        check_state_dict_roundtrip(vit_unsaved_cls_token(seed=1), vit_unsaved_cls_token, x[:2])
    assert "register_buffer" in str(err.value)
