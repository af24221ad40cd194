"""A comparison's guided rounds, trained once per seed and config and loaded by the seed's other jobs.

Every job of a guided scenario works on the model guidance trained (docs/guided.md), so a study of
three methods used to train the same rounds three times: the rounds depend on the job's config, not
on which method evaluates them afterwards. The first job of a seed trains them under a file lock and
leaves, in ``<study>/guided_rounds/seed<N>-<config hash>/``, the rounds' folders (the model in
``guided/model.pt``, as ``guide`` writes it) and ``rounds.pt`` (the critic's judge and the last round's
team); a second job of the
seed waits for the lock and loads them. A method that changes the rounds (another algorithm, another
reward) has another config hash and trains its own. ``rounds.pt`` is written last and atomically: a
job killed during the rounds leaves no file, and the next job trains them again from the start.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from marlgen.config import to_yaml
from marlgen.errors import brief

STATE = "rounds.pt"


def guided_rounds(cfg, parts, job_dir: Path) -> dict:
    """Run or load the rounds for this job (``parts`` as ``guide`` leaves them) -> the last round's team."""
    from marlgen import atomic
    from marlgen.guided import guide

    shared = rounds_dir(cfg, job_dir)
    shared.mkdir(parents=True, exist_ok=True)
    with (shared / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        state = _load(shared / STATE, parts) if (shared / STATE).is_file() else None
        if state is not None:
            team_states = state["team_states"]
        else:
            shutil.rmtree(shared / "guided", ignore_errors=True)  # a killed job's partial rounds
            team_states = guide(cfg, parts, shared, progress=False, log=lambda *_: None).team_states
            state = {"judge": parts.judge.state_dict(), "team_states": team_states}  # model: guided/model.pt
            atomic.torch_save(state, shared / STATE)
    (job_dir / "guided").mkdir(parents=True, exist_ok=True)
    for name in ("history.json", "model.pt"):  # the job's folder tells what its model went through
        shutil.copyfile(shared / "guided" / name, job_dir / "guided" / name)
    return team_states


def _load(path: Path, parts) -> dict | None:
    """The rounds' state, put into ``parts``; None (said in a line) when the files cannot be used."""
    import torch

    before = copy.deepcopy((parts.model.state_dict(), parts.judge.state_dict()))  # the warm-up's
    try:
        model = torch.load(path.parent / "guided" / "model.pt", map_location="cpu", weights_only=True)
        parts.model.load_state_dict(model["state_dict"])
        state = torch.load(path, map_location="cpu", weights_only=False)
        parts.judge.load_state_dict(state["judge"])
        state["team_states"]  # noqa: B018  (present, or the file is not ours)
    except Exception as err:  # torch raises many kinds for a damaged file or another version's state
        parts.model.load_state_dict(before[0])  # the rounds must start again from the warm-up model
        parts.judge.load_state_dict(before[1])
        print(f"{path}: not usable guided rounds ({brief(err)}); training them again", flush=True)
        return None
    return state


def rounds_dir(cfg, job_dir: Path) -> Path:
    """``<study>/guided_rounds/seed<N>-<hash of the config without its out_dir>``; a job's folder is
    ``<study>/runs/<method>/seed<N>`` (marlgen.compare.job_dir)."""
    key = hashlib.sha256(to_yaml(OmegaConf.merge(cfg, {"out_dir": ""})).encode()).hexdigest()[:16]
    return Path(job_dir).parents[2] / "guided_rounds" / f"seed{cfg.seed}-{key}"
