"""Command line: `headsteer run CONFIG` (all stages) or one stage, with dotted overrides; `headsteer config
CONFIG` prints the resolved config (`--list`: the shipped configs); `headsteer init NAME` copies a shipped
config out to edit; `headsteer aggregate RUN_DIR ...` combines runs that differ only in seed. CONFIG is a
YAML file or a shipped config's name (`demo`, `smoke`, ...)."""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback

from headsteer.core.errors import HeadsteerError
from headsteer.stages import signals

STAGE_HELP = {
    "prune": "train the ViT and its decision networks (dense, then joint)",
    "extract": "extract CLS tokens of the steered layer's residual input",
    "sae": "train the top-k sparse autoencoder",
    "steer": "steering sweep over strategies, modes and alpha",
    "report": "figures, report.html, results.json",
}


OVERRIDES = """\
overrides:
  Any config key, dotted, as key.sub=value anywhere on the line; values are parsed as YAML.
  `headsteer config CONFIG --keys` lists every key with its default and meaning.
  CONFIG is a YAML file or the name of a config shipped with headsteer (`headsteer config --list`).
  Paths (CONFIG, --out, data.root, model.pretrained_file) are relative to the current directory.

examples:
"""
RUN_EXAMPLES = """\
  headsteer run demo
  headsteer run demo prune.target_usage=0.5 model.pruned_layers=[-1] --out runs/u50
  headsteer run demo data.name=imagefolder data.root=DIR --out runs/mine
"""
STAGE_EXAMPLES = """\
  headsteer {name} demo                  # the stages before it must be done, in runs/demo
  headsteer {name} demo --out runs/mine   # the same in another run folder
"""
REDO_EXAMPLE = """\
  headsteer {name} demo {override} --force   # redo it with another setting
  (the stages after it need the same override: `headsteer run demo {override} --force`)
"""
STAGE_OVERRIDE = {  # a setting of each stage's own section, for the examples (the report has none)
    "prune": "prune.target_usage=0.5",
    "extract": "extract.layers=all",
    "sae": "sae.k=16",
    "steer": "steer.mode=additive",
}
CONFIG_EXAMPLES = """\
  headsteer config --list
  headsteer config demo
  headsteer config demo sae.k=16 steer.mode=additive --keys
"""
INIT_EXAMPLES = """\
examples:
  headsteer init demo                # writes ./demo.yaml; then: headsteer run demo.yaml
  headsteer init smoke my-configs/   # writes my-configs/smoke.yaml
"""
CONFIG_HELP = "YAML config file (relative to the current directory) or a shipped config's name (e.g. demo)"


def _stage_examples(name: str) -> str:
    override = STAGE_OVERRIDE.get(name)
    return STAGE_EXAMPLES.format(name=name) + (REDO_EXAMPLE.format(name=name, override=override) if override else "")


def _command(sub, name: str, help_text: str, epilog: str, usage: str) -> argparse.ArgumentParser:
    """A subcommand's parser: its help, examples and usage line, and --debug."""
    p = sub.add_parser(
        name, help=help_text, description=help_text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.usage = usage
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _stage_parser(sub, name: str, help_text: str) -> None:
    """`headsteer run|<stage> CONFIG [overrides] [--out DIR] [--force] [--debug]`."""
    epilog = OVERRIDES + (RUN_EXAMPLES if name == "run" else _stage_examples(name))
    usage = f"headsteer {name} CONFIG [key.sub=value ...] [--out DIR] [--force] [--debug]"
    p = _command(sub, name, help_text, epilog, usage)
    p.add_argument("config", help=CONFIG_HELP)
    p.add_argument("--out", metavar="DIR", help="run directory, relative to the current directory (overrides `out`)")
    p.add_argument("--force", action="store_true", help="redo stages whose folder was made by another config")


def _config_parser(sub) -> None:
    """`headsteer config CONFIG [overrides] [--keys]`: the resolved config, every default included."""
    help_text = "print the resolved config (YAML, every key with its default); --keys adds what each key means"
    usage = "headsteer config CONFIG [key.sub=value ...] [--keys] [--debug] | headsteer config --list"
    p = _command(sub, "config", help_text, OVERRIDES + CONFIG_EXAMPLES, usage)
    p.add_argument("config", nargs="?", help=CONFIG_HELP)
    p.add_argument("--keys", action="store_true", help="put each key's meaning above it, as a YAML comment")
    p.add_argument("--list", action="store_true", help="list the configs shipped with headsteer")


def _init_parser(sub) -> None:
    """`headsteer init NAME [DIR]`: a shipped config copied out to edit."""
    help_text = "write a shipped config to DIR/NAME.yaml (default: the current folder) to edit; never overwrites"
    p = _command(sub, "init", help_text, INIT_EXAMPLES, "headsteer init NAME [DIR] [--debug]")
    p.add_argument("name", help="a shipped config's name (`headsteer config --list`)")
    p.add_argument("dir", nargs="?", default=".", help="folder to write NAME.yaml into (default: the current one)")


def _aggregate_parser(sub) -> None:
    """`headsteer aggregate RUN_DIR ...`: run directories, not a config."""
    help_text = "combine runs of one config with different seed=: mean ± sd per figure, conclusions that hold"
    epilog = "example:\n  headsteer aggregate runs/demo runs/demo-seed1 runs/demo-seed2 --out runs/demo-seeds"
    usage = "headsteer aggregate RUN_DIR [RUN_DIR ...] [--out DIR] [--debug]"
    p = _command(sub, "aggregate", help_text, epilog, usage)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="folders made by `headsteer run CONFIG seed=N`")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="report folder, relative to the current directory (default: the runs' common parent + /aggregate)",
    )


def _parser() -> argparse.ArgumentParser:
    from headsteer import __version__

    parser = argparse.ArgumentParser(
        prog="headsteer",
        description="ViTs that prune their own heads, steered through an SAE.",
        epilog="`headsteer COMMAND --help` shows a command's options, the override syntax and examples.",
    )
    parser.add_argument("--version", action="version", version=f"headsteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _stage_parser(sub, "run", "run every stage (finished stages with the same config are skipped)")
    for name, help_text in STAGE_HELP.items():
        _stage_parser(sub, name, help_text)
    _config_parser(sub)
    _init_parser(sub)
    _aggregate_parser(sub)
    return parser


def _aggregate(run_dirs: list[str], out: str | None) -> None:
    """`headsteer aggregate`: write aggregate.{json,md,html}, then print where they are and the conclusions."""
    from pathlib import Path

    from headsteer.analysis.aggregate import aggregate, default_out
    from headsteer.analysis.aggregate_files import write_aggregate

    agg = aggregate([Path(d) for d in run_dirs])
    folder = Path(out) if out else default_out(run_dirs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadsteerError(f"cannot create {folder} ({exc.strerror or exc}); choose another --out") from None
    page = write_aggregate(agg, folder)
    print(f"\nAggregate of seeds {', '.join(str(r.seed) for r in agg.runs)}: {page.resolve()}")
    for conclusion in agg.conclusions:
        print(f"  - {conclusion.text}")


def _print_config(path: str | None, overrides: list[str], keys: bool, listing: bool) -> None:
    """`headsteer config`: the resolved config as YAML, every default included (`keys`: with meanings), or
    the list of shipped configs."""
    from headsteer.config import shipped
    from headsteer.config.docs import config_yaml
    from headsteer.config.loader import load_config

    if listing:
        print(shipped.listing(), end="")
        return
    if path is None:
        raise HeadsteerError(f"give a config: a YAML file or a shipped config's name ({', '.join(shipped.names())})")
    print(config_yaml(load_config(path, overrides), keys=keys), end="")


def _init(name: str, folder: str) -> None:
    """`headsteer init`: copy a shipped config out, then say how to run it."""
    from headsteer.config import shipped

    target = shipped.init(name, folder)
    print(f"wrote {target}; edit it, then run `headsteer run {shlex.quote(str(target))}`")


def _print_summary(out: str) -> None:
    """Where the report is, and its first five findings (also when every stage was skipped)."""
    from pathlib import Path

    md = Path(out) / "report" / "results.md"
    if not md.is_file():
        return
    print(f"\nReport: {(Path(out) / 'report' / 'report.html').resolve()}")
    for line in [ln for ln in md.read_text().splitlines() if ln.startswith("- ")][:5]:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    signals.install()
    parser = _parser()
    args, rest = parser.parse_known_args(argv)  # the rest: dotted overrides, anywhere on the line
    if args.command is None:  # bare `headsteer`
        parser.print_help()
        return 0 if not rest else 2
    if args.command == "aggregate":  # no overrides: what argparse left over are run directories or bad options
        args.run_dirs += [r for r in rest if not r.startswith("-")]
        rest = [r for r in rest if r.startswith("-")]
    bad = [r for r in rest if r.startswith("-") or "=" not in r]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like key.sub=value)")
    args.overrides = rest
    try:
        if args.command == "aggregate":
            _aggregate(args.run_dirs, args.out)
            return 0
        if args.command == "config":
            _print_config(args.config, args.overrides, args.keys, args.list)
            return 0
        if args.command == "init":
            _init(args.name, args.dir)
            return 0
        from headsteer.config.loader import load_config
        from headsteer.core import distributed
        from headsteer.stages import available, run_all, run_stage

        overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
        cfg = load_config(args.config, overrides)
        distributed.init_from_env(cfg.device)
        command = shlex.join(
            ["headsteer", "run", args.config, *args.overrides] + (["--out", args.out] if args.out else [])
        )
        if args.command == "run":
            run_all(cfg, force=args.force, command=command)
        else:
            if args.command not in available():
                raise HeadsteerError(
                    f"stage '{args.command}' is not implemented yet; available: {', '.join(available())}"
                )
            run_stage(cfg, args.command, force=args.force, skip_done=False, command=command)
        if args.command in ("run", "report") and distributed.info().is_main:
            _print_summary(cfg.out)
        distributed.shutdown()
        return 0
    except HeadsteerError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"headsteer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (signals.install)
        from headsteer.stages.resume import interrupted

        return interrupted(exc)


if __name__ == "__main__":
    sys.exit(main())
