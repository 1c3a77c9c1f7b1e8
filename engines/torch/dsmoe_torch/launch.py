"""`python -m dsmoe_torch.launch ARGS` = `python -m torch.distributed.run ARGS` (torchrun), made to work on Debian's
torch 1.13 under Python 3.11: there `Std.from_str("0")` (the default of --redirects and --tee) returns None, because
Python 3.11 no longer lists a Flag's zero member when iterating it, and torchrun fails before starting any worker.
The fix is applied only where that bug is present; everything else is torchrun itself."""
import sys

from torch.distributed import run
from torch.distributed.elastic.multiprocessing import api


def _fix_std_from_str():
    if api.Std.from_str("0") is not None:
        return
    original = api.Std.from_str.__func__

    def from_str(cls, value):
        parsed = original(cls, value)
        if parsed is None:  # a plain number whose member iteration skipped: look it up directly
            return cls(int(value))
        if isinstance(parsed, dict):
            return {rank: cls(int(v)) if std is None else std for (rank, std), v in zip(parsed.items(), _values(value))}
        return parsed

    api.Std.from_str = classmethod(from_str)


def _values(mapping):
    return [entry.split(":")[1] for entry in mapping.split(",")]


if __name__ == "__main__":
    _fix_std_from_str()
    sys.exit(run.main())
