"""Content digests of model files: the ONNX step graph seals its own sha256, engines carry a sidecar.

ONNX graph (``aura export``): the model's metadata holds ``aura.graph_sha256`` = the sha256 of the file's
bytes with that value's 64 hex characters read as ``"0" * 64``:

    digest = sha256(bytes[:i] + b"0" * 64 + bytes[i + 64:])      i = where the value starts in the file

Export serialises the model with the placeholder, hashes the bytes, and writes the digest over the
placeholder (same length, so the protobuf stays valid). Loading finds the value by its protobuf encoding
(``0x0a 0x11 "aura.graph_sha256" 0x12 0x40``, the key/value entry of ``ModelProto.metadata_props``), hashes
the same way and compares. Every byte of the file is covered: a flipped weight, node, shape or metadata
byte changes the digest (sha256 has no known collisions), a flipped byte inside the stored digest no
longer matches, and a flipped byte in the key leaves a format-2 graph without a digest, which is refused
too. The check needs no ``onnx`` package (the runtime imports only numpy and ONNX Runtime), and the runner
verifies the very bytes it then hands to ONNX Runtime, so the file cannot change between check and load.

Graphs exported before the digest existed (``aura.format`` 1, or a foreign step graph) load unverified;
their identity is the sha256 of the whole file.

TensorRT engines are opaque and device-specific: :func:`write_sidecar` records ``sha256  name`` in
``ENGINE.sha256`` (``sha256sum -c`` format) when the runtime builds one, and :func:`verify_sidecar`
checks it when present.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import ModelFileError

DIGEST_KEY = "aura.graph_sha256"
FORMAT_KEY = "aura.format"
PLACEHOLDER = b"0" * 64
# StringStringEntryProto {key = 1, value = 2}: tag, length, bytes; the value is 64 ASCII hex digits.
_ENTRY = b"\x0a" + bytes([len(DIGEST_KEY)]) + DIGEST_KEY.encode() + b"\x12\x40"
# aura.format from which a graph must carry its digest
SEALED_FORMAT = 2


@dataclass(frozen=True)
class ModelDigest:
    """``sha256`` identifies the model (graph digest, or whole-file sha256 when ``verified`` is False)."""

    sha256: str
    verified: bool
    how: str

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "verified": self.verified, "how": self.how}


def _locate(path, data: bytes) -> int | None:
    """Offset of the 64-byte digest value in ``data``, or None when the graph has no digest entry."""
    i = data.find(_ENTRY)
    if i < 0:
        return None
    if data.find(_ENTRY, i + 1) >= 0:
        raise ModelFileError(path, f"{DIGEST_KEY} appears more than once in the file (corrupt or tampered)")
    start = i + len(_ENTRY)
    if start + 64 > len(data):
        raise ModelFileError(path, f"{DIGEST_KEY} value is cut off (truncated file)")
    return start


def sealed_sha256(data: bytes, start: int) -> str:
    """sha256 of ``data`` with the 64 bytes at ``start`` replaced by the placeholder."""
    h = hashlib.sha256()
    h.update(memoryview(data)[:start])
    h.update(PLACEHOLDER)
    h.update(memoryview(data)[start + 64 :])
    return h.hexdigest()


def seal(data: bytes) -> tuple[bytes, str]:
    """Export side: write the digest over the placeholder of a graph serialised with ``PLACEHOLDER``."""
    start = _locate("<graph>", data)
    if start is None or data[start : start + 64] != PLACEHOLDER:
        raise ValueError(f"the serialised graph has no {DIGEST_KEY} placeholder to seal")
    digest = sealed_sha256(data, start)
    return data[:start] + digest.encode() + data[start + 64 :], digest


def verify_graph(path: str | os.PathLike, data: bytes) -> ModelDigest:
    """Check a graph's sealed digest over ``data`` (the file's bytes); ModelFileError naming ``path``."""
    start = _locate(path, data)
    if start is None:
        return ModelDigest(hashlib.sha256(data).hexdigest(), False, "no sealed digest (older export)")
    stored = data[start : start + 64].decode("ascii", errors="replace")
    actual = sealed_sha256(data, start)
    if stored != actual:
        raise ModelFileError(
            path,
            f"graph digest mismatch: the file hashes to sha256 {actual[:16]}... but was exported as "
            f"{stored[:16]}...: the file is corrupt or was modified after export; re-export it",
        )
    return ModelDigest(actual, True, DIGEST_KEY)


def confirm_metadata(path: str | os.PathLike, digest: ModelDigest, metadata: dict) -> None:
    """After parsing: the metadata (ONNX Runtime's ``custom_metadata_map``) must agree with the bytes.

    Catches a format-2 graph whose digest entry was damaged (so the byte search found none) and a digest
    entry the search found somewhere other than in the metadata.
    """
    fmt = metadata.get(FORMAT_KEY, "")
    if not digest.verified and fmt.isdigit() and int(fmt) >= SEALED_FORMAT:
        raise ModelFileError(
            path, f"{FORMAT_KEY} {fmt} graph without its {DIGEST_KEY} (corrupt metadata): refusing it"
        )
    if digest.verified and metadata.get(DIGEST_KEY) != digest.sha256:
        raise ModelFileError(path, f"{DIGEST_KEY} in the metadata differs from the sealed bytes (tampered)")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: str | os.PathLike, data: bytes, source: str | None = None) -> str:
    """Write ``PATH.sha256`` for ``data`` (the file bytes); ``source``: the ONNX digest it was built from."""
    digest = hashlib.sha256(data).hexdigest()
    line = f"{digest}  {Path(path).name}\n" + (f"# source {source}\n" if source else "")
    sidecar(path).write_text(line)
    return digest


def read_sidecar(path: str | os.PathLike) -> tuple[str, str | None] | None:
    """(sha256, source digest or None) from ``PATH.sha256``, or None when there is no sidecar."""
    side = sidecar(path)
    if not side.is_file():
        return None
    lines = side.read_text().splitlines()
    digest = lines[0].split()[0] if lines and lines[0].split() else ""
    if len(digest) != 64:
        raise ModelFileError(side, "not a sha256 sidecar (expected '<64 hex digits>  NAME')")
    source = next((x.split()[-1] for x in lines[1:] if x.startswith("# source ")), None)
    return digest, source


def verify_sidecar(path: str | os.PathLike, data: bytes) -> ModelDigest:
    """Check ``data`` (the bytes of ``path``) against ``PATH.sha256`` when it exists."""
    found = read_sidecar(path)
    actual = hashlib.sha256(data).hexdigest()
    if found is None:
        return ModelDigest(actual, False, "no .sha256 sidecar")
    if found[0] != actual:
        raise ModelFileError(
            path,
            f"sha256 {actual[:16]}... does not match {sidecar(path).name} ({found[0][:16]}...): the file is "
            "corrupt or was replaced; rebuild it",
        )
    return ModelDigest(actual, True, sidecar(path).name)
