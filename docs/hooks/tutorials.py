"""MkDocs hook: the notebooks of ``tutorials/`` become pages ``tutorials/NN_name/`` of the site.

They stay where the tests and Binder run them (``tutorials/`` at the repository root, committed
without outputs); this hook adds them to the build before mkdocs-jupyter converts ``*.ipynb`` pages.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns notebook files into pages
def on_files(files: Files, config) -> Files:
    for notebook in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb")):
        files.append(
            File(
                f"tutorials/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
