"""`curate plugin`: make FiftyOne find the curate App plugin."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from curate._package_data import shipped_path


def plugin_source() -> Path:
    """The plugin folder: the checkout's top-level ``plugins/curate``, or its copy in an
    installed wheel (``curate/_shipped/plugins/curate``)."""
    src = shipped_path("plugins/curate")
    if not (src / "fiftyone.yml").is_file():
        raise SystemExit(f"error: the plugin is not at {src}; reinstall curate, or set "
                         "FIFTYONE_PLUGINS_DIR to the plugins/ folder of a source checkout")
    return src


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plugin", help="install the FiftyOne App plugin (operators and the score histogram panel)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    i = sub.add_parser("install", help="copy the plugin into FiftyOne's plugins directory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    i.add_argument("--plugins-dir", default=None,
                   help="target directory (default: fiftyone.config.plugins_dir)")
    i.add_argument("--link", action="store_true", help="symlink instead of copying (for development)")
    i.set_defaults(func=_install)
    w = sub.add_parser("path", help="print the plugin's source folder")
    w.set_defaults(func=lambda args: print(plugin_source().parent) or 0)


def _install(args) -> int:
    src = plugin_source()
    target_root = args.plugins_dir
    if target_root is None:
        import fiftyone as fo

        target_root = fo.config.plugins_dir
    if not target_root:
        raise SystemExit("error: FiftyOne has no plugins_dir configured; pass --plugins-dir")
    dest = Path(target_root).expanduser() / "curate"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    if args.link:
        dest.symlink_to(src, target_is_directory=True)
    else:
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    print(f"installed the curate plugin at {dest}")
    return 0
