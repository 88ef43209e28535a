"""The small config system every recipe uses.

* Presets are TOML files in the top-level ``recipes/<recipe>/`` folder of the
  repository; ``--config NAME`` picks ``recipes/<recipe>/NAME.toml`` and ``--config
  PATH`` any file. A preset may name a ``base = "other"`` preset that it overrides.
* ``--set key=value`` overrides one value, typed by the current value's type (dotted
  keys reach nested tables; lists and booleans are parsed as TOML values).
* ``--dry-run`` prints the resolved config and stops.
* Every artefact goes into a run folder (``--out``, default ``runs/<recipe>-<preset>``);
  the resolved config is saved there, and each stage writes its JSON result atomically
  as ``<stage>.done.json`` when it finishes, so a rerun skips finished stages.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

from curate._package_data import shipped_path

#: The presets: the checkout's top-level recipes/ folder, or its copy in an installed wheel.
PRESETS_ROOT = shipped_path("recipes")


class ConfigError(ValueError):
    """A preset or override that cannot be used; the message says why."""


def preset_dir(recipe: str) -> Path:
    root = Path(os.environ.get("CURATE_RECIPES_DIR", PRESETS_ROOT))
    return root / recipe


def available_presets(recipe: str) -> list[str]:
    d = preset_dir(recipe)
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def _resolve_path(recipe: str, name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    p = preset_dir(recipe) / f"{name_or_path}.toml"
    if not p.is_file():
        raise ConfigError(
            f"no preset {name_or_path!r} for recipe {recipe!r}; available: {available_presets(recipe)} "
            f"(in {preset_dir(recipe)}), or pass a path to a .toml file"
        )
    return p


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_preset(recipe: str, name_or_path: str, _seen: tuple = ()) -> dict:
    """Read a preset (following ``base = "..."`` chains) into a dict."""
    path = _resolve_path(recipe, name_or_path)
    if path.resolve() in _seen:
        raise ConfigError(f"preset base chain loops at {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    parent = data.pop("base", None)
    if parent is not None:
        data = _merge(load_preset(recipe, parent, _seen + (path.resolve(),)), data)
    return data


def _parse_value(raw: str, current: Any, key: str) -> Any:
    try:
        if isinstance(current, bool):
            low = raw.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, str):
            return raw
        if isinstance(current, list):
            value = tomllib.loads(f"v = {raw}")["v"]
            if not isinstance(value, list):
                raise ValueError(raw)
            return value
    except (ValueError, tomllib.TOMLDecodeError):
        kind = type(current).__name__
        raise ConfigError(f"--set {key}={raw}: expected {'an' if kind[0] in 'aeiou' else 'a'} {kind} like {current!r}") from None
    raise ConfigError(f"--set {key}: cannot override a {type(current).__name__} (set the keys inside it)")


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied (dotted keys, typed)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a table of the config")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node:
            raise ConfigError(f"--set {key}: unknown key; known here: {sorted(node)}")
        node[leaf] = _parse_value(raw, node[leaf], key)
    return out


def to_toml(cfg: dict) -> str:
    """A TOML rendering of a config (scalars, lists, nested tables) that tomllib reads back."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines: list[str] = []

    def table(d: dict, prefix: str):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in tables.items():
            table(v, f"{prefix}.{k}" if prefix else k)

    table(cfg, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artefacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Top-level settings that change how fast a run goes, not what it computes: a run may
#: resume with other values.
RUNTIME_KEYS = ("threads", "workers")


def _results_part(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}


class RunDir:
    """A run folder holding every artefact of one recipe run, with resumable stages."""

    def __init__(self, path: str | Path, cfg: dict, *, fresh: bool = False, log: Callable[[str], None] = print):
        self.path = Path(path)
        self.cfg = cfg
        self.log = log
        self.path.mkdir(parents=True, exist_ok=True)
        saved = self.path / "config.json"
        if saved.exists() and not fresh:
            old = json.loads(saved.read_text())
            new = json.loads(json.dumps(cfg))
            if _results_part(old) != _results_part(new):
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ConfigError(
                    f"{self.path} holds a run with a different config (differs in: {', '.join(changed)}); "
                    "use another --out or --fresh (which discards its finished stages)"
                )
            other = [k for k in RUNTIME_KEYS if old.get(k) != new.get(k)]
            if other:
                log(f"resuming {self.path} with other {', '.join(other)} (they do not change results)")
        if fresh:
            for marker in self.path.glob("*.done.json"):
                marker.unlink()
        atomic_write(saved, json.dumps(cfg, indent=2, sort_keys=True))
        atomic_write(self.path / "config.toml", to_toml(cfg))

    def file(self, name: str) -> Path:
        return self.path / name

    def done(self, stage: str) -> bool:
        return (self.path / f"{stage}.done.json").exists()

    def stage(self, name: str, fn: Callable[[], dict]) -> dict:
        """Run ``fn`` unless stage ``name`` finished before; return its JSON result.

        ``fn`` writes its own large artefacts into the run folder and returns a
        JSON-serialisable dict; the marker is written last, so an interrupted stage
        runs again.
        """
        marker = self.path / f"{name}.done.json"
        if marker.exists():
            self.log(f"[stage {name}] done before, skipped ({marker.name})")
            return json.loads(marker.read_text())
        self.log(f"[stage {name}] running")
        return self.record(name, fn())

    def record(self, name: str, result: dict | None) -> dict:
        """Mark stage ``name`` finished with ``result`` (for a stage run elsewhere, e.g. in a
        worker process); the marker is written atomically."""
        result = {} if result is None else result
        atomic_write(self.path / f"{name}.done.json", json.dumps(result, indent=2))
        return result


def recipe_parser(recipe: str, description: str, default_preset: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m curate.recipes.{recipe}", description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=default_preset,
                   help=f"preset name in recipes/{recipe}/ ({', '.join(available_presets(recipe)) or 'none found'}) or a .toml path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (dotted keys for nested tables); repeatable")
    p.add_argument("--cifar-root", default=None,
                   help="CIFAR-10 folder: cifar-10-batches-py, or an image tree like ../shared/data/cifar10 "
                        "(sets data.root; CIFAR presets only)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--out", default=None, help="run folder (default: runs/<recipe>-<preset>)")
    p.add_argument("--fresh", action="store_true", help="rerun every stage even if finished before")
    return p


def resolve(recipe: str, args: argparse.Namespace, fill: Callable[[dict], None] | None = None) -> dict:
    """The config from ``--config`` and ``--set`` (raises ConfigError with a clear message).

    ``fill(cfg)`` completes the preset (e.g. with registry defaults) before ``--set`` applies."""
    cfg = load_preset(recipe, args.config)
    if fill is not None:
        fill(cfg)
    overrides = list(args.overrides)
    if getattr(args, "cifar_root", None):
        if "root" not in cfg.get("data", {}):
            raise ConfigError(f"--cifar-root: preset {args.config!r} reads no CIFAR-10 "
                              f"(data.dataset = {cfg.get('data', {}).get('dataset', '?')!r})")
        overrides.insert(0, f"data.root={args.cifar_root}")
    return apply_overrides(cfg, overrides)


def default_out(recipe: str, config: str) -> Path:
    return Path("runs") / f"{recipe}-{Path(config).stem}"


def save_tensors(path: Path, **tensors) -> None:
    """Tensors to a safetensors file, atomically (a temporary file, then a rename)."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def load_tensors(path: Path) -> dict:
    """A safetensors file as {name: tensor} (never unpickles)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def run_recipe(recipe: str, description: str, default_preset: str, argv, body):
    """Parse the command line, then ``body(cfg, run)`` with the config's seed and threads.
    A preset written for a GPU stops first on a machine without one (with an estimate).

    Returns None for ``--dry-run``."""
    import torch

    from curate.recipes._common import check_hardware

    started = start(recipe, description, default_preset, argv)
    if started is None:
        return None
    cfg, run, args = started
    d = cfg.get("data", {})
    check_hardware(cfg, recipe=recipe, preset=args.config, trainings=1,
                   image_size=int(d.get("image_size", 0) or (32 if d.get("dataset") == "cifar10" else 8)),
                   channels=3 if d.get("dataset") == "cifar10" else 1)
    torch.manual_seed(int(cfg["seed"]))
    with torch_threads(int(cfg.get("threads", 0))):
        return body(cfg, run)


def start(recipe: str, description: str, default_preset: str, argv: list[str] | None = None, *,
          extra_args: Callable | None = None, extra_overrides: Callable | None = None,
          fill: Callable[[dict], None] | None = None, check: Callable[[dict], None] | None = None):
    """Parse a recipe's command line. Returns ``(cfg, run, args)``, or None after
    ``--dry-run`` printed the resolved config. Config errors exit with a clear message.

    ``extra_args(parser)`` adds recipe-specific flags and ``extra_overrides(args)`` turns them
    into ``key=value`` overrides applied after ``--set``; ``fill(cfg)`` completes the config
    (e.g. every score kind's defaults) and ``check(cfg)`` refuses what the recipe cannot use
    (ConfigError), both before anything runs."""
    parser = recipe_parser(recipe, description, default_preset)
    if extra_args is not None:
        extra_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = resolve(recipe, args, fill=fill)
        if extra_overrides is not None:
            cfg = apply_overrides(cfg, extra_overrides(args))
        if check is not None:
            check(cfg)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.dry_run:
        print(f"# resolved config of {recipe} (preset {args.config})")
        print(to_toml(cfg), end="")
        return None
    out = Path(args.out) if args.out else default_out(recipe, args.config)
    try:
        run = RunDir(out, cfg, fresh=args.fresh)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    return cfg, run, args


class torch_threads:
    """Context manager: torch's intra-op thread count set to ``n`` (0: leave as is), restored after."""

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n > 0:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
        return False
