"""swarm.gcs.tiles: an MBTiles file is outside input (a DB file; SQLite columns take any
type): only BLOB rows are tiles, and a file that is not usable is a clear ValueError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarm.gcs.tiles import open_tiles


def _mbtiles(path: Path, fmt: object, rows: list[tuple[int, int, int, object]]) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value)")
    db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
    db.execute("INSERT INTO metadata VALUES ('format', ?)", (fmt,))
    db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return path


def test_only_blob_rows_are_tiles(tmp_path: Path) -> None:
    # XYZ (z, x, y) is TMS row 2**z - 1 - y.
    tiles = open_tiles(_mbtiles(tmp_path / "t.mbtiles", "png", [
        (1, 0, 1, b"\x89PNG"), (0, 0, 0, 3_000_000_000), (1, 1, 1, "text"), (1, 0, 0, None)]))
    try:
        assert tiles.tile(1, 0, 0) == (b"\x89PNG", "image/png")
        assert tiles.tile(0, 0, 0) is None   # bytes(3000000000): 3 GB of zeros
        assert tiles.tile(1, 1, 0) is None   # bytes("text"): TypeError
        assert tiles.tile(1, 0, 1) is None   # bytes(None): TypeError
    finally:
        tiles.close()


@pytest.mark.parametrize("fmt", [7, None, b"png", "tiff"])
def test_a_format_that_is_not_an_image_type_is_a_clear_error(tmp_path: Path, fmt) -> None:
    path = _mbtiles(tmp_path / "t.mbtiles", fmt, [])
    with pytest.raises(ValueError, match="is not an image format"):
        open_tiles(path)
