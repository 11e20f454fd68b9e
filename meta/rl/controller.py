"""The RL controller of *Neural Architecture Search with Reinforcement Learning* (Zoph & Le 2017)
as a proposer: ``strategy = "rl"``.

An LSTM emits a genome's decisions (a :class:`~evograph.genome.codec.Codec`) one at a time: at
each step a softmax over that decision's choices, and the embedding of the choice made is the next
step's input. Skip decisions are scored at *anchor points* by attention between the current state
and the state at the end of the earlier layer, ``v·tanh(W_prev a_j + W_curr h_i)`` (Zoph & Le
§3.3). The policy is trained with REINFORCE (Williams 1992): after each ``tell``, one Adam step on
``-mean((R - b) · log p(decisions)) - entropy_weight · entropy``, with ``b`` an exponential moving
average of past rewards (initialised to the first batch's mean). ``tanh_constant`` bounds logits
as in ENAS (Pham et al. 2018) so the policy cannot collapse to a single sample early.

Samples batch over parallel workers: ``ask(n)`` draws ``n`` sequences in one pass and ``tell``
updates on every finite reward it receives. Non-finite fitness is never a reward: such samples
are skipped, or given ``failed_reward`` when that is a number. Everything is seeded from the run
seed — the weights from a private torch generator, the sampling from the strategy's numpy
``Generator`` — and ``state_dict`` is JSON (weights and Adam state as base64 safetensors, the
baseline, the RNG), so a resumed run continues exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn
from torch.nn import functional as F

from ...compile.determinism import seeded_cpu_rng
from ...errors import ConfigError
from ...genome.codec import BitsCodec, Codec, Decision, codec_for
from ...genome.core import Genome
from ...genome.space import SearchSpace
from ...operators.base import Edit
from ...selection.base import Variation

HYPER = {"hidden_size": 32, "lstm_layers": 1, "learning_rate": 0.01, "baseline_decay": 0.9,
         "entropy_weight": 0.001, "temperature": 1.0, "tanh_constant": 2.5, "grad_clip": 5.0}


class ControllerNet(nn.Module):
    """The policy: stacked LSTM cells, an embedding and a softmax head for each decision (rows
    of one shared table and one shared linear layer), and the anchor-point attention for skip
    decisions. Shapes: B sequences, H hidden units."""

    def __init__(self, decisions: Sequence[Decision], hidden_size: int = 32,
                 lstm_layers: int = 1, temperature: float = 1.0, tanh_constant: float = 2.5):
        super().__init__()
        self.decisions = tuple(decisions)
        self.temperature, self.tanh_constant = float(temperature), float(tanh_constant)
        h, sizes = int(hidden_size), [d.size for d in self.decisions]
        # one table and one head for all decisions (few tensors: fast Adam and state saves);
        # decision t owns rows offsets[t] : offsets[t] + sizes[t]
        self.offsets = [sum(sizes[:t]) for t in range(len(sizes))]
        self.go = nn.Parameter(torch.empty(1, h))            # the first step's input
        self.cells = nn.ModuleList(nn.LSTMCell(h, h) for _ in range(int(lstm_layers)))
        self.embed = nn.Embedding(sum(sizes), h)
        self.head = nn.Linear(h, sum(sizes))
        if any(d.skip_from is not None for d in self.decisions):
            self.input_anchor = nn.Parameter(torch.empty(1, h))
            self.w_prev, self.w_curr = nn.Linear(h, h, bias=False), nn.Linear(h, h, bias=False)
            self.v = nn.Linear(h, 1, bias=False)
        for p in self.parameters():  # Zoph & Le: uniform initialisation in a small interval
            nn.init.uniform_(p, -0.1, 0.1)

    def run(self, batch: int, rng: np.random.Generator | None = None,
            choices: torch.Tensor | None = None):
        """Sample ``batch`` sequences with ``rng`` (or score the given ``choices`` (B, T)).
        Returns choices (B, T) long, log-probabilities (B, T) and entropies (B, T)."""
        width = self.go.shape[1]
        state = [(torch.zeros(batch, width), torch.zeros(batch, width)) for _ in self.cells]
        x, anchors = self.go.expand(batch, width), {}
        picks, logps, ents = [], [], []
        for t, d in enumerate(self.decisions):
            for i, cell in enumerate(self.cells):
                state[i] = cell(x, state[i])
                x = state[i][0]                               # (B, H)
            logp = F.log_softmax(self._logits(t, d, x, anchors), dim=1)  # (B, size)
            pick = choices[:, t] if choices is not None else _sample(logp, rng)
            picks.append(pick)
            logps.append(logp.gather(1, pick[:, None]).squeeze(1))
            ents.append(-(logp.exp() * logp).sum(1))
            if d.layer is not None:
                anchors[d.layer] = x                          # the layer's last state wins
            x = self.embed(pick + self.offsets[t])
        return torch.stack(picks, 1), torch.stack(logps, 1), torch.stack(ents, 1)

    def _logits(self, t: int, d: Decision, top: torch.Tensor, anchors: dict) -> torch.Tensor:
        if d.skip_from is None:
            rows = slice(self.offsets[t], self.offsets[t] + d.size)
            raw = F.linear(top, self.head.weight[rows], self.head.bias[rows])
        else:  # P(skip) = sigmoid(v·tanh(W_prev a_j + W_curr h_i)) as a 2-way softmax
            anchor = anchors.get(d.skip_from, self.input_anchor.expand_as(top))
            score = self.v(torch.tanh(self.w_prev(anchor) + self.w_curr(top)))   # (B, 1)
            raw = torch.cat([torch.zeros_like(score), score], dim=1)
        raw = raw / self.temperature
        return self.tanh_constant * torch.tanh(raw) if self.tanh_constant > 0 else raw


def _sample(logp: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Inverse-CDF sampling from each row of ``exp(logp)`` with one uniform draw per row."""
    cdf = np.cumsum(logp.detach().exp().double().cpu().numpy(), axis=1)
    u = rng.random(len(cdf))
    return torch.as_tensor(np.minimum((cdf <= u[:, None]).sum(1), cdf.shape[1] - 1),
                           dtype=torch.long)


class Controller:
    """The policy and its REINFORCE trainer, without the proposer protocol (tests, notebooks).
    ``seed`` fixes the initial weights; sampling draws from the ``rng`` passed in."""

    def __init__(self, decisions: Sequence[Decision], seed: int = 0, **hyper: Any):
        hp = {**HYPER, **hyper}
        with seeded_cpu_rng(seed):
            self.net = ControllerNet(decisions, hp["hidden_size"], hp["lstm_layers"],
                                     hp["temperature"], hp["tanh_constant"])
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hp["learning_rate"],
                                          foreach=True)
        self.decay, self.entropy_weight = hp["baseline_decay"], hp["entropy_weight"]
        self.grad_clip = hp["grad_clip"]
        self.baseline: float | None = None
        self.updates = 0

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
        with torch.no_grad():
            choices, _, _ = self.net.run(n, rng=rng)
        return [tuple(row) for row in choices.tolist()]

    def log_probs(self, choices: Sequence[Sequence[int]]) -> torch.Tensor:
        """Per-step log-probabilities (B, T) of given decision sequences."""
        with torch.no_grad():
            return self.net.run(len(choices), choices=torch.as_tensor(choices))[1]

    def update(self, choices: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict:
        """One REINFORCE step on a batch; then the baseline moves towards each reward."""
        r = torch.tensor(rewards, dtype=torch.float32)                       # (B,)
        base = float(r.mean()) if self.baseline is None else self.baseline
        _, logp, ent = self.net.run(len(choices), choices=torch.as_tensor(choices))
        loss = -((r - base) * logp.sum(1)).mean() - self.entropy_weight * ent.sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        for value in rewards:
            self.baseline = value if self.baseline is None else \
                self.decay * self.baseline + (1 - self.decay) * value
        self.updates += 1
        return {"loss": float(loss.detach()), "mean_reward": float(r.mean()),
                "baseline": self.baseline, "entropy": float(ent.detach().sum(1).mean())}

    def to_base64(self) -> str:
        """Weights and Adam state as base64 safetensors bytes (JSON-safe, no pickle)."""
        tensors = {f"net.{k}": v.detach().clone().contiguous()
                   for k, v in self.net.state_dict().items()}
        for i, p in enumerate(self.net.parameters()):
            for k, v in self.optimizer.state.get(p, {}).items():
                tensors[f"adam.{i}.{k}"] = v.detach().clone().contiguous()
        return base64.b64encode(save_tensors(tensors)).decode("ascii")

    def load_base64(self, text: str) -> None:
        tensors = load_tensors(base64.b64decode(text))
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})


@dataclass
class CodecVariation(Variation):
    """A :class:`Variation` over a codec's decisions; the RL strategy takes its codec."""

    codec: Codec | None = None


def codec_variation(codec: Codec, attempts: int = 20) -> CodecVariation:
    """Random decisions for ``initial``/``sample``; a mutation changes one decision (retried
    until the decoded genome differs), so evolution and random search run on exactly the space
    the controller samples."""
    def sample(rng: np.random.Generator) -> Any:
        return codec.decode(codec.random(rng))

    def mutate(genome: Any, rng: np.random.Generator) -> tuple[Any, Edit]:
        idx = list(codec.encode(genome))
        for _ in range(attempts):
            trial, t = list(idx), int(rng.integers(len(idx)))
            size = codec.decisions[t].size
            trial[t] = (trial[t] + 1 + int(rng.integers(size - 1))) % size if size > 1 else 0
            child = codec.decode(trial)
            if child != genome:
                break
        return child, Edit("decision", {"decision": codec.decisions[t].name, "to": trial[t]},
                           inherit=False)

    return CodecVariation(initial=sample, sample=sample, mutate=mutate, encode=codec.serialize,
                          decode=codec.deserialize, codec=codec,
                          key=lambda g: g.hash if isinstance(g, Genome) else g)


def resolve_codec(variation: Variation, spec: dict[str, Any]) -> Codec:
    """The variation's own codec, else the registered codec of its search space (``spec``:
    an optional ``name`` plus the codec's parameters), else — for bit-string genomes — a
    :class:`~evograph.genome.codec.BitsCodec`."""
    codec = getattr(variation, "codec", None)
    if isinstance(codec, Codec):
        return codec
    found = {k: getattr(variation, k, None) for k in ("space", "input_shape", "num_classes")}
    fn = variation.initial  # Variation.for_space closes over (space, input_shape, num_classes)
    cells = dict(zip(getattr(fn, "__code__", None) and fn.__code__.co_freevars or (),
                     (c.cell_contents for c in getattr(fn, "__closure__", None) or ())))
    found = {k: v if v is not None else cells.get(k) for k, v in found.items()}
    if not isinstance(found["space"], SearchSpace) or found["input_shape"] is None:
        sample = variation.sample(np.random.default_rng(0))
        if isinstance(sample, str) and sample and not set(sample) - {"0", "1"}:
            return BitsCodec(len(sample))  # the toy bit strings of Real et al. 2019
        raise ConfigError("strategy 'rl': no search space to take a codec from (build the "
                          "Variation with Variation.for_space or meta.controller.codec_variation)")
    params = dict(spec)
    return codec_for(found["space"], found["input_shape"], found["num_classes"],
                     params.pop("name", None), **params)
