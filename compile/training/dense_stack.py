"""Batched training of chain-of-dense networks with stacked matrix products, without ``vmap``.

Most members of the ``mlp`` space are chains ``input -> dense -> ... -> dense -> output``. For K
such candidates of one architecture, :mod:`evograph.compile.training.batched`'s generic path (``vmap`` over
``functional_call``, autograd) spends most of a step outside the matrix products: per-op
dispatch, vmap's batching rules, autograd's graph, transposed weight gradients, and an optimizer
that walks each parameter tensor separately. Here the step is written out:

* the parameters of all K candidates live in one flat buffer, layer by layer: each layer's
  weights as one contiguous ``(K, out, in)`` block and its biases as one ``(K, out)`` block; the
  gradients in a second buffer laid out the same way, so the backward pass writes every
  gradient in place and the optimizer update is one fused call over a few big blocks
  (:mod:`evograph.compile.training.functional_optim`, whose updates move each row ``k`` by candidate k's
  own learning rate);
* the forward pass is one ``baddbmm`` per layer (bias + batched ``x @ W^T``);
* the backward pass is the textbook one (Rumelhart, Hinton & Williams 1986): per layer, from the
  output down, ``dW = g^T x``, ``db = sum_b g``, ``g <- (g W) * act'`` — three batched products
  or reductions written straight into the gradient buffer, activation derivatives by PyTorch's
  own ``*_backward`` kernels; the input layer's ``g W`` is skipped (nothing needs it).

The loss is the mean cross-entropy per candidate (with label smoothing, as
``F.cross_entropy``); its gradient with respect to the logits is ``softmax - target``, over the
batch size. Everything else — minibatch orders, non-finite losses stopping one candidate, gradient
clipping per candidate, the optimizers and their per-row learning rates — is shared with the
generic path, so both give what training each candidate alone gives, up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..layers import ACTIVATION_MODULES
from .functional_optim import apply_update, clip_rows_, init_state

_ACTIVATIONS = {type(factory()): name for name, factory in ACTIVATION_MODULES.items()}
_aten = torch.ops.aten


@dataclass(frozen=True)
class DenseLayer:
    """One ``Linear`` (+ activation) of the chain: its parameter names, shape and activation."""

    weight: str            # parameter names in the module
    bias: str
    fan_in: int
    units: int
    activation: str        # a key of ACTIVATION_MODULES; "linear" for the classifier


def dense_chain(module: nn.Module) -> list[DenseLayer] | None:
    """The layers of ``module`` when it is a chain of dense layers ending in the classifier
    (the compiled form of ``input -> dense* -> output`` on any input shape), else None."""
    plan = getattr(module, "plan", None)
    if plan is None or any(step.merged or step.inputs != (i,) for i, step in enumerate(plan)):
        return None
    layers = []
    for step in plan:
        block = module.layers[step.key]
        parts = [m for m in block.children() if not isinstance(m, nn.Flatten)]
        named = [name for name, _ in block.named_parameters()]
        if not parts or not isinstance(parts[0], nn.Linear) or len(named) != 2 \
                or len(parts) > 2:
            return None
        linear = parts[0]
        activation = "linear" if len(parts) == 1 else _ACTIVATIONS.get(type(parts[1]))
        if activation is None or (activation == "leaky_relu"
                                  and parts[1].negative_slope != 0.01):
            return None
        prefix = f"layers.{step.key}.{named[0].rsplit('.', 1)[0]}"
        layers.append(DenseLayer(f"{prefix}.weight", f"{prefix}.bias", linear.in_features,
                                 linear.out_features, activation))
    if not layers or layers[-1].activation != "linear" or len(dict(module.named_buffers())):
        return None
    return layers


def _activate_(z: Tensor, name: str) -> Tensor:
    """The activation of pre-activations ``z`` (in place where the backward needs only the
    output)."""
    if name == "relu":
        return z.relu_()
    if name == "tanh":
        return z.tanh_()
    if name == "sigmoid":
        return z.sigmoid_()
    if name == "elu":
        return torch.nn.functional.elu_(z)
    if name == "selu":
        return torch.selu_(z)
    if name == "leaky_relu":
        return torch.nn.functional.leaky_relu_(z, 0.01)
    if name == "gelu":
        return torch.nn.functional.gelu(z)            # its backward needs z itself
    return z


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _activation_grad(g: Tensor, out: Tensor, pre: Tensor | None, name: str) -> Tensor:
    """d loss / d pre-activation from ``g`` = d loss / d output, by PyTorch's own kernels."""
    if name == "relu":
        return _aten.threshold_backward(g, out, 0)
    if name == "tanh":
        return _aten.tanh_backward(g, out)
    if name == "sigmoid":
        return _aten.sigmoid_backward(g, out)
    if name == "elu":
        return _aten.elu_backward(g, 1.0, 1.0, 1.0, True, out)
    if name == "selu":
        return _aten.elu_backward(g, _SELU_ALPHA, _SELU_SCALE, 1.0, True, out)
    if name == "leaky_relu":
        return _aten.leaky_relu_backward(g, out, 0.01, True)
    if name == "gelu":
        return _aten.gelu_backward(g, pre)
    return g


class DenseStack:
    """K chain-of-dense candidates of one architecture in one flat buffer, layer-major: per
    layer a ``(K, out, in)`` weight block and a ``(K, out)`` bias block (row k: candidate k)."""

    def __init__(self, modules: Sequence[nn.Module], layers: list[DenseLayer],
                 genes: Sequence[dict[str, Any]], device: torch.device,
                 label_smoothing: float):
        self.layers, self.device, self.label_smoothing = layers, device, label_smoothing
        self.optimizer = genes[0].get("optimizer", "sgd")
        k = len(modules)
        size = k * sum(layer.units * (layer.fan_in + 1) for layer in layers)
        self.flat = torch.empty(size, device=device)
        self.grad = torch.zeros(size, device=device)
        self.params, self.grads = self._views(self.flat, k), self._views(self.grad, k)
        with torch.no_grad():
            for i, module in enumerate(modules):
                named = dict(module.named_parameters())
                for layer, (w, b) in zip(layers, self.params):
                    w[i].copy_(named[layer.weight])
                    b[i].copy_(named[layer.bias])
        self.blocks = [t.view(k, -1) for pair in self.params for t in pair]      # (K, s) each
        self.grad_blocks = [t.view(k, -1) for pair in self.grads for t in pair]
        self.state = init_state(self.optimizer, self.blocks)
        self.lr = torch.tensor([float(g["learning_rate"]) for g in genes], dtype=torch.float64)
        self.wd = torch.tensor([float(g.get("weight_decay", 0.0)) for g in genes],
                               dtype=torch.float64)
        self.alive = [True] * k

    def _views(self, flat: Tensor, k: int) -> list[tuple[Tensor, Tensor]]:
        """(weights (K, out, in), biases (K, out)) of each layer: contiguous blocks of
        ``flat``, one after the other."""
        views, start = [], 0
        for layer in self.layers:
            w_end = start + k * layer.units * layer.fan_in
            b_end = w_end + k * layer.units
            views.append((flat[start:w_end].view(k, layer.units, layer.fan_in),
                          flat[w_end:b_end].view(k, layer.units)))
            start = b_end
        return views

    def _forward(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor, Tensor | None]]]:
        """Logits, transposed to (K, classes, b), and per layer (its input, its output, its
        pre-activation when the activation's backward needs it). Transposed because softmax
        over a short last dimension is slow on CPU (~10x slower than over the middle one)."""
        saved = []
        h = x                                                            # (K, b, in)
        last = len(self.layers) - 1
        for i, (layer, (w, b)) in enumerate(zip(self.layers, self.params)):
            if i == last:                                                # (K, classes, b)
                logits = torch.baddbmm(b.unsqueeze(2), w, h.transpose(1, 2))
                saved.append((h, logits, None))
                return logits, saved
            z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))    # (K, b, out)
            out = _activate_(z, layer.activation)
            saved.append((h, out, z if layer.activation == "gelu" else None))
            h = out
        raise AssertionError("a dense chain ends in its classifier")

    def _loss_grad(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-candidate mean cross-entropy (K,) of logits (K, C, b) and its gradient wrt the
        logits, (K, b, C) (a transposed view)."""
        classes, batch, smooth = logits.shape[1], logits.shape[2], self.label_smoothing
        logp = torch.log_softmax(logits, dim=1)
        nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)                 # (K, b)
        loss = nll if smooth == 0 else (1 - smooth) * nll - smooth * logp.mean(1)
        grad = logp.exp_()                                               # softmax, in place
        grad.scatter_add_(1, y.unsqueeze(1), torch.full_like(nll.unsqueeze(1), -(1 - smooth)))
        if smooth:
            grad.sub_(smooth / classes)
        return loss.mean(1), grad.div_(batch).transpose(1, 2)

    def _backward(self, g: Tensor, saved: list) -> None:
        """Fill the gradient buffer from ``g`` = d loss / d logits (K, b, C)."""
        for i in range(len(self.layers) - 1, -1, -1):
            layer, (h, out, pre) = self.layers[i], saved[i]
            g = _activation_grad(g, out, pre, layer.activation)         # (K, b, out)
            dw, db = self.grads[i]
            torch.bmm(g.transpose(1, 2), h, out=dw)                      # (K, out, in)
            torch.sum(g, dim=1, out=db)                                  # (K, out)
            if i:
                g = torch.bmm(g, self.params[i][0])                      # (K, b, in)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor, step: int, grad_clip: float,
             rate: float = 1.0) -> list[float]:
        """One step of every live candidate on its own minibatch (x: (K, b, ...)), at ``rate``
        times its learning rate; the K losses. A non-finite loss stops its candidate before the update, for good."""
        logits, saved = self._forward(x.flatten(2))
        losses, g = self._loss_grad(logits, y)
        values = losses.tolist()
        self.alive = [a and math.isfinite(v) for a, v in zip(self.alive, values)]
        if not any(self.alive):
            return values
        self._backward(g, saved)
        mask = torch.tensor(self.alive)
        if not all(self.alive):              # stopped candidates: no NaN into the state
            dead = ~mask.to(self.device).unsqueeze(1)
            for g in self.grad_blocks:
                g.masked_fill_(dead, 0.0)
        if grad_clip > 0:
            clip_rows_(self.grad_blocks, grad_clip)
        rates = self.lr * mask * rate
        apply_update(self.optimizer, self.blocks, self.grad_blocks, self.state, rates, self.wd,
                     step)
        return values

    @torch.no_grad()
    def write_back(self, modules: Sequence[nn.Module]) -> None:
        for k, module in enumerate(modules):
            named = dict(module.named_parameters())
            for layer, (w, b) in zip(self.layers, self.params):
                named[layer.weight].copy_(w[k])
                named[layer.bias].copy_(b[k])
