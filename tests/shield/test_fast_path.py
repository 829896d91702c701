"""The fast path decides exactly what the general path decides: same arrays, names, reports and books."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.core import ShieldConfig, ShieldCore, ShieldDecision
from nodes.shield.fast_path import FastDecision
from protocols import MODE_FALLBACK, MODE_PASS
from tests.shield.conftest import on_hazard_edge, safe_states

REPO = Path(__file__).resolve().parents[2]


def assert_same(a: ShieldDecision, b: ShieldDecision) -> None:
    for name in ("actions", "mode", "margin_before", "margin_after", "proposed"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN equals NaN here, bit-for-bit otherwise
    assert (a.cause, a.constraint, a.reports) == (b.cause, b.constraint, b.reports)


def pair(env_cfg: GridLifeConfig, **cfg: float) -> tuple[ShieldCore, ShieldCore]:
    fast = ShieldCore(env_cfg, ShieldConfig(**cfg))
    general = ShieldCore(env_cfg, ShieldConfig(fast_path=False, **cfg))
    assert fast.fast_path is not None and general.fast_path is None
    return fast, general


def outcomes(core: ShieldCore) -> Counter[str]:
    """Counts what the core's fast path answers from now on: passed, filtered (a decision with a filtered arena),
    fallback (a decision with an infeasible arena) or general (None: not its step). Nothing else is an answer."""
    seen: Counter[str] = Counter()
    decide = core.fast_path.decide  # type: ignore[union-attr]

    def counting(*args: np.ndarray) -> FastDecision | None:
        out = decide(*args)
        if out is None:
            seen["general"] += 1
        else:
            assert isinstance(out, FastDecision), type(out)
            seen["fallback" if out.infeasible.size else "filtered" if out.mode.any() or out.backup.any() else
                 "passed"] += 1
        return out

    core.fast_path.decide = counting  # type: ignore[method-assign, union-attr]
    return seen


@pytest.mark.parametrize("arenas", [1, 8])
def test_closed_loop_decisions_match_the_general_path(env_cfg: GridLifeConfig, arenas: int) -> None:
    """A GridLife run driven by noisy proposals that often push into barriers: every step's decision, and the
    books after it (deadlock counters included), match; both paths are exercised."""
    fast, general = pair(env_cfg)
    seen = outcomes(fast)
    env = GridLifeBatch(env_cfg, arenas)
    env.reset(3)
    rng = np.random.default_rng(3)
    passed_steps = 0
    for step in range(600):
        # mostly gentle actions (they pass), some hard pushes and some that stand still while pushing
        proposals = rng.normal(0.0, 0.5 if step % 3 else 1.5, size=(arenas, 2))
        positions = env.positions.copy()
        internal = env.internal.copy()
        positions.setflags(write=False)  # as they arrive from the wire
        internal.setflags(write=False)
        d_fast = fast.step(step, positions, internal, proposals, 0.0)
        d_general = general.step(step, positions, internal, proposals, 0.0)
        assert_same(d_fast, d_general)
        passed_steps += bool((d_fast.mode == MODE_PASS).all())
        env.step(d_fast.actions)
    assert fast.counts == general.counts
    np.testing.assert_array_equal(fast._stuck, general._stuck)
    assert 0 < passed_steps < 600
    assert seen["passed"] > 0 and seen["filtered"] > 0 and seen["fallback"] > 0, seen


def test_states_across_the_viable_set_match(barriers: GridLifeBarriers, env_cfg: GridLifeConfig) -> None:
    """Random viable states near stations, hot zones and hazards, one arena at a time, with proposals that pass,
    break a row, or sit on the box's edge."""
    fast, general = pair(env_cfg)
    pos, h = safe_states(barriers, 400, seed=11)
    rng = np.random.default_rng(11)
    proposals = np.clip(rng.normal(0.0, 0.8, size=(400, 2)), -1.2, 1.2)
    passed = 0
    for i in range(400):
        d_fast = fast.step(i, pos[i : i + 1], h[i : i + 1], proposals[i : i + 1], 0.0)
        d_general = general.step(i, pos[i : i + 1], h[i : i + 1], proposals[i : i + 1], 0.0)
        assert_same(d_fast, d_general)
        passed += int(d_fast.mode[0] == MODE_PASS)
    assert fast.counts == general.counts
    assert 0 < passed < 400


def test_inputs_it_does_not_judge_go_the_general_way(env_cfg: GridLifeConfig) -> None:
    """A NaN or absurd state, a stale input or an estimate's uncertainty are degraded-mode cases: the fast path
    leaves them to the general path (a bad state it declines, the others it is not asked), and the decision names
    the cause."""
    fast, general = pair(env_cfg)
    pos = np.array([[5.0, 9.0], [np.nan, 1.0]])
    h = np.array([[0.9, 0.2, 0.9], [0.9, 0.2, 0.9]])
    proposals = np.zeros((2, 2))
    absurd = (np.array([[5.0, 9.0], [1e200, 1.0]]), np.array([[0.9, 0.2, 0.9], [0.9, 0.2, -1e308]]), proposals, 0.0)
    for args in ((pos, h, proposals, 0.0), (pos[:1], h[:1], proposals[:1], 5.0), absurd):
        assert_same(fast.step(0, *args), general.step(0, *args))
    std = np.full((1, 3), 0.01)
    d_fast = fast.step(1, pos[:1], h[:1], proposals[:1], 0.0, uncertainty=std)
    assert_same(d_fast, general.step(1, pos[:1], h[:1], proposals[:1], 0.0, uncertainty=std))
    assert fast.counts == general.counts and fast.counts["degraded.bad_input"] == 2


def test_a_passed_step_ends_a_stuck_streak(env_cfg: GridLifeConfig) -> None:
    """Pushing into a hazard is filtered to a standstill (the deadlock count grows); a step whose proposal passes
    resets it, on both paths, so four pushes, a pass, four pushes never reach `deadlock_steps` = 5."""
    cfg = {"deadlock_steps": 5, "deadlock_hold_steps": 3}
    fast = ShieldCore(env_cfg, ShieldConfig(**cfg))
    general = ShieldCore(env_cfg, ShieldConfig(fast_path=False, **cfg))
    pos, push = on_hazard_edge(fast)
    comfort = np.array([[1.0, 0.0, 1.0]])
    for step, proposal in enumerate([push] * 4 + [-0.1 * push] + [push] * 4):
        d_fast = fast.step(step, pos[None], comfort, proposal[None], 0.0)
        assert_same(d_fast, general.step(step, pos[None], comfort, proposal[None], 0.0))
        assert d_fast.mode[0] == (0 if step == 4 else 1)
    assert fast.counts == general.counts and fast.counts["deadlocks_detected"] == 0
    np.testing.assert_array_equal(fast._stuck, [4])


def test_a_step_that_can_complete_a_deadlock_is_left_to_the_general_path(env_cfg: GridLifeConfig) -> None:
    """Pushing into a hazard until the streak reaches `deadlock_steps`: the fast path declines the step whose push
    could complete the streak, the general path detects the deadlock and holds the fallback, and both decide the
    same all along."""
    fast, general = pair(env_cfg, deadlock_steps=4, deadlock_hold_steps=2)
    seen = outcomes(fast)
    pos, push = on_hazard_edge(fast)
    comfort = np.array([[1.0, 0.0, 1.0]])
    for step in range(9):
        d_fast = fast.step(step, pos[None], comfort, push[None], 0.0)
        assert_same(d_fast, general.step(step, pos[None], comfort, push[None], 0.0))
    assert fast.counts == general.counts and fast.counts["deadlocks_detected"] == 2
    np.testing.assert_array_equal(fast._stuck, general._stuck)
    np.testing.assert_array_equal(fast._hold, general._hold)
    # steps 0-2 and 5-7 filtered to a standstill; 3 and 8 can reach the streak (declined); 4 is held (not asked)
    assert seen == Counter({"filtered": 6, "general": 2}), seen


def test_an_infeasible_arena_gets_the_fallback_on_the_fast_path(env_cfg: GridLifeConfig) -> None:
    """Energy so low that no action keeps the energy row: the QP is infeasible, and the fast path runs the declared
    fallback (cause `infeasible`) for that arena, as the general path does, while the other one is passed as usual;
    the fallback's memory of the station it seeks stays in step over the following steps."""
    fast, general = pair(env_cfg)
    seen = outcomes(fast)
    pos = np.array([[5.0, 9.0], [5.0, 9.0]])
    h = np.array([[1e-4, 0.2, 0.9], [0.9, 0.2, 0.9]])
    proposals = np.array([[1.0, 0.0], [0.1, 0.0]])
    for step in range(3):
        d_fast = fast.step(step, pos, h, proposals, 0.0)
        assert_same(d_fast, general.step(step, pos, h, proposals, 0.0))
        assert d_fast.cause == ["infeasible", None] and d_fast.mode.tolist() == [MODE_FALLBACK, MODE_PASS]
    assert fast.counts == general.counts and fast.counts["degraded.infeasible"] == 3
    assert fast.fallback._target == general.fallback._target == {0: 0}
    assert seen == Counter({"fallback": 3}), seen


def test_an_infeasible_arena_beside_a_deadlock_is_decided_by_the_general_path(env_cfg: GridLifeConfig) -> None:
    """One arena infeasible, the other pushing into a hazard until its streak reaches `deadlock_steps`: the step
    that reaches it goes to the general path before any fallback runs, so each arena's fallback runs once per step
    and both paths decide the same all along."""
    fast, general = pair(env_cfg, deadlock_steps=3, deadlock_hold_steps=1)
    seen = outcomes(fast)
    edge, push = on_hazard_edge(fast)
    pos = np.array([[5.0, 9.0], edge])
    h = np.array([[1e-4, 0.2, 0.9], [1.0, 0.0, 1.0]])
    proposals = np.array([[1.0, 0.0], push])
    for step in range(4):
        d_fast = fast.step(step, pos, h, proposals, 0.0)
        assert_same(d_fast, general.step(step, pos, h, proposals, 0.0))
    assert fast.counts == general.counts and fast.counts["deadlocks_detected"] == 1
    assert fast.fallback._target == general.fallback._target
    np.testing.assert_array_equal(fast._stuck, general._stuck)
    np.testing.assert_array_equal(fast._hold, general._hold)
    # steps 0, 1 and 3: the fallback beside a standstill; step 2 can reach the streak (declined), and its one-step
    # hold is that step's fallback
    assert seen == Counter({"fallback": 3, "general": 1}), seen


def test_a_new_core_leaves_no_fast_path_kernel_to_compile() -> None:
    """`compile_kernels` reaches every fast-path kernel for states as computed, as decoded from the wire (numba
    compiles read-only arrays apart) and mixed, so that no live decision waits for a compile. In a fresh process:
    here the tests above have compiled them already."""
    script = """
import json
from nodes.env.gridlife import GridLifeConfig
from nodes.shield import fast_path
from nodes.shield.core import ShieldConfig, ShieldCore
ShieldCore(GridLifeConfig(), ShieldConfig())
print(json.dumps({name: [[str(t) for t in sig[:2]] for sig in getattr(fast_path, name).signatures]
                  for name in ("_screen", "_conclude", "_settle")}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    signatures = json.loads(out.stdout.splitlines()[-1])
    plain, wire = "array(float64, 2d, C)", "readonly array(float64, 2d, C)"
    layouts = {(p, h) for p in (plain, wire) for h in (plain, wire)}
    for name in ("_screen", "_conclude"):
        assert layouts <= {tuple(sig) for sig in signatures[name]}, (name, signatures[name])
    assert signatures["_settle"], signatures


def test_live_decisions_compile_no_kernel() -> None:
    """After a core is built, a closed loop that takes the fast path's outcomes (passes, filters, backups, the
    fallback of an infeasible arena) on states from the wire, with settings written as integers, adds no signature
    to any of the shield's kernels or the env kernels they share. In a fresh process."""
    script = """
import json
import numba
import numpy as np
from nodes.env import kernels
from nodes.env.gridlife import GridLifeBatch, GridLifeConfig, read_only
from nodes.shield import backup, barriers, core, fallback, fast_path, qp
from nodes.shield.barriers import BarrierConfig
from nodes.shield.core import ShieldConfig, ShieldCore

modules = (kernels, backup, barriers, core, fallback, fast_path, qp)
def signatures():
    return {f"{m.__name__}.{name}": len(f.signatures) for m in modules for name, f in vars(m).items()
            if isinstance(f, numba.core.registry.CPUDispatcher)}
cfg = ShieldConfig(deadlock_steps=3, deadlock_hold_steps=1, fallback_speed=1,
                   barrier=BarrierConfig(gamma_position=1, row_tightening=0))
shield = ShieldCore(GridLifeConfig(), cfg)
envs = {arenas: GridLifeBatch(GridLifeConfig(), arenas) for arenas in (1, 3)}
for arenas, env in envs.items():  # the env's own kernels compile here, not in a decision
    env.reset(arenas)
    env.step(np.zeros((arenas, 2)))
before = signatures()
outcomes = set()
for arenas, env in envs.items():
    rng = np.random.default_rng(arenas)
    for step in range(300):
        d = shield.step(step, read_only(env.positions.copy()), read_only(env.internal.copy()),
                        rng.uniform(-1.0, 1.0, size=(arenas, 2)).astype(np.float32), 0.0)
        outcomes.update(d.cause + d.constraint)
        env.step(d.actions)
starved = read_only(np.array([[1e-4, 0.2, 0.9]]))
for step in range(3):
    d = shield.step(1000 + step, read_only(np.array([[5.0, 9.0]])), starved, np.array([[1.0, 0.0]]), 0.0)
    outcomes.update(d.cause)
after = signatures()
print(json.dumps({"new": {k: after[k] - before[k] for k in after if after[k] != before.get(k)},
                  "outcomes": sorted(o for o in outcomes if o)}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["new"] == {}, result["new"]
    assert {"infeasible", "backup"} <= set(result["outcomes"]), result["outcomes"]


def test_a_proposal_that_rounds_to_a_standstill_counts_towards_a_deadlock(env_cfg: GridLifeConfig) -> None:
    """With the two deadlock eps a hair apart, a proposal just above the proposal eps can round (as float32) to
    an action below the action eps: it passes unchanged, yet stands still while pushing. Both paths count the
    streak and find the deadlock."""
    fast, general = pair(env_cfg, deadlock_steps=3, deadlock_hold_steps=2, deadlock_action_eps=0.2,
                         deadlock_proposal_eps=0.2 * (1 + 1e-12))
    proposal = np.array([[0.19826089482949788, 0.026317650618504163]])
    pos, h = np.array([[5.0, 9.0]]), np.array([[0.9, 0.2, 0.9]])
    for step in range(3):
        assert_same(fast.step(step, pos, h, proposal, 0.0), general.step(step, pos, h, proposal, 0.0))
    assert fast.counts == general.counts and fast.counts["deadlocks_detected"] == 1
