"""The shunt's configuration and its first pure steps: validate, decide, prepare.

Every path (sync, async, batch, streaming, both adapters) runs these same steps; reading the
answer and concluding are in :mod:`~datashunt.engine.conclude`, and only
:mod:`datashunt.engine.shunt` adds I/O (the gate pass off the event loop, LLM calls, retries).
Audits and the drift alarm live in :mod:`~datashunt.engine.watch`, receipts in ``receipts``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, GateError, InputError
from ..gates import Gate
from ..gates.base import FeatureGate
from ..images import as_input
from ..inputs import Checked, validate_text
from ..llm.retry import RetryPolicy
from ..parsing import AnswerParser
from ..policy import ShuntPolicy
from ..prompts import PromptMode, build_request, hard_candidates
from ..store import open_store
from ..transfer import TransferResult
from ..types import Decision, LLMRequest
from .drift import DriftAlarm
from .options import OnError, ShuntOptions
from .receipts import price_table
from .shadow import SHADOW_VERSION, ShadowGate, is_shadow, is_shadow_policy, shadow_policy
from .watch import Watch

__all__ = ["OnError", "Serving", "ShuntSteps"]

log = logging.getLogger("datashunt")

#: how many replaced policies a shunt remembers for inputs decided before a swap
_RECENT_POLICIES = 8


@dataclass(frozen=True)
class Serving:
    """The gate and policy a shunt decides with, replaced together (:meth:`ShuntSteps.swap`).

    Attributes:
        gate: the small model.
        policy: its policy.
        policy_version: ``policy.version`` (a content hash), computed once.
        version: the gate's registry version (:mod:`datashunt.registry`), if it came from one.
    """

    gate: Gate
    policy: ShuntPolicy
    policy_version: str
    version: str | None = None


class ShuntSteps:
    """Validated configuration plus the pure steps of a shunt (see :class:`Shunt`).

    Args:
        gate: the small model.
        policy: its policy (default: δ = 0.9 over the gate's labels).
        options: every other setting, one :class:`ShuntOptions` value.
    """

    def __init__(
        self, gate: Gate, policy: ShuntPolicy | None = None, options: ShuntOptions | None = None
    ) -> None:
        opts = options if options is not None else ShuntOptions()
        policy = policy or ShuntPolicy(labels=tuple(gate.labels))
        _check_labels(gate, policy)
        self._serving = Serving(gate, policy, policy.version)
        self._recent: dict[str, ShuntPolicy] = {}
        self._swap_lock = threading.Lock()
        self.options = opts
        self.store = open_store(opts.store)
        self.retry = opts.retry if opts.retry is not None else RetryPolicy()
        self.parser = AnswerParser(policy.labels, opts.synonyms)
        self.prices = price_table(opts.prices)
        self._drift_from_policy = opts.drift is True
        # a shadowing shunt has no calibration yet: its monitor comes with its first gate
        drift = None if is_shadow(gate) and opts.drift is True else opts.drift
        self.watch = Watch(
            policy, audit_rate=opts.audit_rate, audit_seed=opts.audit_seed, drift=drift
        )
        #: registry versions this shunt went back to shadowing from (never served again)
        self.refused: set[str] = set()
        self._decided_since_swap = 0  # the clock of ``explore``
        self.watch.listeners.append(self._on_alarm)

    # the options read on every request, as attributes
    @property
    def prompt_mode(self) -> PromptMode:
        """See :class:`ShuntOptions`."""
        return self.options.prompt_mode

    @property
    def max_chars(self) -> int:
        """See :class:`ShuntOptions`."""
        return self.options.max_chars

    @property
    def max_concurrency(self) -> int:
        """See :class:`ShuntOptions`."""
        return self.options.max_concurrency

    @property
    def model_name(self) -> str | None:
        """See :class:`ShuntOptions`."""
        return self.options.model_name

    # ---- what it serves with: one gate and policy, swapped as one ----------------------------

    @property
    def serving(self) -> Serving:
        """The gate and policy the next decision uses."""
        return self._serving

    @property
    def gate(self) -> Gate:
        """The gate the next decision uses."""
        return self._serving.gate

    @property
    def policy(self) -> ShuntPolicy:
        """The policy the next decision uses."""
        return self._serving.policy

    @property
    def policy_version(self) -> str:
        """The content hash of :attr:`policy`."""
        return self._serving.policy_version

    def swap(
        self, gate: Gate, policy: ShuntPolicy | None = None, *, version: str | None = None
    ) -> Serving:
        """Serve with another gate (and its policy) from the next decision on; returns the old.

        The pair is replaced in one assignment: a decision reads it once, and the later steps
        of an input (its prompt, its receipt) use the policy that decided it, so no input sees
        half of each. Calls in flight finish with the gate that decided them. The labels must
        stay the same (answers are read against them).

        Raises:
            ConfigError: the gate's or policy's labels differ from the ones served now.
        """
        policy = policy or ShuntPolicy(labels=tuple(gate.labels))
        _check_labels(gate, policy)
        if tuple(policy.labels) != tuple(self.policy.labels):
            raise ConfigError(
                f"the new gate's labels {list(policy.labels)} differ from the served ones "
                f"{list(self.policy.labels)}: a swap keeps the label set; build a new shunt"
            )
        new = Serving(gate, policy, policy.version, version)
        with self._swap_lock:
            old = self._serving
            self._recent[old.policy_version] = old.policy
            while len(self._recent) > _RECENT_POLICIES:
                self._recent.pop(next(iter(self._recent)))
            self._serving = new
            self._decided_since_swap = 0
            if self._drift_from_policy:  # the alarm compares with the new calibration
                self.watch.rebase(policy)
        log.info("datashunt: now serving gate %s (policy %s)", version or "?", new.policy_version)
        return old

    @property
    def shadowing(self) -> bool:
        """Whether the shunt has no gate yet (or went back to none): every input to the LLM."""
        return is_shadow(self._serving.gate)

    def back_to_shadow(self, why: str) -> Serving:
        """Stop answering with the gate: every input goes to the LLM again, and the version
        served now is refused until the registry promotes another. Returns the old serving."""
        old = self._serving
        if old.version is not None:
            self.refused.add(old.version)
        labels = old.policy.labels
        self.swap(ShadowGate(labels), shadow_policy(labels), version=SHADOW_VERSION)
        log.warning(
            "datashunt: %s: back to shadowing (every input to the LLM) from gate %s until the "
            "registry promotes another version",
            why,
            old.version or "?",
        )
        return old

    def audit_draw(self, decisions: Sequence[Decision], *, decided: int | None = None) -> list[int]:
        """Indices of the gate-answered ``decisions`` also put to the LLM: at ``audit_rate``,
        or at ``explore``'s decaying rate since the gate took over (its clock counts every
        input decided: ``decided``, default ``len(decisions)``)."""
        explore, t = self.options.explore, self._decided_since_swap
        self._decided_since_swap += len(decisions) if decided is None else decided
        if explore is None or self.shadowing:
            return self.watch.audited(decisions)
        return self.watch.audited(decisions, rate=explore.rate(t))

    def _on_alarm(self, alarm: DriftAlarm) -> None:
        if alarm.test == "audit" and self.options.on_drift == "shadow" and not self.shadowing:
            self.back_to_shadow(f"the drift alarm's audit test fired ({alarm.describe()})")

    def policy_of(self, decision: Decision) -> ShuntPolicy:
        """The policy that made ``decision`` (the served one when it is unknown)."""
        serving = self._serving
        if decision.policy_version in (None, serving.policy_version):
            return serving.policy
        return self._recent.get(decision.policy_version or "", serving.policy)

    # ---- decide and prepare ---------------------------------------------------------------

    @property
    def takes_images(self) -> bool:
        """The gate classifies images (``modality = "image"``, e.g. ``HFImageGate``)."""
        return getattr(self.gate, "modality", "text") == "image"

    def as_input(self, value: object, index: int | None = None) -> object:
        """For an image gate, an image given as bytes, a PIL image or a ``Path`` as its data
        URL (the form images travel in); anything else, and every input of a text gate, as is
        (for the text checks to judge: bytes are no text)."""
        return as_input(value, index=index) if self.takes_images else value

    def decide(self, texts: Sequence[str]) -> list[Decision]:
        """One gate pass over ``texts``: a :class:`Decision` per input.

        Raises:
            InputError: for a bare string, or any empty, non-string or over-long input.
            GateError: if the gate's output has the wrong shape.
        """
        if isinstance(texts, str):
            raise InputError("decide() takes a list of texts, got a single string: pass [text]")
        batch = [
            validate_text(self.as_input(t, i), index=i, max_chars=self.max_chars)
            for i, t in enumerate(texts)
        ]
        return self.gate_pass(batch)

    def gate_pass(self, batch: Sequence[str]) -> list[Decision]:
        """The decisions for texts already validated (:meth:`Shunt.plan`): the one gate pass
        every path makes, fed to the drift alarm.

        Raises:
            GateError: if the gate's output has the wrong shape.
        """
        if not batch:
            return []
        serving = self._serving  # read once: a swap meanwhile applies to the next batch
        feats = None
        if self.watch.wants_features and isinstance(serving.gate, FeatureGate):
            # the representation test: the same forward pass, never a second one
            raw, feats = serving.gate.predict_proba_and_features(Checked(batch))
        else:
            raw = serving.gate.predict_proba(Checked(batch))
        probs = np.asarray(raw, dtype=np.float64)
        k = len(serving.policy.labels)
        if probs.shape != (len(batch), k):
            raise GateError(f"gate returned shape {probs.shape}, expected {(len(batch), k)}")
        if feats is not None and np.shape(feats)[0] != len(batch):
            raise GateError(f"gate returned features of shape {np.shape(feats)} for {len(batch)}")
        decisions = [self.decision_from_probs(row, serving) for row in probs]
        self.watch.observe(decisions)
        if self.watch.wants_features:
            self.watch.observe_features(feats)
        return decisions

    def decision_from_probs(self, row: np.ndarray, serving: Serving | None = None) -> Decision:
        """The decision for one probability vector (non-finite output goes to the LLM)."""
        serving = serving or self._serving
        policy, version = serving.policy, serving.policy_version
        labels = policy.labels
        if not np.all(np.isfinite(row)) or row.sum() <= 0:
            log.warning("gate returned non-finite probabilities %s; routing to the LLM", row)
            uniform = {lab: 1.0 / len(labels) for lab in labels}
            why = "gate output not finite: asking the LLM"
            return Decision("llm", labels[0], 0.0, uniform, labels, why, version)
        probs = {lab: float(p) for lab, p in zip(labels, row, strict=True)}
        if is_shadow(serving.gate):  # every label on offer, as the user's chain asks
            why = "shadowing: no gate yet, the LLM answers"
            return Decision("llm", labels[0], float(row.max()), probs, labels, why, version)
        top = int(np.argmax(row))
        conf = float(row[top])
        delta = policy.threshold
        if policy.routes_small(conf):
            reason = f"confidence {conf:.3f} >= threshold {delta:.3f}"
            return Decision("small", labels[top], conf, probs, (labels[top],), reason, version)
        cands = hard_candidates(probs, policy)
        if len(cands) == 1 and policy.conformal and self.prompt_mode in ("hard", "both"):
            reason = f"the conformal label set holds {cands[0]} alone: the gate answers"
            return Decision("small", cands[0], conf, probs, cands, reason, version)
        reason = f"confidence {conf:.3f} < threshold {delta:.3f}"
        return Decision("llm", labels[top], conf, probs, cands, reason, version)

    def prepare(self, texts: Sequence[str], decisions: Sequence[Decision]) -> list[LLMRequest]:
        """LLM requests for the LLM-routed inputs (Prompt Transferring applied in one pass)."""
        todo = [(t, d) for t, d in zip(texts, decisions, strict=True) if d.route == "llm"]
        transferred: list[TransferResult | None] = [None] * len(todo)
        opts = self.options
        if opts.transfer is not None and todo:
            transferred = list(opts.transfer.apply([t for t, _ in todo]))
        noun, template = opts.noun, opts.template
        out = []
        for (text, d), tr in zip(todo, transferred, strict=True):
            policy = self.policy_of(d)
            # shadowing: the request the user's chain would send (no hint, no pruning)
            mode = "none" if is_shadow_policy(policy) else opts.prompt_mode
            out.append(
                build_request(template, policy, d, mode, text, tr.text if tr else text, noun)
            )
        return out


def _check_labels(gate: Gate, policy: ShuntPolicy) -> None:
    if tuple(policy.labels) != tuple(gate.labels):
        raise ConfigError(
            f"policy labels {list(policy.labels)} differ from the gate's "
            f"{list(gate.labels)}: calibrate the policy for this gate"
        )
    # a policy pins the weights it was fitted on: labels swapped in both JSON files, or a
    # retrained gate under an old policy, would otherwise pass the label check above
    digest = getattr(gate, "weights_digest", None)
    if policy.gate_digest is not None and digest is not None and digest != policy.gate_digest:
        raise ConfigError(
            f"the policy was calibrated for gate weights {policy.gate_digest}, but this gate's "
            f"are {digest} (retrained, or its labels or policy edited): calibrate the policy "
            "for this gate (`datashunt calibrate --gate DIR ...`)"
        )
