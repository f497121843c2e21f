"""Writer for elbo's PyTorch fixture files (read by tests/fixture.c).

Format, little endian: b"EFX1", u32 count, then per entry:
  u32 name_len, name (utf-8), u32 dtype (0 float32, 1 int32), u32 ndim, i64 shape[ndim],
  data (numel * 4 bytes, row-major).
Run with Debian's /usr/bin/python3 (python3-torch); the C tests need no Python.
"""
import struct

import torch


def write_fixture(path, entries):
    """entries: list of (name, tensor) or a dict name -> tensor (float or int)."""
    items = list(entries.items()) if isinstance(entries, dict) else list(entries)
    with open(path, "wb") as f:
        f.write(b"EFX1")
        f.write(struct.pack("<I", len(items)))
        for name, t in items:
            t = torch.as_tensor(t).detach().cpu().contiguous()
            if t.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool):
                t, dtype = t.to(torch.int32), 1
            else:
                t, dtype = t.to(torch.float32), 0
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", dtype, t.dim()))
            for s in t.shape:
                f.write(struct.pack("<q", s))
            f.write(t.numpy().tobytes())
