"""Write LIBERO's config (no interactive prompt), verify its assets against sim/libero/assets.sha256, link
them where LIBERO looks, and pick the GL backend. Idempotent: a stamp skips unchanged assets."""

from __future__ import annotations

import argparse

from sim.libero.install import MANIFEST, install, wheel_assets_dir, write_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rehash every asset and re-probe the GL backend")
    parser.add_argument(
        "--no-link", action="store_true", help="do not link the assets into libero/libero/assets"
    )
    parser.add_argument(
        "--write-manifest",
        action="store_true",
        help="regenerate sim/libero/assets.sha256 from the installed wheels (maintainers only)",
    )


def run(args: argparse.Namespace) -> int:
    if args.write_manifest:
        n = write_manifest(wheel_assets_dir())
        print(f"[sim install] wrote {n} entries to {MANIFEST}")
        return 0
    install(force=args.force, link=not args.no_link)
    return 0
