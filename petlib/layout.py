"""Where a study's files live: runs, evaluations, exports, splits, caches, reports. Derived from the
params (`output_dir`, `name`, `data.manifest`, `eval.compare`, the runs they define); it holds no
parameter of its own, so the params stay parameters. Nothing here imports the rest of petlib."""
from __future__ import annotations

from pathlib import Path


def run_name(model: str, species: str, repeat: int = 0) -> str:
    """`mnv3-cat`, and `mnv3-cat-r1` for training repeat 1: the run's folder name and its id in params."""
    return f"{model}-{species}" + (f"-r{repeat}" if repeat else "")


class Layout:
    """The study folder `output_dir/name/` and everything in it."""

    def __init__(self, params):
        self.params = params
        self.root = Path(params.output_dir) / params.name

    def out(self, *parts: str) -> Path:
        return self.root / Path(*parts)

    def split_manifest(self, species: str) -> Path:
        """The species' split manifest: pinned by `data.manifest`, else the one 01_data writes."""
        pinned = self.params.data.manifest.get(species)
        return Path(pinned) if pinned else self.out("splits", f"{species}.csv")

    def scan_cache(self, species: str) -> Path:
        return self.out("scan", f"{species}.json")

    def content_cache(self) -> Path:
        """SHA-1s of the data files by size, mtime and ctime (`data.content`)."""
        return self.out("scan", "content.json")

    def audit_file(self, species: str) -> Path:
        return self.out("audit", f"{species}.json")

    def protocol_file(self, species: str) -> Path:
        return self.out("protocol", f"{species}.json")

    def run_dir(self, model: str, species: str, repeat: int = 0) -> Path:
        return self.out("runs", run_name(model, species, repeat))

    def eval_dir(self, model: str, species: str) -> Path:
        return self.out("eval", run_name(model, species))

    def export_dir(self, model: str, species: str) -> Path:
        return self.out("exports", run_name(model, species))

    def compare_dir(self) -> Path:
        return self.out("compare")

    def reports(self) -> Path:
        return Path(self.params.reports_dir) / self.params.name

    def comparison_runs(self) -> dict[str, Path]:
        """Display name -> evaluation dir: `eval.compare` entries `NAME:DIR`, else every run of the study."""
        if self.params.eval.compare:
            return {c.split(":", 1)[0]: Path(c.split(":", 1)[1]) for c in self.params.eval.compare}
        return {run_name(m, s): self.eval_dir(m, s) for m, s in self.params.runs()}
