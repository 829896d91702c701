"""What every shield node does around its decision: pair each step's observation with the agent's proposal, decide
on stale input past ``proposal_deadline_s``, forward proposals unchanged when bypassed, and explain interventions
in ``<run_dir>/shield_reports.jsonl`` (written as decided) and on ``shield/report`` (held, sent every
``report_period_s``). Subclasses set up their core in ``on_configure``, call ``start_io`` and implement
``decide``; ``inputs_complete`` may ask for more than the proposal (the GridLife shield's estimate).
"""

from __future__ import annotations

import time
from typing import IO, Any

import msgspec
import numpy as np

from nodes.shield.core import ShieldConfig
from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import MODE_PASS, Observation, ProposedAction, SafeAction, ShieldReport
from protocols.topics import ACTION_PROPOSED, ACTION_SAFE, ENV_OBS, SHIELD_REPORT

REPORT_LINES = msgspec.json.Encoder()  # JSON lines at several times the speed of json.dumps
MAX_HELD_REPORTS = 1024  # intervention reports held for shield/report before they go out early


class PairedShieldNode(Node):
    # the bypass switch (see docs/shield.md): `bypassed` reads it, these two set it
    bypass = Param(False, "bypass this phase: forward proposals unchanged (the experiment protocol sets it)")
    enabled = Param(True, "false: bypass the whole run, whatever a phase sets (the no-shield contrast run)")
    proposal_deadline_s = Param(0.5, "how long to wait for the proposal of a step", gt=0)
    input_deadline_s = Param(ShieldConfig.input_deadline_s, "how long after the observation's arrival a step may "
                             "be decided before it counts as stale (every arena gets the fallback)", gt=0)
    write_reports = Param(True, "append intervention reports to <run_dir>/shield_reports.jsonl")
    report_period_s = Param(0.05, "how long intervention reports are held to go out as one message", gt=0,
                            read_only=True)

    def start_io(self) -> None:
        self.obs: Observation | None = None
        self.obs_wall = 0.0
        self.proposal: ProposedAction | None = None
        self.decided_step = -1
        self.safe_pub = self.publisher(ACTION_SAFE, SafeAction, reliable=True)
        self.report_pub = self.publisher(SHIELD_REPORT, ShieldReport)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos=LOCKSTEP)
        self.subscribe(ACTION_PROPOSED, ProposedAction, self.on_proposal, qos=LOCKSTEP)
        self.timer(min(0.02, self.proposal_deadline_s / 4), self.check_deadline)
        self.held_reports: list[tuple[int, dict[str, Any]]] = []  # (step, report) not yet on shield/report
        self.timer(self.report_period_s, self.publish_reports)
        self.report_file: IO[bytes] | None = None
        if self.write_reports and self.run_dir is not None:
            self.report_file = open(self.run_dir / "shield_reports.jsonl", "ab")

    def on_shutdown(self) -> None:
        self.publish_reports()
        if self.report_file is not None:
            self.report_file.close()

    def on_obs(self, msg: Observation) -> None:
        self.obs = msg
        self.obs_wall = time.monotonic()
        self.decide_when_ready()

    def on_proposal(self, msg: ProposedAction) -> None:
        self.proposal = msg
        self.decide_when_ready()

    def inputs_complete(self, obs: Observation) -> bool:
        """Everything besides the proposal that the step needs is in."""
        return True

    def decide_when_ready(self) -> None:
        obs = self.obs
        if obs is None or self.proposal is None or self.proposal.step != obs.step or not self.inputs_complete(obs):
            return
        self.decide()

    def check_deadline(self) -> None:
        obs = self.obs
        if obs is not None and self.decided_step < obs.step and \
                time.monotonic() - self.obs_wall > self.proposal_deadline_s:
            self.count("proposal_deadline_misses")
            self.decide(stale=True)

    def decide(self, stale: bool = False) -> None:
        raise NotImplementedError

    def begin_step(self, stale: bool, width: int) -> tuple[Observation, np.ndarray, bool, int] | None:
        """The step ``decide`` is to decide: its observation, the proposals (zeros, and stale, when they are missing,
        late or not ``(arenas, width)``, counted in ``rejected.proposal_shape``), whether it is stale and the
        policy version. None when the step is decided already or, bypassed, was forwarded unchanged."""
        obs = self.obs
        assert obs is not None
        if self.decided_step >= obs.step:
            return None
        self.decided_step = obs.step
        n = obs.obs.shape[0]
        proposal = self.proposal
        fresh = proposal is not None and proposal.step == obs.step and not stale
        proposed = proposal.actions if fresh and proposal is not None else np.zeros((n, width), np.float32)
        if proposed.shape != (n, width):
            self.count("rejected.proposal_shape")
            proposed, stale = np.zeros((n, width), np.float32), True
        version = proposal.policy_version if proposal is not None else 0
        if self.bypassed and not stale:
            self.forward_unchanged(obs.step, proposed, version)
            return None
        return obs, proposed, stale, version

    @property
    def bypassed(self) -> bool:
        """The bypass switch: on for this phase (`bypass`) or for the whole run (`enabled` false)."""
        return self.bypass or not self.enabled

    def forward_unchanged(self, step: int, proposed: np.ndarray, version: int) -> None:
        """Bypass: the proposals go out unchanged (mode pass), counted in ``bypassed_steps``."""
        n = proposed.shape[0]
        self.count("bypassed_steps", n)
        self.safe_pub.publish(SafeAction(
            step=step, actions=proposed, mode=np.full(n, MODE_PASS, np.uint8), constraint=[""] * n,
            margin_before=np.full(n, np.nan, np.float32), margin_after=np.full(n, np.nan, np.float32),
            policy_version=version), step=step)

    def report(self, step: int, reports: list[dict[str, Any]]) -> None:
        if self.report_file is not None:
            # Whole lines, flushed per step: a kill -9 loses no report of a step already decided.
            self.report_file.write(REPORT_LINES.encode_lines(reports))
            self.report_file.flush()
        self.held_reports += ((step, r) for r in reports)  # on shield/report after the file has them
        if len(self.held_reports) >= MAX_HELD_REPORTS:
            self.publish_reports()

    def publish_reports(self) -> None:
        """Send the held intervention reports as one message."""
        held, self.held_reports = self.held_reports, []
        if held:
            self.report_pub.publish(ShieldReport(
                step=[s for s, _ in held], arena=[r["arena"] for _, r in held], mode=[r["mode"] for _, r in held],
                cause=[r["cause"] or r["constraint"] or "" for _, r in held],
                margin_before=[_num(r["margin_before"]) for _, r in held],
                margin_after=[_num(r["margin_after"]) for _, r in held],
                proposed=[[_num(v) for v in r["proposed"]] for _, r in held],
                safe=[r["safe"] for _, r in held]))


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)
