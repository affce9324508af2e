"""Watchkeeper: the console by default; subcommands for the service and administration (`--help`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.settings import Settings


def start_console(settings: Settings, *, smoke: bool = False) -> int:
    """Open the console window. Imported lazily: the CLI and the service never load Qt."""
    try:
        from console.app import run
    except ModuleNotFoundError as exc:
        if exc.name in {"console", "console.app"}:
            print("watchkeeper: the console is not available in this build yet", file=sys.stderr)
            return 1
        if exc.name and exc.name.split(".")[0] in {"PySide6", "shiboken6"}:
            print(
                "error: the console needs PySide6 (pip install PySide6-Essentials PySide6-Addons); "
                "the subcommands work without it (watchkeeper --help)",
                file=sys.stderr,
            )
            return 1
        raise
    except ImportError as exc:
        # Qt present but a system library missing (libEGL, libxkbcommon...): say which, without a traceback.
        print(f"error: the console cannot start: {exc}", file=sys.stderr)
        return 1
    return int(run(settings, smoke=smoke))


def main(argv: list[str] | None = None) -> int:
    from engine.cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else argv, start_console=start_console)


if __name__ == "__main__":
    sys.exit(main())
