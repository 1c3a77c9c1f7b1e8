"""The safetensors format (docs/design.md §3), by hand: the `safetensors` package is not part of Debian's
python3-torch, and the format is an 8-byte header length, a JSON header and the raw little-endian tensors."""
import json
import os
import struct

import torch

_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def write_file_atomic(path, chunks):
    """Writes the byte chunks to PATH.tmp-<pid>, fsyncs, renames over PATH and fsyncs the folder (as
    src/checkpoint/atomic.ts), so a crash leaves the old file or the new one, never a mix."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    os.replace(temporary, path)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data was synced before the rename


def write_json_atomic(path, value):
    write_file_atomic(path, [(json.dumps(value, indent=2) + "\n").encode("utf-8")])


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, float tensor); written as F32 in list order, atomically."""
    header = {}
    if metadata:
        header["__metadata__"] = {key: str(value) for key, value in metadata.items()}
    payloads = []
    offset = 0
    for name, tensor in tensors:
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        raw = data.numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        payloads.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * ((8 - len(header_bytes) % 8) % 8)
    write_file_atomic(path, [struct.pack("<Q", len(header_bytes)), header_bytes, *payloads])


def read_safetensors(path):
    """Returns (tensors: dict name -> float32 tensor, metadata: dict). Raises ValueError naming the file."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        raise ValueError(f"{path}: header length {length} runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: header is not JSON ({error})") from None
    metadata = header.pop("__metadata__", {}) or {}
    start = 8 + length
    tensors = {}
    for name, info in header.items():
        dtype = info.get("dtype")
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, expected one of {sorted(_DTYPES)}")
        torch_dtype, size = _DTYPES[dtype]
        begin, end = info["data_offsets"]
        count = 1
        for dim in info["shape"]:
            count *= dim
        if end - begin != count * size or start + end > len(data):
            raise ValueError(f"{path}: tensor {name} offsets {begin}..{end} do not hold shape {info['shape']} of {dtype}")
        values = torch.frombuffer(bytearray(data[start + begin : start + end]), dtype=torch_dtype)
        tensors[name] = values.reshape(info["shape"]).to(torch.float32)
    return tensors, metadata
