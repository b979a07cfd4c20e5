"""``A^H A`` of a SENSE operator whose mask samples whole phase-encode lines, without 2D FFTs.

With a line mask the readout transform cancels, ``F^H M F = F_y^H M F_y`` (``F_y`` the centred
orthonormal DFT along ``y``), so each readout column ``x`` of each frame is a problem of its own:

``(A^H A v)[:, x] = N_x v[:, x]``,  ``N_x = G o K_x``,  ``G = F_y^H M F_y``,
``K_x[y, y'] = sum_c conj(S_c[y, x]) S_c[y', x]``

(``o`` the elementwise product; ``G`` is circulant, ``K_x`` the coils' Gram matrix along the
column). Two forms of the same operator, to rounding:

* ``rows``: ``M F_y`` keeps only the ``m`` sampled rows of the DFT: per coil image two matrix
  products ``[m, y]`` and ``[y, m]``, about ``2 m c y`` multiply-adds per pixel of a frame;
* ``columns``: the ``N_x`` built once (``x`` matrices ``[y, y]``; ``c y`` multiply-adds per
  pixel, shared by the frames with the same lines and maps), then one matrix product per column,
  ``y`` multiply-adds per pixel: fewer than ``rows`` by ``2 m c / y`` (4-6x at 10 coils and R 8).

Measured with ``crunet bench --what operators --sizes 128 192 256`` (idle 2-core AVX2 machine,
12 frames, 10 coils, R 8 with 24 calibration lines, the same lines in every frame), per
application FFTs / rows / columns, 1 thread: 128 x 128 29.8 / 23.0 / 6.1 ms (the columns' build
16 ms), 192 x 192 66.5 / 57.0 / 18.6 ms (build 70), 256 x 256 124 / 107 / 43 ms (build 151);
10 CG-SENSE steps 0.34 / 0.28 / 0.14 s, 0.79 / 0.65 / 0.36 s, 1.39 / 1.28 / 0.80 s; on 2 threads
the columns take 0.23-0.36x the FFTs' time (CG 0.42-0.56x). Whole methods on the bench slice (128 x
128, one process, the same slice and maps), columns against rows: CG-SENSE 0.57x (1 thread) /
0.60x (2 threads), L+S 0.58x / 0.62x, the refinement's 10 CG steps 0.42 -> 0.16 s (1 thread).

Frames with their own lines each (a shifted mask) need a matrix set per group of frames, streamed
from memory at every application: 128 x 128, 12 frames in 12 groups, 10 coils, 2 threads, FFTs /
rows / columns 14.0 / 10.3 / 25.2 ms (columns' build 137 ms), 192 x 192 20 frames 15 coils rows 65
/ columns 101 ms; columns over rows 0.38x at one group, 0.83x at 2, 0.98x at 3, 1.8x at 4 (128 x
128, R 8), hence :data:`COLUMN_STREAM`.
"""

from __future__ import annotations

from typing import Literal

import torch

from recon.coilops import expand, line_mask, reduce
from recon.errors import InputError
from recon.fft import fftc

#: Forms of the normal operator: ``auto`` chooses; ``fft`` is the 2D-FFT form of
#: :class:`recon.sense.SenseOperator`.
NormalForm = Literal["auto", "fft", "rows", "columns"]
NORMAL_FORMS: tuple[str, ...] = ("auto", "fft", "rows", "columns")
#: Largest memory the ``columns`` form may hold for one operator (its ``N_x`` of every group).
COLUMN_BYTES = 256 << 20
#: The ``columns`` form streams its matrices from memory at each application: with ``g`` groups of
#: frames it takes about ``g x y^2`` times the time of 13 of the ``rows`` form's complex
#: multiply-adds (``2 t c m y x`` of those), measured on 128-192 px slices with 1-6 groups (2-core
#: AVX2, 2 threads; 1 thread favours the columns). With the 2x margin of :meth:`LineNormal.choose`:
#: ``columns`` only where ``COLUMN_STREAM g y <= t c m``.
COLUMN_STREAM = 26


def centred_dft(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The centred orthonormal DFT matrix ``[k, y]`` of size ``n`` (the project's ``fftc`` of the
    identity, so that it matches the FFTs exactly in convention)."""
    return fftc(torch.eye(n, dtype=torch.complex128, device=device), dims=(0,)).to(dtype)


class LineNormal:
    """``A^H A`` for maps ``[bm, tm, c, y, x]`` (``bm``, ``tm`` 1 or the images') and a 0/1 line
    mask ``[b, t, 1, y, 1]`` on the CPU, in the ``rows`` or ``columns`` form (module docstring).

    :meth:`choose` picks the form (None: the FFTs); ``__call__`` maps images ``[b, t, y, x]`` to
    ``A^H A`` of them.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor, form: str):
        if form not in ("rows", "columns"):
            raise InputError(f"line normal form must be rows or columns, got {form!r}")
        problem = self.unsupported(maps, mask)
        if problem is not None:
            raise InputError(f"the {form} form of A^H A needs {problem}")
        self.form = form
        self.maps = maps
        self.sampled = line_mask(mask)  # [b, t, y]
        self.dtype = maps.dtype if maps.is_complex() else torch.complex64
        if form == "rows":
            self.rows, self.rows_h = self._rows()
        else:
            self.normals, self.group = self._columns()

    @staticmethod
    def unsupported(maps: torch.Tensor, mask: torch.Tensor) -> str | None:
        """Why neither line form applies (a 2D mask, values other than 0/1, not the CPU), or None."""
        if mask.ndim != 5 or mask.shape[-1] != 1 or mask.shape[2] != 1:
            return "a line mask (the same lines at every readout position)"
        if mask.device.type != "cpu" or maps.device.type != "cpu":
            return "CPU tensors"
        if not bool(((mask == 0) | (mask == 1)).all()):
            return "a 0/1 mask"
        return None

    @classmethod
    def choose(cls, maps: torch.Tensor, mask: torch.Tensor) -> str | None:
        """``columns`` where its matrices fit :data:`COLUMN_BYTES` and it takes half the time of
        ``rows`` or less: in multiply-adds (``y <= m c``, ``m`` the most lines of a frame) and in
        streaming its matrices (``COLUMN_STREAM g y <= t c m`` over ``t`` frames in ``g`` groups,
        :data:`COLUMN_STREAM`: frames with their own lines each, a shifted mask, need
        ``rows``); else ``rows`` where at most half the lines are sampled; else None (the FFTs)."""
        if cls.unsupported(maps, mask) is not None:
            return None
        sampled = line_mask(mask)
        ny, nx, c = sampled.shape[-1], maps.shape[-1], maps.shape[2]
        width = int(sampled.sum(-1).max())
        if width == 0:
            return None
        if ny <= width * c:
            groups = _groups(maps, sampled)[1]
            item = torch.empty((), dtype=maps.dtype).element_size()
            frames = sampled.shape[0] * sampled.shape[1]
            streamed = COLUMN_STREAM * groups * ny <= frames * c * width
            if streamed and groups * nx * ny * ny * item <= COLUMN_BYTES:
                return "columns"
        return "rows" if 2 * width <= ny else None

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M F_y [b, t, 1, m, y], its adjoint [b, t, 1, y, m])``: per frame the DFT rows at the
        sampled lines (zero rows pad frames with fewer than ``m``)."""
        sampled = self.sampled
        ny = sampled.shape[-1]
        width = int(sampled.sum(-1).max())
        dft = centred_dft(ny, self.dtype, sampled.device)  # [ky, y]
        order = torch.argsort((~sampled).to(torch.int8), dim=-1, stable=True)[..., :width]  # sampled first
        rows = dft[order] * sampled.gather(-1, order)[..., None].to(dft.real.dtype)  # [b, t, m, y]
        rows = rows[:, :, None]
        return rows, rows.conj().transpose(-1, -2).contiguous()

    def _columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N [g, x, y, y], group [b * t])``: the column matrices of each group of frames that
        share their lines and maps, and each frame's group."""
        sampled, maps = self.sampled, self.maps
        b, t, ny = sampled.shape
        first, _, group = _groups(maps, sampled)
        dft = centred_dft(ny, self.dtype, sampled.device)
        normals = []
        for frame in first.tolist():
            bi, ti = divmod(frame, t)
            rows = dft[sampled[bi, ti]]  # [m, y]
            circulant = rows.conj().transpose(0, 1) @ rows  # G = F_y^H M F_y  [y, y']
            s = maps[bi if maps.shape[0] > 1 else 0, ti if maps.shape[1] > 1 else 0].to(self.dtype)
            sx = s.permute(2, 0, 1)  # [x, c, y]
            gram = sx.conj().transpose(-1, -2) @ sx  # K_x[y, y'] = sum_c conj(S_c[y]) S_c[y']
            normals.append(gram.mul_(circulant))
        return torch.stack(normals), group

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` of images ``x [b, t, y, x]``."""
        if self.form == "rows":
            return reduce(self.rows_h @ (self.rows @ expand(x, self.maps)), self.maps)
        b, t, ny, nx = x.shape
        frames = x.reshape(b * t, ny, nx).to(self.dtype)
        # each column's frames made contiguous once: a strided right-hand side made the batched
        # product copy it matrix by matrix (192 x 192, 20 frames, 2 threads: 17.5 -> 14.2 ms)
        if self.normals.shape[0] == 1:
            out = (self.normals[0] @ frames.permute(2, 1, 0).contiguous()).permute(2, 1, 0)
        else:
            out = torch.empty_like(frames)
            for g in range(self.normals.shape[0]):
                idx = (self.group == g).nonzero().flatten()
                out[idx] = (self.normals[g] @ frames[idx].permute(2, 1, 0).contiguous()).permute(2, 1, 0)
        return out.reshape(b, t, ny, nx).to(x.dtype)


def _groups(maps: torch.Tensor, sampled: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Frames ``(b, t)`` (flattened ``b * t``) that share their sampled lines and their maps (the
    same map set: ``maps`` of size 1 or stride 0 along ``b`` / ``t``) -> ``(first frame of each
    group [g], g, each frame's group [b * t])``."""
    b, t, ny = sampled.shape
    per_b = maps.shape[0] > 1 and maps.stride(0) != 0
    per_t = maps.shape[1] > 1 and maps.stride(1) != 0
    flat = sampled.reshape(b * t, ny)
    if bool((flat == flat[:1]).all()):  # the usual case: the same lines in every frame
        lines = torch.zeros(b * t, dtype=torch.long)
    else:
        _, lines = torch.unique(flat, dim=0, return_inverse=True)
    bi = torch.arange(b).repeat_interleave(t) if per_b else torch.zeros(b * t, dtype=torch.long)
    ti = torch.arange(t).repeat(b) if per_t else torch.zeros(b * t, dtype=torch.long)
    key = (bi * t + ti) * (int(lines.max()) + 1) + lines
    _, group = torch.unique(key, return_inverse=True)
    n = int(group.max()) + 1
    first = torch.full((n,), b * t, dtype=torch.long).scatter_reduce(0, group, torch.arange(b * t), "amin")
    return first, n, group
