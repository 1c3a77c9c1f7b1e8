"""Reads a prepared data folder (src/data/prepared_data.ts, `dsmoe prepare`): token ids, the batch order and the
held-out windows, exactly as the tfjs trainer draws them."""
import json
import os

import numpy as np
import torch

FORMAT, VERSION = "dsmoe-prepared", 1


class PreparedData:
    def __init__(self, folder):
        meta_file = os.path.join(folder, "prepared.json")
        with open(meta_file, encoding="utf-8") as handle:
            meta = json.load(handle)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{meta_file}: expected format {FORMAT} version {VERSION}")
        self.folder, self.meta = folder, meta
        self.seq_len = meta["seq_len"]
        self.tokens = self._open(meta["tokens"], "<i4", (meta["tokens"]["count"],))  # (N,)
        self.batches = self._open(meta["batches"], "<i8", tuple(meta["batches"]["shape"]))  # (micro_batches, B)

    def _open(self, entry, dtype, shape):
        path = os.path.join(self.folder, entry["file"])
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if not os.path.exists(path) or os.path.getsize(path) != expected:
            raise ValueError(f"{path}: missing or not {expected} bytes; run dsmoe prepare again")
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def windows(self, starts):
        """inputs and targets (len(starts), T) as int64 tensors: window b is tokens [start, start + T]."""
        T = self.seq_len
        rows = np.stack([np.asarray(self.tokens[s : s + T + 1], dtype=np.int64) for s in starts])  # (n, T+1)
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]

    def train_batch(self, index, rows=None):
        """Batch `index` (= step · grad_accum + micro-batch); `rows` selects this rank's share of its windows."""
        if index >= self.batches.shape[0]:
            raise ValueError(f"batch {index} is beyond the prepared batch order ({self.batches.shape[0]} micro-batches)")
        starts = self.batches[index]
        return self.windows(starts if rows is None else starts[rows])
