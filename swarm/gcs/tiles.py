"""Offline map tiles: a ``z/x/y.<ext>`` folder or an MBTiles file, served by the station.

No tile ever comes from the internet: the page asks ``/tiles/{z}/{x}/{y}`` of this
server, which reads them from disk. MBTiles 1.3 (mapbox/mbtiles-spec): an SQLite
database with a ``tiles(zoom_level, tile_column, tile_row, tile_data)`` table whose rows
are numbered in TMS order (south to north), so XYZ row ``y`` is ``2**z - 1 - y``; the
``metadata`` table's ``format`` names the image type.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["TileSource", "open_tiles"]

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
          "webp": "image/webp"}


class TileSource:
    """Where tiles come from; ``tile(z, x, y)`` is ``(bytes, content type)`` or None."""

    description = ""

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _in_range(z: int, x: int, y: int) -> bool:
    return 0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z


class FolderTiles(TileSource):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = f"tile folder {self.root}"

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        if not _in_range(z, x, y):
            return None
        for ext, kind in _TYPES.items():
            # z, x, y are integers, so the path cannot leave the root.
            path = self.root / str(z) / str(x) / f"{y}.{ext}"
            if path.is_file():
                return path.read_bytes(), kind
        return None


class MbTiles(TileSource):
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        try:
            row = self._db.execute("SELECT value FROM metadata WHERE name = 'format'").fetchone()
            self._db.execute("SELECT 1 FROM tiles LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ValueError(f"{self.path} is not an MBTiles file: {exc}") from None
        fmt = row[0] if row else "png"
        fmt = fmt.lower() if isinstance(fmt, str) else fmt   # a DB file: any SQLite type
        if fmt not in _TYPES:
            self._db.close()
            raise ValueError(f"{self.path}: tile format {fmt!r} is not an image format "
                             f"this page can draw ({', '.join(_TYPES)})")
        self.content_type = _TYPES[fmt]
        self.description = f"MBTiles {self.path} ({fmt})"

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        if not _in_range(z, x, y):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                "AND tile_row = ?", (z, x, 2**z - 1 - y)).fetchone()
        # Only a BLOB is a tile. The file is outside input and SQLite columns take any
        # type: bytes() of an INTEGER 3000000000 allocates 3 GB of zeros, of TEXT or
        # NULL it raises (a 500).
        data = row[0] if row else None
        return (data, self.content_type) if isinstance(data, bytes) else None

    def close(self) -> None:
        self._db.close()


def open_tiles(path: Path) -> TileSource:
    """A folder of z/x/y tiles, or an .mbtiles file (ValueError when it is neither)."""
    if path.is_dir():
        return FolderTiles(path)
    if path.is_file():
        return MbTiles(path)
    raise ValueError(f"{path}: neither a tile folder nor an MBTiles file")
