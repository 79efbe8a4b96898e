"""Record what code a full experiment ran with: ``<out>/provenance.json``.

    python results/provenance.py results/main_table start   # before `lirdrec experiment`
    python results/provenance.py results/main_table end     # after it

``start`` stores the UTC time, the git commit, ``git status`` of ``lirdrec/``, and for every
``lirdrec/models/*.py`` its modification time and SHA-256, so a later reader can tell whether
the committed results are stale with respect to the models (compare the hashes with the files).
``end`` adds the finishing time and the wall time, and flags any model file that changed
while the experiment ran. ``start`` on an experiment that started but never ended (it was
interrupted; the runner resumes it) keeps the first record and appends the time to ``resumed``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def model_files() -> dict[str, dict[str, str]]:
    """``{path: {mtime (UTC, ISO), sha256, git}}`` for lirdrec/models/*.py."""
    out = {}
    for path in sorted((REPO / "lirdrec" / "models").glob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        out[rel] = {
            "mtime": datetime.fromtimestamp(path.stat().st_mtime,
                                            timezone.utc).isoformat(timespec="seconds"),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "git": _git("status", "--short", "--", rel) or "unmodified",
        }
    return out


def main(out_dir: Path, stage: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    record_file = out_dir / "provenance.json"
    now = datetime.now(timezone.utc)
    if (stage == "start" and record_file.is_file()
            and "finished" not in json.loads(record_file.read_text())):
        record = json.loads(record_file.read_text())  # an interrupted experiment is resumed
        record.setdefault("resumed", []).append(now.isoformat(timespec="seconds"))
        record.setdefault("model_files_at_resume", []).append(model_files())
    elif stage == "start":
        record = {"started": now.isoformat(timespec="seconds"),
                  "git_commit": _git("rev-parse", "HEAD"),
                  "git_status_lirdrec": _git("status", "--short", "--", "lirdrec").splitlines(),
                  "model_files": model_files()}
    elif stage == "end":
        record = json.loads(record_file.read_text())
        started = datetime.fromisoformat(record["started"])
        record["finished"] = now.isoformat(timespec="seconds")
        record["wall_minutes"] = round((now - started).total_seconds() / 60, 1)
        now_files = model_files()
        record["model_files_changed_during_run"] = sorted(
            p for p in set(record["model_files"]) | set(now_files)
            if record["model_files"].get(p, {}).get("sha256") != now_files.get(p, {}).get("sha256"))
    else:
        sys.exit(f"stage must be start or end, got {stage!r}")
    record_file.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python results/provenance.py RESULTS_DIR start|end")
    main(Path(sys.argv[1]), sys.argv[2])
