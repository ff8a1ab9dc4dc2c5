"""A dataset version picked by git revision: the `data.dvc` of that commit, materialised with DVC.

`materialise("v2-catalog", Path("data"), Path("outputs/datasets"))` resolves the revision to a
commit, reads the dataset hash its `data.dvc` records, and writes that version of `data/`
(`dvc get`, from the local DVC cache or the project's DVC remote) to
`outputs/datasets/data-<commit>/`. A version materialised before is reused when its files
still hash to what the pointer records; a copy is written under a scratch name and renamed
when complete, so a failed or partial `dvc get` never looks like a dataset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from smar.core.errors import DatasetError


def materialise(rev: str, data_dir: Path, target_root: Path) -> Path:
    """The dataset `data_dir` (a DVC-tracked directory of a git repository) as of `rev`, in its own directory."""
    from smar.data.dataset import dvc_directory_md5

    data_dir = Path(data_dir).resolve()
    repo = Path(
        _git(data_dir.parent, "rev-parse", "--show-toplevel", what=f"{data_dir.parent} is not inside a git repository")
    )
    commit = _git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        f"{rev}^{{commit}}",
        what=f"data_rev {rev!r} is not a commit, branch or tag of {repo}",
    )
    pointer = data_dir.relative_to(repo).as_posix() + ".dvc"
    expected = _recorded_md5(repo, commit, pointer, rev)
    target = Path(target_root) / f"{data_dir.name}-{commit[:12]}"
    if target.is_dir() and dvc_directory_md5(target) == expected:
        return target
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "get",
            str(repo),
            data_dir.relative_to(repo).as_posix(),
            "--rev",
            commit,
            "-o",
            str(scratch),
        ],
        capture_output=True,
        text=True,
    )
    try:
        if got.returncode:
            raise DatasetError(
                f"data_rev {rev!r}: `dvc get` could not materialise {pointer} at {commit[:12]}: "
                f"{got.stderr.strip()[-500:]}. "
                "Fix: `dvc push` that version to the project's DVC remote (or keep it in the local cache), or pick "
                "another revision."
            )
        if dvc_directory_md5(scratch) != expected:
            raise DatasetError(
                f"data_rev {rev!r}: the files DVC returned do not hash to {expected} as {pointer} records; the DVC "
                f"cache is corrupt."
            )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _recorded_md5(repo: Path, commit: str, pointer: str, rev: str) -> str:
    import yaml

    text = _git(
        repo, "show", f"{commit}:{pointer}", what=f"data_rev {rev!r}: {pointer} does not exist at {commit[:12]}"
    )
    outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
    if not outs[0].get("md5"):
        raise DatasetError(
            f"data_rev {rev!r}: {pointer} at {commit[:12]} records no md5. Fix: `dvc add` the dataset and commit "
            f"{pointer}."
        )
    return outs[0]["md5"]


def _git(directory: Path, *arguments: str, what: str) -> str:
    done = subprocess.run(["git", "-C", str(directory), *arguments], capture_output=True, text=True)
    if done.returncode:
        raise DatasetError(
            f"{what}. Fix: pass a revision of the repository that tracks the dataset with DVC (`git log -- data.dvc`)."
        )
    return done.stdout.strip()


def track(data_dir: Path) -> Path | None:
    """`dvc add` the dataset `data_dir` when it lies in a DVC project; its pointer file (commit it to
    git, and a run picks this version by data_rev), or None outside a DVC project."""
    data_dir = Path(data_dir).resolve()
    project = next((d for d in (data_dir.parent, *data_dir.parents) if (d / ".dvc").is_dir()), None)
    if project is None:
        return None
    added = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "--quiet", str(data_dir)], cwd=project, capture_output=True, text=True
    )
    if added.returncode:
        raise DatasetError(f"{data_dir}: `dvc add` failed: {added.stderr.strip()[-500:]}")
    return data_dir.with_name(data_dir.name + ".dvc")
