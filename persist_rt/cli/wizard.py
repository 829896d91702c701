"""`persist new`: the guided way to a launch file. Every question has a flag; `--yes` asks nothing.

Experiments built on a maintained launch file (single-agent, multi-agent, robust agent, the
talker/listener example, or any file given with ``--from``) start from that file and change only
the knobs; a custom experiment is assembled feature by feature, each node as the main job's launch file
(launch/single_agent.yaml) declares it, so with every default it is the main job. A choice whose node kinds do not
exist yet is listed as unavailable, with the reason, and cannot be picked.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from persist_rt.cli.common import CliError, console, parse_pairs
from persist_rt.cli.launch_cmd import new_run_dir
from persist_rt.kinds import KindError
from persist_rt.launch import LaunchSpec, Overrides, load_launch
from persist_rt.launch.paramtable import ParamTable, param_table
from persist_rt.params import ParamError

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    base: str | None  # launch file (in launch/) the experiment starts from; None: custom or --from
    kinds: tuple[str, ...] = ()  # node kinds it needs (checked even before the base file exists)


TEMPLATES = (
    Template("single-agent", "standard single-agent experiment (env, shield, SAC agent and learner, telemetry)",
             "single_agent.yaml", ("gridlife", "shield", "agent", "learner", "telemetry")),
    Template("multi-agent", "multi-agent experiment (shared resources, joint collision-avoidance QP)",
             "multi_agent.yaml", ("multi_gridlife", "allocator", "coupler", "agent", "shield", "learner")),
    Template("robust-agent", "robust agent (adversarial training and the full safety stack)",
             "robust_agent.yaml", ("gridlife", "adversary", "estimator", "shield", "agent", "learner")),
    Template("custom", "custom experiment: pick features one by one", None),
    Template("from-file", "start from an existing launch file", None),
    Template("example", "talker/listener example (the runtime alone)", "talker_listener.yaml", ("talker", "listener")),
)


@dataclass(frozen=True)
class Feature:
    key: str
    title: str
    nodes: tuple[tuple[str, str], ...]  # (node name, kind)
    default: bool


FEATURES = (
    Feature("env", "GridLife arena (the environment, the main job)", (("env", "gridlife"),), True),
    Feature("shield", "viability shield between agent and env", (("shield", "shield"),), True),
    Feature("agent", "SAC agent (acting)", (("agent", "agent"),), True),
    Feature("learner", "SAC learner (training)", (("learner", "learner"),), True),
    Feature("estimator", "state estimator (partial observability)", (("estimator", "estimator"),), False),
    Feature("telemetry", "telemetry (Prometheus endpoint, metric history)", (("telemetry", "telemetry"),), True),
    Feature("example", "talker/listener example nodes", (("talker", "talker"), ("listener", "listener")), False),
)


@dataclass(frozen=True)
class Knob:
    key: str  # the flag is --key with _ as -
    param: str  # set on every node of the experiment that declares this parameter (``sac.hidden``: a config field)
    title: str


KNOBS = (
    Knob("steps", "total_steps", "training budget (env steps)"),
    Knob("num_envs", "num_envs", "arenas per env node"),
    Knob("utd_ratio", "sac.utd_ratio", "update cadence: gradient updates per transition"),
    Knob("publish_period", "sac.publish_period", "update cadence: weights to the agent every K updates"),
    Knob("actor_lr", "sac.actor_lr", "actor learning rate"),
    Knob("critic_lr", "sac.critic_lr", "critic learning rate"),
    Knob("amortise_after", "amortise_after", "shield amortisation threshold (samples before the learned filter)"),
    Knob("hidden", "sac.hidden", "network size: hidden layer sizes"),
    Knob("curriculum", "curriculum", "curriculum on/off"),
    Knob("seed", "seed", "seed"),
    Knob("intrinsic", "intrinsic", "intrinsic reward: none, surprise_minimise, surprise_seek, rnd or empowerment"),
    Knob("lambda_intr", "lambda_intr", "weight of the intrinsic reward (>= 0)"),
    Knob("agent", "algorithm", "agent kind: sac, cvar_sac or mpc (planning)"),
)


@dataclass
class Choice:
    template: Template
    problem: str | None  # why it is unavailable


@dataclass
class Draft:
    """The experiment being built: node entries and which parameter tables they have."""

    spec: LaunchSpec
    tables: dict[str, ParamTable] = field(default_factory=dict)

    def holders(self, param: str) -> list[str]:
        head, dot, _ = param.partition(".")
        return [n.name for n in self.spec.nodes if self.tables[n.name].declares(head)
                and (not dot or getattr(self.tables[n.name].params.get(head), "config", None))]

    def current(self, param: str) -> Any:
        head, dot, field = param.partition(".")
        for n in self.spec.nodes:
            decl = self.tables[n.name].params.get(head)
            if head in n.params or decl is not None:
                value = n.params.get(head, decl.default if decl is not None else None)
                if not dot:
                    return value
                if isinstance(value, dict) and field in value:
                    return value[field]
                default = getattr(decl.config_class()(), field, None) if decl is not None else None
                return list(default) if isinstance(default, tuple) else default
        return None

    def set(self, knob: Knob, raw: Any) -> None:
        head, dot, field = knob.param.partition(".")
        for name in self.holders(knob.param):
            decl = self.tables[name].params.get(head)
            value = raw
            if decl is not None:
                listed = decl.type is list or (dot and isinstance(self.current(knob.param), list))
                if listed and isinstance(raw, str) and not raw.strip().startswith("["):
                    value = [_number(x) for x in raw.split(",") if x.strip()]
                if dot:  # one field of a typed config: the others keep their values
                    value = {**self.spec.node(name).params.get(head, decl.default), field: value}
                try:
                    value = decl.coerce(value)
                except ParamError as exc:
                    raise typer.BadParameter(exc.reason, param_hint=f"'--{knob.key.replace('_', '-')}'") from None
            self.spec.node(name).params[head] = value


def _number(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


# --- availability ---------------------------------------------------------------------------


def kind_problem(kind: str) -> str | None:
    try:
        param_table(kind)
    except KindError as exc:
        return str(exc)
    return None


def template_choices() -> list[Choice]:
    out = []
    for t in TEMPLATES:
        missing = [k for k in t.kinds if kind_problem(k)]
        problem = None
        if missing:
            problem = f"node kinds not available yet: {', '.join(missing)}"
        elif t.base is not None and not (LAUNCH_DIR / t.base).exists():
            problem = f"launch/{t.base} does not exist yet"
        out.append(Choice(t, problem))
    return out


# --- building -------------------------------------------------------------------------------


def _draft_from_file(path: Path, args: dict[str, str]) -> Draft:
    spec = load_launch(path, Overrides(args=args))
    return Draft(spec, {n.name: param_table(n.kind, Path(n.base_dir)) for n in spec.nodes})


MAIN_JOB = "single_agent.yaml"  # what a custom experiment's nodes start from: the maintained main job


def _custom_document(features: list[Feature]) -> dict[str, Any]:
    """The chosen nodes: those the main job's launch file declares keep every value it gives them (budget, respawn,
    fallback, reward and training settings); only what the picked features change differs."""
    chosen = {f.key for f in features}
    # the estimator is the main job's partial-observability switch: its launch argument sets every node's side
    base = load_launch(LAUNCH_DIR / MAIN_JOB,
                       Overrides(args={"partial_observability": str("estimator" in chosen).lower()})).resolved()
    entries = {entry["name"]: entry for entry in base["nodes"]}
    names = [name for f in features for name, _ in f.nodes]
    nodes: list[dict[str, Any]] = []
    for f in features:
        for name, kind in f.nodes:
            entry = dict(entries.get(name, {"name": name, "kind": kind}))
            if "depends_on" in entry:
                entry["depends_on"] = [d for d in entry["depends_on"] if d.lstrip("/") in names]
                if not entry["depends_on"]:
                    del entry["depends_on"]
            peers = [k for k in ("agent", "shield") if k in chosen]
            if name == "env" and len(peers) < 2 and param_table(kind).declares("wait_for"):
                entry["params"] = {**entry.get("params", {}), "wait_for": peers}  # not for nodes left out
            if name == "listener":
                entry["depends_on"] = ["talker"]
            nodes.append(entry)
    doc: dict[str, Any] = {"description": f"custom experiment: {', '.join(sorted(chosen))}", "nodes": nodes}
    if "env" in chosen:
        doc["main"] = base.get("main", "env")
    doc["shutdown_timeout"] = base["shutdown_timeout"]
    return doc


def _draft_from_document(doc: dict[str, Any], where: Path) -> Draft:
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=where, delete=False) as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    try:
        return _draft_from_file(Path(f.name), {})
    finally:
        Path(f.name).unlink(missing_ok=True)


# --- the command ----------------------------------------------------------------------------


def new(
    template: Annotated[str | None, typer.Option(
        "--template", "-t", help="single-agent, multi-agent, robust-agent, custom, from-file or example")] = None,
    features: Annotated[str | None, typer.Option(
        help="custom: comma-separated features (env, shield, agent, learner, estimator, telemetry, example)")] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="from-file: the launch file to start from")] = None,
    arg: Annotated[list[str] | None, typer.Option("--arg", metavar="NAME=VALUE",
                                                  help="launch argument of the base file (repeatable)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help=KNOBS[0].title)] = None,
    num_envs: Annotated[int | None, typer.Option(min=1, help=KNOBS[1].title)] = None,
    utd_ratio: Annotated[float | None, typer.Option(help=KNOBS[2].title)] = None,
    publish_period: Annotated[int | None, typer.Option(help=KNOBS[3].title)] = None,
    actor_lr: Annotated[float | None, typer.Option(help=KNOBS[4].title)] = None,
    critic_lr: Annotated[float | None, typer.Option(help=KNOBS[5].title)] = None,
    amortise_after: Annotated[int | None, typer.Option(help=KNOBS[6].title)] = None,
    hidden: Annotated[str | None, typer.Option(help=KNOBS[7].title + ", e.g. 256,256")] = None,
    curriculum: Annotated[bool | None, typer.Option("--curriculum/--no-curriculum", help=KNOBS[8].title)] = None,
    seed: Annotated[int | None, typer.Option(min=0, help=KNOBS[9].title)] = None,
    intrinsic: Annotated[str | None, typer.Option(help=KNOBS[10].title)] = None,
    lambda_intr: Annotated[float | None, typer.Option(help=KNOBS[11].title)] = None,
    agent: Annotated[str | None, typer.Option(help=KNOBS[12].title)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="launch file to write")] = None,
    do_launch: Annotated[bool | None, typer.Option("--launch/--no-launch", help="launch it when written")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="ask nothing: flags and defaults only")] = False,
) -> None:
    """Build a launch file step by step (or from flags alone with --yes), then optionally launch it."""
    flags = {"steps": steps, "num_envs": num_envs, "utd_ratio": utd_ratio, "publish_period": publish_period,
             "actor_lr": actor_lr, "critic_lr": critic_lr, "amortise_after": amortise_after, "hidden": hidden,
             "curriculum": curriculum, "seed": seed, "intrinsic": intrinsic, "lambda_intr": lambda_intr, "agent": agent}
    interactive = not yes
    choices = template_choices()
    choice = _pick_template(choices, template, interactive)
    t = choice.template
    if t.key == "custom":
        draft = _draft_from_document(_custom_document(_pick_features(features, interactive)),
                                     (output or Path("experiment.yaml")).resolve().parent)
    elif t.key == "from-file":
        if from_file is None:
            if not interactive:
                raise typer.BadParameter("from-file needs the launch file to start from", param_hint="'--from'")
            from_file = Path(typer.prompt("Launch file to start from"))
        draft = _draft_from_file(from_file, parse_pairs(arg, "--arg"))
    else:
        assert t.base is not None
        draft = _draft_from_file(LAUNCH_DIR / t.base, parse_pairs(arg, "--arg"))

    console.print("\n[bold]Knobs[/bold] (Enter keeps the value shown)")
    for knob in KNOBS:
        flag = f"--{knob.key.replace('_', '-')}"
        holders = draft.holders(knob.param)
        given = flags[knob.key]
        if not holders:
            console.print(f"  [dim]{knob.title}: unavailable (no node of this experiment has `{knob.param}`)[/dim]")
            if given is not None:
                raise typer.BadParameter(f"no node of this experiment has parameter `{knob.param}`",
                                         param_hint=f"'{flag}'")
            continue
        if given is None and interactive:
            current = draft.current(knob.param)
            shown = ",".join(map(str, current)) if isinstance(current, list) else current
            given = typer.prompt(f"  {knob.title} [{', '.join(holders)}.{knob.param}]", default=str(shown))
        if given is not None:
            draft.set(knob, given)

    doc = draft.spec.resolved()
    doc["description"] = f"{t.title} (written by persist new)"
    text = yaml.safe_dump(doc, sort_keys=False)
    console.print("\n[bold]Final configuration[/bold]")
    console.print(escape(text))
    if output is None:
        output = Path(typer.prompt("Write to", default="experiment.yaml")) if interactive else Path("experiment.yaml")
    if interactive and not typer.confirm(f"Write {output}?", default=True):
        raise typer.Exit(1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(f"# {t.title}\n# written by `persist new`; launch with: persist launch {output}\n" + text)
    spec = load_launch(output)  # what was written must load as it is
    console.print(f"[green]wrote {output}[/green] ({len(spec.nodes)} nodes)")
    if do_launch is None:
        do_launch = interactive and typer.confirm("Launch it now?", default=False)
    if do_launch:
        from persist_rt.launch.supervisor import RunOptions, Supervisor

        raise typer.Exit(Supervisor(spec, RunOptions(run_dir=new_run_dir())).run())


def _pick_template(choices: list[Choice], key: str | None, interactive: bool) -> Choice:
    by_key = {c.template.key: c for c in choices}
    if key is None and not interactive:
        raise typer.BadParameter("choose an experiment with --template when using --yes", param_hint="'--template'")
    if key is None:
        console.print("[bold]What would you like to run?[/bold]")
        for i, c in enumerate(choices, 1):
            if c.problem:
                console.print(f"  [dim]{i}. {c.template.key}: {c.template.title} "
                              f"(unavailable: {escape(c.problem)})[/dim]")
            else:
                console.print(f"  {i}. [bold]{c.template.key}[/bold]: {c.template.title}")

        def check(text: str) -> Choice:
            picked = choices[int(text) - 1] if text.isdigit() and 0 < int(text) <= len(choices) else by_key.get(text)
            if picked is None:
                raise typer.BadParameter(f"{text!r}: type a number from 1 to {len(choices)} or a name")
            if picked.problem:
                raise typer.BadParameter(f"{picked.template.key} is unavailable: {picked.problem}")
            return picked

        first = next(c.template.key for c in choices if not c.problem)
        return typer.prompt("Experiment", default=first, value_proc=check)
    if key not in by_key:
        raise typer.BadParameter(f"unknown experiment {key!r} (one of: {', '.join(by_key)})", param_hint="'--template'")
    if by_key[key].problem:
        raise CliError(f"--template {key}: unavailable: {by_key[key].problem}")
    return by_key[key]


def _pick_features(given: str | None, interactive: bool) -> list[Feature]:
    by_key = {f.key: f for f in FEATURES}
    problems = {f.key: next((p for _, k in f.nodes if (p := kind_problem(k))), None) for f in FEATURES}
    if given is not None:
        keys = [k.strip() for k in given.split(",") if k.strip()]
        for k in keys:
            if k not in by_key:
                raise typer.BadParameter(f"unknown feature {k!r} (one of: {', '.join(by_key)})",
                                         param_hint="'--features'")
            if problems[k]:
                raise CliError(f"--features: {k} is unavailable: {problems[k]}")
        picked = [by_key[k] for k in keys]
    elif not interactive:
        picked = [f for f in FEATURES if f.default and not problems[f.key]]
    else:
        console.print("[bold]Features[/bold]")
        picked = []
        for f in FEATURES:
            if problems[f.key]:
                console.print(f"  [dim]{f.title}: unavailable ({escape(problems[f.key] or '')})[/dim]")
            elif typer.confirm(f"  {f.title}?", default=f.default):
                picked.append(f)
    if not picked:
        raise CliError("--features: pick at least one feature")
    return picked
