"""Opening a run folder for the API: which stages finished, checked as `headsteer run` checks them
(`integrity.finished_stages`: made from the current results of the stages before, artifacts matching
their done.json digests), and the config they were made with (the same in every finished stage)."""

from __future__ import annotations

from pathlib import Path

from headsteer.artifacts.integrity import finished_stages
from headsteer.artifacts.io import read_json
from headsteer.config import RunConfig
from headsteer.config.loader import absolute_paths, config_diff, from_dict
from headsteer.core.errors import HeadsteerError


def _recorded(folder: Path) -> dict:
    """A finished stage's config.json, checked for the keys the API reads."""
    meta = read_json(folder / "config.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("full_config"), dict):
        raise HeadsteerError(f"{folder / 'config.json'} holds no full_config; redo the stage, or open another folder")
    return meta


def stored_config(run_dir: Path, stages: list[str]) -> dict:
    """The full config of the last finished stage of `run_dir`, after checking that every finished stage
    recorded the same settings for the sections it depends on."""
    records = {stage: _recorded(run_dir / stage) for stage in stages}
    full = records[stages[-1]]["full_config"]
    for stage, meta in records.items():
        recorded = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        own = {k: v for k, v in recorded.items() if k in full}
        diff = config_diff(own, {k: full[k] for k in own})
        if diff:
            raise HeadsteerError(
                f"{run_dir}: the {stage} stage was made with other settings than the {stages[-1]} stage "
                f"({'; '.join(diff[:3])}); the run's stages disagree: finish it with one config, or open another folder"
            )
    return dict(full)


def open_folder(run_dir: str | Path, data_root: str | None) -> tuple[Path, RunConfig, list[str]]:
    """(absolute folder, its config, its finished stages) of a run folder, or one line saying why not."""
    path = Path(run_dir).expanduser().absolute()
    if not path.is_dir():
        raise HeadsteerError(f"run folder {path} not found; give the folder `headsteer run` wrote (e.g. runs/demo)")
    stages = finished_stages(path)
    if not stages:
        raise HeadsteerError(
            f"{path} holds no finished stage (no <stage>/done.json); give the folder `headsteer run` wrote "
            "(e.g. runs/demo), once its prune stage has finished"
        )
    data = stored_config(path, stages)
    data["out"] = str(path)
    if data_root is not None:
        data.setdefault("data", {})["root"] = data_root
    cfg = absolute_paths(from_dict(RunConfig, data))
    if cfg.data.root is not None and not Path(cfg.data.root).exists():
        raise HeadsteerError(
            f"run {path} was made with data.root={cfg.data.root}, which does not exist here; "
            f"pass load_run('{run_dir}', data_root=DIR) with the folder holding that data"
        )
    return path, cfg, stages
