"""Former home of the output helpers, which now live in :mod:`benchmarks._common`; re-exported for old imports."""

from __future__ import annotations

from ._common import dense_matmul_flops, format_table, machine_info, prepare_out, write_json

__all__ = ["machine_info", "prepare_out", "write_json", "format_table", "dense_matmul_flops"]
