"""One clean run as plain data: its fixed facts (recipe, dataset name, seeds, device) and
where each artefact lives in the run folder. The stages take it and return JSON dicts;
nothing in it calls back into the loop."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from curate.recipes.clean.settings import run_key


@dataclass(frozen=True)
class Layout:
    recipe: str
    path: Path            # the run folder
    name: str             # the FiftyOne dataset of the training samples
    seed: int             # the data, the score and the removals (one cleaning)
    seeds: tuple[int, ...]  # the training seeds; the first one's baseline computes the score
    device: str

    @property
    def score_seed(self) -> int:
        return self.seeds[0]

    @property
    def exported_name(self) -> str:
        """The re-imported export (what the exported arm trains on)."""
        return self.name + "-cleaned"

    def model_dir(self, arm: str, seed: int) -> Path:
        return self.path / "models" / run_key(arm, seed)

    def samples_path(self, arm: str, seed: int) -> Path:
        return self.path / "samples" / f"{run_key(arm, seed)}.safetensors"

    def memorization_path(self, arm: str, seed: int) -> Path:
        """Where :meth:`Memorization.save` writes one model's result (``.safetensors`` + ``.json``)."""
        return self.path / "memorization" / run_key(arm, seed)

    def stage_result(self, name: str) -> dict:
        """A finished stage's JSON result ({} when it has not finished)."""
        p = self.path / f"{name}.done.json"
        return json.loads(p.read_text()) if p.exists() else {}
