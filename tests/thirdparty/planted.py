"""Real third-party models, installed from PyPI, with one planted bug each.

The models are the classes that ``transformers`` and ``torch`` ship (nothing is copied
into this repository): GPT-2, ViT, a BERT encoder layer, ResNet's basic layer, Llama's
RMSNorm, and torch's own ``TransformerEncoderLayer`` and ``MultiheadAttention``. The
builders make small, seeded, randomly initialised instances from a config, offline.

Each bug is planted by subclassing one installed class and overriding one method, by
swapping one submodule of a built model, by a wrong config value, or by a user-written
attention kernel registered through ``transformers.AttentionInterface``; the line that
is wrong is marked ``# BUG:``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in this suite may reach the hub

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from transformers import (  # noqa: E402
    AttentionInterface,
    BertConfig,
    GPT2Config,
    GPT2LMHeadModel,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.models.bert.modeling_bert import BertLayer  # noqa: E402
from transformers.models.gpt2.modeling_gpt2 import GPT2Block  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402
from transformers.models.resnet.modeling_resnet import (  # noqa: E402
    ResNetBasicLayer,
    ResNetConvLayer,
)
from transformers.models.vit.modeling_vit import (  # noqa: E402
    ViTEmbeddings,
    ViTPatchEmbeddings,
)

# ---------------------------------------------------------------------- builders


def seeded_build(make: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``make()`` under a fixed torch seed, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def retyped(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """``module`` turned into an instance of ``cls``, a subclass of its class overriding one method."""
    assert issubclass(cls, type(module)), (cls, type(module))
    module.__class__ = cls
    return module


def gpt2_config(dropout: float = 0.0, attn: str = "eager") -> GPT2Config:
    """GPT-2 at its smallest: one layer, width 32, two heads, vocabulary 50, context 16."""
    return GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                      bos_token_id=0, eos_token_id=0, use_cache=False, resid_pdrop=dropout,
                      embd_pdrop=dropout, attn_pdrop=dropout, attn_implementation=attn)


def gpt2(dropout: float = 0.0, attn: str = "eager") -> GPT2LMHeadModel:
    """transformers' GPT2LMHeadModel at :func:`gpt2_config`, random weights."""
    return seeded_build(lambda: GPT2LMHeadModel(gpt2_config(dropout, attn)))


def logits(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The next-token logits at every position, as a function of the token ids."""
    return lambda idx: model(idx).logits


def gpt2_block(act: nn.Module | None = None) -> GPT2Block:
    """One GPT2Block (SDPA attention, causal by itself), optionally with another MLP activation."""
    def make() -> GPT2Block:
        block = GPT2Block(gpt2_config(attn="sdpa"))
        if act is not None:
            block.mlp.act = act
        return block
    return seeded_build(make)


def vit_config(dropout: float = 0.1) -> ViTConfig:
    """A ViT for MNIST-shaped images: 1x28x28 in 7x7 patches, width 32, one layer, 10 classes."""
    return ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=32,
                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     num_labels=10, hidden_dropout_prob=dropout, attn_implementation="eager")


def vit(dropout: float = 0.1, seed: int = 0) -> ViTForImageClassification:
    """transformers' ViTForImageClassification at :func:`vit_config`; returns ``.logits``."""
    return seeded_build(lambda: ViTForImageClassification(vit_config(dropout)), seed)


def vit_log_probs(dim: int = -1, seed: int = 0) -> ViTForImageClassification:
    """A ViT whose classifier head ends in ``LogSoftmax(dim)``: log-probabilities per class."""
    model = vit(seed=seed)
    model.classifier = nn.Sequential(model.classifier, nn.LogSoftmax(dim=dim))
    return model


def bert_layer(attn: str = "eager", is_decoder: bool = False) -> BertLayer:
    """One BertLayer (self-attention + feed-forward, post-LayerNorm) of width 8, two heads.

    Without position embeddings, a set encoder: permutation-equivariant along dim 1.
    """
    config = BertConfig(hidden_size=8, num_attention_heads=2, intermediate_size=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        is_decoder=is_decoder, attn_implementation=attn)
    return seeded_build(lambda: BertLayer(config))


def encoder_layer(cls: type[nn.TransformerEncoderLayer] = nn.TransformerEncoderLayer
                  ) -> nn.TransformerEncoderLayer:
    """torch's TransformerEncoderLayer, width 8, two heads, batch first, no dropout."""
    return seeded_build(lambda: cls(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True))


class AttentionPool(nn.Module):
    """Pools a set of width-8 vectors into ``seeds`` vectors by torch's MultiheadAttention.

    Learned queries attend over the set, so the result does not depend on its order
    (the pooling of a Set Transformer, built from torch's attention).
    """

    def __init__(self, dim: int = 8, heads: int = 2, seeds: int = 2) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.randn(1, seeds, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """What the queries attend over: the set itself."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.seeds.expand(x.size(0), -1, -1)
        k = self.keys(x)
        return self.attn(q, k, k, need_weights=False)[0]


def attention_pool(cls: type[AttentionPool] = AttentionPool) -> AttentionPool:
    """A seeded :class:`AttentionPool`."""
    return seeded_build(cls)


def resnet_layer(eps: float = 1e-5) -> ResNetBasicLayer:
    """transformers' ResNetBasicLayer 4 -> 8 channels, stride 2: its shortcut is conv1x1 + BatchNorm."""
    def make() -> ResNetBasicLayer:
        layer = ResNetBasicLayer(4, 8, stride=2)
        for m in layer.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = eps
        return layer
    return seeded_build(make)


def conv_bn(norm: nn.Module | None = None) -> ResNetConvLayer:
    """transformers' ResNetConvLayer 3 -> 8 channels without activation: conv3x3 then BatchNorm2d."""
    def make() -> ResNetConvLayer:
        layer = ResNetConvLayer(3, 8, kernel_size=3, stride=1, activation=None)
        if norm is not None:
            layer.normalization = norm
        return layer
    return seeded_build(make)


def rms_norm(cls: type[LlamaRMSNorm] = LlamaRMSNorm) -> LlamaRMSNorm:
    """transformers' LlamaRMSNorm over 16 features."""
    return seeded_build(lambda: cls(16))


# --------------------------------------------- user-written attention kernels


def _heads(query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> torch.Tensor:
    scale = query.size(-1) ** -0.5 if scaling is None else scaling
    return torch.matmul(query, key.transpose(-1, -2)) * scale


def maskless_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                       **kwargs):
    """A hand-written attention kernel that forgot the mask it was given."""
    scores = _heads(query, key, scaling)  # BUG: `scores + attention_mask` is missing
    weights = F.dropout(scores.softmax(-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2), weights


def naive_softmax_attention(module, query, key, value, attention_mask, scaling=None,
                            dropout=0.0, **kwargs):
    """A hand-written attention kernel whose softmax does not subtract the maximum."""
    scores = _heads(query, key, scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    e = torch.exp(scores)  # BUG: exp(scores - scores.amax(-1, keepdim=True)) is stable
    weights = F.dropout(e / e.sum(-1, keepdim=True), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2), weights


AttentionInterface.register("maskless", maskless_attention)
AttentionInterface.register("naive_softmax", naive_softmax_attention)


# ------------------------------------------------------------------ GPT-2 bugs


def gpt2_without_mask() -> GPT2LMHeadModel:
    """GPT-2 running the :func:`maskless_attention` kernel."""
    return gpt2(attn="maskless")


class _TanhGelu(torch.autograd.Function):
    """GELU's tanh approximation (GPT-2's ``gelu_new``) with a hand-written backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        c = math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**3)))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        c = math.sqrt(2 / math.pi)
        t = torch.tanh(c * (x + 0.044715 * x**3))
        # BUG: the derivative of the tanh term, 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2),
        # is missing
        return grad * 0.5 * (1 + t)


class HandGelu(nn.Module):
    """A fused GELU module with the wrong backward of :class:`_TanhGelu`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _TanhGelu.apply(x)


class NoisyRMSNorm(LlamaRMSNorm):
    """LlamaRMSNorm re-written by hand, dividing by rms + 0.1 instead of sqrt(mean x^2 + eps)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        rms = hidden_states.pow(2).mean(-1, keepdim=True).sqrt()
        return self.weight * hidden_states / (rms + 0.1)  # BUG: eps outside the sqrt, 1e5 too large


# -------------------------------------------------------------------- ViT bugs


class TrainCentredLayerNorm(nn.LayerNorm):
    """ViT's final LayerNorm followed by centring over the batch, in train mode only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.training:
            x = x - x.mean(0, keepdim=True)  # BUG: mixes the batch (a hand-made 'normalisation')
        return x


def vit_train_centred() -> ViTForImageClassification:
    """A ViT whose final LayerNorm centres by the batch mean in train mode."""
    model = vit()
    retyped(model.vit.layernorm, TrainCentredLayerNorm)
    return model


class NoisyPatchEmbeddings(ViTPatchEmbeddings):
    """Patch embeddings of images with noise added, in every mode, from the global generator."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        noise = 0.1 * torch.randn_like(pixel_values)  # BUG: should be `if self.training:`
        return super().forward(pixel_values + noise)


def vit_noisy() -> ViTForImageClassification:
    """A ViT with :class:`NoisyPatchEmbeddings`."""
    model = vit()
    retyped(model.vit.embeddings.patch_embeddings, NoisyPatchEmbeddings)
    return model


class AlwaysOnDropout(nn.Dropout):
    """nn.Dropout re-written with F.dropout, leaving out ``training=self.training``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p)  # BUG: F.dropout's training defaults to True


def vit_always_dropout() -> ViTForImageClassification:
    """A ViT whose encoder layer's dropout stays on in eval mode."""
    model = vit()
    retyped(model.vit.layers[0].dropout, AlwaysOnDropout)
    return model


class DetachedEmbeddings(ViTEmbeddings):
    """ViT's embeddings cut from the graph (a `.detach()` left over from feature caching)."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return super().forward(*args, **kwargs).detach()  # BUG: the embeddings never learn


def vit_detached() -> ViTForImageClassification:
    """A ViT with :class:`DetachedEmbeddings`."""
    model = vit()
    retyped(model.vit.embeddings, DetachedEmbeddings)
    return model


def vit_frozen() -> ViTForImageClassification:
    """A ViT with every parameter frozen, as when fine-tuning code freezes the head with the body."""
    model = vit()
    for p in model.parameters():
        p.requires_grad_(False)  # BUG: meant to freeze model.vit.embeddings only
    return model


def vit_batch_log_softmax(seed: int = 0) -> ViTForImageClassification:
    """A ViT whose LogSoftmax head normalises over the batch."""
    return vit_log_probs(dim=0, seed=seed)  # BUG: dim=-1 (the classes)


def vit_unsaved_cls_token(seed: int = 0) -> ViTForImageClassification:
    """A ViT whose [CLS] token is a plain tensor attribute, so state_dict() misses it."""
    model = vit(seed=seed)
    emb = model.vit.embeddings
    token = emb.cls_token.detach().clone()
    del emb.cls_token
    emb.cls_token = token  # BUG: should stay an nn.Parameter (or a registered buffer)
    return model


# ----------------------------------------------------------- ResNet layer bugs


def resnet_layer_without_shortcut_norm() -> ResNetBasicLayer:
    """ResNetBasicLayer whose shortcut lost its BatchNorm."""
    layer = resnet_layer()
    layer.shortcut.normalization = nn.Identity()  # BUG: BatchNorm2d(8) upstream
    return layer


def resnet_layer_with_large_eps() -> ResNetBasicLayer:
    """ResNetBasicLayer built with BatchNorm2d(eps=1.0)."""
    return resnet_layer(eps=1.0)  # BUG: eps=1.0 (PyTorch's default 1e-5)


class PerSampleNorm(nn.Module):
    """A hand-written BatchNorm2d that normalises each sample instead of each channel."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (1, 2, 3)  # BUG: BatchNorm2d reduces over (0, 2, 3)
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight[:, None, None] \
            + self.bias[:, None, None]


# -------------------------------------------------------------- set-model bugs


def bert_layer_naive_softmax() -> BertLayer:
    """A BertLayer running the :func:`naive_softmax_attention` kernel."""
    return bert_layer(attn="naive_softmax")


class CausalEncoderLayer(nn.TransformerEncoderLayer):
    """torch's encoder layer with a causal mask pasted in from a language model."""

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        mask = nn.Transformer.generate_square_subsequent_mask(src.size(1))
        return super().forward(src, src_mask=mask, is_causal=True)  # BUG: a set has no order


class PositionalPool(AttentionPool):
    """AttentionPool whose keys get a position embedding left over from a sequence model."""

    def __init__(self, dim: int = 8, heads: int = 2, seeds: int = 2, max_set: int = 16) -> None:
        super().__init__(dim, heads, seeds)
        self.pos = nn.Parameter(0.1 * torch.randn(1, max_set, dim))

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos[:, :x.size(1)]  # BUG: pooling over a set must not see positions
